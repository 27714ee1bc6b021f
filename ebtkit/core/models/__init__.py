"""Model registries: names → builders. Unknown names fail loudly and list the valid ones.

Models are plain ``nn.Module``s: they import configs, layers and the thinking loop, never checkpoint I/O,
tasks or inference policies. An EBT satisfies :class:`~ebtkit.core.thinking.EnergyModel`.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..config import ModelConfig
from ..config import preset as text_preset
from .image import IMAGE_MODELS, DiT, ImageEBT, ImageModelConfig, build_image_model
from .sequence import SequenceEBT, SequenceModelConfig, SequenceTransformer, build_sequence_model
from .text import ContextCache, TextEBT, TransformerPP

MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "ebt": TextEBT,
    "transformer++": TransformerPP,
}


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.model not in MODELS:
        raise ValueError(f"unknown model {cfg.model!r}; choose from {', '.join(MODELS)}")
    return MODELS[cfg.model](cfg)


def build(name: str, preset: str = "cpu", **overrides) -> nn.Module:
    """Build a text model by registry name and preset, e.g. ``build("ebt", preset="tiny", vocab_size=256)``.

    ``overrides`` are ``ModelConfig`` fields (``vocab_size``, ``d_model``, ``alpha``, ``step_cond``, ...)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    cfg = text_preset(preset, **{"model.model": name}).model
    return build_model(cfg.replace(**overrides) if overrides else cfg)


__all__ = ["MODELS", "IMAGE_MODELS", "build", "build_model", "build_image_model", "TextEBT", "TransformerPP",
           "ContextCache", "ImageEBT", "DiT", "ImageModelConfig", "SequenceEBT", "SequenceTransformer",
           "SequenceModelConfig", "build_sequence_model"]
