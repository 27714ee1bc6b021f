"""Sizes before building (ebtkit.core.estimate): exact parameter counts for every model class, the memory guard
that refuses a run before anything is built, the memory estimate against a real measured step, and the sizes that
``ebt presets`` prints."""
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ebtkit.cli import main
from ebtkit.core import estimate as E
from ebtkit.core.config import ModelConfig
from ebtkit.core.models import build_model
from ebtkit.core.models.image import ImageModelConfig, build_image_model
from ebtkit.core.models.sequence import SequenceModelConfig, build_sequence_model
from ebtkit.tasks import TASKS, preset

ROOT = Path(__file__).resolve().parent.parent


def _numel(m):
    return sum(p.numel() for p in m.parameters())


TEXT = [dict(), dict(model="transformer++"), dict(candidate_proj="tied", step_cond="none", alpha_learnable=False),
        dict(step_cond="token", n_landscapes=3, ffn_mult=2.5, d_model=96, n_heads=3, vocab_size=300, n_layers=3),
        dict(model="transformer++", d_model=48, n_heads=4, ffn_mult=0.7, vocab_size=1000, n_layers=1)]
SEQUENCE = [dict(), dict(model="transformer++", features=7), dict(candidate_proj="separate", features=5,
                                                                   step_cond="none", alpha_learnable=False),
            dict(features=33, d_model=40, n_heads=2, n_layers=3, n_landscapes=2, ffn_mult=1.5)]
IMAGE = [dict(), dict(model="dit"), dict(model="dit", timestep_freq_dim=10, channels=3, patch_size=7, mlp_ratio=1.3),
         dict(n_landscapes=2, alpha_learnable=False, mlp_ratio=1.3, d_model=48, n_heads=3, n_layers=2)]


@pytest.mark.parametrize("kw", TEXT)
def test_text_parameter_counts_are_exact(kw):
    c = ModelConfig(**kw)
    m = build_model(c)
    assert E.param_counts(c) == (_numel(m), m.non_embedding_params())


@pytest.mark.parametrize("kw", SEQUENCE)
def test_sequence_parameter_counts_are_exact(kw):
    c = SequenceModelConfig(**kw)
    m = build_sequence_model(c)
    assert E.param_counts(c) == (_numel(m), m.non_embedding_params())


@pytest.mark.parametrize("kw", IMAGE)
def test_image_parameter_counts_are_exact(kw):
    c = ImageModelConfig(**kw)
    m = build_image_model(c)
    assert E.param_counts(c) == (_numel(m), m.trunk_params())


def test_every_small_preset_of_every_task_counts_exactly():
    for name, task in TASKS.items():
        for p in ("tiny", "cpu"):
            for model in task.models:
                cfg = preset(name, p, **{"model.model": model})
                assert E.estimate(cfg).params == _numel(task.build_model(cfg)), (name, p, model)


def test_memory_grows_with_batch_steps_and_system():
    base = preset("text", "cpu")
    e = E.estimate(base)
    assert e.total_bytes == e.state_bytes + e.overhead_bytes + e.activation_bytes
    assert e.state_bytes == 16 * e.params
    bigger = E.estimate(base.replace(**{"train.batch_size": 32}))
    assert bigger.activation_bytes == 2 * e.activation_bytes
    assert E.estimate(base.replace(**{"thinking.steps": 3})).activation_bytes > e.activation_bytes
    # System 2 keeps one second-order graph however many steps it takes
    s2 = preset("text", "cpu", "s2")
    assert E.estimate(s2.replace(**{"thinking.max_steps": 6})).activation_bytes_per_sequence < \
        E.estimate(base.replace(**{"thinking.steps": 6})).activation_bytes_per_sequence
    assert E.estimate(s2).rows == 24 and E.estimate(s2).replay_bytes > 0      # half a batch replayed
    assert E.estimate(base, "bf16").activation_bytes < e.activation_bytes
    assert E.estimate(base.replace(**{"train.checkpoint_blocks": True, "model.n_layers": 8})).activation_bytes < \
        E.estimate(base.replace(**{"model.n_layers": 8})).activation_bytes
    zero = base.replace(**{"train.zero": 1})
    assert E.estimate(zero, ranks=4).state_bytes == 8 * e.params + 2 * e.params


def _no_build(monkeypatch):
    """Fail the test if any model is built or any data is loaded."""
    def boom(*a, **k):
        raise AssertionError("a model was built or data loaded before the memory check")
    for task in TASKS.values():
        monkeypatch.setattr(task, "build_model", classmethod(lambda cls, cfg: boom()))
        monkeypatch.setattr(task, "setup", lambda self, ckpt_dir: boom())


def test_a_run_that_cannot_fit_is_refused_fast_in_one_line(tmp_path, monkeypatch, capsys):
    # the user's case: 100,000 layers of the cpu preset (2.9 B parameters, 46 GB of weights and AdamW state) grew
    # to the whole 23.5 GB machine for 5 minutes; the machine's RAM is fixed here so the test means the same on any
    # machine (the next test reads the real figure)
    _no_build(monkeypatch)
    monkeypatch.setattr(E, "available_memory", lambda dev: (23_500_000_000, "available RAM"))
    monkeypatch.delenv(E.ENV_SWITCH, raising=False)
    out = tmp_path / "run"
    t0 = time.perf_counter()
    rc = main(["train", "--set", "model.n_layers=100000", "--out", str(out), "--no-progress"])
    took = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 2 and took < 5, (rc, took)
    assert err.count("\n") == 1 and err.startswith("ebt: error: ")
    e = E.estimate(preset("text", "cpu", **{"model.n_layers": 100000}))
    assert e.params == 100000 * (4 * 64 * 64 + 3 * 64 * 64 + 2 * 64) + 64 + 2 * 256 * 64 + 2 * 64 + 64 + 1
    assert f"needs about {E.human_bytes(e.total_bytes)} to train ({e.params:,} parameters: 46.1 GB of weights" in err
    assert "has 23.5 GB available RAM" in err, err
    assert "EBT_CHECK_MEMORY=0" in err
    assert not out.exists()


def test_the_real_available_memory_refuses_an_impossible_run(tmp_path, monkeypatch, capsys):
    _no_build(monkeypatch)
    monkeypatch.delenv(E.ENV_SWITCH, raising=False)
    free, where = E.available_memory("cpu")
    total = int(open("/proc/meminfo").read().split("MemTotal:")[1].split()[0]) * 1024
    assert 0 < free <= total and where
    rc = main(["train", "--set", "model.n_layers=10000000", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "288,000,033,025 parameters: 4.61 TB of weights" in err, err
    assert not (tmp_path / "r").exists()
    with pytest.raises(E.DoesNotFitError, match=f"but cpu has {E.human_bytes(free)[:1]}.* available RAM"):
        E.check_fits(preset("text", "cpu", **{"model.n_layers": 10**7}), "text", "cpu")


def test_the_guard_can_be_switched_off_and_lets_runs_that_fit_through(monkeypatch):
    big = preset("text", "cpu", **{"model.n_layers": 100000})
    monkeypatch.setattr(E, "available_memory", lambda dev: (10**9, "available RAM"))
    with pytest.raises(E.DoesNotFitError) as e:
        E.check_fits(big, "text", "cpu")
    assert isinstance(e.value, ValueError)
    monkeypatch.setenv(E.ENV_SWITCH, "0")
    assert E.check_fits(big, "text", "cpu").params == 2_880_033_025
    monkeypatch.delenv(E.ENV_SWITCH)
    assert E.check_fits(preset("text", "tiny"), "text", "cpu").total_bytes < 10**9
    # processes on one CPU share its RAM: 8 copies of a 144 MB run do not fit in 1 GB
    with pytest.raises(E.DoesNotFitError, match="8 processes"):
        E.check_fits(preset("text", "cpu"), "text", "cpu", processes=8)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_memory_estimate", ROOT / "benchmarks" /
                                                  "bench_memory_estimate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("model", ["ebt", "transformer++"])
def test_memory_estimate_is_within_the_stated_factor_of_a_measured_step(model):
    """One real training step per model in its own process (peak RSS, benchmarks/bench_memory_estimate.py): the
    EBT at the main job's size (~140 MB), Transformer++ at batch 64 (~90 MB)."""
    bench = _bench()
    over = {} if model == "ebt" else {"train.batch_size": 64}
    task, cfg = bench.resolve("text", "cpu", model, "s1" if model == "ebt" else None, over)
    measured = bench.measure(task, cfg)["measured"]
    ratio = E.estimate(cfg).total_bytes / measured
    assert 1 / E.STATED_FACTOR <= ratio <= E.STATED_FACTOR, (measured, ratio)


def test_presets_prints_sizes_for_one_task_or_all(capsys):
    assert main(["presets", "--task", "text"]) == 0
    out = capsys.readouterr().out
    assert "presets (--task text)" in out and "--task denoise" not in out
    line = next(ln for ln in out.splitlines() if ln.split()[:2] == ["cpu", "ebt"])
    e = E.estimate(preset("text", "cpu"))
    assert "0.15M" in line and "0.12M" in line and E.human_bytes(e.total_bytes) in line and "(batch 16)" in line
    assert E.human_bytes(e.activation_bytes_per_sequence) in line
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in TASKS:
        assert f"sizes (--task {name}" in out
    # the sequence presets use the data's features: 32×32 frames → Linear(1024, 128) projections
    seq = next(ln for ln in out.splitlines() if ln.split()[:2] == ["cpu", "transformer++"] and "0.72M" in ln)
    assert seq
    with pytest.raises(SystemExit) as ex:
        main(["presets", "--task", "nope"])
    assert ex.value.code == 2
