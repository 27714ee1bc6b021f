"""Continuous sequences (time series, trajectories, video frames as vectors): the sequence EBT and its
Transformer++ regressor, from the same block stack as the text models.

Sequence EBT (the paper's autoregressive video EBT, §4.6 and ``model/vid/ebt.py`` of the official code, with our
vectors in place of its frozen SD-VAE latents). Notation: B batch, S observed positions, F features, D width.

* Observed stream: vectors ``x_t ∈ R^F`` → ``Linear(F, D)``.
* Candidate ``ŷ[r] ∈ R^F`` is the guess for ``x[r+1]``; each thinking step embeds it with ``Linear(F, D)`` — the
  observed stream's projection (``candidate_proj = "shared"``, as the official code) or its own
  (``"separate"``) — plus the step embedding.
* Initial candidate (``init``): ``"last"`` = the last observed vector ``x[r]`` (the official
  ``most_recent_embedding``), ``"normal"`` = ``N(0, init_scale² I)`` (the official default), or ``"zeros"``.
* The leak-free ``[observed ; predictions]`` attention, RoPE placement, reference and cached energies, and
  ``think`` are the shared :class:`~ebtkit.core.models.autoregressive.AutoregressiveEBT`; the update is the plain
  gradient step ``ŷ ← ŷ − α ∇_ŷ E`` (:data:`~ebtkit.core.thinking.GRADIENT`).

Transformer++ regressor: ``Linear(F, D)`` → the same causal block stack → ``Linear(D, F)``, trained to regress
the next vector with the same loss. Both models share the block stack's size exactly, so their non-embedding
parameter counts are equal (the paper's comparison); the EBT adds a ``Linear(D, 1)`` energy head and step
embeddings, the regressor a ``Linear(D, F)`` head.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config, _choice, _positive
from ..hub import HubMixin
from ..nn import Backbone, Rope
from ..nn.blocks import init_linear_xavier
from ..thinking import GRADIENT, StepSize
from .autoregressive import AutoregressiveEBT, CausalTransformer, count_params

SEQUENCE_MODELS = ("ebt", "transformer++")
SEQUENCE_INITS = ("last", "normal", "zeros")
SEQUENCE_LOSSES = ("smooth_l1", "mse")


@dataclass
class SequenceModelConfig(Config):
    """Architecture of the sequence EBT / Transformer++ regressor (shared fields) and the EBT's step size."""

    model: str = "ebt"                 # "ebt" | "transformer++"
    features: int = 1                  # F (set from the data)
    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 2
    ffn_mult: float = 1.0              # SwiGLU hidden = d_model × ffn_mult
    context: int = 19                  # training context S (windows of S + 1 vectors)
    norm_eps: float = 1e-5
    step_cond: str = "stream"          # "stream": step embedding on the prediction stream | "none"
    n_landscapes: int = 1
    candidate_proj: str = "shared"     # candidate embedding: the observed stream's Linear(F, D) | "separate"
    alpha: float = 1.0                 # thinking step size α
    alpha_learnable: bool = True
    init: str = "last"                 # initial candidate: "last" observed vector | "normal" N(0, s²I) | "zeros"
    init_scale: float = 1.0

    def __post_init__(self):
        _choice("model", self.model, SEQUENCE_MODELS)
        _choice("step_cond", self.step_cond, ("stream", "none"))
        _choice("candidate_proj", self.candidate_proj, ("shared", "separate"))
        _choice("init", self.init, SEQUENCE_INITS)
        for n in ("features", "d_model", "n_layers", "n_heads", "ffn_mult", "context", "n_landscapes", "alpha",
                  "norm_eps", "init_scale"):
            _positive(n, getattr(self, n))
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model={self.d_model} must split into n_heads={self.n_heads} heads of even size")

    @property
    def resolved_alpha(self) -> float:
        return self.alpha

    @property
    def ffn_hidden(self) -> int:
        return max(1, int(round(self.d_model * self.ffn_mult)))


def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean per-element SmoothL1 (β = 1, the official video loss) or MSE."""
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, beta=1.0)
    if kind == "mse":
        return F.mse_loss(pred, target)
    raise ValueError(f"unknown loss {kind!r}; choose from {', '.join(SEQUENCE_LOSSES)}")


def _check_vectors(x: torch.Tensor, features: int, what: str) -> None:
    if x.dim() != 3 or x.shape[2] != features:
        raise ValueError(f"{what} must be (B, T, F={features}), got {tuple(x.shape)}")


class SequenceEBT(AutoregressiveEBT, HubMixin, task="sequence", name="ebt", config=SequenceModelConfig,
                  pipeline_tag="time-series-forecasting", energy_based=True):
    """Energy-Based Transformer over vector sequences. ``forward`` = ``energy``."""

    def __init__(self, cfg: SequenceModelConfig):
        super().__init__()
        self.cfg = cfg
        Fd, D = cfg.features, cfg.d_model
        self.in_proj = nn.Linear(Fd, D)
        self.cand_proj = nn.Linear(Fd, D) if cfg.candidate_proj == "separate" else None
        self.step_emb = nn.Embedding(cfg.n_landscapes, D) if cfg.step_cond != "none" else None
        self.backbone = Backbone(D, cfg.n_layers, cfg.n_heads, cfg.ffn_hidden, cfg.norm_eps)
        self.head = nn.Linear(D, 1, bias=False)
        self.step_size = StepSize(cfg.resolved_alpha, learnable=cfg.alpha_learnable)
        self.update = GRADIENT
        self.rope = Rope(D // cfg.n_heads, max_pos=2 * cfg.context + 2)
        init_linear_xavier(self)
        nn.init.zeros_(self.head.weight)      # E ≡ 0 at init: the first thinking steps are the identity
        if self.step_emb is not None:
            nn.init.normal_(self.step_emb.weight, std=0.02)

    def embedding_params(self) -> int:
        return count_params(self) - self.non_embedding_params()

    def embed_observed(self, x: torch.Tensor) -> torch.Tensor:
        return self.in_proj(x)

    def embed_candidates(self, candidates: torch.Tensor, landscape: int, probs: bool = False) -> torch.Tensor:
        proj = self.cand_proj if self.cand_proj is not None else self.in_proj
        return self.step_embedding(proj(candidates), landscape)

    def check_observed(self, x: torch.Tensor) -> None:
        _check_vectors(x, self.cfg.features, "observations")

    def check_candidates(self, candidates: torch.Tensor, x: torch.Tensor | None = None) -> None:
        _check_vectors(candidates, self.cfg.features, "candidates")
        if x is not None and candidates.shape != x.shape:
            raise ValueError(f"candidates {tuple(candidates.shape)} must match observations {tuple(x.shape)}")

    def initial_candidates(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Starting candidate for every position of ``x`` (B×S×F): the position's own observation (``"last"``:
        the candidate for ``x[r+1]`` starts at ``x[r]``), ``N(0, init_scale²)`` noise, or zeros."""
        if self.cfg.init == "last":
            return x.detach().clone()
        if self.cfg.init == "zeros":
            return torch.zeros_like(x)
        y = torch.randn(x.shape, generator=generator, dtype=x.dtype,
                        device=x.device if generator is None else generator.device)
        return y.to(x.device) * self.cfg.init_scale


class SequenceTransformer(CausalTransformer, HubMixin, task="sequence", name="transformer++",
                          config=SequenceModelConfig, pipeline_tag="time-series-forecasting"):
    """Transformer++ regressor: ``Linear(F, D)`` → causal blocks → ``Linear(D, F)`` (the next vector)."""

    def __init__(self, cfg: SequenceModelConfig):
        super().__init__()
        self.cfg = cfg
        self.in_proj = nn.Linear(cfg.features, cfg.d_model)
        self.backbone = Backbone(cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.ffn_hidden, cfg.norm_eps)
        self.out_proj = nn.Linear(cfg.d_model, cfg.features)
        self.rope = Rope(cfg.d_model // cfg.n_heads, max_pos=cfg.context + 1)
        init_linear_xavier(self)

    def embedding_params(self) -> int:
        return count_params(self) - self.non_embedding_params()

    def forward(self, x: torch.Tensor, cache: list | None = None, start: int | torch.Tensor = 0) -> torch.Tensor:
        """x (B×T×F) → predicted next vectors (B×T×F); ``cache`` and ``start`` as :meth:`CausalTransformer.trunk`."""
        _check_vectors(x, self.cfg.features, "observations")
        return self.out_proj(self.trunk(self.in_proj(x), cache, start))


SEQUENCE_BUILDERS = {"ebt": SequenceEBT, "transformer++": SequenceTransformer}


def build_sequence_model(cfg: SequenceModelConfig) -> nn.Module:
    if cfg.model not in SEQUENCE_BUILDERS:
        raise ValueError(f"unknown model {cfg.model!r}; choose from {', '.join(SEQUENCE_BUILDERS)}")
    return SEQUENCE_BUILDERS[cfg.model](cfg)


__all__ = ["SequenceModelConfig", "SequenceEBT", "SequenceTransformer", "build_sequence_model", "regression_loss",
           "SEQUENCE_LOSSES", "SEQUENCE_INITS"]
