"""Issue 22, items 4, 6, 7 and 8, through ``ebtkit.cli.main``: every ``ebt eval`` flag is checked against the run's
task (an error names the tasks that take it; ``--compare`` on a text run is ``--baseline``), the parse-check holes
(each error names the flag and echoes what was typed; derived keys refused by ``--set``), inference memory refused
before anything runs, and output places probed before any work."""
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import ebtkit
from ebtkit.cli import main
from ebtkit.core import estimate_inference as ei
from ebtkit.core.config import preset
from ebtkit.core.output import check_dir, check_file, check_new_dir

from .test_cli_validation import cli, one_line_error


def _save(path, model="ebt"):
    m = ebtkit.build(model, preset="tiny", vocab_size=256, init="zeros") if model == "ebt" else \
        ebtkit.build(model, preset="tiny", vocab_size=256)
    torch.manual_seed(0)
    if model == "ebt":
        torch.nn.init.normal_(m.head.weight, std=0.5)
    ebtkit.save(m, path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("flag-runs")
    np.save(base / "walk.npy", np.cumsum(np.random.default_rng(0).normal(size=(6, 40, 3)), 1).astype(np.float32))
    for argv in (["--task", "sequence", "--data", str(base / "walk.npy"), "--out", str(base / "seq")],
                 ["--task", "denoise", "--dataset", "mini", "--out", str(base / "den")]):
        assert main(["train", "--preset", "tiny", "--steps", "1", "--no-progress", "--no-eval", *argv]) == 0
    return {"ebt": _save(base / "ebt"), "tpp": _save(base / "tpp", "transformer++"), "seq": base / "seq",
            "den": base / "den"}


def _listing(run):
    """Every file under a run directory with its modification time: what a refused command must not change."""
    return {str(f): f.stat().st_mtime_ns for f in Path(run).rglob("*")}


# ------------------------------------------------------------------------------ item 6: flags against the run
@pytest.mark.parametrize("run, extra, flag, takes", [
    ("ebt", ["--images", "5"], "--images", "it applies to denoise runs"),
    ("ebt", ["--images", "500"], "--images", "it applies to denoise runs"),     # the default, typed: still refused
    ("ebt", ["--sigmas", "0.1"], "--sigmas", "it applies to denoise runs"),
    ("ebt", ["--samples", "2"], "--samples", "it applies to denoise runs and reason runs"),
    ("ebt", ["--windows", "3"], "--windows", "it applies to sequence runs"),
    ("ebt", ["--difficulty", "1"], "--difficulty", "it applies to reason runs"),
    ("ebt", ["--task-steps", "2"], "--task-steps", "it applies to text runs with --tasks"),
    ("ebt", ["--tasks", "tiny_choice", "--steps-list", "1"], "--steps-list", "evaluated with --tasks; it applies "
     "to text runs"),
    ("den", ["--tols", "0.1"], "--tols", "a denoise run; it applies to text runs"),
    ("den", ["--steps-list", "1"], "--steps-list", "it applies to text runs"),
    ("den", ["--max-windows", "2"], "--max-windows", "it applies to text runs"),
    ("den", ["--thinking"], "--thinking", "it applies to text runs"),
    ("den", ["--tasks", "tiny_choice"], "--tasks", "it applies to text runs"),
    ("seq", ["--images", "3"], "--images", "a sequence run; it applies to denoise runs"),
    ("seq", ["--baseline", "X"], "--baseline", "it applies to text runs and text runs with --tasks"),
])
def test_a_flag_of_another_task_is_an_error_naming_the_tasks_that_take_it(runs, capsys, run, extra, flag, takes):
    before = _listing(runs[run])
    rc, out, err = cli(["eval", str(runs[run]), *extra], capsys)
    one_line_error(rc, err, f"{flag} does not apply to {runs[run]}", takes)
    assert out == "" and _listing(runs[run]) == before


def test_compare_on_a_text_run_is_the_baseline(runs, capsys):
    """``eval TEXT_RUN --compare TPP_RUN``: a Transformer++ row beside the EBT, equal to ``--baseline``."""
    common = ["--max-windows", "1", "--batch-size", "1", "--thinking-windows", "1", "--think-steps", "2", "--bon",
              "2", "--tols", "0.1", "--json"]
    docs = []
    for flag in ("--compare", "--baseline"):
        rc, out, err = cli(["eval", str(runs["ebt"]), flag, str(runs["tpp"]), *common], capsys)
        assert rc == 0, err
        docs.append(json.loads(out))
    assert [r["family"] for r in docs[0]["table"]][-1] == "transformer++"
    assert docs[0]["table"] == docs[1]["table"]


@pytest.mark.parametrize("extra, msg", [
    (["--compare", "B", "--baseline", "C"], "name two baselines"),
    (["--compare", "B", "--compare", "C"], "--compare takes one Transformer++ run"),
])
def test_compare_and_baseline_on_a_text_run_must_agree(runs, capsys, extra, msg):
    rc, _, err = cli(["eval", str(runs["ebt"]), *extra], capsys)
    one_line_error(rc, err, msg)


# ------------------------------------------------------------------------------ item 7: parse-check holes
@pytest.mark.parametrize("argv, flag, value", [
    (["eval", "NOPE", "--tols"], "--tols", "nan"),
    (["eval", "NOPE", "--tols"], "--tols", "inf"),
    (["eval", "NOPE", "--tols"], "--tols", "0.1,-1"),
    (["eval", "NOPE", "--sigma"], "--sigma", "1e30"),
    (["eval", "NOPE", "--sigmas"], "--sigmas", "0.1,nan"),
    (["eval", "NOPE", "--steps-list"], "--steps-list", "1,x"),
    (["eval", "NOPE", "--steps-list"], "--steps-list", "100000000"),
    (["eval", "NOPE", "--think-steps"], "--think-steps", "0"),
    (["eval", "NOPE", "--bon"], "--bon", "2,,1e3"),
    (["eval", "NOPE", "--task-steps"], "--task-steps", "two"),
    (["eval", "NOPE", "--ebt-nfe"], "--ebt-nfe", "1,-2"),
    (["generate", "NOPE", "--prompt", "x", "--max-new-tokens"], "--max-new-tokens", "0"),
    (["generate", "NOPE", "--prompt", "x", "--samples"], "--samples", "100000000"),
    (["think", "NOPE", "--text", "x", "--steps"], "--steps", "100000000"),
    (["train", "--alpha"], "--alpha", "1e30"),
    (["train", "--alpha"], "--alpha", "nan"),
    (["train", "--lr"], "--lr", "inf"),
    (["train", "--steps"], "--steps", "1e11"),
    (["prepare", "F", "--out", "D", "--bpe-sample-mb"], "--bpe-sample-mb", "nan"),
    (["prepare", "F", "--out", "D", "--bpe-sample-mb"], "--bpe-sample-mb", "inf"),
    (["prepare", "F", "--out", "D", "--bpe-sample-mb"], "--bpe-sample-mb", "-1"),
    (["prepare", "F", "--out", "D", "--shard-tokens"], "--shard-tokens", "100000000000"),
    (["bench", "--contexts"], "--contexts", "12,x"),
])
def test_bad_values_name_the_flag_and_echo_what_was_typed(capsys, argv, flag, value):
    rc, out, err = cli([*argv, value], capsys)
    one_line_error(rc, err, f"argument {flag}:", repr(value))
    assert out == ""


def test_set_refuses_derived_keys_and_echoes_the_setting(tmp_path, capsys):
    for setting, msg in (("train.schedule_steps=5", "train.schedule_steps cannot be set"),
                         ("model.vocab_size=10", "model.vocab_size cannot be set"),
                         ("train.lr=nan", "train.lr: must be a finite number")):
        rc, _, err = cli(["train", "--preset", "tiny", "--set", setting, "--out", str(tmp_path / "r")], capsys)
        one_line_error(rc, err, f"--set {setting}:", msg)
    with pytest.raises(ValueError, match="train.schedule_steps cannot be set"):
        preset("tiny", **{"train.schedule_steps": 5})
    assert not (tmp_path / "r").exists()


def test_a_binary_config_file_is_named(tmp_path, capsys):
    f = tmp_path / "run.toml"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    rc, _, err = cli(["train", "--config", str(f), "--out", str(tmp_path / "r")], capsys)
    one_line_error(rc, err, f"--config {f}", "not a text file")


def test_a_sweep_spec_with_a_non_finite_setting_names_the_file_and_key(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "x"\npreset = "tiny"\nset = ["train.lr=nan"]\n[axes.data]\nsteps = [1, 2]\n')
    rc, _, err = cli(["sweep", str(spec), "--dry-run", "--out", str(tmp_path / "sw")], capsys)
    one_line_error(rc, err, str(spec), "train.lr", "finite")


# ------------------------------------------------------------------------------ item 4: inference memory
def test_the_inference_estimate_grows_with_steps_samples_and_rows():
    cfg = preset("tiny")
    base = ei.inference_estimate(cfg, rows=16, steps=2)
    S, V = cfg.model.context, cfg.model.vocab_size
    assert base.thinking_bytes == 4 * 16 * S * 3 * (V + 1) + 16                 # (N + 1)·B·R·(W + 1) fp32
    more = ei.inference_estimate(cfg, rows=16, steps=200)
    assert more.thinking_bytes == 4 * 16 * S * 201 * (V + 1) + 1600
    bon = ei.inference_estimate(cfg, rows=16, steps=2, samples=8)
    assert bon.thinking_bytes - base.thinking_bytes == 4 * 16 * S * 8 * (V + 3)
    one = ei.inference_estimate(cfg, rows=16, positions=1, steps=2)             # generation: the last position
    assert one.thinking_bytes * S - 16 * S < base.thinking_bytes and one.activation_bytes < base.activation_bytes
    tpp = ei.inference_estimate(preset("tiny", **{"model.model": "transformer++"}), rows=16, steps=5)
    assert tpp.thinking_bytes == 0 and tpp.weight_bytes > 0


@pytest.fixture
def small_machine(monkeypatch):
    """A machine with 1 GB free, so that the refusals below do not depend on this one's RAM."""
    monkeypatch.setattr(ei, "available_memory", lambda device: (10 ** 9, "available RAM"))
    monkeypatch.setenv("EBT_CHECK_MEMORY", "1")


@pytest.mark.parametrize("argv", [
    ["eval", "EBT", "--steps-list", "10000", "--batch-size", "64"],
    ["eval", "EBT", "--bon", "1024", "--batch-size", "128", "--max-windows", "128"],
    ["eval", "EBT", "--thinking", "--think-steps", "10000"],
    ["eval", "SEQ", "--think-steps", "10000", "--bon", "1024", "--batch-size", "256", "--windows", "256"],
    ["eval", "DEN", "--ebt-nfe", "10000", "--images", "500"],
    ["think", "EBT", "--text", "In the beginning", "--steps", "10000", "--samples", "1024"],
])
def test_inference_that_cannot_fit_is_refused_at_once(runs, capsys, small_machine, argv):
    argv = [str(runs[{"EBT": "ebt", "SEQ": "seq", "DEN": "den"}[a]]) if a in ("EBT", "SEQ", "DEN") else a
            for a in argv]
    before = _listing(argv[1])
    t0 = time.perf_counter()
    rc, out, err = cli(argv, capsys)
    assert time.perf_counter() - t0 < 2.0
    one_line_error(rc, err, "needs about", "of thinking trajectories", "has 1 GB available RAM", "EBT_CHECK_MEMORY=0")
    assert out == "" and _listing(argv[1]) == before


def test_generation_memory_counts_the_prompts(runs, capsys, small_machine, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("In the\n" * 4000)
    rc, _, err = cli(["generate", str(runs["ebt"]), "--prompts", str(prompts), "--steps", "10000", "--samples",
                      "64", "--out", str(tmp_path / "o.jsonl")], capsys)
    one_line_error(rc, err, "this generation needs about", "fewer prompts")
    assert not (tmp_path / "o.jsonl").exists()
    rc, out, err = cli(["generate", str(runs["ebt"]), "--prompt", "In the", "--max-new-tokens", "2", "--steps",
                        "3"], capsys)
    assert rc == 0, err                                                        # one prompt, few steps: fits


# ------------------------------------------------------------------------------ item 8: output places
def test_checked_folders_are_probed_and_left_clean(tmp_path):
    assert check_dir(tmp_path) == tmp_path and check_file(tmp_path / "x.json") == tmp_path / "x.json"
    assert check_new_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []                                     # the probe files are gone


UNWRITABLE = Path("/proc")          # a folder that exists and takes no new files, even for root


@pytest.mark.skipif(not UNWRITABLE.is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("argv", [
    ["generate", "NOPE", "--prompt", "x", "--out", "/proc/ebt-out.txt"],
    ["bench", "--quick", "--out", "/proc/ebt-bench.json"],
    ["think", "EBT", "--text", "In the beginning", "--out", "/proc/ebt-heatmap.png"],
    ["think", "EBT", "--text", "In the beginning", "--json", "/proc/ebt-energies.json"],
    ["report", "EBT", "--out", "/proc/ebt-report.html"],
    ["prepare", "F.txt", "--out", "/proc/ebt-corpus"],
    ["train", "--preset", "tiny", "--out", "/proc/ebt-run"],
])
def test_an_unwritable_output_place_is_refused_before_any_work(runs, capsys, argv):
    argv = [str(runs["ebt"]) if a == "EBT" else a for a in argv]
    t0 = time.perf_counter()
    rc, out, err = cli(argv, capsys)
    one_line_error(rc, err, f"{argv[-2]} /proc/ebt-", "cannot create a file in /proc")
    assert time.perf_counter() - t0 < 5.0 and "Traceback" not in err
