"""Image models for denoising: the bidirectional image EBT and a DiT baseline, from one adaLN-Zero stack.

* :class:`ImageEBT` — Gladstone et al. (2025), "bidirectional EBT": DiT's patches, fixed 2-D sin-cos positions
  and adaLN-Zero blocks (:mod:`ebtkit.core.nn.adaln`) conditioned on a *learned constant* (one vector per thinking
  "landscape"; no timestep — the EBT is not told the noise level), and a zero-initialised scalar head per
  patch. ``E(ŷ) = mean over patches`` → one energy per image. The candidate ``ŷ`` is the image itself; it is
  denoised by thinking, ``ŷ ← ŷ − α∇_ŷE`` (:func:`ebtkit.core.thinking.think`).
* :class:`DiT` — Peebles & Xie (2023): the same patch embedding and block stack, conditioned on a timestep
  embedding, with a zero-initialised per-patch linear output that predicts the noise ε (Ho et al., 2020).

The two differ only in their condition (learned constant vs timestep MLP) and output width (1 energy vs p²C
values per patch), so the block stacks have identical parameter counts (``trunk_params``) and the totals
differ by the timestep MLP (checked by the tests). Notation: B batch, C channels, H×W image (H = W = image
size), p patch, T patches, D width.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config import Config
from ..hub import HubMixin
from ..nn.adaln import AdaLNStack, FinalLayer, PatchEmbed, TimestepEmbedder, init_adaln_zero, unpatchify
from ..thinking import StepSize

IMAGE_MODEL_NAMES = ("ebt", "dit")


@dataclass
class ImageModelConfig(Config):
    """Architecture of the image EBT / DiT (shared fields) and the EBT's step size α."""

    model: str = "ebt"             # "ebt" | "dit"
    image_size: int = 28           # square images, H = W
    channels: int = 1
    patch_size: int = 4            # T = (image_size / patch_size)² patches
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0         # MLP hidden width = mlp_ratio × d_model (DiT: 4; the paper's EBT runs: 1)
    n_landscapes: int = 1          # EBT: learned constants, one per thinking landscape (paper's image runs: 1)
    alpha: float = 100.0           # EBT step size α (tuned for MSE + mean-over-patches on 28² images; docs/log/images.md)
    alpha_learnable: bool = True
    timestep_freq_dim: int | None = None   # DiT: sinusoidal timestep features into the MLP (None → d_model;
                                           # DiT's 256 would make a small DiT's embedding outweigh its blocks)

    def __post_init__(self):
        if self.model not in IMAGE_MODEL_NAMES:
            raise ValueError(f"unknown image model {self.model!r}; choose from {', '.join(IMAGE_MODEL_NAMES)}")
        for n in ("image_size", "channels", "patch_size", "d_model", "n_layers", "n_heads", "mlp_ratio",
                  "n_landscapes", "alpha"):
            if not getattr(self, n) > 0:
                raise ValueError(f"{n} must be > 0, got {getattr(self, n)}")
        if self.timestep_freq_dim is not None and self.timestep_freq_dim < 2:
            raise ValueError(f"timestep_freq_dim must be >= 2, got {self.timestep_freq_dim}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.d_model % 4:
            raise ValueError(f"d_model must be divisible by 4 (2-D sin-cos positions), got {self.d_model}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _check_images(x: torch.Tensor, cfg: ImageModelConfig) -> None:
    want = (cfg.channels, cfg.image_size, cfg.image_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != want:
        raise ValueError(f"expected images of shape (B, {', '.join(map(str, want))}), got {tuple(x.shape)}")


class ImageEBT(nn.Module, HubMixin, task="denoise", name="ebt", config=ImageModelConfig,
               pipeline_tag="image-to-image", energy_based=True):
    """Bidirectional energy transformer over an image candidate: ``forward(ŷ, landscape) → (B,)`` energies."""

    def __init__(self, cfg: ImageModelConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.d_model
        self.embed = PatchEmbed(cfg.image_size, cfg.patch_size, cfg.channels, D)
        self.cond = nn.Embedding(cfg.n_landscapes, D)                 # the learned constant(s) c
        self.blocks = AdaLNStack(D, cfg.n_layers, cfg.n_heads, cfg.mlp_ratio, backend="math")
        self.head = FinalLayer(D, 1, bias=False)                      # scalar energy per patch
        self.step_size = StepSize(cfg.alpha, learnable=cfg.alpha_learnable)
        init_adaln_zero(self)
        nn.init.normal_(self.cond.weight, std=0.02)

    def trunk_params(self) -> int:
        """Parameters of the shared adaLN-Zero block stack (identical to a same-config :class:`DiT`)."""
        return _count(self.blocks)

    def forward(self, y: torch.Tensor, landscape: int = 0) -> torch.Tensor:
        """y: (B, C, H, W) candidate images → (B,) energies (mean of per-patch energies)."""
        _check_images(y, self.cfg)
        if not 0 <= landscape < self.cfg.n_landscapes:
            raise ValueError(f"landscape {landscape} out of range for n_landscapes={self.cfg.n_landscapes}")
        B = y.shape[0]
        x = self.embed(y)                                                            # B,T,D
        c = self.cond.weight[landscape].to(x.dtype).expand(B, -1)                    # B,D
        x = self.blocks(x, c)                                                        # B,T,D
        return self.head(x, c).squeeze(-1).mean(dim=1)                               # B

    def energy_fn(self) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """The ``(candidate, landscape) → energies`` callable that :func:`ebtkit.core.thinking.think` takes."""
        return lambda y, landscape: self(y, landscape)


class DiT(nn.Module, HubMixin, task="denoise", name="dit", config=ImageModelConfig,
          pipeline_tag="image-to-image"):
    """Diffusion Transformer predicting the noise: ``forward(x_t, t) → ε̂`` of the same shape as ``x_t``."""

    def __init__(self, cfg: ImageModelConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.d_model
        self.embed = PatchEmbed(cfg.image_size, cfg.patch_size, cfg.channels, D)
        self.t_embed = TimestepEmbedder(D, cfg.timestep_freq_dim or D)
        # first-order model: the fused attention kernel is allowed (no double backward needed)
        self.blocks = AdaLNStack(D, cfg.n_layers, cfg.n_heads, cfg.mlp_ratio, backend="sdpa")
        self.head = FinalLayer(D, cfg.patch_size ** 2 * cfg.channels, bias=True)
        init_adaln_zero(self)

    def trunk_params(self) -> int:
        return _count(self.blocks)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t: (B, C, H, W) noisy images, t: (B,) integer timesteps → (B, C, H, W) predicted noise."""
        _check_images(x_t, self.cfg)
        c = self.t_embed(t.to(x_t.device)).to(x_t.dtype)                           # B,D
        x = self.blocks(self.embed(x_t), c)                                          # B,T,D
        out = self.head(x, c)                                                        # B,T,p²C
        return unpatchify(out, self.cfg.patch_size, self.cfg.channels, self.cfg.image_size, self.cfg.image_size)


IMAGE_MODELS: dict[str, Callable[[ImageModelConfig], nn.Module]] = {"ebt": ImageEBT, "dit": DiT}


def build_image_model(cfg: ImageModelConfig) -> nn.Module:
    if cfg.model not in IMAGE_MODELS:
        raise ValueError(f"unknown image model {cfg.model!r}; choose from {', '.join(IMAGE_MODELS)}")
    return IMAGE_MODELS[cfg.model](cfg)


def count_params(model: nn.Module) -> int:
    return _count(model)
