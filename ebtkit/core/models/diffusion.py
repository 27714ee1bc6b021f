"""Gaussian diffusion for the DiT baseline: forward noising, the ε-prediction loss, and a DDIM sampler.

Written from the papers:

* Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models" (DDPM), 2020: linear β schedule
  (β₁ = 1e-4 … β_T = 2e-2, T = 1000), ``ᾱ_t = Π_{s≤t}(1 − β_s)``,
  ``q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)`` and the "simple" loss ``‖ε − ε_θ(x_t, t)‖²``.
* Song, Meng & Ermon, "Denoising Diffusion Implicit Models" (DDIM), 2021, Eq. 12 with η = 0 (deterministic)::

      x̂_0       = (x_t − √(1 − ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t
      x_{t'}    = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'}) ε_θ(x_t, t)          (t' < t; ᾱ_{−1} := 1, i.e. x_{−1} = x̂_0)

  on any decreasing sub-sequence of timesteps, so sampling can start at any t and take any number of steps.

Timesteps are 0-based: t ∈ {0 … T−1}. The EBT paper's noise level "σ" is a fraction of the schedule
(Gladstone et al. 2025, §4.7): σ = 0.1 ↔ t = 99 (noise std ≈ 0.32 on [−1, 1] images), σ = 0.2 ↔ t = 199.

Deviation from DiT (recorded in docs/images.md): DiT learns the reverse-process variance with the hybrid
loss; a DDIM sampler with η = 0 never uses that variance, so the baseline here is trained with the simple
ε loss only.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class GaussianDiffusion:
    """Holds the schedule (float64) and takes the noise-prediction network as a callable ``ε_θ(x_t, t)``."""

    def __init__(self, steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2):
        if steps < 1:
            raise ValueError(f"diffusion steps must be >= 1, got {steps}")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        self.steps = steps
        self.betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)    # T
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)                    # T: ᾱ_t

    # ------------------------------------------------------------------ schedule helpers
    def t_for_sigma(self, sigma: float) -> int:
        """The timestep of the paper's noise level σ ∈ (0, 1]: ``round(σ·T) − 1`` (σ = 0.1, T = 1000 → 99)."""
        if not 0 < sigma <= 1:
            raise ValueError(f"noise level sigma must be in (0, 1] (a fraction of the schedule), got {sigma}")
        return max(0, int(round(sigma * self.steps)) - 1)

    def alpha_bar(self, t: torch.Tensor | int) -> torch.Tensor:
        """ᾱ_t (float64) for integer t; t = −1 means "clean" (ᾱ = 1)."""
        t = torch.as_tensor(t, dtype=torch.long)
        ab = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod]).to(t.device)   # on t's device
        return ab[t + 1]

    def noise_std(self, t: int) -> float:
        """Standard deviation of the noise in x_t relative to x_0's scale: ``√(1 − ᾱ_t)``."""
        return float((1 - self.alpha_bar(t)).sqrt())

    def _coef(self, t: torch.Tensor | int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(√ᾱ_t, √(1 − ᾱ_t)) shaped to broadcast over x (per-sample when t is (B,))."""
        ab = self.alpha_bar(t).to(device=x.device, dtype=x.dtype)
        ab = ab.reshape(ab.shape + (1,) * (x.dim() - ab.dim())) if ab.dim() else ab
        return ab.sqrt(), (1 - ab).sqrt()

    # ------------------------------------------------------------------ forward process + loss
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε; x0/noise (B, C, H, W), t an int or (B,) long."""
        a, s = self._coef(t, x0)
        return a * x0 + s * noise

    def training_loss(self, eps_fn: EpsFn, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """DDPM's simple loss: mean ``‖ε − ε_θ(x_t, t)‖²`` over all pixels; t (B,) long."""
        return F.mse_loss(eps_fn(self.q_sample(x0, t, noise), t), noise)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor) -> torch.Tensor:
        a, s = self._coef(t, x_t)
        return (x_t - s * eps) / a

    # ------------------------------------------------------------------ DDIM (η = 0)
    @staticmethod
    def ddim_timesteps(t_start: int, n: int) -> list[int]:
        """``n + 1`` decreasing timesteps from ``t_start`` to −1 (clean), evenly spaced: n network calls.

        ``ddim_timesteps(99, 100)`` is every timestep 99, 98, …, 0, −1 (the full chain); ``(99, 1)`` is
        ``[99, −1]``: one call that returns x̂_0 directly.
        """
        if t_start < 0:
            raise ValueError(f"t_start must be >= 0, got {t_start}")
        if not 1 <= n <= t_start + 1:
            raise ValueError(f"DDIM from t={t_start} can take 1..{t_start + 1} steps, got {n}")
        ts = torch.linspace(t_start, -1, n + 1, dtype=torch.float64).round().long().tolist()
        return ts

    @torch.no_grad()
    def ddim_sample(self, eps_fn: EpsFn, x_t: torch.Tensor, t_start: int, n: int, clip: bool = True) -> torch.Tensor:
        """Deterministic DDIM from ``x_t`` at timestep ``t_start`` to x_0 with ``n`` network evaluations.

        ``clip`` clamps x̂_0 to the data range [−1, 1] at every step (DiT's ``clip_denoised``).
        """
        ts = self.ddim_timesteps(t_start, n)
        x = x_t
        for t, t_next in zip(ts[:-1], ts[1:]):
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            eps = eps_fn(x, tt)                                                    # B,C,H,W
            x0 = self.predict_x0(x, t, eps)
            if clip:
                x0 = x0.clamp(-1, 1)
                eps = (x - self._coef(t, x)[0] * x0) / self._coef(t, x)[1]        # ε consistent with clipped x̂_0
            a_next, s_next = self._coef(t_next, x)
            x = a_next * x0 + s_next * eps
        return x
