"""``ebt train --nproc-per-node N`` (ebtkit/commands/launch.py) and the error path of ranks (core/dist.py ``fail``).

The run is checked in the launching process before any rank starts; a rank's failure reaches the user as one
``ebt: error: rank R: ...`` line with exit status 2. A failure in the middle of a run is injected into the ranks
only, through a ``sitecustomize`` module on their ``PYTHONPATH`` (no test hook in the package).
"""
import json
import os
import signal
from types import SimpleNamespace

import pytest
import torch

from ebtkit.cli import main
from ebtkit.commands.launch import failure_line
from ebtkit.core import dist as edist

TINY = ["--task", "sequence", "--preset", "tiny", "--no-progress"]

INJECT = '''\
import os
if os.environ.get("EBT_TEST_FAIL_RANK"):          # ranks read RANK only once the launcher has set it
    import ebtkit.core.dist as _dist
    _real, _calls = _dist.average_gradients, []

    def _failing(*args, **kwargs):
        _calls.append(1)
        if os.environ.get("RANK") == os.environ["EBT_TEST_FAIL_RANK"] and \\
                len(_calls) == int(os.environ["EBT_TEST_FAIL_STEP"]):
            raise ValueError("injected failure")
        return _real(*args, **kwargs)

    _dist.average_gradients = _failing
'''


@pytest.fixture
def no_ranks(monkeypatch):
    """Starting a rank fails the test: what is refused must be refused in the launching process."""
    import torch.distributed.launcher.api as api

    def started(*a, **k):
        raise AssertionError("a rank was started")
    monkeypatch.setattr(api, "elastic_launch", started)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ebt: error: "), err
    return lines[0]


def _status(argv):
    """``main``'s exit status, whether it returns it or the parser exits with it (bad values fail at parse time)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_bad_runs_are_refused_before_any_rank_starts(tmp_path, monkeypatch, capsys, no_ranks):
    """Bad input to ``--nproc-per-node`` — a missing data file (found only when the data is loaded), a bad
    value, an occupied run directory, a bad process count, a device this machine lacks, torchrun around it, and
    for a resumed run a changed key or no steps left — is one line, status 2, no rank started, nothing written."""
    from tests.helpers import train
    from ebtkit.tasks.sequence import preset
    done = tmp_path / "done"
    train(preset("tiny", **{"train.steps": 2, "train.batch_size": 4}), done)
    before = sorted(p.name for p in done.rglob("*"))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    new = tmp_path / "new"
    import numpy as np
    np.save(tmp_path / "flat.npy", np.zeros(12, dtype=np.float32))     # exists, but not (N, T, F): setup says so
    cases = [([*TINY, "--data", str(tmp_path / "missing.npy")], "missing.npy"),
             ([*TINY, "--data", str(tmp_path / "flat.npy")], "flat.npy"),
             ([*TINY, "--set", "train.zero=2"], "zero must be 0"),
             ([*TINY, "--out", str(occupied)], "already exists"),
             ([*TINY, "--nproc-per-node", "0"], "--nproc-per-node: must be an integer >= 1, got '0'"),
             (["--resume", str(done), "--lr", "0.5", "--no-progress"], "train.lr"),
             (["--resume", str(done), "--no-progress"], "already at step 2")]
    if not torch.cuda.is_available():
        cases.append(([*TINY, "--device", "cuda"], "no CUDA device"))
    for extra, expected in cases:
        out = [] if "--resume" in extra or "--out" in extra else ["--out", str(new)]
        assert _status(["train", "--nproc-per-node", "2", *out, *extra]) == 2, extra
        line = _one_error_line(capsys)
        assert expected in line and not line.startswith("ebt: error: rank"), (extra, line)
        assert not new.exists()
    assert sorted(p.name for p in done.rglob("*")) == before
    assert (occupied / "notes.txt").read_text() == "mine" and len(list(occupied.iterdir())) == 1
    monkeypatch.setenv("WORLD_SIZE", "2")                  # under torchrun: the ranks exist already
    assert main(["train", "--nproc-per-node", "2", "--out", str(new), *TINY]) == 2
    assert "without torchrun" in _one_error_line(capsys)
    assert not new.exists()


@pytest.mark.slow
def test_nproc_per_node_trains_one_run(tmp_path, capfd):
    """2 ranks started by ``ebt train --nproc-per-node 2``: one run directory, written once (rank 0), trained by
    2 processes; rank 0 alone prints; no launcher output."""
    run = tmp_path / "run"
    assert main(["train", "--nproc-per-node", "2", *TINY, "--steps", "2", "--out", str(run)]) == 0
    out, err = capfd.readouterr()
    assert out.count("checkpoint: ") == 1 and out.count("model ebt") == 1, out
    assert "Traceback" not in err and "torch.distributed" not in err and "elastic" not in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert json.loads((run / "checkpoint" / "state.json").read_text())["world_size"] == 2
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(ln)["split"] == "train"]
    assert steps == [1, 2]
    assert not (run / ".lock").exists()


@pytest.mark.slow
def test_a_rank_failing_mid_run_is_one_line(tmp_path, monkeypatch, capfd):
    """Rank 1 fails at its 2nd step while rank 0 waits for it in the gradient all_reduce: the user sees exactly
    one line, the root cause (not rank 0's broken collective, not the launcher's traceback), status 2, and the
    run, which had saved nothing, leaves no directory."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(INJECT)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(inject), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("EBT_TEST_FAIL_RANK", "1")
    monkeypatch.setenv("EBT_TEST_FAIL_STEP", "2")
    run = tmp_path / "run"
    assert main(["train", "--nproc-per-node", "2", *TINY, "--steps", "3", "--out", str(run)]) == 2
    out, err = capfd.readouterr()
    assert err.splitlines() == ["ebt: error: rank 1: injected failure"], err
    assert not run.exists()


def test_fail_hands_the_line_to_the_launchers(tmp_path, monkeypatch):
    """``dist.fail``: the ``--nproc-per-node`` launcher's file (time, rank, message) and torchelastic's error file
    (what plain torchrun shows as the root cause); True only when the launcher will print the line."""
    assert edist.fail("nobody listens") is False
    mine, elastic = tmp_path / "rank3.json", tmp_path / "error.json"
    monkeypatch.setenv(edist.ERROR_FILE_ENV, str(mine))
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(elastic))
    monkeypatch.setenv("RANK", "3")
    assert edist.fail("data file not found: x.npy") is True
    got = json.loads(mine.read_text())
    assert got["rank"] == 3 and got["message"] == "data file not found: x.npy" and got["time"] > 0
    assert json.loads(elastic.read_text())["message"]["message"] == "data file not found: x.npy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["error.json", "rank3.json"]     # no temp files left


def test_failure_line_reports_the_root_cause(tmp_path):
    """The earliest rank message wins (a peer's broken collective comes later); without messages, the first
    rank to die is described by its exit status or signal."""
    (tmp_path / "rank0.json").write_text(json.dumps({"time": 20.0, "rank": 0, "message": "connection closed"}))
    (tmp_path / "rank1.json").write_text(json.dumps({"time": 10.0, "rank": 1, "message": "injected failure"}))
    (tmp_path / "rank2.json").write_text("{broken")
    assert failure_line(tmp_path, {}) == "rank 1: injected failure"
    empty = tmp_path / "empty"
    empty.mkdir()
    killed = SimpleNamespace(exitcode=-signal.SIGKILL, timestamp=5, message="Signal 9 (SIGKILL) received by PID 7")
    exited = SimpleNamespace(exitcode=1, timestamp=9, message="To enable traceback see: https://...")
    assert failure_line(empty, {1: exited, 0: killed}) == \
        "rank 0 was killed by SIGKILL: Signal 9 (SIGKILL) received by PID 7"
    assert failure_line(empty, {1: exited}) == "rank 1 exited with status 1 (no error message; see the output above)"
