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


def build(name: str, preset: str = "cpu", **overrides) -> nn.Module:
    """Build a text model by registry name and preset, e.g. ``build("ebt", preset="tiny", vocab_size=256)``.

    ``overrides`` are ``ModelConfig`` fields (``vocab_size``, ``d_model``, ``alpha``, ``step_cond``, ...).
    The resolved ``RunConfig`` is attached as ``model.run_config`` so ``save_pretrained`` can rebuild it.
    """
    from ..config import preset as make_preset
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    cfg = make_preset(preset, **{"model.model": name, **{f"model.{k}": v for k, v in overrides.items()}})
    model = build_model(cfg.model)
    model.run_config = cfg
    model.eval_steps = cfg.thinking.default_eval_steps
    return model


__all__ = ["MODELS", "build", "build_model", "TextEBT", "TransformerPP", "ContextCache"]
