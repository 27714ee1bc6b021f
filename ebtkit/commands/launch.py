"""``ebt train --nproc-per-node N``: N training ranks on this machine, started by torch.distributed's own elastic
launcher (the one ``torchrun`` drives), with ebtkit's error contract.

* **Validate first.** The parent checks the whole run before any rank starts (:func:`check`): the config is
  resolved by ``ebt train`` itself, then everything :func:`ebtkit.training.fit` refuses on bad input is checked
  here in the same way — the run directory, a resumed run's checkpoint, saved config, allowed changes and step,
  the device and precision (and, for CUDA, one device per rank), and the data (``task.setup``). Bad input gives
  one ``ebt: error: ...`` line and exit status 2 with no rank started and nothing written.
* **Start the ranks.** ``elastic_launch`` with a Python entrypoint (:func:`_rank_main`): spawned processes, a
  standalone c10d rendezvous on a free local port (``torchrun --standalone``), no restarts, ``OMP_NUM_THREADS=1``
  per rank unless set (as ``torchrun``). Each rank runs ``ebt train`` with the same arguments (a fresh run's
  ``--out`` fixed by the parent, so every rank names the same directory) through :func:`ebtkit.cli.execute`; only
  rank 0 prints and writes, as under ``torchrun``.
* **One line on failure.** A rank that fails writes its one-line message, the time and its rank to its own file
  (``EBTKIT_RANK_ERROR_FILE``, :func:`ebtkit.core.dist.fail`), leaves the process group (so peers waiting in a
  collective fail at once) and exits with status 2; the launcher then stops the other ranks (SIGTERM: a run
  unwinds as on Ctrl-C, so a run that had not saved a checkpoint leaves no directory). The parent prints the
  earliest failure as ``ebt: error: rank R: <message>`` and exits 2 — no launcher traceback and no launcher log
  lines (its logging is silenced while it runs). A rank that died without a message (killed, out of memory) is
  reported with its exit status or signal.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import signal
import tempfile
import uuid
from pathlib import Path
from typing import Any

from ..core import checkpoint as ckpt
from ..core import dist
from ..core.config import Config
from ..core.device import resolve_device, resolve_precision
from ..tasks import Task
from ..training.loop import resume_config
from ..training.rundir import RunError, abandoned, read_metrics


def check(task: type[Task], cfg: Config | None, out: Path, *, resume: bool = False,
          changes: dict[str, Any] | None = None, device: str = "auto", nproc: int = 1) -> Config:
    """Everything :func:`~ebtkit.training.fit` would refuse on bad input, checked in this process (nothing is
    written). Returns the config the ranks will train."""
    ckpt_dir, start = None, 0
    if resume:
        meta = ckpt.read_config(out)
        if meta["task"] != task.name:
            raise RunError(f"{out} is a {meta['task']!r} run, not a {task.name!r} run")
        ckpt_dir = ckpt.find_checkpoint(out)
        start = int(ckpt.read_state(out).get("step", 0))
        cfg = resume_config(task.config_from_dict(meta["config"]), changes, out)
        read_metrics(out / "metrics.jsonl")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())) and not (out.is_dir() and abandoned(out)):
        raise RunError(f"run directory {out} already exists and is not empty; use --resume or another --out")
    if start >= cfg.train.steps:
        raise RunError(f"{out} is already at step {start} of {cfg.train.steps}; pass --steps N > {start} to continue")
    dev = resolve_device(device)
    resolve_precision(cfg.train.precision, dev)
    if dev.type == "cuda":
        import torch
        n = torch.cuda.device_count()
        if nproc > n:
            raise ValueError(f"--nproc-per-node {nproc} on --device {device}: each rank binds its own GPU "
                             f"(cuda:LOCAL_RANK) and this machine has {n}; use fewer ranks or --device cpu")
    return task(cfg).setup(ckpt_dir)


def launch(args, task: type[Task], cfg: Config | None, out: Path, *, resume: bool = False,
           changes: dict[str, Any] | None = None) -> int:
    """Check the run (:func:`check`), then run ``ebt train`` (``args``, parsed) in ``args.nproc_per_node`` ranks.
    Returns 0; raises :class:`RunError` with the failing rank's one-line message."""
    nproc = args.nproc_per_node
    if nproc < 1:
        raise ValueError(f"--nproc-per-node must be >= 1, got {nproc}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or "TORCHELASTIC_RUN_ID" in os.environ:
        raise ValueError("--nproc-per-node starts the ranks itself; run it without torchrun")
    device = getattr(args, "device", None) or "auto"
    check(task, cfg, out, resume=resume, changes=changes, device=device, nproc=nproc)

    rank_args = copy.copy(args)
    rank_args.nproc_per_node = None
    if not resume:
        rank_args.out = str(out)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, start_method="spawn",
                          shutdown_timeout=15)
    with tempfile.TemporaryDirectory(prefix="ebt-ranks-") as errors, _launcher_quiet(), _rank_threads():
        try:
            elastic_launch(config, _rank_main)(rank_args, errors)
        except ChildFailedError as e:
            raise RunError(failure_line(Path(errors), e.failures)) from None
        except SignalException as e:              # this process got SIGTERM/SIGINT: the ranks are stopped
            if e.sigval == signal.SIGINT:
                raise KeyboardInterrupt from None
            raise SystemExit(128 + int(e.sigval)) from None
    return 0


def _rank_main(args, errors: str) -> None:
    """One rank (a spawned process): ``ebt train`` with the CLI's error contract; a failure's line goes to this
    rank's file in ``errors`` for the parent."""
    os.environ[dist.ERROR_FILE_ENV] = os.path.join(errors, f"rank{os.environ.get('RANK', '0')}.json")
    from .. import cli
    code = cli.execute(args)
    if code:
        raise SystemExit(code)


def failure_line(errors: Path, failures: dict) -> str:
    """The one line the parent prints: the earliest rank message in ``errors`` (the root cause: a peer's own
    failure — e.g. a collective broken by the failed rank leaving — comes later), else the launcher's record of
    the first rank that died (exit status or signal)."""
    reports = []
    for f in errors.glob("rank*.json"):
        try:
            r = json.loads(f.read_text())
            reports.append((float(r["time"]), int(r["rank"]), str(r["message"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if reports:
        _, rank, message = min(reports)
        return f"rank {rank}: {message}"
    if not failures:
        return "a rank failed without a message"
    rank, f = min(failures.items(), key=lambda kv: (kv[1].timestamp, kv[0]))
    code = f.exitcode
    if code is not None and code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with status {code}"
    detail = (f.message or "").strip().splitlines()
    detail = detail[0] if detail and not detail[0].startswith("To enable traceback") else ""
    return f"rank {rank} {how}" + (f": {detail}" if detail else " (no error message; see the output above)")


@contextlib.contextmanager
def _launcher_quiet():
    """Silence the launcher's logging (its start-up report, its 'failed (exitcode ...)' records) and restore
    this process's signal handlers afterwards (the launcher installs its own)."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)
        for s, h in handlers.items():
            if h is not None:
                with contextlib.suppress(ValueError):      # not the main thread
                    signal.signal(s, h)


@contextlib.contextmanager
def _rank_threads():
    """``OMP_NUM_THREADS=1`` for the ranks unless the user set it (``torchrun`` does the same)."""
    if "OMP_NUM_THREADS" in os.environ:
        yield
        return
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)
