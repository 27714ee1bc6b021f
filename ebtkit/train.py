"""One plain training loop for the text models (EBT and Transformer++), read top to bottom.

build data → build model → AdamW with three parameter groups (decayed matrices; norms/embeddings-free
vectors; the step size α with its own LR = ``alpha_lr_mult × α × lr`` and no weight decay) → loop
{batch → loss (through thinking) → backward (second order) → all-reduce → clip → step → schedule → log} →
exact evaluation → atomic checkpoint. ``--resume`` continues bit-for-bit: batches and thinking noise come
from a generator re-seeded from (seed, step), and the optimizer state (and the System 2 replay buffer,
``checkpoint/replay.safetensors``) is restored.

Works under ``torchrun``: every rank computes its own batch, gradients are averaged with ``all_reduce``
(DDP is wrong for second-order steps), and only rank 0 writes.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from . import checkpoint as ckpt
from . import dist
from .config import RunConfig, TrainConfig
from .data.text import get_batch, prepare_text_data
from .data.tokenizers import tokenizer_from_dir
from .evaluate import perplexity
from .models import build_model
from .objectives import ebt_text_loss, transformer_loss
from .replay import REPLAY_FILE, ReplayBuffer

TASK = "text"


class RunError(Exception):
    """A run directory cannot be used as asked (one-line message for the CLI)."""


def lr_factor(step: int, t: TrainConfig) -> float:
    """Linear warm-up from 0 to 1 over ``warmup`` steps, then cosine to ``min_lr_ratio`` at ``steps``.
    Each parameter group multiplies its own base LR by this, so each has its own floor."""
    if t.warmup and step < t.warmup:
        return (step + 1) / t.warmup
    progress = min(1.0, (step - t.warmup) / max(1, t.steps - t.warmup))
    return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model: torch.nn.Module, t: TrainConfig) -> list[dict]:
    """AdamW groups: matrices decayed; vectors (norm gains) not; α (owned by ``model.step_size``) on its own."""
    alpha_params = set(id(p) for p in model.step_size.parameters()) if hasattr(model, "step_size") else set()
    decay, no_decay, alpha = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (alpha if id(p) in alpha_params else decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay, "base_lr": t.lr},
              {"params": no_decay, "weight_decay": 0.0, "base_lr": t.lr}]
    if alpha:
        a = float(model.step_size().detach())
        groups.append({"params": alpha, "weight_decay": 0.0, "base_lr": t.alpha_lr_mult * a * t.lr})
    return [g for g in groups if g["params"]]


def make_optimizer(model: torch.nn.Module, t: TrainConfig, resume_from: Path | None = None):
    """AdamW over :func:`param_groups`; with ``resume_from`` the weights and optimizer state are restored from
    that run's checkpoint. Returns ``(optimizer, trainable parameters)``."""
    groups = param_groups(model, t)
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay)
    if resume_from is not None:
        ckpt.load_weights(model, resume_from)
        state = ckpt.load_optimizer_state(resume_from)
        if state is None:
            raise RunError(f"{resume_from} has no optimizer state to resume from")
        opt.load_state_dict(state)
        for g, fresh in zip(opt.param_groups, groups):
            g.setdefault("base_lr", fresh["base_lr"])
    return opt, params


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The single source of randomness for one training step (batch + initial candidates + noise)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 64 + rank)


def compute_loss(model, batch: torch.Tensor, cfg: RunConfig, gen: torch.Generator, training: bool = True,
                 replay: ReplayBuffer | None = None):
    if cfg.model.model == "ebt":
        loss, metrics, _ = ebt_text_loss(model, batch, cfg.thinking, gen, training=training, replay=replay)
        return loss, metrics
    return transformer_loss(model, batch)


def optimizer_step(model, loss: torch.Tensor, opt: torch.optim.Optimizer, params: list, grad_clip: float) -> torch.Tensor:
    """zero → backward into the parameters only (the detached candidate leaves of each thinking step need no
    gradient: exact, and faster) → average over ranks → clip → step. Returns the gradient norm."""
    opt.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    dist.average_gradients(model)
    gnorm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    opt.step()
    return gnorm


def train_record(step: int, opt: torch.optim.Optimizer, gnorm: torch.Tensor, metrics: dict) -> dict:
    """One JSONL training record (the only host sync of a logged step); a non-finite loss stops the run."""
    rec = {"step": step, "split": "train", "lr": opt.param_groups[0]["lr"], "grad_norm": float(gnorm),
           **{k: float(v) for k, v in metrics.items()}}
    if not math.isfinite(rec["loss"]):
        raise FloatingPointError(f"loss is {rec['loss']} at step {step}; lower the learning rate or the step size alpha")
    return rec


class JsonlLogger:
    def __init__(self, path: Path | None):
        self.path = path

    def __call__(self, record: dict) -> None:
        if self.path is None:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop log lines written after the checkpoint we resume from."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, path)


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr, leave=False)


def train(cfg: RunConfig, out: str | os.PathLike, *, resume: bool = False, steps: int | None = None,
          progress: bool = True, log=print) -> dict:
    """Train per ``cfg`` into run directory ``out``; returns a summary dict.

    With ``resume=True`` the config, tokenizer, weights, optimizer and step come from ``out`` (``steps`` may
    extend the run). Everything that can fail on bad input (data, config) fails before ``out`` is touched.
    """
    out = Path(out)
    dist.init_from_env()
    tokenizer = None
    start = 0
    if resume:
        meta = ckpt.read_config(out)
        if meta["task"] != TASK:
            raise RunError(f"{out} is a {meta['task']!r} run; resume it with its own task")
        cfg = RunConfig.from_dict(meta["config"])
        start = int(ckpt.read_state(out).get("step", 0))
        tokenizer = tokenizer_from_dir(cfg.data.tokenizer, ckpt.find_checkpoint(out))
    elif out.exists() and any(out.iterdir()):
        raise RunError(f"run directory {out} already exists and is not empty; use --resume or another --out")
    if steps is not None:
        cfg = cfg.replace(**{"train.steps": steps})
    if start >= cfg.train.steps:
        raise RunError(f"{out} is already at step {start} of {cfg.train.steps}; pass --steps N > {start} to continue")
    t = cfg.train

    data = prepare_text_data(cfg.data, cfg.model.context, tokenizer)
    cfg = cfg.replace(**{"model.vocab_size": data.tokenizer.vocab_size})
    torch.manual_seed(t.seed)
    model = build_model(cfg.model)
    model.eval_steps = cfg.thinking.default_eval_steps
    opt, params = make_optimizer(model, t, out if resume else None)

    # System 2 replay buffer: rank-local, carried across steps, saved with the checkpoint (rank 0's)
    replay = None
    if cfg.model.model == "ebt" and cfg.thinking.replay_fraction > 0:
        replay = ReplayBuffer(cfg.thinking.replay_size)
        saved = ckpt.find_checkpoint(out) / REPLAY_FILE if resume else None
        if saved is not None and saved.exists() and dist.is_main():
            replay = ReplayBuffer.from_bytes(saved.read_bytes(), next(model.parameters()).device)

    main = dist.is_main()
    metrics_path = out / "metrics.jsonl"
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if resume:
            _truncate_metrics(metrics_path, start)
    logger = JsonlLogger(metrics_path if main else None)
    extra = data.tokenizer.files()

    def save(step: int, summary: dict) -> None:
        if main:
            files = {**extra, REPLAY_FILE: replay.to_bytes()} if replay is not None else extra
            ckpt.save_checkpoint(out, model, cfg.to_dict(), task=TASK, optimizer=opt,
                                 state={"step": step, **summary}, extra_files=files)

    def evaluate(step: int) -> dict:
        res = {"step": step, "split": "val"}
        r = perplexity(model, data.val, cfg.model.context, batch_size=t.batch_size, max_windows=t.eval_batches * t.batch_size)
        res.update(val_ppl=r["ppl"], val_tokens=r["tokens"])
        logger(res)
        return res

    n_params = model.non_embedding_params()
    log(f"model {cfg.model.model} ({cfg.preset}): {n_params / 1e6:.2f}M non-embedding parameters, "
        f"V={cfg.model.vocab_size}, context {cfg.model.context}; data {data.source}: {len(data.train):,} train / "
        f"{len(data.val):,} val tokens")
    bar = _progress(t.steps, start, progress and main)
    model.train()
    t0, last_eval, summary = time.time(), {}, {}
    for step in range(start, t.steps):
        f = lr_factor(step, t)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * f
        gen = step_generator(t.seed, step, dist.rank())
        batch = get_batch(data.train, t.batch_size, cfg.model.context + 1, gen)
        loss, metrics = compute_loss(model, batch, cfg, gen, replay=replay)
        gnorm = optimizer_step(model, loss, opt, params, t.grad_clip)
        done = step + 1
        if done % t.log_every == 0 or done == t.steps or step == start:
            rec = train_record(done, opt, gnorm, metrics)
            logger(rec)
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.3f}")
        if bar is not None:
            bar.update(1)
        if done % t.eval_every == 0 or done == t.steps:
            last_eval = evaluate(done)
            log(f"step {done}: val ppl {last_eval['val_ppl']:.3f} ({time.time() - t0:.0f}s)")
        if done % t.save_every == 0 or done == t.steps:
            summary = {"val_ppl": last_eval.get("val_ppl"), "elapsed_s": time.time() - t0}
            save(done, summary)
    if bar is not None:
        bar.close()
    result = {"run": str(out), "step": t.steps, "val_ppl": last_eval.get("val_ppl"),
              "elapsed_s": round(time.time() - t0, 1), "metrics": str(metrics_path),
              "checkpoint": str(out / ckpt.CKPT)}
    return result
