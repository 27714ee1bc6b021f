"""Exact metrics for text models.

Perplexity is ``exp(Σ NLL / Σ tokens)`` over a fixed set of validation windows — summed, never an average of
per-batch perplexities — at the EBT's final thinking step.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core.thinking import is_energy_model
from ..data.text import eval_windows
from .inference import think_text


def safe_exp(x: float) -> float:
    """``exp(x)``, or ``inf`` where it overflows (a diverged model's perplexity)."""
    return math.exp(x) if x < 709.0 else math.inf


def token_nll(model, tokens: torch.Tensor, *, steps: int | None = None, generator: torch.Generator | None = None,
              **policy) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token NLL (B×S) of ``tokens`` (B×(S+1)) and NFEs per token (B×S; zeros for Transformer++)."""
    x, y = tokens[:, :-1], tokens[:, 1:]
    if is_energy_model(model):
        out = think_text(model, x, steps=steps, generator=generator, **policy)
        logits, nfe = out.candidates, out.nfe
    else:
        with torch.no_grad():
            logits = model(x)
        nfe = torch.zeros_like(y)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="none")
    return nll.view_as(y).detach(), nfe


def perplexity(model, data: torch.Tensor, context: int, *, steps: int | None = None, batch_size: int = 16,
               max_windows: int | None = None, seed: int = 0, **policy) -> dict:
    """Exact perplexity over deterministic non-overlapping windows of ``context + 1`` tokens.

    Returns ``{"ppl", "nll_sum", "tokens", "nfe_per_token"}``. ``policy`` goes to
    :func:`ebtkit.eval.inference.think_text` (``samples``, ``accept_lower``, ``tol``, ``alpha``, ...).
    """
    windows = eval_windows(data, context + 1, max_windows)
    dev = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    nll_sum, n_tok, nfe_sum = 0.0, 0, 0.0
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(windows), batch_size):
            batch = windows[i:i + batch_size].to(dev)
            nll, nfe = token_nll(model, batch, steps=steps, generator=gen, **policy)
            nll_sum += float(nll.double().sum())
            n_tok += nll.numel()
            nfe_sum += float(nfe.double().sum())
    finally:
        model.train(was_training)
    return {"ppl": safe_exp(nll_sum / n_tok), "nll_sum": nll_sum, "tokens": n_tok, "nfe_per_token": nfe_sum / n_tok}
