"""SIGTERM and SIGINT during ``ebt train`` name the last checkpoint's step and the exact resume command
(issue 22 item 10); a run stopped before its first checkpoint says that nothing was kept."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _default_signals() -> None:
    """In the child before exec: SIGINT to its default. A shell's background job (``cmd &``, as CI may be run)
    starts with SIGINT ignored, and an ignored signal stays ignored across exec, so Python would never see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _train(out: Path, save_every: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ebtkit.cli", "train", "--preset", "tiny", "--steps", "100000",
                             "--set", f"train.save_every={save_every}", "--set", "train.eval_every=100000",
                             "--set", "train.log_every=1", "--out", str(out), "--no-progress", "--no-eval"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=_default_signals)


def _stop(p: subprocess.Popen, sig: int) -> str:
    """Send ``sig``, return stderr; a child still running after 120 s is killed (no orphan left training)."""
    p.send_signal(sig)
    try:
        return p.communicate(timeout=120)[1]
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


def _wait_for(path: Path, p: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert p.poll() is None, p.communicate()[1]
        if time.time() >= end:
            p.kill()
            p.communicate()
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.05)


@pytest.mark.parametrize("sig, said, status", [(signal.SIGTERM, "terminated (SIGTERM)", 128 + signal.SIGTERM),
                                               (signal.SIGINT, "interrupted (SIGINT)", 130)])
def test_a_signal_names_the_last_checkpoint_and_the_resume_command(tmp_path, sig, said, status):
    out = tmp_path / "run"
    p = _train(out, save_every=3)
    _wait_for(out / "checkpoint" / "state.json", p)
    err = _stop(p, sig)
    assert p.returncode == status, err
    line = [ln for ln in err.splitlines() if ln.startswith("ebt: ")]
    assert len(line) == 1, err
    m = re.fullmatch(rf"ebt: {re.escape(said)}; the last checkpoint is step (\d+) in (\S+); continue with: "
                     rf"ebt train --resume (\S+)", line[0])
    assert m, line[0]
    step = int(m.group(1))
    assert step >= 3 and step % 3 == 0
    assert m.group(2) == m.group(3) == str(out)
    # the step named is the checkpoint on disk: the command it prints continues from there
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == step


def test_a_signal_before_the_first_checkpoint_says_nothing_was_kept(tmp_path):
    out = tmp_path / "run"
    p = _train(out, save_every=100000)
    _wait_for(out / "metrics.jsonl", p)
    err = _stop(p, signal.SIGTERM)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert f"ebt: terminated (SIGTERM); no checkpoint was saved yet, so {out} is not kept" in err
    assert not out.exists()
