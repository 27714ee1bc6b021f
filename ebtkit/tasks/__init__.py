"""The task table, and loading/saving a model with everything that rebuilds it.

``TASKS`` is the explicit list of tasks (no registration on import): adding a modality means a new module with
a :class:`~ebtkit.tasks.base.Task` subclass and one entry here. :func:`load` reads a run or checkpoint
directory and returns a typed :class:`~ebtkit.tasks.base.Bundle` (model, config, tokenizer or other extras).
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core import checkpoint as ckpt
from ..core.config import Config, ConfigError, ModelConfig, RunConfig
from .base import Bundle, Task
from .denoise import DenoiseTask
from .reason import ReasonTask
from .sequence import SequenceTask
from .text import TextTask

TASKS: dict[str, type[Task]] = {
    "text": TextTask,
    "denoise": DenoiseTask,
    "sequence": SequenceTask,
    "reason": ReasonTask,
}


def get_task(name: str) -> type[Task]:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]


def preset(task: str, name: str, system: str | None = None, **overrides: Any) -> Config:
    """The resolved config of ``task`` at preset ``name``, thinking recipe ``system`` and dotted overrides."""
    return get_task(task).preset(name, system, **overrides)


def task_of(config: Config) -> type[Task]:
    for t in TASKS.values():
        if isinstance(config, t.config_class):
            return t
    raise ConfigError(f"no task uses config type {type(config).__name__}")


_DEVICE: contextvars.ContextVar = contextvars.ContextVar("ebtkit_load_device", default=None)


@contextlib.contextmanager
def using_device(device: str | torch.device):
    """Within this block :func:`load` puts models on ``device`` unless told otherwise (what the CLI's
    ``--device`` sets for ``eval``, ``generate``, ``think`` and ``bench``)."""
    token = _DEVICE.set(torch.device(device))
    try:
        yield
    finally:
        _DEVICE.reset(token)


def load(path: str | os.PathLike, map_location: str | torch.device | None = None) -> Bundle:
    """Rebuild a run's model from a run or checkpoint directory (config.json + model.safetensors).

    Returns a :class:`Bundle`: ``.model`` (eval mode), ``.config`` (the resolved run config), ``.task``,
    ``.tokenizer`` (text runs). Raises :class:`~ebtkit.core.checkpoint.CheckpointError` with one line naming
    the file on anything missing, corrupt, mismatched or non-finite.
    """
    meta = ckpt.read_config(path)
    c = ckpt.find_checkpoint(path)
    if meta["task"] not in TASKS:
        raise ckpt.CheckpointError(f"unknown task {meta['task']!r} in {c / 'config.json'}; known: {', '.join(TASKS)}")
    task = TASKS[meta["task"]]
    try:
        cfg = task.config_from_dict(meta["config"])
        model = task.build_model(cfg)
        bundle = task.bundle(model, cfg, c)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as e:
        raise ckpt.CheckpointError(f"{c / 'config.json'} does not build a model: {e}") from None
    ckpt.load_weights(model, c)
    if map_location is None:
        map_location = _DEVICE.get() or "cpu"
    bundle.model = model.to(map_location).eval()
    return bundle


def save(model: nn.Module, directory: str | os.PathLike, config: Config | None = None, tokenizer=None) -> Path:
    """Save a model so that :func:`load` rebuilds it: safetensors weights + the JSON config (+ tokenizer).

    ``config`` defaults to a text ``RunConfig`` around ``model.cfg`` (a model built with :func:`ebtkit.build`).
    """
    if config is None:
        if not isinstance(getattr(model, "cfg", None), ModelConfig):
            raise ValueError("pass config= for a model without a text ModelConfig")
        config = RunConfig(model=model.cfg)
    task = task_of(config)
    files = tokenizer.files() if tokenizer is not None else None
    return ckpt.save_checkpoint(directory, model, config.to_dict(), task=task.name, extra_files=files)


__all__ = ["TASKS", "Task", "Bundle", "TextTask", "DenoiseTask", "SequenceTask", "ReasonTask", "get_task", "preset", "load", "save", "task_of"]
