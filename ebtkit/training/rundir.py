"""Run directories: the writer lock, metrics (JSONL + optional TensorBoard), and resume bookkeeping.

A run directory holds ``checkpoint/`` (:mod:`ebtkit.core.checkpoint`), ``metrics.jsonl`` (one JSON record per
logged step and evaluation), TensorBoard event files with the same scalars when ``tensorboard`` is installed
(``pip install ebtkit[tensorboard]``; ``tensorboard --logdir runs/`` opens every run), and, while a process
trains into it, ``.lock`` (PID and host of the writer).

Evaluations (``eval*.json``, ``thinking.json`` and the pictures they list) describe the weights they scored. When
a run is resumed its weights change, so :func:`set_aside_evaluations` moves them into ``stale-evals/step-N/``
(N: the step of the weights they scored): ``ebt report``, sweeps and the model card then see no evaluation
rather than one of other weights.
"""
from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path


class RunError(Exception):
    """A run directory cannot be used as asked (one-line message for the CLI)."""


LOCK = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive writer lock on a run directory: ``.lock`` created atomically with the owner's PID and host.

    A lock left by a process that no longer exists on this host is stale and is taken over; a live owner (or
    one on another host) makes :meth:`acquire` fail with a one-line :class:`RunError`."""

    def __init__(self, run: Path):
        self.path = Path(run) / LOCK
        self.held = False

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self.owner()
                if owner and owner.get("host") == me["host"] and isinstance(owner.get("pid"), int) \
                        and not _alive(owner["pid"]):
                    self.path.unlink(missing_ok=True)        # stale: its process is gone
                    continue
                who = f"process {owner['pid']} on {owner['host']}" if owner else "another process"
                raise RunError(f"{self.path.parent} is in use by {who} (lock file {self.path}); wait for it, or "
                               "delete the lock file if that process is not running") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise RunError(f"could not lock {self.path.parent}")

    def owner(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def abandoned(run: Path) -> bool:
    """True for the directory of a run that was killed before its first checkpoint: nothing in it but the
    metrics log, TensorBoard events and a lock whose process is gone. Such a directory may be started again."""
    names = [p.name for p in run.iterdir()]
    if any(not (n in ("metrics.jsonl", LOCK) or n.startswith("events.out.tfevents.")) for n in names):
        return False
    if LOCK in names:
        owner = RunLock(run).owner()
        if not owner or owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int) \
                or _alive(owner["pid"]):
            return False
    return True


STALE_DIR = "stale-evals"


def set_aside_evaluations(run: Path, step: int) -> Path | None:
    """Move the run's evaluation files (``eval*.json``, ``thinking.json`` and the files they list that lie in the
    run directory) into ``run/stale-evals/step-<step>/`` (a second set of the same step goes to ``step-<step>-2``,
    ...). Returns that folder, or ``None`` when there was nothing to move."""
    run = Path(run)
    docs = sorted([*run.glob("eval*.json"), *run.glob("thinking.json")])
    names = {p.name for p in docs}
    for p in docs:
        try:
            listed = json.loads(p.read_text(encoding="utf-8")).get("files", [])
        except (OSError, ValueError, AttributeError):
            listed = []
        for f in listed if isinstance(listed, list) else []:
            name = Path(str(f)).name
            if name and (run / name).is_file():
                names.add(name)
    names = {n for n in names if (run / n).is_file()}
    if not names:
        return None
    dest, k = run / STALE_DIR / f"step-{step}", 1
    while dest.exists():
        k += 1
        dest = run / STALE_DIR / f"step-{step}-{k}"
    dest.mkdir(parents=True)
    for n in sorted(names):
        os.replace(run / n, dest / n)
    return dest


def read_metrics(path: Path) -> list[dict]:
    """The records of a ``metrics.jsonl``. A cut-off last line (a killed write) is skipped; any other bad line
    raises a RunError naming the file and line."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    out = []
    for i, ln in enumerate(lines, start=1):
        if not ln.strip():
            continue
        try:
            rec = json.loads(ln)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if i == len(lines):
                break
            raise RunError(f"{path}:{i}: not a metrics record ({str(e).splitlines()[0]}); fix or delete that line") from None
        out.append(rec)
    return out


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop records written after the checkpoint we resume from (and a cut-off last line)."""
    if not path.exists():
        return
    keep = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, path)


class MetricsLog:
    """Appends records to ``metrics.jsonl`` and the same scalars to TensorBoard (when installed).
    ``run=None`` (non-zero ranks) logs nothing."""

    def __init__(self, run: Path | None, start_step: int = 0, tensorboard: bool = True):
        self.path = run / "metrics.jsonl" if run is not None else None
        self.tb = None
        if run is not None and tensorboard:
            try:  # optional heavy dependency (the ``tensorboard`` extra)
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tb = SummaryWriter(log_dir=str(run), purge_step=start_step or None)

    def __call__(self, record: dict) -> None:
        if self.path is None:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            split, step = record.get("split", "train"), record.get("step", 0)
            for k, v in record.items():
                if k not in ("step", "split") and isinstance(v, (int, float)) and not isinstance(v, bool) \
                        and math.isfinite(v):
                    self.tb.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None
