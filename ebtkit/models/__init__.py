"""Model registry: names → builders. Unknown names fail loudly and list the valid ones."""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..config import ModelConfig
from .text import ContextCache, TextEBT, TransformerPP

MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "ebt": TextEBT,
    "transformer++": TransformerPP,
}


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.model not in MODELS:
        raise ValueError(f"unknown model {cfg.model!r}; choose from {', '.join(MODELS)}")
    return MODELS[cfg.model](cfg)


__all__ = ["MODELS", "build_model", "TextEBT", "TransformerPP", "ContextCache"]
