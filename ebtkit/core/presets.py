"""The text task's named presets: size tables (the paper's Table D.1 plus CPU sizes) and thinking recipes.

Plain data, dotted keys → values: :func:`ebtkit.core.config.resolve_preset` applies a size preset, then a
recipe, then the user's overrides (checked there against the config's fields). Kept apart from
:mod:`ebtkit.core.config` (the config machinery) because these are the recorded hyperparameters: they change with
experiments (LOG.md), the machinery does not. This module imports nothing from ebtkit, so the config module can
re-export its tables.
"""
from __future__ import annotations

from typing import Any

# Paper sizes (Table D.1; 4xs/3xs from the official code). LRs from the paper; batch sizes are CPU-scale.
_PAPER_SIZES = {
    "4xs": dict(n_layers=2, d_model=128, n_heads=2, lr=0.0024),
    "3xs": dict(n_layers=4, d_model=256, n_heads=4, lr=0.0018),
    "xxs": dict(n_layers=6, d_model=384, n_heads=6, lr=0.0012),
    "xs": dict(n_layers=12, d_model=384, n_heads=6, lr=0.0009),
    "small": dict(n_layers=12, d_model=768, n_heads=12, lr=0.0006),
    "medium": dict(n_layers=24, d_model=1024, n_heads=16, lr=0.0003),
    "large": dict(n_layers=24, d_model=1536, n_heads=16, lr=0.00025),
    "xl": dict(n_layers=24, d_model=2048, n_heads=32, lr=0.0002),
}

PRESETS: dict[str, dict[str, Any]] = {
    # tests and smoke runs: seconds
    "tiny": {"model.d_model": 32, "model.n_layers": 2, "model.n_heads": 2, "model.context": 32,
             "train.steps": 30, "train.batch_size": 8, "train.warmup": 5, "train.eval_every": 15,
             "train.eval_batches": 2, "train.save_every": 15, "train.log_every": 5, "train.lr": 3e-3},
    # the main job: trains on the built-in corpus on 2 CPU cores in a few minutes
    "cpu": {"model.d_model": 64, "model.n_layers": 4, "model.n_heads": 2, "model.context": 64,
            "train.steps": 800, "train.batch_size": 16, "train.warmup": 80, "train.lr": 5e-3,
            "train.eval_every": 200, "train.eval_batches": 8, "train.save_every": 200, "train.log_every": 20},
}
for _name, _s in _PAPER_SIZES.items():
    PRESETS[_name] = {"model.d_model": _s["d_model"], "model.n_layers": _s["n_layers"], "model.n_heads": _s["n_heads"],
                      "model.context": 256, "train.lr": _s["lr"], "train.batch_size": 32, "train.warmup": 1000,
                      "train.steps": 100_000, "train.eval_every": 2000, "train.save_every": 2000}


# Thinking recipes: the paper's System 1 / System 2 (PAPER_NOTES §3.1), re-tuned for our byte vocabulary
# (V = 256; see docs/log/system2.md). Each recipe sets the whole thinking section plus the step-size policy,
# so a recipe applied on top of any size preset means exactly one thing.
_THINKING_OFF = {"thinking.max_steps": None, "thinking.eval_steps": None, "thinking.langevin_sigma": 0.0,
                 "thinking.alpha_jitter": 1.0, "thinking.replay_fraction": 0.0, "thinking.replay_size": 0,
                 "thinking.contrastive_coeff": 0.0}
RECIPES: dict[str, dict[str, Any]] = {
    # System 1: 2 steps on 2 landscapes, detached, loss on every step, learnable α (ModelConfig.alpha), the
    # official update (p − α∇_pE) from a zero (uniform) start: on 3 seeds the zero start ties N(0, 1) in
    # distribution (val ppl 5.68 ± 0.18 vs 5.65 ± 0.05) and is better and steadier out of it (OOD 46.6 ± 4.7 vs
    # 52.2 ± 12.1), and its predictions need no random numbers (LOG.md, 2026-12-02)
    "s1": {**_THINKING_OFF, "thinking.system": "s1", "thinking.steps": 2,
           "model.n_landscapes": 2, "model.alpha_learnable": True, "model.update": "code", "model.init": "zeros"},
    # System 2: one landscape, 2–3 steps per batch (3 at evaluation), no detach + truncation (loss on the last
    # step), α fixed at the default 20 (3 seeds: val ppl 5.50 ± 0.16 vs 5.75 ± 0.31 at 76.8, LOG.md) and randomised U[α/2, 2α] per (batch,
    # position), Langevin σ = 0.5 on the logits (the paper's σ = 3 does not train at V = 256; 1.5 trains 2.5×
    # worse), replay buffer (half a batch appended per step, 6 batches deep). Sweeps: docs/log/system2.md.
    "s2": {**_THINKING_OFF, "thinking.system": "s2", "thinking.steps": 2, "thinking.max_steps": 3,
           "thinking.alpha_jitter": 2.0, "thinking.langevin_sigma": 0.5, "thinking.replay_fraction": 0.5,
           "thinking.replay_size": 96, "model.n_landscapes": 1, "model.alpha_learnable": False,
           "model.update": "code", "model.init": "normal"},
}

# Presets that bundle a size with a thinking recipe: ``ebt train --preset ebt-s2`` = the 'cpu' size with the
# System 2 recipe (an explicit ``--system`` still wins, since recipes are complete).
PRESET_SYSTEMS: dict[str, str] = {"ebt-s1": "s1", "ebt-s2": "s2"}
PRESETS["ebt-s1"] = dict(PRESETS["cpu"])
PRESETS["ebt-s2"] = dict(PRESETS["cpu"])
