"""adaLN-Zero transformer blocks over image patches — ONE block stack for the image EBT and the DiT baseline.

Written from the papers, not from their code (the DiT reference code is CC BY-NC):

* Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT), ICCV 2023, §3.2: patchify with patch
  size p, fixed 2-D sine-cosine positions, and *adaLN-Zero* blocks — LayerNorm without learned affine whose
  shift/scale come from a condition vector ``c``, plus per-residual gates, all regressed by one linear layer
  that is initialised to zero so every block starts as the identity. The final layer is adaLN + a linear map,
  also zero-initialised.
* He et al., "Masked Autoencoders Are Scalable Vision Learners" (MAE), 2022: the 2-D sin-cos table (half the
  channels encode the row, half the column, each with Transformer-style frequencies).
* Ho et al., DDPM (2020) / Vaswani et al. (2017): the sinusoidal timestep features fed to an MLP.
* Gladstone et al., EBTs (2025) §"bidirectional EBT": the same blocks with a learned constant as ``c``.

Notation: B batch, C channels, H×W image, p patch size, T = (H/p)(W/p) patches, D width, P = p²C values per patch.
Attention is :func:`ebtkit.core.nn.attention.attention` so the EBT can use the "math" backend (double backward).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention


# ---------------------------------------------------------------------------------------- patches
def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) → (B, T, p·p·C), patches in row-major order, values ordered (py, px, c)."""
    B, C, H, W = x.shape
    if H % p or W % p:
        raise ValueError(f"image {H}×{W} is not divisible by patch size {p}")
    x = x.reshape(B, C, H // p, p, W // p, p)                       # B,C,h,p,w,p
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p), p * p * C)


def unpatchify(x: torch.Tensor, p: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, T, p·p·C) → (B, C, H, W)."""
    B = x.shape[0]
    h, w = height // p, width // p
    x = x.reshape(B, h, w, p, p, channels)                          # B,h,w,py,px,C
    return x.permute(0, 5, 1, 3, 2, 4).reshape(B, channels, height, width)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine positions (MAE/DiT): (grid_h·grid_w, dim), row-major like :func:`patchify`.

    The first ``dim/2`` channels encode the column (x) and the last ``dim/2`` the row (y); each half is
    ``[sin(pos·ω_i), cos(pos·ω_i)]`` with ``ω_i = 10000^(−i/(dim/4))``, i < dim/4.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos positions need a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))   # dim/4
    ys, xs = torch.meshgrid(torch.arange(grid_h, dtype=torch.float64), torch.arange(grid_w, dtype=torch.float64),
                            indexing="ij")

    def one_axis(pos: torch.Tensor) -> torch.Tensor:
        ang = pos.reshape(-1, 1) * omega[None]                                          # T, dim/4
        return torch.cat([ang.sin(), ang.cos()], dim=1)                                 # T, dim/2

    return torch.cat([one_axis(xs), one_axis(ys)], dim=1).float()                      # T, dim


class PatchEmbed(nn.Module):
    """Patchify → ``Linear(P, D)`` → + fixed 2-D sin-cos positions (a non-learned buffer)."""

    def __init__(self, image_size: int, patch_size: int, channels: int, dim: int):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by patch_size {patch_size}")
        self.patch_size, self.channels, self.image_size = patch_size, channels, image_size
        self.grid = image_size // patch_size
        self.proj = nn.Linear(patch_size * patch_size * channels, dim)
        self.register_buffer("pos", sincos_2d(dim, self.grid, self.grid), persistent=False)

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) → (B, T, D)."""
        return self.proj(patchify(x, self.patch_size)) + self.pos.to(x.dtype)


# ------------------------------------------------------------------------------------ conditioning
def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x·(1 + scale) + shift``; x (B, T, D), shift/scale (B, 1, D)."""
    return x * (1 + scale) + shift


def timestep_features(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) timesteps: (B,) → (B, dim) = [cos(t·ω), sin(t·ω)]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    ang = t.float()[:, None] * freqs[None]                                              # B, dim/2
    emb = torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimestepEmbedder(nn.Module):
    """DiT's timestep embedding: sinusoidal features → ``Linear → SiLU → Linear`` → (B, D)."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_features(t, self.freq_dim).to(self.mlp[0].weight.dtype))   # float64 models too


# ------------------------------------------------------------------------------------------ blocks
class AdaLNBlock(nn.Module):
    """One adaLN-Zero block (DiT §3.2)::

        shift₁, scale₁, gate₁, shift₂, scale₂, gate₂ = Linear(SiLU(c))      (zero-initialised)
        x ← x + gate₁ · Attn(modulate(LN(x), shift₁, scale₁))
        x ← x + gate₂ · MLP(modulate(LN(x), shift₂, scale₂))

    LN has no learned affine (eps 1e-6); attention has biased q/k/v projections; the MLP is
    ``Linear → GELU(tanh) → Linear`` with hidden width ``mlp_ratio · D``.
    """

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float = 4.0, backend: str = "math"):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"d_model={dim} is not divisible by n_heads={n_heads}")
        self.n_heads, self.backend = n_heads, backend
        hidden = max(1, int(round(dim * mlp_ratio)))
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def attn(self, x: torch.Tensor) -> torch.Tensor:
        """Bidirectional multi-head self-attention: (B, T, D) → (B, T, D)."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # 3×(B,H,T,hd)
        o = attention(q, k, v, None, backend=self.backend)                                            # B,H,T,hd
        return self.proj(o.transpose(1, 2).reshape(B, T, D))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D), c: (B, D) → (B, T, D)."""
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c).unsqueeze(1).chunk(6, dim=-1)   # each B,1,D
        x = x + g1 * self.attn(modulate(self.norm1(x), sh1, sc1))
        return x + g2 * self.mlp(modulate(self.norm2(x), sh2, sc2))


class FinalLayer(nn.Module):
    """adaLN output layer: ``Linear(modulate(LN(x), shift, scale))`` with zero-initialised modulation and
    output weights (DiT's "zero the final layer"): (B, T, D) → (B, T, out)."""

    def __init__(self, dim: int, out_dim: int, bias: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim, bias=bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).unsqueeze(1).chunk(2, dim=-1)                 # each B,1,D
        return self.linear(modulate(self.norm(x), shift, scale))


class AdaLNStack(nn.Module):
    """L adaLN-Zero blocks applied in sequence; the shared trunk of :class:`ImageEBT` and :class:`DiT`."""

    def __init__(self, dim: int, n_layers: int, n_heads: int, mlp_ratio: float = 4.0, backend: str = "math"):
        super().__init__()
        self.blocks = nn.ModuleList([AdaLNBlock(dim, n_heads, mlp_ratio, backend) for _ in range(n_layers)])

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, c)
        return x


def init_adaln_zero(model: nn.Module) -> None:
    """DiT's initialisation: Xavier-uniform Linear weights and zero biases everywhere, then zero every
    adaLN modulation layer (blocks start as the identity) and every :class:`FinalLayer` (its output starts
    at zero). The patch projection is Xavier-uniform on its flattened weight, as a convolution would be."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, TimestepEmbedder):
            for lin in (m.mlp[0], m.mlp[2]):
                nn.init.normal_(lin.weight, std=0.02)
        if isinstance(m, (AdaLNBlock, FinalLayer)):
            nn.init.zeros_(m.ada[-1].weight)
            nn.init.zeros_(m.ada[-1].bias)
        if isinstance(m, FinalLayer):
            nn.init.zeros_(m.linear.weight)
            if m.linear.bias is not None:
                nn.init.zeros_(m.linear.bias)
