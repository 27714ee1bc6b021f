"""Optimisation pieces of the training loop: parameter groups (α on its own), the LR schedule, the step.

* :func:`param_groups` — AdamW groups: decayed matrices; vectors (norm gains) undecayed; the step size α
  (owned by ``model.step_size``, :class:`~ebtkit.core.thinking.StepSize`) with its own LR
  ``alpha_lr_mult × α × lr``, no weight decay and its own cosine floor.
* :func:`lr_factor` — linear warm-up, then cosine to ``min_lr_ratio`` at the schedule's horizon
  (``train.schedule_steps``, default ``train.steps``); after the horizon the LR stays at the floor.
* :func:`step_generator` — the one random source of a training step (batch, initial candidates, noise),
  re-seeded from ``(seed, step, rank)``: exact resume, different batches per rank.
* :func:`optimizer_step` — zero → backward → all-reduce (average over ranks) → clip → step.
* :func:`diverged` — the per-step non-finite flag (a device tensor). In fp16 a step whose gradients overflowed is
  skipped by the ``GradScaler`` and is not divergence; the run has diverged only when the scaled loss is non-finite
  or the loss scale has collapsed below :data:`SCALE_FLOOR`.
* ZeRO-1 (``train.zero = 1``, several processes): :func:`make_optimizer` shards the AdamW state over the ranks
  with ``torch.distributed.optim.ZeroRedundancyOptimizer`` (same groups, same per-group ``base_lr``); every rank
  still holds the full averaged gradients and clips them identically, then each steps its shard and broadcasts
  it. Checkpoints hold the full, unsharded AdamW state (:func:`consolidated`), so a run saved by N processes
  resumes in any number of processes, with or without ZeRO. In one process ``zero = 1`` is plain AdamW.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch

from ..core import checkpoint as ckpt
from ..core import dist, rng
from ..core.config import TrainConfig
from ..core.thinking import is_energy_model


def lr_factor(step: int, t: TrainConfig) -> float:
    """Linear warm-up from 0 to 1 over ``warmup`` steps, then cosine to ``min_lr_ratio`` at the horizon
    ``schedule_steps`` (default ``steps``), then flat at ``min_lr_ratio``. Each parameter group multiplies its
    own base LR by this, so each has its own floor."""
    if t.warmup and step < t.warmup:
        return (step + 1) / t.warmup
    horizon = t.schedule_steps or t.steps
    progress = min(1.0, (step - t.warmup) / max(1, horizon - t.warmup))
    return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model: torch.nn.Module, t: TrainConfig) -> list[dict]:
    """AdamW groups: matrices decayed; vectors (norm gains) not; α (owned by ``model.step_size``) on its own."""
    step_size = model.step_size if is_energy_model(model) else None
    alpha_params = {id(p) for p in step_size.parameters()} if step_size is not None else set()
    decay, no_decay, alpha = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (alpha if id(p) in alpha_params else decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay, "base_lr": t.lr},
              {"params": no_decay, "weight_decay": 0.0, "base_lr": t.lr}]
    if alpha:
        a = float(step_size().detach())
        groups.append({"params": alpha, "weight_decay": 0.0, "base_lr": t.alpha_lr_mult * a * t.lr})
    return [g for g in groups if g["params"]]


def make_optimizer(model: torch.nn.Module, t: TrainConfig, resume_from: Path | None = None):
    """AdamW over :func:`param_groups` — ZeRO-1-sharded over the ranks when ``t.zero == 1`` and the process
    group has more than one rank; with ``resume_from`` (a checkpoint) the weights and optimizer state are
    restored (the checkpoint's state is always the full AdamW state; a ZeRO optimizer keeps its own shard).
    Returns ``(optimizer, trainable parameters)``."""
    groups = param_groups(model, t)
    params = [p for g in groups for p in g["params"]]
    kw = dict(lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay)
    if t.zero and dist.world_size() > 1:
        from torch.distributed.optim import ZeroRedundancyOptimizer   # 3 s to import: only when used
        opt = ZeroRedundancyOptimizer(groups, optimizer_class=torch.optim.AdamW, **kw)
    else:
        opt = torch.optim.AdamW(groups, **kw)
    if resume_from is not None:
        ckpt.load_weights(model, resume_from)
        state = ckpt.load_optimizer_state(resume_from)
        if state is None:
            raise ckpt.CheckpointError(f"{resume_from} has no optimizer state to resume from")
        try:
            opt.load_state_dict(state)
        except (ValueError, KeyError) as e:
            raise ckpt.CheckpointError(f"optimizer state in {resume_from} does not match the model: {e}") from None
        for g, fresh in zip(opt.param_groups, groups):
            g.setdefault("base_lr", fresh["base_lr"])
    return opt, params


@contextlib.contextmanager
def consolidated(opt: torch.optim.Optimizer):
    """Around a checkpoint save: with a ZeRO optimizer, gather every rank's shard of the state on rank 0
    (``consolidate_state_dict(to=0)``, a collective: every rank must enter), so that ``opt.state_dict()`` there is
    the full AdamW state dict — the same dict, key for key, that one process's AdamW saves and loads — and free
    the gathered copy on exit. A plain optimizer: nothing to do."""
    zero = hasattr(opt, "consolidate_state_dict")
    if zero:
        opt.consolidate_state_dict(to=0)
    try:
        yield
    finally:
        if zero and hasattr(opt, "_all_state_dicts"):
            opt._all_state_dicts = []            # rank 0's gathered copy (a host copy of the whole state)


def step_generator(seed: int, step: int, rank: int = 0, device: torch.device | str | None = None) -> torch.Generator:
    """The single source of randomness for one training step (batch + initial candidates + noise), on ``device``
    (:func:`ebtkit.core.rng.step_generator`; host-side draws use its host stream)."""
    return rng.step_generator(seed, step, rank, device)


SCALE_FLOOR = 2.0 ** -16
"""fp16: a loss scale below this means the gradients overflowed on every step since the scale was last healthy.
The scaler starts at 2**16 and halves per skipped step, so this is 33 skipped steps in a row from the start;
a gradient that overflows fp16 even when the loss is scaled down 65,536-fold is divergence, not a transient
overflow (the scaler only grows the scale back after 2,000 good steps, so it cannot recover by itself)."""


def loss_scale(scaler: "torch.amp.GradScaler") -> torch.Tensor:
    """The scaler's current scale as a tensor on its device (no host sync)."""
    scale = scaler._get_scale_async() if hasattr(scaler, "_get_scale_async") else None
    return scale if scale is not None else torch.tensor(scaler.get_scale())


def diverged(loss: torch.Tensor, gnorm: torch.Tensor, scaler: "torch.amp.GradScaler | None" = None) -> torch.Tensor:
    """Whether this step diverged, as a bool tensor on the loss's device (no host sync; the loop ORs it into a flag
    it reads on logged steps and before every evaluation and checkpoint).

    fp32/bf16: the loss or the gradient norm is NaN/inf. fp16 (``scaler``): an overflowed gradient (norm inf/NaN
    after unscaling) is the scaler's business — it skips the step and halves the scale, which is how fp16 finds
    its scale (the first steps of a text EBT always overflow at the initial 2**16); the run has diverged only when
    the *scaled* loss is non-finite or the scale collapsed below :data:`SCALE_FLOOR`."""
    loss = loss.detach().float()
    if scaler is None or not scaler.is_enabled():
        return ~torch.isfinite(loss) | ~torch.isfinite(gnorm.detach())
    scale = loss_scale(scaler).to(loss.device)
    return ~torch.isfinite(loss * scale) | (scale < SCALE_FLOOR)


def optimizer_step(model, loss: torch.Tensor, opt: torch.optim.Optimizer, params: list, grad_clip: float,
                   scaler: "torch.amp.GradScaler | None" = None) -> torch.Tensor:
    """zero → backward into the parameters only (the detached candidate leaves of each thinking step need no
    gradient: exact, and faster) → average over ranks → clip → step. Returns the gradient norm (a tensor:
    no host sync).

    ``scaler`` (fp16): the loss is scaled before backward and the gradients unscaled before averaging and
    clipping; ``scaler.step`` skips the step when a gradient overflowed (reading that flag is the one host sync
    per step that fp16 costs; bf16 and fp32 have none)."""
    opt.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler is not None else loss).backward(inputs=params)
    dist.average_gradients(model)          # scaled gradients (one scale on every rank): ranks agree on overflow
    if scaler is not None:
        scaler.unscale_(opt)
    gnorm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    return gnorm
