"""The image-denoising task: its configs and presets, the two objectives, and its adapter to the loop.

Paper setup (Gladstone et al. 2025, §4.7; see docs/images.md): images are noised with a DDPM linear-β schedule at
a level σ given as a fraction of the schedule (train σ = 0.1; evaluate σ = 0.1 and the unseen σ = 0.2).

* **EBT** (``ImageEBT``): the candidate starts at the noisy image ``x_t`` (t = t(σ_train), fixed) and thinks with
  the training :class:`~ebtkit.core.recipe.ThinkingSpec`; the per-step loss (MSE, or SmoothL1) against the clean
  image goes on every step (System 1) or on the last (System 2), back-propagated through the thinking steps
  (second order). The EBT is never told the noise level.
* **DiT**: ε-prediction with DDPM's simple loss at ``t ~ U{0 … t(σ_train)}`` (the paper trains its DiT on the
  same range of noise levels); sampled with DDIM at evaluation (:mod:`ebtkit.eval.denoise`).

Both models are built from one adaLN-Zero block stack at the same size and trained by the same loop
(:func:`ebtkit.training.fit`) on the same batches with the same optimizer and schedule.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import DATA_FINGERPRINT, Config, ConfigError, ThinkingConfig, TrainConfig
from ..core.device import model_device, to_device
from ..core.models.diffusion import GaussianDiffusion
from ..core.models.image import ImageModelConfig, build_image_model, count_params
from ..core.recipe import ThinkingSpec
from ..core.rng import device_of, host_generator
from ..core.thinking import is_energy_model
from ..data.images import (ImageDataConfig, get_image_batch, image_data_files, load_image_data, resolve_dataset,
                           to_float)
from ..eval.denoise import pixel_mse, psnr
from .base import Task

TASK = "denoise"
LOSSES = ("mse", "smooth_l1")


DenoiseError = ConfigError   # bad input for a denoising run (one-line message for the CLI)


@dataclass
class NoiseConfig(Config):
    """The diffusion schedule, the paper's noise levels σ (fractions of it) and the EBT's per-step loss."""

    diffusion_steps: int = 1000     # T (DDPM)
    beta_start: float = 1e-4
    beta_end: float = 2e-2
    train_sigma: float = 0.1        # EBT trains at t(σ); DiT at t ~ U{0..t(σ)}
    eval_sigmas: list[float] = field(default_factory=lambda: [0.1, 0.2])
    loss: str = "mse"               # EBT per-step reconstruction loss: "mse" | "smooth_l1" (the paper's code)

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        self.eval_sigmas = [float(s) for s in self.eval_sigmas]
        for s in [self.train_sigma, *self.eval_sigmas]:
            if not 0 < s <= 1:
                raise ValueError(f"noise levels are fractions of the schedule in (0, 1], got {s}")
        self.diffusion().t_for_sigma(self.train_sigma)       # validates the schedule

    def diffusion(self) -> GaussianDiffusion:
        return GaussianDiffusion(self.diffusion_steps, self.beta_start, self.beta_end)


@dataclass
class DenoiseRunConfig(Config):
    model: ImageModelConfig = field(default_factory=ImageModelConfig)
    thinking: ThinkingConfig = field(default_factory=ThinkingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    preset: str = "custom"

    DERIVED: ClassVar[dict[str, str]] = dict(DATA_FINGERPRINT)

    def __post_init__(self):
        t = self.thinking
        if t.replay_fraction > 0 or t.contrastive_coeff > 0:
            raise ValueError("the replay buffer and the contrastive term are not implemented for images")
        if self.model.n_landscapes > t.default_eval_steps and self.model.model == "ebt":
            raise ValueError(f"n_landscapes={self.model.n_landscapes} exceeds the thinking steps")


# --------------------------------------------------------------------------------------------- presets
# Tuning of α, steps and sizes: docs/log/images.md. Both models of a preset share every size/optimizer field.
PRESETS: dict[str, dict[str, Any]] = {
    # tests and smoke runs: seconds, on the bundled mini set
    "tiny": {"model.d_model": 32, "model.n_layers": 2, "model.n_heads": 2, "model.patch_size": 7,
             "model.mlp_ratio": 2.0, "data.dataset": "mini", "train.steps": 20, "train.batch_size": 8,
             "train.warmup": 5, "train.eval_every": 10, "train.eval_batches": 1, "train.save_every": 10,
             "train.log_every": 5, "train.lr": 1e-3},
    # the documented comparison: a few minutes per model on 2 CPU cores
    "cpu": {"model.d_model": 64, "model.n_layers": 4, "model.n_heads": 4, "model.patch_size": 4,
            "model.mlp_ratio": 2.0, "train.steps": 1500, "train.batch_size": 32, "train.warmup": 100,
            "train.lr": 1e-3, "train.eval_every": 500, "train.eval_batches": 4, "train.save_every": 500,
            "train.log_every": 25},
}

# thinking recipes (paper Table D / §3.1 image columns): S1 = detach + loss on every step, learnable α;
# S2 = no detach, truncated, 2–3 random steps, fixed α jittered in [α/2, 2α], no Langevin noise.
RECIPES: dict[str, dict[str, Any]] = {
    "s1": {"thinking.system": "s1", "thinking.steps": 1, "model.alpha_learnable": True},
    "s2": {"thinking.system": "s2", "thinking.steps": 2, "thinking.max_steps": 3, "thinking.alpha_jitter": 2.0,
           "model.alpha_learnable": False},
}


def preset(name: str, model: str = "ebt", system: str | None = None, **overrides: Any) -> DenoiseRunConfig:
    """A resolved denoising config: size preset, thinking recipe, then dotted overrides."""
    return DenoiseTask.preset(name, system, **{"model.model": model, **overrides})


# ------------------------------------------------------------------------------------------ objectives
def _recon(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    return F.mse_loss(pred, target) if kind == "mse" else F.smooth_l1_loss(pred, target)


def ebt_denoise_loss(model, clean: torch.Tensor, noisy: torch.Tensor, cfg: DenoiseRunConfig,
                     gen: torch.Generator | None, steps: int | None = None):
    """Think from ``noisy`` (B, C, H, W) and score the candidates against ``clean``.

    ``steps``: thinking steps (default: per the recipe, drawn from ``gen`` when random).
    Returns ``(loss, metrics)``; metrics hold ``mse_step{k}`` (pixel MSE of ŷ_k on [−1, 1]), ``energy_gap``
    (mean E(ŷ_0) − mean E(ŷ_{N−1}), with ≥ 2 steps) and ``alpha``, all as 0-d tensors (no host sync).
    """
    tc = cfg.thinking
    if steps is not None:
        tc = tc.replace(steps=steps, max_steps=None)
    spec = ThinkingSpec.training(tc, cfg.model.n_landscapes, gen)
    traj = spec.run(model.energy_fn(), noisy, model.step_size(), gen)
    loss, _ = spec.step_losses(traj, lambda c: _recon(c, clean, cfg.noise.loss))
    metrics = {"loss": loss.detach()}
    for k, c in enumerate(traj.candidates):
        metrics[f"mse_step{k}"] = F.mse_loss(c.detach(), clean)
    if len(traj.energies) > 1:
        metrics["energy_gap"] = (traj.energies[0].mean() - traj.energies[-1].mean()).detach()
    metrics["alpha"] = model.step_size().detach()
    return loss, metrics


def dit_loss(model, diffusion: GaussianDiffusion, clean: torch.Tensor, t_max: int, gen: torch.Generator | None):
    """DDPM simple loss at ``t ~ U{0..t_max}`` per image."""
    dev = clean.device
    t = torch.randint(0, t_max + 1, (clean.shape[0],), generator=gen, device=device_of(gen, dev)).to(dev)
    noise = torch.randn(clean.shape, generator=gen, device=device_of(gen, dev)).to(dev)
    loss = diffusion.training_loss(model, clean, t, noise)
    return loss, {"loss": loss.detach()}


@torch.no_grad()
def quick_val(model, cfg: DenoiseRunConfig, test: torch.Tensor, diffusion: GaussianDiffusion, n: int) -> dict:
    """PSNR at the training noise level on the first ``n`` test images (fixed noise): EBT at its evaluation
    steps; DiT at 1 NFE and a DDIM chain of min(t + 1, 100) steps."""
    clean = to_float(test[:n])
    t = diffusion.t_for_sigma(cfg.noise.train_sigma)
    x_t = diffusion.q_sample(clean, t, torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)))
    was = model.training
    model.eval()
    if is_energy_model(model):
        spec = ThinkingSpec.inference(cfg.thinking.default_eval_steps, cfg.model.n_landscapes)
        tr = spec.run(model.energy_fn(), x_t, model.step_size().detach())
        res = {"val_psnr": psnr(float(pixel_mse(tr.final, clean).mean())), "val_nfe": spec.steps}
    else:
        n_full = min(t + 1, 100)
        full = diffusion.ddim_sample(model, x_t, t, n_full)
        one = diffusion.ddim_sample(model, x_t, t, 1)
        res = {"val_psnr": psnr(float(pixel_mse(full, clean).mean())), "val_nfe": n_full,
               "val_psnr_1nfe": psnr(float(pixel_mse(one, clean).mean()))}
    model.train(was)
    return res


class DenoiseTask(Task):
    """Image denoising: the bidirectional image EBT or a DiT, PSNR at the training noise level."""

    name = "denoise"
    config_class = DenoiseRunConfig
    presets = PRESETS
    recipes = RECIPES
    models = ("ebt", "dit")
    flags: ClassVar[dict[str, str]] = {"model": "model.model", "steps": "train.steps", "batch_size": "train.batch_size",
                                       "lr": "train.lr", "alpha": "model.alpha", "seed": "train.seed",
                                       "data": "data.path", "dataset": "data.dataset", "loss": "noise.loss",
                                       "think_steps": "thinking.steps", "train_sigma": "noise.train_sigma"}
    headline = "val_psnr"
    headline_mode = "max"

    def __init__(self, cfg: DenoiseRunConfig):
        super().__init__(cfg)
        self.data = None
        self.diffusion = cfg.noise.diffusion()
        self.t_train = self.diffusion.t_for_sigma(cfg.noise.train_sigma)

    @classmethod
    def build_model(cls, cfg: DenoiseRunConfig) -> nn.Module:
        return build_image_model(cfg.model)

    def setup(self, ckpt_dir: Path | None) -> DenoiseRunConfig:
        m = self.cfg.model
        self.locate_data(fresh=ckpt_dir is None)
        self.data = load_image_data(self.cfg.data, m.image_size, m.channels)
        if self.cfg.data.path is None:      # record the concrete dataset, never "auto"
            self.cfg = self.cfg.replace(**{"data.dataset": resolve_dataset(self.cfg.data)})
        self.record_data(image_data_files)
        return self.cfg

    def loss(self, model, generator):
        dev = model_device(model)
        clean = get_image_batch(self.data.train, self.cfg.train.batch_size, host_generator(generator))  # B,C,H,W
        clean = to_device(clean, dev)
        if is_energy_model(model):
            noise = torch.randn(clean.shape, generator=generator, device=device_of(generator, dev)).to(dev)
            noisy = self.diffusion.q_sample(clean, self.t_train, noise)
            return ebt_denoise_loss(model, clean, noisy, self.cfg, generator)
        return dit_loss(model, self.diffusion, clean, self.t_train, generator)

    def evaluate(self, model) -> dict[str, float]:
        n_val = min(len(self.data.test), self.cfg.train.eval_batches * self.cfg.train.batch_size)
        return quick_val(model, self.cfg, self.data.test, self.diffusion, n_val)

    def eval_line(self, res: dict) -> str:
        return f"val PSNR {res['val_psnr']:.2f} dB at σ={self.cfg.noise.train_sigma:g} ({res['val_nfe']} NFE)"

    def describe(self, model) -> str:
        c, d = self.cfg, self.data
        return (f"model {c.model.model} ({c.preset}, {c.thinking.system if c.model.model == 'ebt' else 'ε-prediction'}): "
                f"{count_params(model) / 1e6:.3f}M parameters ({model.trunk_params() / 1e6:.3f}M in the shared block "
                f"stack); data {d.source}: {len(d.train):,} train / {len(d.test):,} test images {tuple(d.shape)}; "
                f"train σ={c.noise.train_sigma:g} (t={self.t_train})")


__all__ = ["DenoiseRunConfig", "NoiseConfig", "PRESETS", "RECIPES", "DenoiseTask", "preset", "ebt_denoise_loss",
           "dit_loss", "quick_val"]
