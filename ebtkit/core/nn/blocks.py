"""Llama-style pre-norm transformer blocks (Touvron et al., 2023; "Transformer++").

One block stack serves the Transformer++ baseline and the autoregressive EBTs, so
comparisons are fair and fixes land everywhere. Blocks take an ``attend`` callable
``(q, k, v) -> out`` so each model decides *who attends to whom* (causal, the EBT's
leak-free layout, or cached keys/values) without duplicating the block.

Notation: B batch, T tokens, D model width, H heads, hd = D / H.
"""
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .norm import RMSNorm
from .rope import apply_rope

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class SwiGLU(nn.Module):
    """``w2(silu(w1 x) * w3 x)`` (Shazeer, 2020); no biases."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Attention(nn.Module):
    """Multi-head attention projections; the score pattern is supplied by ``attend``."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"d_model={dim} is not divisible by n_heads={n_heads}")
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x: (B,T,D) → q, k, v each (B,H,T,hd), RoPE applied to q and k."""
        B, T, _ = x.shape
        split = lambda t: t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.wq(x)), split(self.wk(x)), split(self.wv(x))
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def out(self, o: torch.Tensor) -> torch.Tensor:
        """o: (B,H,T,hd) → (B,T,D)."""
        B, H, T, hd = o.shape
        return self.wo(o.transpose(1, 2).reshape(B, T, H * hd))


class Block(nn.Module):
    """Pre-RMSNorm residual block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, n_heads: int, ffn_hidden: int, eps: float = 1e-5):
        super().__init__()
        self.attn_norm = RMSNorm(dim, eps)
        self.attn = Attention(dim, n_heads)
        self.mlp_norm = RMSNorm(dim, eps)
        self.mlp = SwiGLU(dim, ffn_hidden)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attend: Attend) -> torch.Tensor:
        q, k, v = self.attn.qkv(self.attn_norm(x), cos, sin)
        x = x + self.attn.out(attend(q, k, v))
        return x + self.mlp(self.mlp_norm(x))


class Backbone(nn.Module):
    """The shared, non-embedding part of every autoregressive model: L blocks and a final RMSNorm."""

    def __init__(self, dim: int, n_layers: int, n_heads: int, ffn_hidden: int, eps: float = 1e-5):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, n_heads, ffn_hidden, eps) for _ in range(n_layers)])
        self.norm = RMSNorm(dim, eps)


def init_linear_xavier(module: nn.Module) -> None:
    """Xavier-normal init for every Linear (the paper's ``weight_initialization_method=xavier``)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
