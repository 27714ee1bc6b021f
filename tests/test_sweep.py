"""``ebt sweep``: spec parsing, the plan (dedup, names, early errors), the resumable runner, FLOP counting."""
from __future__ import annotations

import json

import pytest

from ebtkit.cli import main
from ebtkit.study import api
from ebtkit.study.spec import load_spec, normalise_spec
from ebtkit.study.sweep import plan

TOML = """
name = "demo"
preset = "tiny"
models = ["ebt", "transformer++"]
seeds = [1, 2]
set = { "train.warmup" = 2, train.lr = 0.004 }
[eval]
max_windows = 8
[axes.data]
steps = [10, 20, 40]
[axes.params]
d_model = [16, 32]
[axes.wide]
x = "params"
points = [{ d_model = 16, n_heads = 1 }, { d_model = 32, n_heads = 1 }]
"""


def test_toml_and_json_specs(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(TOML)
    spec = load_spec(p)
    assert spec["name"] == "demo" and spec["seeds"] == [1, 2] and spec["eval"]["max_windows"] == 8
    assert spec["eval"]["thinking"] is False                      # defaults filled in
    assert spec["set"] == {"train.warmup": 2, "train.lr": 0.004}  # quoted and unquoted dotted keys
    assert spec["axes"]["data"] == {"x": "tokens", "key": "train.steps",
                                    "points": [{"train.steps": 10}, {"train.steps": 20}, {"train.steps": 40}]}
    assert spec["axes"]["params"]["x"] == "params"
    assert spec["axes"]["wide"]["points"][0] == {"model.d_model": 16, "model.n_heads": 1}
    j = tmp_path / "s.json"
    j.write_text(json.dumps({"preset": "tiny", "axes": {"batch": {"batch_size": [4, 8]}}}))
    spec = load_spec(j)
    assert spec["name"] == "s" and spec["axes"]["batch"]["x"] == "batch_tokens"
    assert spec["models"] == ["ebt", "transformer++"]


@pytest.mark.parametrize("bad, match", [
    ({"axes": {}}, "at least one axis"),
    ({"axes": {"data": {"steps": [10]}}}, "at least 2 points"),
    ({"axes": {"data": {"steps": [10, 20], "d_model": [1, 2]}}}, "exactly one key"),
    ({"axes": {"mine": {"steps": [10, 20]}}}, "needs x"),
    ({"axes": {"data": {"bogus": [1, 2]}}}, "unknown key"),
    ({"models": ["gpt"], "axes": {"data": {"steps": [1, 2]}}}, "unknown model"),
    ({"colour": "red", "axes": {"data": {"steps": [1, 2]}}}, "unknown fields"),
    ({"eval": {"windows": 3}, "axes": {"data": {"steps": [1, 2]}}}, "unknown eval fields"),
])
def test_bad_specs_fail_with_one_clear_message(bad, match):
    with pytest.raises(ValueError, match=match):
        normalise_spec(bad)


def test_plan_deduplicates_identical_configs_and_names_runs():
    # the tiny preset is 30 steps at d_model 32: those points of both axes are the same run
    spec = normalise_spec({"preset": "tiny", "seeds": [0, 1], "axes": {"data": {"steps": [15, 30]},
                                                                     "params": {"d_model": [16, 32]}}})
    runs = plan(spec)
    assert len(runs) == 2 * 2 * 3                       # 3 distinct points × 2 models × 2 seeds
    shared = [r for r in runs if len(r.axes) == 2]
    assert len(shared) == 4 and all(r.axes == ["data", "params"] for r in shared)
    names = {r.name for r in runs}
    assert {"ebt-steps15-s0", "tpp-steps30-s1", "ebt-d_model16-s1"} <= names
    r = next(r for r in runs if r.name == "tpp-d_model16-s0")
    assert r.config["model"]["model"] == "transformer++" and r.config["model"]["d_model"] == 16
    assert r.config["train"]["seed"] == 0
    # FLOPs depend on the architecture and batch, not on steps or seed
    assert len({r.flops_key for r in runs}) == 4


def test_bad_config_key_fails_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", "--preset", "tiny", "--steps", "3,4", "--set", "model.nope=1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ebt: error:") and "model.nope" in err and err.count("\n") == 1
    assert not out.exists()
    assert main(["sweep", "--preset", "tiny", "--out", str(out)]) == 2
    assert "at least one axis" in capsys.readouterr().err
    assert main(["sweep", "--preset", "tiny", "--steps", "3,x", "--out", str(out)]) == 2
    assert "integers" in capsys.readouterr().err


def test_dry_run_prints_the_plan(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", "--preset", "tiny", "--steps", "3,4", "--width", "16,32", "--seeds", "0,1",
                 "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "16 runs" in text and "16 to run" in text and "tpp-d_model16-s1" in text
    assert not out.exists()


def test_sweep_runs_resumes_and_reruns_half_finished_runs(tmp_path, capsys):
    out = tmp_path / "sw"
    args = ["sweep", "--preset", "tiny", "--models", "transformer++", "--steps", "3,5", "--no-flops",
            "--eval-windows", "2", "--jobs", "2", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "2 to run" in text and "[2/2]" in text and "sweep index" in text
    idx = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in idx["runs"]] == ["done", "done"]
    a, b = out / "runs" / "tpp-steps3-s0", out / "runs" / "tpp-steps5-s0"
    for d in (a, b):                                  # ordinary run directories
        assert (d / "checkpoint" / "config.json").exists() and (d / "metrics.jsonl").exists()
        assert (d / "eval.json").exists() and (d / "sweep_point.json").exists()
    rec = {r["name"]: r for r in idx["runs"]}
    assert rec["tpp-steps5-s0"]["tokens"] == 5 * 8 * 32 and rec["tpp-steps5-s0"]["val_ppl"] > 1
    assert rec["tpp-steps5-s0"]["params"] == api.non_embedding_params(api.run_config(b)["config"])
    stamp = (a / "metrics.jsonl").stat().st_mtime_ns

    # finished: nothing reruns
    assert main(args) == 0
    assert "2 finished, 0 to run" in capsys.readouterr().out
    # half-finished (no marker, a stray file): removed and rerun; the finished one is untouched
    (b / "sweep_point.json").unlink()
    (b / "stray.txt").write_text("partial")
    assert main(args) == 0
    assert "1 finished, 1 to run" in capsys.readouterr().out
    assert not (b / "stray.txt").exists() and (b / "sweep_point.json").exists()
    assert (a / "metrics.jsonl").stat().st_mtime_ns == stamp


def test_failed_runs_are_recorded_and_the_sweep_exits_nonzero(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", "--preset", "tiny", "--models", "transformer++", "--steps", "2,3", "--no-flops",
                 "--set", f"data.path={tmp_path / 'missing.txt'}", "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "FAILED" in text and "2 failed" in text
    idx = json.loads((out / "sweep.json").read_text())
    assert all(r["status"] == "failed" and r["error"] for r in idx["runs"])


def test_flops_per_training_step_are_counted_from_the_real_step():
    from ebtkit.study.flops import train_step_flops
    res = train_step_flops("tiny", "transformer++", {"model.d_model": 16}, k=1)
    cfg = api.resolve_config("tiny", "transformer++", {"model.d_model": 16})
    n = api.non_embedding_params(cfg) + 16 * 256          # blocks + the untied output head
    tokens = cfg["train"]["batch_size"] * cfg["model"]["context"]
    # forward + backward of the matmuls is ≈ 6 N per token, plus attention
    assert 6 * n * tokens <= res["flops_per_step"] <= 1.6 * 6 * n * tokens


def test_fit_sweep_on_an_index_fits_each_axis_and_compute_where_it_differs():
    """Synthetic index: the data axis' FLOPs are ∝ tokens (no separate FLOPs fit); the params axis is fitted
    against parameters and against FLOPs, with EBT/T++ ratios."""
    from ebtkit.study.results import fit_sweep, format_fits
    runs = []
    for model, fpt, b in (("ebt", 5.0, -0.4), ("transformer++", 1.0, -0.3)):
        for seed in (0, 1):
            for tokens in (1e5, 2e5, 4e5, 8e5):
                runs.append({"status": "done", "axes": ["data"], "model": model, "seed": seed, "tokens": tokens,
                             "flops": fpt * 6e4 * tokens, "val_ppl": 50 * (tokens / 1e5) ** b})
            for params in (3e4, 6e4, 1.2e5, 2.4e5):
                runs.append({"status": "done", "axes": ["params"], "model": model, "seed": seed, "params": params,
                             "flops": fpt * 6 * (params + 3e4) * 8e5, "val_ppl": 40 * (params / 3e4) ** (b / 2)})
    index = {"spec": {"axes": {"data": {"x": "tokens"}, "params": {"x": "params"}}}, "runs": runs}
    rows = fit_sweep(index, resamples=200)
    assert [(r["axis"], r["x"]) for r in rows] == [("data", "tokens"), ("params", "params"), ("params", "flops")]
    assert rows[0]["fits"]["ebt"]["slope"] == pytest.approx(-0.4)
    assert rows[0]["comparison"]["ratio"] == pytest.approx(4 / 3)
    assert rows[1]["comparison"]["ratio"] == pytest.approx(4 / 3)
    assert "paired_by_rank" in rows[2]["comparison"]["flags"]
    assert rows[2]["fits"]["ebt"]["slope"] < -0.2 * 0.9                    # steeper vs FLOPs' offset-x
    text = format_fits(rows)
    assert "1.333 [1.333, 1.333]" in text and "paired_by_rank" in text
