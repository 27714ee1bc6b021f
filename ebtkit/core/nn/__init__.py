"""Shared building blocks used by every model (EBTs and baselines alike)."""
from .attention import attention, causal_mask
from .blocks import Attention, Block, Backbone, SwiGLU
from .norm import RMSNorm
from .rope import Rope, apply_rope

__all__ = ["attention", "causal_mask", "Attention", "Block", "Backbone", "SwiGLU", "RMSNorm", "Rope", "apply_rope"]
