"""Rotary position embeddings (Su et al., RoFormer, 2021), rotate-half convention.

Positions are passed explicitly so that a model can place two streams at chosen
positions (the text EBT puts prediction r at position r+1, the position of the
token it predicts).
"""
import torch
from torch import nn


class Rope(nn.Module):
    """Caches cos/sin tables for positions ``0..max_pos-1`` (grown on demand)."""

    def __init__(self, head_dim: int, max_pos: int = 2048, theta: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
        self.head_dim, self.theta = head_dim, theta
        self._build(max_pos)

    def _build(self, n: int, device=None) -> None:
        inv = 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float64, device=device) / self.head_dim))
        ang = torch.arange(n, dtype=torch.float64, device=device)[:, None] * inv[None]  # n × hd/2
        ang = torch.cat([ang, ang], -1)                                                 # n × hd
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``positions``: (T,) long, every value ``< end`` → (cos, sin), each (T, head_dim) in ``dtype``.

        ``end`` is a Python int the caller knows from shapes (e.g. the cache length + 1): the table grows from it,
        never from the positions' values, so no call reads a tensor back to the host (no device sync)."""
        if end > self.cos.shape[0]:
            self._build(max(end, 2 * self.cos.shape[0]), device=self.cos.device)
        return self.cos[positions].to(dtype), self.sin[positions].to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, hd); cos/sin: (T, hd)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], -1) * sin
