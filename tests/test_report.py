"""``ebt report``: one self-contained HTML page for a sweep, a run, or a comparison (structure checks; the
rendering in a real browser is ``test_report_browser.py``)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ebtkit.cli import main

TINY_SPEC = {
    "name": "tiny", "preset": "tiny", "models": ["ebt", "transformer++"], "seeds": [0],
    "set": {"train.eval_every": 6, "train.save_every": 100},
    "eval": {"max_windows": 4, "thinking": True, "thinking_windows": 2, "think_steps": "2,4", "bon": "2",
             "tols": "0.01"},
    "axes": {"data": {"steps": [6, 12]}},
    "jobs": 2,
}


def tiny_sweep(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny sweep (2 points × 2 models × 1 seed, preset tiny, 6–12 steps) and its report, built once per
    session and shared with the browser test (the second call resumes: everything is already finished)."""
    base = tmp_path_factory.getbasetemp() / "tiny-sweep"
    spec = tmp_path_factory.getbasetemp() / "tiny-sweep.json"
    spec.write_text(json.dumps(TINY_SPEC))
    report = base / "report.html"
    if not report.exists():
        assert main(["sweep", str(spec), "--out", str(base)]) == 0
        assert main(["report", str(base)]) == 0
    return base, report


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return tiny_sweep(tmp_path_factory)


@pytest.mark.slow
def test_sweep_report_sections_and_self_contained(sweep):
    base, report = sweep
    html = report.read_text()
    for sid in ("scaling", "curves", "runs", "thinking", "energy", "samples", "config", "environment"):
        assert f'<section id="{sid}">' in html
    assert 'id="slope-table"' in html and 'id="energy-passage"' in html
    assert html.count('<figure class="fig') >= 5
    # self-contained: no scripts, no external stylesheets, every src/href a data URI or an in-page anchor
    assert "<script" not in html and "<link" not in html
    for attr in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attr.startswith(("data:", "#")), attr
    idx = json.loads((base / "sweep.json").read_text())
    assert {r["status"] for r in idx["runs"]} == {"done"} and len(idx["runs"]) == 4
    assert all(r["flops"] and r["flops"] > 0 for r in idx["runs"])
    ebt = [r for r in idx["runs"] if r["model"] == "ebt"]
    assert all((base / r["dir"] / "thinking.json").exists() for r in ebt)
    assert "python" in idx["env"] and "torch" in idx["env"]


@pytest.mark.slow
def test_run_and_comparison_reports(sweep, tmp_path, capsys):
    base, _ = sweep
    ebt, tpp = base / "runs" / "ebt-steps12-s0", base / "runs" / "tpp-steps12-s0"
    assert main(["report", str(ebt), "--passage", "And God said, Let there be light: and there was light."]) == 0
    html = (ebt / "report.html").read_text()
    assert 'id="energy-passage"' in html and 'id="fig-thinking-0"' in html and "data-ce=" in html
    assert 'id="text-samples"' in html and "<b>And God said</b>" in html and "could not generate" not in html
    out = tmp_path / "cmp.html"
    assert main(["report", str(ebt), str(tpp), "--out", str(out), "--prompt", ""]) == 0
    cmp = out.read_text()
    assert 'id="config-diff"' in cmp and "model.model" in cmp and "transformer++" in cmp
    assert main(["report", str(tpp), "--out", str(tmp_path / "tpp.html"), "--prompt", ""]) == 0
    assert "No text EBT run here" in (tmp_path / "tpp.html").read_text()
    assert 'id="text-samples"' not in cmp


def test_report_bad_input_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ebt: error:") and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "report.html").exists()


def test_thinking_plots_get_the_transformer_at_the_same_point_as_baseline():
    from ebtkit.study.report import _baseline_for
    ev = lambda v: {"rows": [{"val_ppl": v, "ood_ppl": 2 * v}]}  # noqa: E731
    runs = [{"name": "ebt-a", "model": "ebt", "point": "a", "eval": ev(50.0)},
            {"name": "tpp-a", "model": "transformer++", "point": "a", "eval": ev(5.0)},
            {"name": "tpp-b", "model": "transformer++", "point": "b", "eval": ev(4.0)}]
    assert _baseline_for(runs[0], runs) == {"label": "Transformer++ (tpp-a)", "val_ppl": 5.0, "ood_ppl": 10.0}
    plain = [dict(r, point=None) for r in runs]
    assert _baseline_for(plain[0], plain) is None                 # two candidates: ambiguous, none drawn
    assert _baseline_for(plain[0], plain[:2])["val_ppl"] == 5.0


def test_report_of_an_image_denoising_run_shows_psnr_vs_nfes_and_samples(tmp_path):
    """A denoising run directory (files only: config, metrics, eval_denoise.json, a PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    run = tmp_path / "den"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "config.json").write_text(json.dumps(
        {"task": "denoise", "config": {"model": {"model": "ebt"}, "train": {"batch_size": 8}}}))
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"step": 5, "split": "train", "loss": 0.2}, {"step": 10, "split": "train", "loss": 0.1},
        {"step": 10, "split": "val", "val_psnr": 17.4, "val_nfe": 1}, "not json"]))
    rows = [{"nfe": n, "method": "think", "psnr": 17 + 0.1 * n, "mse": 1.0, "nfe_spent": float(n)} for n in (1, 2, 3)]
    (run / "eval_denoise.json").write_text(json.dumps(
        {"levels": [{"sigma": 0.1, "noisy": {"psnr": 16.0}, "models": {"EBT": rows}}]}))
    plt.imsave(run / "samples.png", np.random.default_rng(0).random((28, 56)), cmap="gray")
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert 'id="fig-denoise-0"' in html and 'id="fig-curves-0"' in html and 'id="fig-sample-0"' in html
    assert "No text EBT run here" in html
