"""The task interface: what a training run needs from a modality, and what ``load()`` returns.

A :class:`Task` adapts one kind of data and model family (text, image denoising, ...) to the single training
loop :func:`ebtkit.training.fit`. It knows its config class and presets, builds its models, loads its data,
draws a batch and computes a loss through thinking, evaluates, and names the files a checkpoint needs beyond
the weights (a tokenizer, a replay buffer). It does not know about optimizers, schedules, ranks, run
directories, checkpoints or logging: the loop owns those.

Adding a task = one module with a ``Task`` subclass + one entry in :data:`ebtkit.tasks.TASKS`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..core.config import Config, resolve_preset
from ..core.replay import REPLAY_FILE, ReplayBuffer
from ..data.fingerprint import absolute_path, record


@dataclass
class Bundle:
    """What :func:`ebtkit.load` returns: the model (eval mode), its resolved config and task, and the
    task's extras (``tokenizer`` for text runs; ``None`` otherwise)."""

    model: nn.Module
    config: Any
    task: str
    path: Path | None = None
    tokenizer: Any = None
    extras: dict = field(default_factory=dict)

    @property
    def eval_steps(self) -> int | None:
        """Thinking steps the run evaluates with (None for baselines without thinking)."""
        thinking = getattr(self.config, "thinking", None)
        return thinking.default_eval_steps if thinking is not None else None


class Task(ABC):
    """One modality's adapter to the training loop. An instance holds one run's data (after :meth:`setup`)."""

    name: ClassVar[str]
    config_class: ClassVar[type[Config]]
    presets: ClassVar[dict[str, dict[str, Any]]]
    recipes: ClassVar[dict[str, dict[str, Any]]]
    models: ClassVar[tuple[str, ...]]
    flags: ClassVar[dict[str, str]] = {}          # CLI flag (argparse dest) → config key, for this task
    headline: ClassVar[str] = "loss"              # the validation metric printed and kept in state.json
    headline_mode: ClassVar[str] = "min"          # "min": lower is better (--keep-best); "max": higher is better
    ebt_only: ClassVar[tuple[str, ...]] = ("system", "alpha", "think_steps", "loss")   # flags only an EBT takes

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.replay: ReplayBuffer | None = None     # System 2 replay buffer (tasks that call setup_replay)

    # ------------------------------------------------------------------ configs
    @classmethod
    def preset(cls, name: str, system: str | None = None, **overrides: Any) -> Config:
        return resolve_preset(cls.config_class, cls.presets, cls.recipes, name, system, overrides,
                              cls.default_system(name))

    @classmethod
    def default_system(cls, preset: str) -> str:
        return "s1"

    @classmethod
    def preset_variants(cls) -> list[str]:
        """Lines for ``ebt presets``: what a task's own option (e.g. the reasoning problem) sets on top of a
        preset and recipe. Most tasks have none."""
        return []

    @classmethod
    def config_from_dict(cls, d: dict) -> Config:
        return cls.config_class.from_dict(d)

    # ------------------------------------------------------------------ models and checkpoints
    @classmethod
    @abstractmethod
    def build_model(cls, cfg: Config) -> nn.Module:
        """A fresh model for ``cfg`` (weights from the global torch seed)."""

    @classmethod
    def bundle(cls, model: nn.Module, cfg: Config, ckpt_dir: Path | None) -> Bundle:
        """The :class:`Bundle` of a loaded checkpoint (tasks add their extras, e.g. a tokenizer)."""
        return Bundle(model=model, config=cfg, task=cls.name, path=ckpt_dir)

    def setup_replay(self) -> None:
        """Create the System 2 replay buffer when the run is an EBT with ``thinking.replay_fraction > 0``; it is
        saved with every checkpoint and restored on resume (rank 0; other ranks restart empty)."""
        t = self.cfg.thinking
        if self.cfg.model.model == "ebt" and t.replay_fraction > 0:
            self.replay = ReplayBuffer(t.replay_size)

    def checkpoint_files(self) -> dict[str, bytes]:
        """Files saved with every checkpoint beyond weights, optimizer and state (default: the replay buffer)."""
        return {REPLAY_FILE: self.replay.to_bytes()} if self.replay is not None else {}

    def restore(self, ckpt_dir: Path, main: bool) -> None:
        """Restore training state beyond weights and optimizer from a checkpoint (default: the replay buffer)."""
        saved = ckpt_dir / REPLAY_FILE
        if self.replay is not None and saved.exists() and main:
            self.replay = ReplayBuffer.from_bytes(saved.read_bytes())

    # ------------------------------------------------------------------ a user's data path
    def locate_data(self, fresh: bool) -> None:
        """Before the data loads: a user's ``data.path`` is made absolute (against the current directory). A fresh
        run drops any fingerprint copied with its config (it records its own once the data has loaded); a resumed
        run keeps its own, which the loader checks (moved or changed data is refused). A resumed run saved before
        fingerprints existed (a path as typed, no ``data.path_sha256``) gets its path made absolute here and its
        fingerprint recorded by :meth:`record_data`, from its next checkpoint on."""
        data = getattr(self.cfg, "data", None)
        if getattr(data, "path", None) is None or (not fresh and data.path_sha256 is not None):
            return
        self.cfg = self.cfg.replace(**{"data.path": absolute_path(data.path), "data.path_size": None,
                                       "data.path_sha256": None})

    def record_data(self, files=None) -> None:
        """After the data loaded: record ``data.path_size`` / ``data.path_sha256`` (:mod:`ebtkit.data.fingerprint`)
        where the run has none yet. ``files``: for a folder, the files its loader reads (folders without are not
        fingerprinted)."""
        data = getattr(self.cfg, "data", None)
        if getattr(data, "path", None) is None or data.path_sha256 is not None:
            return
        keys = record(data, files)
        if keys:
            self.cfg = self.cfg.replace(**{f"data.{k}": v for k, v in keys.items()})

    # ------------------------------------------------------------------ training
    @abstractmethod
    def setup(self, ckpt_dir: Path | None) -> Config:
        """Load the data (with a resumed run's saved files from ``ckpt_dir``); returns the config with the
        keys the data decides filled in. Raises on bad input before anything is written."""

    @abstractmethod
    def loss(self, model: nn.Module, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Draw a training batch with ``generator`` and return ``(loss, metrics)``; metrics are 0-d tensors
        (no host sync), ``metrics["loss"]`` included."""

    @abstractmethod
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics (the :attr:`headline` one included), in eval mode; must not change RNG state
        that training uses."""

    def eval_line(self, res: dict) -> str:
        """The progress line of an evaluation result."""
        return f"{self.headline} {res[self.headline]:.4g}"

    def describe(self, model: nn.Module) -> str:
        return f"model {getattr(self.cfg.model, 'model', '?')}: {sum(p.numel() for p in model.parameters()):,} parameters"
