"""Typed configs, one config system, and the text task's named presets.

:class:`Config` is the one base of every config dataclass (text and image runs alike): ``from_dict`` (unknown
keys are errors, every value is type-checked against its field), dotted ``replace``, ``to_dict``, and
:meth:`Config.override`, which parses command-line strings (``--set model.d_model=96``) against the field's
type and refuses keys a run derives itself (``model.vocab_size`` comes from the tokenizer). Errors are one
line naming the key.

The text run is ``RunConfig`` = ``ModelConfig`` + ``ThinkingConfig`` + ``TrainConfig`` + ``DataConfig``; each
validates itself in ``__post_init__``. The resolved config is saved as JSON next to the weights and fully
rebuilds the model and tokenizer. Presets are named override tables (sizes from the paper's Table D.1 plus CPU
sizes) and thinking recipes, kept in :mod:`ebtkit.core.presets` (re-exported here); :func:`resolve_preset` applies
them for every task. Recorded hyperparameters live in those tables, not in comments; see LOG.md for how they were
tuned.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from .presets import PRESET_SYSTEMS, PRESETS, RECIPES  # noqa: F401  (the tables; re-exported here)
from .thinking import TEXT_UPDATES

MODEL_NAMES = ("ebt", "transformer++")
STEP_CONDS = ("stream", "token", "none")
CANDIDATE_PROJS = ("linear", "tied")
UPDATES = tuple(TEXT_UPDATES)             # the rule names are defined once, beside think()
INITS = ("normal", "zeros")
SYSTEMS = ("s1", "s2")


def _positive(name: str, value, allow_zero: bool = False) -> None:
    if value is None:
        return
    if not (value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(map(str, choices))}")

class ConfigError(ValueError):
    """A config key or value is wrong (one line naming the key)."""


# the keys a run records about its user data file (``ebtkit.data.fingerprint``): set by the task, never by users
DATA_FINGERPRINT = {"data.path_size": "it is recorded from the data when the run starts (with data.path_sha256)",
                    "data.path_sha256": "it is recorded from the data when the run starts (with data.path_size)"}


# keys every run derives itself, whatever its task (refused by Config.override, i.e. --set, --config and flags)
TRAIN_DERIVED = {"train.schedule_steps": "it is recorded when --resume extends a run (the LR schedule already run); "
                                         "set train.steps"}


def check_fingerprint(size: int | None, sha256: str | None) -> None:
    """A recorded data fingerprint: both or neither of size (>= 0) and SHA-256 (64 lowercase hex digits)."""
    if (size is None) != (sha256 is None):
        raise ValueError("path_size and path_sha256 are recorded together (both or neither)")
    if sha256 is not None:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"path_sha256 must be 64 lowercase hex digits, got {sha256!r}")
        if size < 0:
            raise ValueError(f"path_size must be >= 0, got {size}")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _unwrap_optional(tp):
    """``X | None`` → ``(X, True)``; anything else → ``(tp, False)``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def check_value(key: str, value: Any, tp) -> Any:
    """``value`` converted to field type ``tp`` (int → float widening, list elements), or a ConfigError that
    names ``key``. Booleans are never numbers; floats must be finite."""
    base, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: expected {_type_name(base)}, got None")
    if dataclasses.is_dataclass(base):
        if isinstance(value, base):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a section (a mapping), got {value!r}")
        return base.from_dict(value, prefix=f"{key}.")
    bad = ConfigError(f"{key}: expected {_type_name(base)}{' or none' if optional else ''}, got {value!r}")
    if base is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        return float(value)
    if base is str:
        if not isinstance(value, str):
            raise bad
        return value
    if typing.get_origin(base) is list:
        (elem,) = typing.get_args(base) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise bad
        return [v if elem is Any else check_value(f"{key}[{i}]", v, elem) for i, v in enumerate(value)]
    return value


def parse_value(key: str, text: str, tp) -> Any:
    """A command-line string parsed as field type ``tp``: ``3`` for an int, ``1e-3`` for a float,
    ``true``/``false`` for a bool, ``none`` for an optional field, ``0.1,0.2`` (or JSON) for a list."""
    base, optional = _unwrap_optional(tp)
    t = text.strip()
    if optional and t.lower() in ("none", "null"):
        return None
    try:
        if base is bool:
            low = t.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if base is int:
            return int(t)
        if base is float:
            return float(t)
        if base is str:
            return text
        if typing.get_origin(base) is list:
            (elem,) = typing.get_args(base) or (str,)
            if t.startswith("["):
                return json.loads(t)
            return [parse_value(key, v, elem) for v in t.split(",") if v.strip()]
        return json.loads(t)
    except (ValueError, json.JSONDecodeError):
        pass
    raise ConfigError(f"{key}: expected {_type_name(base)}{' or none' if optional else ''}, got {text!r}")


class Config:
    """Base of every config dataclass: ``from_dict`` / ``to_dict`` / dotted ``replace`` / checked ``override``.

    Subclasses are dataclasses whose fields are plain values or nested ``Config`` sections. ``DERIVED`` maps
    dotted keys the run sets itself to the reason (such keys are refused as user overrides).
    ``__post_init__`` validates values; validation errors are wrapped to name the section.
    """

    DERIVED: ClassVar[dict[str, str]] = {}

    @classmethod
    def _hints(cls) -> dict[str, Any]:
        return typing.get_type_hints(cls)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        """Compatibility shim for configs saved by older versions (identity by default)."""
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], prefix: str = ""):
        """Rebuild from a JSON-like dict; unknown keys and values of the wrong type are errors."""
        if not isinstance(d, dict):
            raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {d!r}")
        d = cls.upgrade(dict(d))
        hints = cls._hints()
        names = [f.name for f in fields(cls) if f.init]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ConfigError(f"unknown config key {prefix + unknown[0]!r}" + (f" (and {len(unknown) - 1} more)"
                                                                              if len(unknown) > 1 else ""))
        kwargs = {n: check_value(prefix + n, d[n], hints[n]) for n in names if n in d}
        try:
            return cls(**kwargs)
        except ConfigError:
            raise
        except (ValueError, TypeError) as e:
            where = f"{prefix.rstrip('.')}: " if prefix else ""
            raise ConfigError(f"{where}{e}") from None

    @classmethod
    def field_type(cls, key: str):
        """The type of dotted ``key``; ConfigError if there is no such key."""
        klass, parts = cls, key.split(".")
        for i, part in enumerate(parts):
            hints = klass._hints() if isinstance(klass, type) and issubclass(klass, Config) else {}
            if part not in hints or part not in {f.name for f in fields(klass)}:
                raise ConfigError(f"unknown config key {key!r}")
            tp, _ = _unwrap_optional(hints[part])
            if i < len(parts) - 1:
                if not (isinstance(tp, type) and issubclass(tp, Config)):
                    raise ConfigError(f"unknown config key {key!r}")
                klass = tp
        return hints[part]

    def replace(self, **dotted: Any):
        """A copy with dotted overrides applied, e.g. ``replace(**{"train.steps": 10})``; re-validated."""
        d = self.to_dict()
        for key, value in dotted.items():
            type(self).field_type(key)
            *path, name = key.split(".")
            sub = d
            for p in path:
                sub = sub[p]
            sub[name] = value
        return type(self).from_dict(d)

    def override(self, overrides: dict[str, Any]):
        """User overrides (``--set``, ``--config``, flags): strings are parsed against the field's type; keys the
        run derives itself are refused. Raises ConfigError naming the key."""
        parsed = {}
        for key, value in overrides.items():
            tp = type(self).field_type(key)
            derived = {**TRAIN_DERIVED, **self.DERIVED}
            if key in derived:
                raise ConfigError(f"{key} cannot be set: {derived[key]}")
            parsed[key] = parse_value(key, value, tp) if isinstance(value, str) and tp is not str and \
                _unwrap_optional(tp)[0] is not str else value
        return self.replace(**parsed)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"steps": 3}}`` → ``{"train.steps": 3}``."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def default_alpha(update: str, vocab_size: int) -> float:
    """The default text step size for an update rule (LOG.md, 2026-12-02).

    ``"logits"``: the vocabulary rule ``alpha_for_vocab(V) = 0.3·V``. ``"code"``/``"mirror"`` step with
    ``∇_p E = Wᵀ ∂E/∂ẑ``, which has no ``p_v ≈ 1/V`` factor, so α does not scale with V: a constant.
    """
    if update == "logits":
        return alpha_for_vocab(vocab_size)
    return SIMPLEX_ALPHA


# System 1, `cpu` preset, 3 seeds, 256 windows (LOG.md, 2026-12-02): α = 20 gives val ppl 5.48 ± 0.07 and OOD
# 42.7 ± 0.9, against 5.68 ± 0.18 and 46.6 ± 4.7 at α = 76.8 (= 0.3·V, the value first carried over); α = 300 is
# worse still (5.88, one seed). Learnable, so training moves it from there.
SIMPLEX_ALPHA = 20.0


def alpha_for_vocab(vocab_size: int) -> float:
    """Default text step size: ``α = 0.3 · V`` (77 for bytes, 307 for a 1024-token BPE).

    The logit gradient through the softmax is ``p_v (g_v − Σ p g)`` with ``p_v ≈ 1/V`` at a random start, so the
    step that moves logits by O(1) scales like V: ``α/V`` is the quantity that transfers across vocabularies.
    The paper's α = 500 at V ≈ 50k is ``α/V ≈ 0.01``; with our zero-initialised energy head a 30× larger ratio is
    safe (step 0 is the identity) and learns faster (LOG.md: val ppl 136 → 112 → 109 for α/V = 0.01, 0.31, 1.25).
    """
    return round(0.3 * vocab_size, 4)


@dataclass
class ModelConfig(Config):
    """Architecture of the text EBT / Transformer++ (shared fields) and the EBT's step size."""

    model: str = "ebt"                 # registry name: "ebt" | "transformer++"
    vocab_size: int = 256
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    ffn_mult: float = 1.0              # SwiGLU hidden = d_model × ffn_mult (paper: 1)
    context: int = 128                 # training context length S (longer inputs are allowed at inference)
    norm_eps: float = 1e-5
    step_cond: str = "stream"          # "stream": step embedding on predictions only | "token": paper's step token | "none"
    n_landscapes: int = 1              # number of step embeddings (System 1 in the paper: 2)
    candidate_proj: str = "linear"     # softmax(ŷ) → Linear(V, D) | "tied": p @ token_embedding.weight
    alpha: float | None = None         # step size α; None = ``default_alpha(update, V)``
    alpha_learnable: bool = True
    update: str = "code"               # candidate update: "code" (official) | "logits" (paper's Eq. 1) | "mirror"
    init: str = "normal"               # initial candidate logits: "normal" N(0, init_scale²) | "zeros" (uniform)
    init_scale: float = 1.0            # std of the "normal" initial candidate

    def __post_init__(self):
        _choice("model", self.model, MODEL_NAMES)
        _choice("step_cond", self.step_cond, STEP_CONDS)
        _choice("candidate_proj", self.candidate_proj, CANDIDATE_PROJS)
        _choice("update", self.update, UPDATES)
        _choice("init", self.init, INITS)
        for n in ("vocab_size", "d_model", "n_layers", "n_heads", "ffn_mult", "context", "n_landscapes", "alpha",
                  "norm_eps", "init_scale"):
            _positive(n, getattr(self, n))
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {self.vocab_size}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model={self.d_model} must split into n_heads={self.n_heads} heads of even size")

    @property
    def resolved_alpha(self) -> float:
        """α used to initialise the step size: the explicit ``alpha`` or the update rule's default."""
        return self.alpha if self.alpha is not None else default_alpha(self.update, self.vocab_size)

    @property
    def ffn_hidden(self) -> int:
        return max(1, int(round(self.d_model * self.ffn_mult)))


@dataclass
class ThinkingConfig(Config):
    """How the EBT thinks during training (and, by default, evaluation)."""

    system: str = "s1"                 # "s1": detach, loss on every step | "s2": no detach, truncated, loss on last step
    steps: int = 2                     # thinking steps per batch (minimum when max_steps is set)
    max_steps: int | None = None       # if set, steps ~ U{steps..max_steps} per batch in training
    eval_steps: int | None = None      # steps at evaluation (default: max_steps or steps)
    langevin_sigma: float = 0.0        # std of noise on the candidate (logit space) before each gradient
    alpha_jitter: float = 1.0          # α ~ U[α/s, α·s] per (batch, position) in training; 1 = off
    replay_fraction: float = 0.0       # System 2 replay buffer: fraction of each batch replayed (0 = off)
    replay_size: int = 0               # replay buffer capacity in sequences
    contrastive_coeff: float = 0.0     # optional contrastive energy term (0 = off)

    def __post_init__(self):
        _choice("system", self.system, SYSTEMS)
        _positive("steps", self.steps)
        _positive("max_steps", self.max_steps)
        _positive("eval_steps", self.eval_steps)
        _positive("langevin_sigma", self.langevin_sigma, allow_zero=True)
        _positive("replay_size", self.replay_size, allow_zero=True)
        _positive("contrastive_coeff", self.contrastive_coeff, allow_zero=True)
        if self.max_steps is not None and self.max_steps < self.steps:
            raise ValueError(f"max_steps ({self.max_steps}) must be >= steps ({self.steps})")
        if self.alpha_jitter < 1:
            raise ValueError(f"alpha_jitter must be >= 1, got {self.alpha_jitter}")
        if not 0 <= self.replay_fraction < 1:
            raise ValueError(f"replay_fraction must be in [0, 1), got {self.replay_fraction}")
        if self.replay_fraction > 0 and self.replay_size <= 0:
            raise ValueError("replay_fraction > 0 needs replay_size > 0")

    @property
    def detach(self) -> bool:
        return self.system == "s1"

    @property
    def grad_steps(self) -> str:
        return "all" if self.system == "s1" else "last"

    @property
    def default_eval_steps(self) -> int:
        return self.eval_steps or self.max_steps or self.steps


@dataclass
class TrainConfig(Config):
    steps: int = 1000                  # optimizer steps
    batch_size: int = 16
    lr: float = 2e-3                   # peak learning rate
    min_lr_ratio: float = 0.1          # cosine decays to lr × this
    warmup: int = 100                  # linear warm-up steps (from 0)
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0
    schedule_steps: int | None = None  # horizon of the cosine (None = steps); set when --resume extends a run
    alpha_lr_mult: float = 3.0         # α's LR = this × α × base LR ("3 × α" rule), its own cosine floor
    eval_every: int = 250
    eval_batches: int = 8
    log_every: int = 10
    save_every: int = 250
    seed: int = 33
    precision: str = "auto"            # auto (bf16 on CUDA with bf16, else fp32) | fp32 | bf16 | fp16 (autocast)
    keep_best: bool = False            # also keep RUN/best/: the checkpoint with the best validation headline
    checkpoint_blocks: bool = False    # EBTs: activation checkpointing of the blocks inside unrolled thinking
    zero: int = 0                      # 1: ZeRO-1 — AdamW state sharded over the ranks (multi-process runs only)

    def __post_init__(self):
        _choice("precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        if self.zero not in (0, 1):
            raise ValueError(f"zero must be 0 (off) or 1 (ZeRO-1: optimizer state sharded over the ranks), got {self.zero}")
        for n in ("steps", "batch_size", "lr", "eval_every", "eval_batches", "log_every", "save_every",
                  "schedule_steps"):
            _positive(n, getattr(self, n))
        for n in ("warmup", "weight_decay", "grad_clip", "alpha_lr_mult"):
            _positive(n, getattr(self, n), allow_zero=True)
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass
class DataConfig(Config):
    corpus: str = "bible"              # built-in corpus name, or "file" with ``path``
    path: str | None = None            # a UTF-8 text file to train on (absolute once a run has started)
    path_size: int | None = None       # recorded by the run: the file's size in bytes ...
    path_sha256: str | None = None     # ... and SHA-256 (ebtkit.data.fingerprint; checked on eval and resume)
    tokenizer: str = "byte"            # "byte" | "bpe" (trained locally, saved with the run)
    bpe_vocab: int = 1024
    val_fraction: float = 0.05         # the last fraction of the text is validation
    ood: str = "pydoc"                 # built-in out-of-distribution text for evaluation

    def __post_init__(self):
        _choice("tokenizer", self.tokenizer, ("byte", "bpe"))
        if not 0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")
        _positive("bpe_vocab", self.bpe_vocab)
        check_fingerprint(self.path_size, self.path_sha256)


@dataclass
class RunConfig(Config):
    """A text run: model, thinking recipe, optimisation and data."""

    model: ModelConfig = field(default_factory=ModelConfig)
    thinking: ThinkingConfig = field(default_factory=ThinkingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preset: str = "custom"

    DERIVED: ClassVar[dict[str, str]] = {"model.vocab_size": "it is set by the tokenizer (data.tokenizer, data.bpe_vocab)",
                                         **DATA_FINGERPRINT}

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        model = d.get("model")
        if isinstance(model, dict) and model and "update" not in model:
            # saved before the update rule was a choice (2026-12-02): those models stepped on the logits
            d["model"] = {**model, "update": "logits"}
        return d


# --------------------------------------------------------------------------------------------- presets
# The tables live in ebtkit/core/presets.py (recorded hyperparameters); the rule that applies them lives here.

def resolve_preset(config_class, presets: dict, recipes: dict, name: str, system: str | None,
                   overrides: dict[str, Any], default_system: str = "s1"):
    """The one preset rule of every task: ``config_class()`` ← size preset ``name`` ← thinking recipe
    ``system`` ← user ``overrides`` (checked: strings parsed by field type, derived keys refused)."""
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(presets)}")
    system = system or default_system
    if system not in recipes:
        raise ConfigError(f"unknown system {system!r}; choose from {', '.join(recipes)}")
    cfg = config_class().replace(**{**presets[name], **recipes[system], "preset": name})
    return cfg.override(overrides) if overrides else cfg


def preset(name: str, system: str | None = None, **overrides: Any) -> RunConfig:
    """A resolved text ``RunConfig``: size preset, then thinking recipe (``s1``/``s2``; default: the preset's
    own, ``s1`` for size presets), then dotted overrides."""
    return resolve_preset(RunConfig, PRESETS, RECIPES, name, system, overrides, PRESET_SYSTEMS.get(name, "s1"))
