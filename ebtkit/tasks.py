"""Registers how each task's checkpoint rebuilds its model (see :mod:`ebtkit.checkpoint`)."""
from __future__ import annotations

from pathlib import Path

from .checkpoint import register_task
from .config import RunConfig
from .data.tokenizers import tokenizer_from_dir
from .models import build_model


def build_text(config: dict, ckpt_dir: Path):
    cfg = RunConfig.from_dict(config)
    model = build_model(cfg.model)
    model.tokenizer = tokenizer_from_dir(cfg.data.tokenizer, ckpt_dir)
    model.run_config = cfg
    model.eval_steps = cfg.thinking.default_eval_steps
    return model


register_task("text", build_text)
from . import denoise as _denoise  # noqa: E402,F401  (registers the "denoise" task)
