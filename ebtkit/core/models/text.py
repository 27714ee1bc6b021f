"""Autoregressive text models: the text EBT and the Transformer++ baseline, from one block stack.

Text EBT (Gladstone et al., 2025, §3 and App. C.3). Notation: B batch, S context length, V vocabulary, D width.

* Candidate ``ŷ[r]`` (B×S×V logits) is the guess for token ``x[r+1]``; each step embeds ``softmax(ŷ)``
  with ``Linear(V, D)`` (or ``p @ token_embedding.weight``).
* Everything else — the leak-free ``[observed ; predictions]`` attention, RoPE placement, step conditioning,
  the reference and the cached-context energies, ``energy_fn`` and ``think`` — is the shared autoregressive EBT
  (:mod:`ebtkit.core.models.autoregressive`), which the continuous sequence EBT uses too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, RunConfig
from ..hub import HubMixin
from ..nn import Backbone, Rope
from ..nn.blocks import init_linear_xavier
from ..thinking import StepSize, text_update
from .autoregressive import AutoregressiveEBT, CausalTransformer, ContextCache

class TextEBT(AutoregressiveEBT, HubMixin, task="text", name="ebt", config=ModelConfig, run_config=RunConfig,
              pipeline_tag="text-generation", energy_based=True):
    """Energy-Based Transformer over text. ``forward`` = ``energy``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        V, D = cfg.vocab_size, cfg.d_model
        self.tok_emb = nn.Embedding(V, D)
        self.cand_proj = nn.Linear(V, D, bias=False) if cfg.candidate_proj == "linear" else None
        self.step_emb = nn.Embedding(cfg.n_landscapes, D) if cfg.step_cond != "none" else None
        self.backbone = Backbone(D, cfg.n_layers, cfg.n_heads, cfg.ffn_hidden, cfg.norm_eps)
        self.head = nn.Linear(D, 1, bias=False)
        self.step_size = StepSize(cfg.resolved_alpha, learnable=cfg.alpha_learnable)
        self.update = text_update(cfg.update)   # the candidate update rule (ModelConfig.update)
        self.rope = Rope(D // cfg.n_heads, max_pos=2 * cfg.context + 2)
        init_linear_xavier(self)
        # zero-initialised energy head (as the paper's image EBT): E ≡ 0 and ∇E ≡ 0 at init, so the first
        # thinking steps are the identity and training starts at the CE of the initial logits for any α;
        # the head still receives gradient through the second-order term (LOG.md, 2026-11-22)
        nn.init.zeros_(self.head.weight)
        if self.step_emb is not None:
            nn.init.normal_(self.step_emb.weight, std=0.02)

    # ------------------------------------------------------------------ the text modality
    def embed_observed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tok_emb(tokens)

    def embed_candidates(self, candidates: torch.Tensor, landscape: int, probs: bool = False) -> torch.Tensor:
        """softmax(ŷ) → D (B×R×V → B×R×D), plus the step embedding in ``"stream"`` mode.

        ``probs=True``: ``candidates`` already are the distributions ``p`` (what :func:`ebtkit.think` passes
        with a simplex update rule), so no softmax is applied."""
        p = candidates if probs else torch.softmax(candidates, dim=-1)
        z = self.cand_proj(p) if self.cand_proj is not None else p @ self.tok_emb.weight
        return self.step_embedding(z, landscape)

    def check_observed(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (B, S), got {tuple(tokens.shape)}")

    def check_candidates(self, candidates: torch.Tensor, tokens: torch.Tensor | None = None) -> None:
        V = self.cfg.vocab_size
        if candidates.dim() != 3 or candidates.shape[2] != V:
            raise ValueError(f"candidates must be (B, S, V={V}) logits, got {tuple(candidates.shape)}")
        if tokens is not None and candidates.shape[:2] != tokens.shape:
            raise ValueError(f"candidates must be (B, S, V={V}) matching tokens {tuple(tokens.shape)}, "
                             f"got {tuple(candidates.shape)}")

    def initial_candidates(self, tokens: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.init_candidates(tuple(tokens.shape), generator)

    def init_candidates(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                        dtype: torch.dtype | None = None) -> torch.Tensor:
        """Initial candidate logits of ``shape + (V,)``: ``N(0, init_scale²)`` (``ModelConfig.init = "normal"``)
        or zeros (``"zeros"``: the uniform distribution; no random numbers are drawn)."""
        w = self.cand_proj.weight if self.cand_proj is not None else self.tok_emb.weight
        dev = w.device
        if self.cfg.init == "zeros":
            return torch.zeros(*shape, self.cfg.vocab_size, device=dev, dtype=dtype or w.dtype)
        y = torch.randn(*shape, self.cfg.vocab_size, generator=generator,
                        device=dev if generator is None else generator.device, dtype=dtype or w.dtype)
        return y.to(dev) * self.cfg.init_scale


class TransformerPP(CausalTransformer, HubMixin, task="text", name="transformer++", config=ModelConfig,
                    run_config=RunConfig, pipeline_tag="text-generation"):
    """Transformer++ baseline (Llama-style), the same block stack with an untied LM head."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.backbone = Backbone(cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.ffn_hidden, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.rope = Rope(cfg.d_model // cfg.n_heads, max_pos=cfg.context + 1)
        init_linear_xavier(self)

    def forward(self, tokens: torch.Tensor, cache: list | None = None, start: int | torch.Tensor = 0) -> torch.Tensor:
        """tokens (B×T) → logits (B×T×V); ``cache`` and ``start`` as :meth:`CausalTransformer.trunk`."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (B, T), got {tuple(tokens.shape)}")
        return self.lm_head(self.trunk(self.tok_emb(tokens), cache, start))

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy on tokens (B×(S+1))."""
        logits = self(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


__all__ = ["TextEBT", "TransformerPP", "ContextCache"]
