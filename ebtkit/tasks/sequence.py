"""The sequence task: next-vector prediction over continuous sequences (video frames, time series, users' arrays).

* **EBT** (:class:`~ebtkit.core.models.sequence.SequenceEBT`): thinks about every next vector of a training window
  with the training :class:`~ebtkit.core.recipe.ThinkingSpec` and puts the regression loss (SmoothL1 with β = 1,
  the official video loss, or MSE) on every step's candidates (System 1) or on the last (System 2),
  back-propagated through the thinking steps (second order).
* **Transformer++** (:class:`~ebtkit.core.models.sequence.SequenceTransformer`): regresses the next vector with the
  same loss, on the same batches, with the same optimizer and schedule (:func:`ebtkit.training.fit`).

Data (:mod:`ebtkit.data.sequences`): Moving Fashion-MNIST generated on the fly (frames as flattened pixels), the
Seattle weather series, or a user's ``(N, T, F)`` array. Validation: teacher-forced next-step MSE in model units
(normalised units for series, pixels in [0, 1] for video); ``ebt eval`` adds rollouts, data units, SSIM and the
thinking study (:mod:`ebtkit.eval.sequence`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..core.config import DATA_FINGERPRINT, Config, ThinkingConfig, TrainConfig
from ..core.models.sequence import (SEQUENCE_LOSSES, SequenceModelConfig, build_sequence_model, count_params,
                                    regression_loss)
from ..core.device import model_device, to_device
from ..core.rng import host_generator
from ..core.recipe import ThinkingSpec
from ..core.replay import ReplayBuffer, extend_with_replay
from ..core.thinking import is_energy_model
from ..data.sequences import SequenceData, SequenceDataConfig, load_sequence_data
from ..eval.sequence import next_step_predictions
from .base import Bundle, Task

STATS_FILE = "sequence_stats.json"


@dataclass
class SequenceRunConfig(Config):
    """A sequence run: model, thinking recipe, optimisation, data and the regression loss."""

    model: SequenceModelConfig = field(default_factory=SequenceModelConfig)
    thinking: ThinkingConfig = field(default_factory=ThinkingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: SequenceDataConfig = field(default_factory=SequenceDataConfig)
    loss: str = "smooth_l1"            # per-step regression loss of both models: "smooth_l1" (β = 1) | "mse"
    preset: str = "custom"

    DERIVED: ClassVar[dict[str, str]] = {"model.features": "it is set by the data (the arrays' last axis)",
                                         **DATA_FINGERPRINT}

    def __post_init__(self):
        if self.loss not in SEQUENCE_LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose from {', '.join(SEQUENCE_LOSSES)}")
        if self.thinking.contrastive_coeff > 0:
            raise ValueError("the contrastive term is defined for text only")
        if self.data.horizon > self.model.context:
            raise ValueError(f"data.horizon={self.data.horizon} needs model.context >= horizon (windows of context + 1 "
                             f"vectors hold at least one observed step before the horizon); got {self.model.context}")


# --------------------------------------------------------------------------------------------- presets
# Moving Fashion-MNIST: 10 frames in → 10 out (Srivastava et al., 2015), so a window is 20 frames: context 19.
_VIDEO_10_10 = {"model.context": 19, "data.horizon": 10, "data.source": "moving-fmnist"}
PRESETS: dict[str, dict[str, Any]] = {
    # tests and smoke runs: seconds
    "tiny": {"model.d_model": 32, "model.n_layers": 2, "model.n_heads": 2, "model.context": 9,
             "data.source": "moving-fmnist", "data.canvas": 16, "data.object_size": 8, "data.horizon": 4,
             "data.eval_sequences": 16, "train.steps": 20, "train.batch_size": 8, "train.warmup": 5,
             "train.eval_every": 10, "train.eval_batches": 2, "train.save_every": 10, "train.log_every": 5,
             "train.lr": 3e-3},
    # the CPU preset: 32×32 frames, one 14-px object, 10 → 10, a few minutes per model on 2 cores
    "cpu": {**_VIDEO_10_10, "model.alpha": 30.0, "model.d_model": 128, "model.n_layers": 4, "model.n_heads": 4,
            "data.canvas": 32, "data.objects": 1, "data.object_size": 14, "train.steps": 1000, "train.batch_size": 16,
            "train.warmup": 100, "train.lr": 1e-3, "train.eval_every": 250, "train.eval_batches": 8,
            "train.save_every": 250, "train.log_every": 25},
    # the standard protocol: 64×64 frames, two 28-px objects, 10 → 10 (the Moving-MNIST literature's setting)
    "mmnist": {**_VIDEO_10_10, "model.alpha": 30.0, "model.d_model": 256, "model.n_layers": 6, "model.n_heads": 4,
               "data.canvas": 64, "data.objects": 2, "data.object_size": 28, "train.steps": 20_000,
               "train.batch_size": 32, "train.warmup": 1000, "train.lr": 5e-4, "train.eval_every": 1000,
               "train.eval_batches": 8, "train.save_every": 1000, "train.log_every": 50},
    # a real multivariate series: Seattle daily weather (4 variables), 4 weeks of context, one week ahead
    # (1023 training days: the Transformer++'s validation MSE is lowest near step 250 and rises after it, so
    # both models stop at 300)
    "weather": {"data.source": "seattle-weather", "model.alpha": 3.0, "model.context": 27, "data.horizon": 7, "data.eval_stride": 1,
                "model.d_model": 64, "model.n_layers": 4, "model.n_heads": 2, "train.steps": 300,
                "train.batch_size": 32, "train.warmup": 30, "train.lr": 1e-3, "train.eval_every": 100,
                "train.eval_batches": 8, "train.save_every": 100, "train.log_every": 10},
}

# Thinking recipes (PAPER_NOTES §3.1, video columns): S1 = 2 steps on 2 landscapes, detached, loss on every step,
# learnable α; S2 = 2–3 steps on one landscape, no detach + truncation, fixed α jittered in [α/2, 2α], replay.
_OFF = {"thinking.max_steps": None, "thinking.eval_steps": None, "thinking.langevin_sigma": 0.0,
        "thinking.alpha_jitter": 1.0, "thinking.replay_fraction": 0.0, "thinking.replay_size": 0,
        "thinking.contrastive_coeff": 0.0}
RECIPES: dict[str, dict[str, Any]] = {
    "s1": {**_OFF, "thinking.system": "s1", "thinking.steps": 2, "model.n_landscapes": 2,
           "model.alpha_learnable": True},
    "s2": {**_OFF, "thinking.system": "s2", "thinking.steps": 2, "thinking.max_steps": 3,
           "thinking.alpha_jitter": 2.0, "thinking.replay_fraction": 0.5, "thinking.replay_size": 96,
           "model.n_landscapes": 1, "model.alpha_learnable": False},
}


# the recipe each preset trains with unless --system says otherwise, chosen on 3 seeds (docs/sequences.md, LOG.md):
# System 1 for video (S2's rollouts are no better than persistence at 1000 steps), System 2 for the weather series
# (next-step MSE 14.60 ± 0.27 vs 15.07 ± 0.54, rollouts 21.1 ± 0.7 vs 22.0 ± 1.8)
PRESET_SYSTEMS: dict[str, str] = {"weather": "s2"}


def preset(name: str, model: str = "ebt", system: str | None = None, **overrides: Any) -> SequenceRunConfig:
    """A resolved sequence config: size/data preset, thinking recipe, then dotted overrides."""
    return SequenceTask.preset(name, system, **{"model.model": model, **overrides})


# ------------------------------------------------------------------------------------------ objectives
def ebt_sequence_loss(model, window: torch.Tensor, cfg: SequenceRunConfig, generator: torch.Generator | None,
                      training: bool = True, replay: ReplayBuffer | None = None, reference: bool = False):
    """Loss of the sequence EBT on windows (B×(S+1)×F): think about ``x[1..S]`` from ``x[0..S-1]``.

    Returns ``(loss, metrics, trajectory)``; metrics hold ``mse_step{k}`` (next-step MSE of ŷ_k in model units,
    k = 0..N), ``energy_gap`` (mean E(ŷ_0) − mean E at the last step), ``alpha`` and ``steps``. With System 2
    replay, ``round(replay_fraction × B)`` stored windows are appended and start from their stored candidates.
    """
    tc = cfg.thinking
    n_land = cfg.model.n_landscapes
    spec = ThinkingSpec.training(tc, n_land, generator) if training else \
        ThinkingSpec.inference(tc.default_eval_steps, n_land)
    fresh = window.shape[0]
    y0 = model.initial_candidates(window[:, :-1], generator)
    n_replay = 0
    use_replay = replay is not None and training and tc.replay_fraction > 0
    if use_replay:
        window, y0, n_replay = extend_with_replay(replay, tc.replay_fraction, window, y0, generator)
    x, target = window[:, :-1], window[:, 1:]
    traj = spec.run(model.energy_fn(x, reference=reference), y0, model.step_size(), generator)
    loss, per_step = spec.step_losses(traj, lambda c: regression_loss(c, target, cfg.loss))
    if use_replay:
        replay.push(window[:fresh].detach(), traj.final[:fresh].detach())
    metrics = {"loss": loss.detach()}
    for k, c in enumerate(traj.candidates):
        metrics[f"mse_step{k}"] = torch.nn.functional.mse_loss(c.detach(), target)
    metrics["energy_gap"] = (traj.energies[0].mean() - traj.energies[-1].mean()).detach()
    metrics["alpha"] = model.step_size().detach()
    metrics["steps"] = torch.tensor(float(spec.steps))
    if replay is not None:
        metrics["replayed"] = torch.tensor(float(n_replay))
    return loss, metrics, traj


def regressor_loss(model, window: torch.Tensor, cfg: SequenceRunConfig):
    pred = model(window[:, :-1])
    loss = regression_loss(pred, window[:, 1:], cfg.loss)
    return loss, {"loss": loss.detach(), "mse": torch.nn.functional.mse_loss(pred.detach(), window[:, 1:])}


class SequenceTask(Task):
    """Continuous sequences: the sequence EBT or the Transformer++ regressor, next-step validation MSE."""

    name = "sequence"
    config_class = SequenceRunConfig
    presets = PRESETS
    recipes = RECIPES
    models = ("ebt", "transformer++")
    flags: ClassVar[dict[str, str]] = {"model": "model.model", "steps": "train.steps", "batch_size": "train.batch_size",
                                       "lr": "train.lr", "alpha": "model.alpha", "context": "model.context",
                                       "seed": "train.seed", "data": "data.path", "loss": "loss",
                                       "think_steps": "thinking.steps"}
    headline = "val_mse"
    ebt_only: ClassVar[tuple[str, ...]] = ("system", "alpha", "think_steps")   # --loss trains both models

    def __init__(self, cfg: SequenceRunConfig):
        super().__init__(cfg)
        self.data: SequenceData | None = None

    @classmethod
    def default_system(cls, preset: str) -> str:
        return PRESET_SYSTEMS.get(preset, "s1")

    @classmethod
    def build_model(cls, cfg: SequenceRunConfig) -> nn.Module:
        return build_sequence_model(cfg.model)

    @classmethod
    def bundle(cls, model: nn.Module, cfg: SequenceRunConfig, ckpt_dir: Path | None) -> Bundle:
        extras = {}
        if ckpt_dir is not None and (ckpt_dir / STATS_FILE).is_file():
            extras["stats"] = json.loads((ckpt_dir / STATS_FILE).read_text(encoding="utf-8"))
        return Bundle(model=model, config=cfg, task=cls.name, path=ckpt_dir, extras=extras)

    def setup(self, ckpt_dir: Path | None) -> SequenceRunConfig:
        self.locate_data(fresh=ckpt_dir is None)
        self.data = load_sequence_data(self.cfg.data, self.cfg.model.context + 1)
        self.cfg = self.cfg.replace(**{"model.features": self.data.features})
        self.record_data()
        self.setup_replay()
        return self.cfg

    def checkpoint_files(self) -> dict[str, bytes]:
        return {STATS_FILE: json.dumps(self.data.stats(), indent=1).encode(), **super().checkpoint_files()}

    def loss(self, model, generator):
        dev = model_device(model)
        # the windows are made on the host (moving objects, series windows) from the step's host stream
        window = to_device(self.data.train_batch(self.cfg.train.batch_size, host_generator(generator)), dev)
        if is_energy_model(model):
            loss, metrics, _ = ebt_sequence_loss(model, window, self.cfg, generator, replay=self.replay)
            return loss, metrics
        return regressor_loss(model, window, self.cfg)

    def evaluate(self, model) -> dict[str, float]:
        t = self.cfg.train
        windows = self.data.val[: t.eval_batches * t.batch_size]
        dev = next(model.parameters()).device
        was = model.training
        model.eval()
        pred, _ = next_step_predictions(model, windows.to(dev), self.cfg.thinking.default_eval_steps
                                        if is_energy_model(model) else None, batch_size=t.batch_size,
                                        generator=torch.Generator(device=dev).manual_seed(0))
        model.train(was)
        target = windows[:, 1:].to(dev)
        return {"val_mse": float(((pred - target) ** 2).mean()), "val_mae": float((pred - target).abs().mean()),
                "val_windows": int(windows.shape[0])}

    def eval_line(self, res: dict) -> str:
        return f"val next-step MSE {res['val_mse']:.5g} (MAE {res['val_mae']:.4g}, model units)"

    def describe(self, model) -> str:
        c, d = self.cfg, self.data
        return (f"model {c.model.model} ({c.preset}{', ' + c.thinking.system if c.model.model == 'ebt' else ''}): "
                f"{model.non_embedding_params() / 1e6:.3f}M non-embedding + {model.embedding_params() / 1e6:.3f}M "
                f"embedding/head parameters ({count_params(model) / 1e6:.3f}M); data {d.source}: F={d.features}, "
                f"windows of {c.model.context + 1}, horizon {c.data.horizon}; {d.val.shape[0]} val / "
                f"{d.test.shape[0]} test windows")


__all__ = ["SequenceRunConfig", "SequenceTask", "PRESETS", "RECIPES", "preset", "ebt_sequence_loss",
           "regressor_loss"]
