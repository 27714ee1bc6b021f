"""The training loop: one ``fit(task, cfg, out)`` for every task, read top to bottom.

setup data (the task) → build model → AdamW with α in its own group → claim and lock the run directory →
loop {batch → loss through thinking (the task) → backward (second order) → all-reduce → clip → step →
schedule → non-finite check → log} → exact evaluation → atomic checkpoint.

The loop owns everything that is not about a modality:

* **schedule, clipping, α's parameter group** (:mod:`ebtkit.training.optim`);
* **ranks** (``torchrun``): it joins the process group, seeds every step from ``(seed, step, rank)``, averages
  gradients with ``all_reduce`` after backward (DDP is wrong for second-order steps), and only rank 0 writes;
* **exact resume**: batches and thinking noise come from per-step generators and the optimizer state (and the
  task's extra state, e.g. the replay buffer) is restored, so a resumed run continues bit-for-bit.
  ``--resume --steps N`` keeps the schedule already run: the cosine's horizon stays at the run's original
  ``train.steps`` (recorded as ``train.schedule_steps``), and steps beyond it run at the floor LR. Any other
  change of the saved config on resume is an error, except the logging cadence (:data:`RESUMABLE`);
* **trust**: the loss and gradient norm are checked for NaN/inf on every step (a flag on the device, read on
  logged steps and before every evaluation and checkpoint — no per-step host sync; in fp16 a step the gradient
  scaler skips for overflowed gradients is not divergence, a non-finite scaled loss or a loss scale collapsed
  below ``optim.SCALE_FLOOR`` is: :func:`~ebtkit.training.optim.diverged`), a non-finite validation
  metric stops the run too, and no checkpoint with a non-finite tensor is written. A run that fails before its
  first checkpoint leaves no directory behind; after it, the directory holds the last good checkpoint and
  resumes. A lock (:class:`~ebtkit.training.rundir.RunLock`) keeps a second writer out;
* **logging and progress**: ``metrics.jsonl`` (+ TensorBoard when installed) and a tqdm bar.
"""
from __future__ import annotations

import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..core import checkpoint as ckpt
from ..core import dist
from ..core.checkpoint import NonFiniteError
from ..core.device import autocast, resolve_device, resolve_precision
from ..core.estimate import check_fits
from ..core.config import Config, parse_value
from ..tasks import Task, get_task
from .optim import SCALE_FLOOR, consolidated, diverged, lr_factor, make_optimizer, optimizer_step, step_generator
from .rundir import MetricsLog, RunError, RunLock, abandoned, read_metrics, set_aside_evaluations, truncate_metrics

# keys a resumed run may change (train.steps has its own rule: see the module docstring)
RESUMABLE = ("train.steps", "train.log_every", "train.eval_every", "train.save_every", "train.eval_batches",
             "train.precision", "train.keep_best", "train.zero", "train.checkpoint_blocks")


def _get(cfg: Config, key: str) -> Any:
    v: Any = cfg
    for part in key.split("."):
        v = getattr(v, part)
    return v


def resume_config(saved: Config, changes: dict[str, Any] | None, run: Path) -> Config:
    """The config a resumed run continues with: the saved one, with ``changes`` (dotted keys; strings are
    parsed by field type) allowed only for :data:`RESUMABLE` keys. Extending ``train.steps`` keeps the schedule
    already run (``train.schedule_steps`` = the original steps)."""
    cfg = saved
    for key, value in (changes or {}).items():
        tp = type(saved).field_type(key)
        if isinstance(value, str):
            value = parse_value(key, value, tp)
        current = _get(saved, key)
        if value == current:
            continue
        moved = key == "data.path" and getattr(saved.data, "path_sha256", None) is not None   # loader checks it
        if key not in RESUMABLE and not moved:
            raise RunError(f"--resume continues {run} with its saved config, where {key} = {current!r}, not "
                           f"{value!r}; only train.steps, the logging cadence, train.precision, train.keep_best, "
                           "train.zero and train.checkpoint_blocks may change on resume")
        updates = {key: value}
        if key == "train.steps" and saved.train.schedule_steps is None:
            updates["train.schedule_steps"] = saved.train.steps
        cfg = cfg.replace(**updates)
    return cfg


def train_record(step: int, opt: torch.optim.Optimizer, gnorm: torch.Tensor, metrics: dict) -> dict:
    """One JSONL training record (the host sync of a logged step)."""
    return {"step": step, "split": "train", "lr": opt.param_groups[0]["lr"], "grad_norm": float(gnorm),
            **{k: float(v) for k, v in metrics.items()}}


def stopped_note(out: Path, step: int | None) -> str:
    """What a run stopped by a signal (SIGINT, SIGTERM) leaves: the newest checkpoint's step and the exact command
    that continues it, or that nothing was kept (a run stopped before its first checkpoint is removed)."""
    if step is None:
        return f"no checkpoint was saved yet, so {out} is not kept"
    return f"the last checkpoint is step {step} in {out}; continue with: ebt train --resume {shlex.quote(str(out))}"


def fit(task: type[Task] | str, cfg: Config | None, out: str | os.PathLike, *, resume: bool = False,
        changes: dict[str, Any] | None = None, progress: bool = True, log=print, device: str = "auto") -> dict:
    """Train ``task`` per ``cfg`` into run directory ``out``; returns a summary dict.

    With ``resume=True`` the config, weights, optimizer, step and task state come from ``out`` (``cfg`` is
    ignored) and ``changes`` may extend ``train.steps`` or change the logging cadence (or ``train.precision``).
    Everything that can fail on bad input (config, data, a checkpoint, the device) fails before ``out`` is
    created or touched.

    ``device``: ``auto | cpu | cuda | cuda:N | mps`` (:func:`ebtkit.core.device.resolve_device`; under torchrun
    each rank binds ``cuda:LOCAL_RANK``). The model is built on the CPU from the seed (the same initial weights on
    every device) and moved there; the step's generator lives there too. ``train.precision`` picks autocast
    (fp32 parameters, optimizer state and checkpoints in every precision; fp16 adds a gradient scaler).
    ``train.keep_best``: also keep ``out/best/``, the checkpoint with the best validation headline so far
    (weights, config and tokenizer: for use, not for resuming).
    """
    task_cls = get_task(task) if isinstance(task, str) else task
    out = Path(out)
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_from_env(dev)
    main = dist.is_main()
    log = log if main else (lambda *a, **k: None)          # rank 0 speaks and writes
    start, ckpt_dir, restart = 0, None, False
    if resume:
        meta = ckpt.read_config(out)
        if meta["task"] != task_cls.name:
            raise RunError(f"{out} is a {meta['task']!r} run, not a {task_cls.name!r} run")
        ckpt_dir = ckpt.find_checkpoint(out)
        saved = task_cls.config_from_dict(meta["config"])
        start = int(ckpt.read_state(out).get("step", 0))
        cfg = resume_config(saved, changes, out)
        read_metrics(out / "metrics.jsonl")          # a damaged log fails here, before anything is touched
    else:
        if cfg is None:
            raise RunError("no config given")
        if main and out.exists() and (not out.is_dir() or any(out.iterdir())):   # rank 0 owns the directory
            if not (out.is_dir() and abandoned(out)):
                raise RunError(f"run directory {out} already exists and is not empty; use --resume or another --out")
            restart = True                           # a run killed before its first checkpoint: start it again
    if start >= cfg.train.steps:
        raise RunError(f"{out} is already at step {start} of {cfg.train.steps}; pass --steps N > {start} to continue")

    precision = resolve_precision(cfg.train.precision, dev)
    run = task_cls(cfg)
    cfg = run.setup(ckpt_dir)
    check_fits(cfg, task_cls.name, dev)        # a run that cannot fit the device is refused before the model exists
    t = cfg.train
    torch.manual_seed(t.seed)
    model = run.build_model(cfg).to(dev)       # built on the CPU from the seed: the same weights on every device
    if t.checkpoint_blocks and hasattr(model, "checkpoint_blocks"):
        model.checkpoint_blocks = True         # memory for compute: blocks inside thinking are recomputed in backward
    opt, params = make_optimizer(model, t, ckpt_dir)
    scaler = torch.amp.GradScaler(dev.type) if precision == "fp16" else None
    if ckpt_dir is not None:
        run.restore(ckpt_dir, main)

    # bad input has failed by now: claim the directory (rank 0 writes; a failure before the first checkpoint
    # removes what this run created)
    existed = out.exists()
    lock = RunLock(out).acquire() if main else None
    if restart:
        for f in out.iterdir():
            if f.name != lock.path.name:
                f.unlink()
    saved_any = resume
    last_saved = start                     # the step of the newest checkpoint (named when a signal stops the run)
    metrics_path = out / "metrics.jsonl"
    logger, bar = MetricsLog(None), None
    last_eval: dict = {}
    best = ckpt.read_state(out / "best").get(task_cls.headline) if resume and (out / "best").is_dir() else None
    t0 = time.time()

    def check_finite(done: int, bad: torch.Tensor) -> None:
        if bool(bad):
            where = f"the last checkpoint in {out} is intact (ebt train --resume {out})" if saved_any else \
                f"nothing was saved and {out} is not kept"
            if scaler is not None and math.isfinite(scaler.get_scale()) and scaler.get_scale() < SCALE_FLOOR:
                raise NonFiniteError(f"fp16: the loss scale fell to {scaler.get_scale():.3g} (below 2**-16) at or "
                                     f"before step {done}: the gradients overflowed on every step (or the loss "
                                     f"became NaN/inf); {where}. Use --precision bf16 or fp32, or lower the "
                                     "learning rate")
            raise NonFiniteError(f"loss or gradient norm became NaN/inf at or before step {done}; {where}. "
                                 "Lower the learning rate or the step size alpha")

    def better(value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return best is None or (value < best if task_cls.headline_mode == "min" else value > best)

    def save_best(step: int) -> None:
        nonlocal best
        if main:
            ckpt.save_checkpoint(out, model, cfg.to_dict(), task=task_cls.name, name="best",
                                 state={"step": step, task_cls.headline: last_eval.get(task_cls.headline)},
                                 extra_files={k: v for k, v in run.checkpoint_files().items()
                                              if k != "replay.safetensors"})
        best = last_eval.get(task_cls.headline)

    def save(step: int) -> None:
        nonlocal saved_any, last_saved
        with consolidated(opt):            # ZeRO-1: every rank hands its optimizer shard to rank 0 (full AdamW state)
            if main:
                ckpt.save_checkpoint(out, model, cfg.to_dict(), task=task_cls.name, optimizer=opt,
                                     state={"step": step, task_cls.headline: last_eval.get(task_cls.headline),
                                            "elapsed_s": time.time() - t0, "world_size": dist.world_size()},
                                     extra_files=run.checkpoint_files())
                saved_any = True
                last_saved = step

    try:
        if main and resume:
            truncate_metrics(metrics_path, start)
            set_aside_evaluations(out, start)    # they scored the weights this run is about to change
        logger = MetricsLog(out if main else None, start)
        bar = tqdm(total=t.steps, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr, leave=False) \
            if progress and main else None
        log(run.describe(model) + ("" if dev.type == "cpu" and precision == "fp32" else f"; {dev}, {precision}"))
        model.train()
        bad = torch.zeros((), dtype=torch.bool, device=dev)
        for step in range(start, t.steps):
            f = lr_factor(step, t)
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * f
            gen = step_generator(t.seed, step, dist.rank(), dev)
            with autocast(dev, precision):
                loss, metrics = run.loss(model, gen)
            gnorm = optimizer_step(model, loss, opt, params, t.grad_clip, scaler)
            bad = bad | diverged(loss, gnorm, scaler)     # no host sync; fp16: a skipped step is not divergence
            done = step + 1
            if done % t.log_every == 0 or done == t.steps or step == start:
                check_finite(done, bad)
                rec = train_record(done, opt, gnorm, metrics)
                if scaler is not None:         # fp16: grad_norm is inf/NaN on a step the scaler skipped
                    rec["loss_scale"] = scaler.get_scale()
                logger(rec)
                if bar is not None:
                    bar.set_postfix(loss=f"{rec['loss']:.4g}")
            if bar is not None:
                bar.update(1)
            if done % t.eval_every == 0 or done == t.steps:
                check_finite(done, bad)
                with autocast(dev, precision):
                    last_eval = {"step": done, "split": "val", **run.evaluate(model)}
                for k, v in last_eval.items():
                    if isinstance(v, float) and not math.isfinite(v):
                        raise NonFiniteError(f"validation {k} is {v} at step {done}; lower the learning rate or the "
                                             "step size alpha")
                logger(last_eval)
                log(f"step {done}: {run.eval_line(last_eval)} ({time.time() - t0:.0f}s)")
                if t.keep_best and better(last_eval.get(task_cls.headline)):
                    save_best(done)
            if done % t.save_every == 0 or done == t.steps:
                check_finite(done, bad)
                save(done)
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):     # a signal: the CLI names the checkpoint to resume
            e.ebt_resume = stopped_note(out, last_saved if saved_any else None)
        if main and not saved_any:
            logger.close()
            if lock is not None:
                lock.release()
            if existed:
                for p in out.iterdir():
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            else:
                shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
        logger.close()
        if lock is not None:
            lock.release()
    return {"run": str(out), "task": task_cls.name, "model": getattr(cfg.model, "model", None), "step": t.steps,
            task_cls.headline: last_eval.get(task_cls.headline), "elapsed_s": round(time.time() - t0, 1),
            "metrics": str(metrics_path), "checkpoint": str(out / ckpt.CKPT)}
