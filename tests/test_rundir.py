"""Runs you can trust (training/rundir.py and the loop's guards): the writer lock and stale locks, non-finite
losses, what a failed run leaves behind, damaged metrics files, and TensorBoard logging."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from ebtkit.core import checkpoint as ckpt
from ebtkit.core.config import preset
from ebtkit.tasks.text import TextTask
from ebtkit.training import RunError, RunLock, read_metrics
from tests.helpers import tol, train


def _cfg(**kw):
    return preset("tiny", **{"train.steps": 4, "train.save_every": 2, "train.eval_every": 2, "train.log_every": 1,
                             "train.eval_batches": 1, **kw})


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _lock(run, pid):
    run.mkdir(parents=True, exist_ok=True)
    (run / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def test_lock_refuses_a_second_writer_and_takes_over_a_stale_lock(tmp_path):
    run = tmp_path / "run"
    first = RunLock(run).acquire()
    with pytest.raises(RunError, match=f"in use by process {os.getpid()}"):
        RunLock(run).acquire()
    first.release()
    assert not (run / ".lock").exists()
    _lock(run, _dead_pid())                          # a killed process left its lock behind
    RunLock(run).acquire().release()


def test_resume_respects_the_lock(tmp_path):
    run = tmp_path / "run"
    train(_cfg(), run)
    assert not (run / ".lock").exists()              # released at the end
    _lock(run, os.getpid())                          # a live writer (this process) holds it
    with pytest.raises(RunError, match="in use"):
        train(None, run, resume=True, steps=6)
    assert ckpt.read_state(run)["step"] == 4
    _lock(run, _dead_pid())                          # stale: resumed
    train(None, run, resume=True, steps=6)
    assert ckpt.read_state(run)["step"] == 6 and not (run / ".lock").exists()


def _nan_at(monkeypatch, call):
    real, n = TextTask.loss, {"i": 0}

    def loss(self, model, gen):
        n["i"] += 1
        out, metrics = real(self, model, gen)
        return (out * float("nan"), metrics) if n["i"] >= call else (out, metrics)

    monkeypatch.setattr(TextTask, "loss", loss)


def test_non_finite_loss_before_any_checkpoint_leaves_no_directory(tmp_path, monkeypatch):
    _nan_at(monkeypatch, 2)
    with pytest.raises(ckpt.NonFiniteError, match="NaN/inf at or before step 2; nothing was saved"):
        train(_cfg(), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    (tmp_path / "empty").mkdir()                     # a directory the user made stays, empty
    with pytest.raises(ckpt.NonFiniteError):
        train(_cfg(), tmp_path / "empty")
    assert (tmp_path / "empty").exists() and not any((tmp_path / "empty").iterdir())


def test_non_finite_loss_after_a_checkpoint_leaves_a_resumable_run(tmp_path, monkeypatch):
    _nan_at(monkeypatch, 3)
    with pytest.raises(ckpt.NonFiniteError, match="the last checkpoint .* is intact"):
        train(_cfg(**{"train.log_every": 2}), tmp_path / "run")
    assert ckpt.read_state(tmp_path / "run")["step"] == 2 and not (tmp_path / "run" / ".lock").exists()
    weights = ckpt.load_optimizer_state(tmp_path / "run")             # the saved state is finite and loadable
    assert weights is not None
    monkeypatch.undo()
    train(None, tmp_path / "run", resume=True)
    assert ckpt.read_state(tmp_path / "run")["step"] == 4


def test_checkpoint_with_non_finite_weights_is_never_written(tmp_path, monkeypatch):
    """Even if the per-step flag were bypassed, the checkpoint writer refuses non-finite tensors."""
    run = tmp_path / "run"
    model = TextTask.build_model(_cfg().replace(**{"model.vocab_size": 256}))
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    with pytest.raises(ckpt.NonFiniteError, match="non-finite weights"):
        ckpt.save_checkpoint(run, model, {}, task="text")
    assert not (run / ckpt.CKPT).exists() and not (run / ckpt.TMP).exists()


def test_damaged_metrics_lines_name_the_file(tmp_path):
    run = tmp_path / "run"
    train(_cfg(), run)
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines) + '\n{"step": 9, "spl')          # a write cut off by a kill
    assert len(read_metrics(path)) == len(lines)
    train(None, run, resume=True, steps=5)                            # resume drops the cut-off line
    assert all(json.loads(ln) for ln in path.read_text().splitlines())
    bad = path.read_text().splitlines()
    bad[1] = "{oops"
    path.write_text("\n".join(bad) + "\n")
    with pytest.raises(RunError, match=rf"{path}:2: not a metrics record"):
        train(None, run, resume=True, steps=6)


def test_tensorboard_events_hold_the_same_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run = tmp_path / "run"
    train(_cfg(), run)
    assert list(run.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(run))
    acc.Reload()
    loss = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    want = [(r["step"], r["loss"]) for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]
    assert [s for s, _ in loss] == [s for s, _ in want]
    # TensorBoard stores float32: one rounding of each value (tests.helpers.tol with n = 1)
    assert [v for _, v in loss] == pytest.approx([v for _, v in want], rel=tol(torch.float32, 1)["rtol"])
    assert [e.step for e in acc.Scalars("val/val_ppl")] == [2, 4]


def test_non_finite_validation_metric_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(TextTask, "evaluate", lambda self, model: {"val_ppl": float("nan"), "val_tokens": 1})
    with pytest.raises(ckpt.NonFiniteError, match="validation val_ppl is nan at step 2"):
        train(_cfg(), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_refused_resume_leaves_no_lock(tmp_path):
    run = tmp_path / "run"
    train(_cfg(), run)
    (run / "metrics.jsonl").write_text('{"step": 1}\n{oops\n{"step": 2}\n')
    with pytest.raises(RunError, match="metrics.jsonl:2"):
        train(None, run, resume=True, steps=6)
    assert not (run / ".lock").exists() and ckpt.read_state(run)["step"] == 4


def test_a_run_killed_before_its_first_checkpoint_can_be_started_again(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 5.0}\n')
    _lock(run, os.getpid())                          # its writer still runs: refused
    with pytest.raises(RunError, match="in use|not empty"):
        train(_cfg(), run)
    _lock(run, _dead_pid())                          # SIGKILLed: nothing saved, so it starts again
    train(_cfg(), run)
    assert ckpt.read_state(run)["step"] == 4
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty"):         # anything else is never deleted
        train(_cfg(), tmp_path / "other")


@pytest.mark.slow
def test_sigterm_unwinds_a_cli_run_and_leaves_nothing(tmp_path):
    import signal
    import time
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "ebtkit.cli", "train", "--preset", "tiny", "--steps", "100000",
                          "--set", "train.save_every=100000", "--set", "train.eval_every=100000", "--out", str(out),
                          "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    for _ in range(600):
        if (out / "metrics.jsonl").exists():
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0 and not out.exists(), err
