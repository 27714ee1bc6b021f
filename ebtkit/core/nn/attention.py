"""Attention kernels.

``attention`` is explicit-matmul softmax attention: it supports double backward
(needed by every EBT, which differentiates through ∇_ŷE), unlike the fused CPU /
flash SDPA kernels. ``backend="sdpa"`` uses ``F.scaled_dot_product_attention`` and
is only for first-order models (Transformer++ training and generation).
"""
import math

import torch
import torch.nn.functional as F

BACKENDS = ("math", "sdpa")


def causal_mask(t: int, device=None) -> torch.Tensor:
    """(t, t) boolean mask, True = may attend (key index ≤ query index)."""
    return torch.ones(t, t, dtype=torch.bool, device=device).tril()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
              backend: str = "math", is_causal: bool = False) -> torch.Tensor:
    """q: (B,H,Tq,hd), k/v: (B,H,Tk,hd), mask: (Tq,Tk) bool (True = attend) or None → (B,H,Tq,hd)."""
    if backend == "sdpa":
        if is_causal and mask is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if backend != "math":
        raise ValueError(f"unknown attention backend {backend!r}; choose from {BACKENDS}")
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # B,H,Tq,Tk
    if is_causal and mask is None:
        mask = causal_mask(q.shape[-2], q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v
