"""The text task: next-token prediction with the text EBT (through thinking) or the Transformer++ baseline.

``ebt_text_loss`` thinks on a batch with the training :class:`~ebtkit.core.recipe.ThinkingSpec` and puts
cross-entropy on the candidates it reaches: System 1 averages the CE over every step (each step differentiated,
candidates detached between steps); System 2 scores only the last step (no detach, truncated).
``transformer_loss`` is the baseline's next-token CE. Both return ``(loss, metrics)`` with metrics as 0-d
tensors (no host sync in the step). :class:`TextTask` adapts them to :func:`ebtkit.training.fit`: random
windows of the built-in corpus or a user's file, byte or BPE tokens, exact validation perplexity.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import PRESET_SYSTEMS, PRESETS, RECIPES, RunConfig, ThinkingConfig
from ..core.device import model_device, to_device
from ..core.models import build_model
from ..core.recipe import ThinkingSpec, landscape_schedule
from ..core.replay import ReplayBuffer, extend_with_replay
from ..core.thinking import is_energy_model
from ..data.shards import MANIFEST
from ..data.text import get_batch, prepare_text_data
from ..data.tokenizers import tokenizer_from_dir
from ..eval.metrics import perplexity
from .base import Bundle, Task


def ebt_text_loss(model, tokens: torch.Tensor, tcfg: ThinkingConfig, generator: torch.Generator | None = None,
                  training: bool = True, steps: int | None = None, init: torch.Tensor | None = None,
                  reference: bool = False, replay: ReplayBuffer | None = None):
    """Loss of the text EBT on ``tokens`` (B×(S+1)).

    Args:
        init: initial candidates (B×S×V); default ``model.init_candidates`` drawn with ``generator``.
        steps: thinking steps (default: sampled per the recipe in training, ``eval_steps`` otherwise).
        replay: System 2 replay buffer (training only, used when ``tcfg.replay_fraction > 0``):
            ``round(replay_fraction × B)`` stored sequences are appended to the batch and start from their
            stored candidates; afterwards the B fresh rows are pushed with their final candidates.
    Returns:
        ``(loss, metrics, trajectory)``; metrics has ``ce_step{k}`` for k = 0..N (CE of ŷ_k), ``energy_gap``
        (mean E(ŷ_0) − mean E at the last step), ``alpha``, ``steps``, ``replayed`` (rows), ``contrastive``.
        With ``tcfg.contrastive_coeff > 0`` (training) the loss adds ``coeff · softplus(E(onehot(y)) − E_last)``
        — the paper's optional contrastive term, ``CE(−[E_real, E_fake], 0)`` per position.
    """
    n_land = model.cfg.n_landscapes
    if training:
        spec = ThinkingSpec.training(tcfg, n_land, generator)
    else:
        spec = ThinkingSpec.inference(tcfg.default_eval_steps, n_land)
    if steps is not None and steps != spec.steps:
        spec = replace(spec, steps=steps, landscapes=tuple(landscape_schedule(n_land, steps)))
    fresh = tokens.shape[0]
    y0 = init if init is not None else model.init_candidates((fresh, tokens.shape[1] - 1), generator)
    n_replay = 0
    use_replay = replay is not None and training and tcfg.replay_fraction > 0
    if use_replay:   # tokens (B+n)×(S+1), y0 (B+n)×S×V
        tokens, y0, n_replay = extend_with_replay(replay, tcfg.replay_fraction, tokens, y0, generator)
    x, y = tokens[:, :-1], tokens[:, 1:]
    fn = model.energy_fn(x, reference=reference)
    traj = spec.run(fn, y0, model.step_size(), generator)
    V = y0.shape[-1]
    ce = lambda c: F.cross_entropy(c.reshape(-1, V), y.reshape(-1))  # noqa: E731
    loss, step_ce = spec.step_losses(traj, ce)
    if training and tcfg.contrastive_coeff > 0:
        real = fn(F.one_hot(y, V).to(y0.dtype), spec.landscapes[-1])                   # B×S
        contrastive = F.softplus(real - traj.energies[spec.steps - 1]).mean()
        loss = loss + tcfg.contrastive_coeff * contrastive
    if use_replay:
        replay.push(tokens[:fresh], traj.final[:fresh].detach())
    metrics = {"loss": loss.detach(), "ce_step0": ce(y0.detach()).detach()}
    for k, c in enumerate(step_ce, start=1):
        metrics[f"ce_step{k}"] = c.detach()
    metrics["energy_gap"] = (traj.energies[0].mean() - traj.energies[-1].mean()).detach()
    metrics["alpha"] = model.step_size().detach()
    metrics["steps"] = torch.tensor(float(spec.steps))
    if replay is not None:
        metrics["replayed"] = torch.tensor(float(n_replay))
    if training and tcfg.contrastive_coeff > 0:
        metrics["contrastive"] = contrastive.detach()
    return loss, metrics, traj


def transformer_loss(model, tokens: torch.Tensor):
    loss = model.loss(tokens)
    return loss, {"loss": loss.detach()}


class TextTask(Task):
    """Autoregressive text: the text EBT or Transformer++ on a corpus, exact validation perplexity."""

    name = "text"
    config_class = RunConfig
    presets = PRESETS
    recipes = RECIPES
    models = ("ebt", "transformer++")
    flags: ClassVar[dict[str, str]] = {"model": "model.model", "steps": "train.steps", "batch_size": "train.batch_size",
                                       "lr": "train.lr", "alpha": "model.alpha", "context": "model.context",
                                       "seed": "train.seed", "tokenizer": "data.tokenizer", "data": "data.path"}
    headline = "val_ppl"

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        self.data = None

    @classmethod
    def default_system(cls, preset: str) -> str:
        return PRESET_SYSTEMS.get(preset, "s1")

    @classmethod
    def build_model(cls, cfg: RunConfig) -> nn.Module:
        return build_model(cfg.model)

    @classmethod
    def bundle(cls, model: nn.Module, cfg: RunConfig, ckpt_dir: Path | None) -> Bundle:
        tok = tokenizer_from_dir(cfg.data.tokenizer, ckpt_dir) if ckpt_dir is not None else None
        return Bundle(model=model, config=cfg, task=cls.name, path=ckpt_dir, tokenizer=tok)

    def setup(self, ckpt_dir: Path | None) -> RunConfig:
        tok = tokenizer_from_dir(self.cfg.data.tokenizer, ckpt_dir) if ckpt_dir is not None else None
        self.locate_data(fresh=ckpt_dir is None)
        self.data = prepare_text_data(self.cfg.data, self.cfg.model.context, tok)
        # a prepared corpus (ebt prepare) also decides the tokenizer keys (data.decided)
        self.cfg = self.cfg.replace(**{"model.vocab_size": self.data.tokenizer.vocab_size, **self.data.decided})
        # a prepared corpus is fingerprinted by its manifest (which holds every shard's sha256, checked at load)
        self.record_data(files=lambda p: [p / MANIFEST])
        self.setup_replay()
        return self.cfg

    def checkpoint_files(self) -> dict[str, bytes]:
        return {**self.data.tokenizer.files(), **super().checkpoint_files()}

    def loss(self, model, generator):
        cfg = self.cfg
        batch = get_batch(self.data.train, cfg.train.batch_size, cfg.model.context + 1, generator)   # host
        batch = to_device(batch, model_device(model))
        if is_energy_model(model):
            loss, metrics, _ = ebt_text_loss(model, batch, cfg.thinking, generator, replay=self.replay)
            return loss, metrics
        return transformer_loss(model, batch)

    def evaluate(self, model) -> dict[str, float]:
        t = self.cfg.train
        r = perplexity(model, self.data.val, self.cfg.model.context, steps=self.cfg.thinking.default_eval_steps,
                       batch_size=t.batch_size, max_windows=t.eval_batches * t.batch_size)
        return {"val_ppl": r["ppl"], "val_tokens": r["tokens"]}

    def eval_line(self, res: dict) -> str:
        # a quick check on the first eval_batches × batch_size windows; `ebt eval` (after training) scores more,
        # and its table's header says how many: the two figures differ, so each says what it scored
        n = res.get("val_tokens")
        return f"val ppl {res['val_ppl']:.3f}" + (f" (quick check: the first {n:,} val tokens)" if n else "")

    def describe(self, model) -> str:
        c, d = self.cfg, self.data
        return (f"model {c.model.model} ({c.preset}): {model.non_embedding_params() / 1e6:.2f}M non-embedding "
                f"parameters, V={c.model.vocab_size}, context {c.model.context}; data {d.source}: "
                f"{len(d.train):,} train / {len(d.val):,} val tokens")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


__all__ = ["TextTask", "ebt_text_loss", "transformer_loss"]
