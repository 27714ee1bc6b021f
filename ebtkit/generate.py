"""Autoregressive generation for the text EBT and Transformer++.

Each new token is predicted by thinking (any :mod:`ebtkit.inference` policy) over one new prediction
position, then chosen from the final candidate logits: greedy (``temperature=0``), or temperature sampling
with nucleus (top-p) filtering, drawn with an explicit generator.
"""
from __future__ import annotations

import torch

from .inference import think_text


def sample_next(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """logits (B×V) → token ids (B,). Greedy at temperature 0; else nucleus sampling."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, -1)
    if top_p < 1:
        sp, si = probs.sort(-1, descending=True)
        keep = sp.cumsum(-1) - sp < top_p                       # always keeps the most likely token
        sp = sp * keep
        probs = torch.zeros_like(probs).scatter(-1, si, sp)
    return torch.multinomial(probs / probs.sum(-1, keepdim=True), 1, generator=generator).squeeze(-1)


def generate(model, prompt: torch.Tensor, max_new_tokens: int, *, temperature: float = 0.0, top_p: float = 1.0,
             generator: torch.Generator | None = None, **policy) -> torch.Tensor:
    """Generate ``max_new_tokens`` after ``prompt`` (B×n long). Returns B×(n+max_new_tokens).

    Reference implementation: recomputes the (last ``context``) tokens for every new token.
    ``policy`` goes to :func:`ebtkit.inference.think_text` (steps, samples, accept_lower, tol, alpha, ...).
    """
    if prompt.dim() != 2 or prompt.shape[1] < 1:
        raise ValueError("prompt must be a non-empty (B, n) tensor of token ids")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    ctx = model.cfg.context
    seq = prompt
    for _ in range(max_new_tokens):
        x = seq[:, -ctx:]
        if hasattr(model, "energy_fn"):
            logits = think_text(model, x, generator=generator, **policy).candidates[:, -1]
        else:
            with torch.no_grad():
                logits = model(x)[:, -1]
        nxt = sample_next(logits, temperature, top_p, generator)
        seq = torch.cat([seq, nxt[:, None]], 1)
    return seq
