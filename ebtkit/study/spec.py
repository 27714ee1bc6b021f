"""The sweep spec: TOML or JSON (:func:`load_spec`), or ``ebt sweep`` flags (:func:`spec_from_flags`)::

    preset = "cpu"                       # size preset every run starts from
    system = "s1"                        # optional thinking recipe of the EBT
    models = ["ebt", "transformer++"]
    seeds = [1, 2]
    set = { "train.warmup" = 20 }        # dotted overrides for every run
    [eval]                               # ebt eval options
    max_windows = 64
    thinking = false                     # also the thinking study (ppl vs NFEs per policy) on EBT runs
    [axes.data]                          # x = training tokens = steps × batch × context
    steps = [100, 200, 400, 800]
    [axes.params]                        # x = non-embedding parameters (width; or n_layers = [...] for depth)
    d_model = [32, 48, 64, 96]

Axes are one-dimensional sweeps around the base config, as in the paper: ``data`` (x = tokens), ``params``
(x = non-embedding parameters), ``batch`` (x = tokens per batch), ``depth`` (x = layers); any other name needs
``x = "tokens" | "params" | "batch_tokens" | "layers" | "flops"``. An axis gives one key and its values (short
names ``steps``, ``batch_size``, ``d_model``, ``n_layers``, ``n_heads``, or any dotted key), or ``points`` — a list of
override tables. Every run's training FLOPs are counted (:mod:`ebtkit.study.flops`), so every sweep can also be
fitted against compute.

:func:`normalise_spec` fills in defaults, expands short keys and TOML's nested dotted keys, and refuses anything
unknown with one line.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.config import flatten
from ..core.device import resolve_device

SHORT_KEYS = {"steps": "train.steps", "batch_size": "train.batch_size", "d_model": "model.d_model",
              "n_layers": "model.n_layers", "n_heads": "model.n_heads", "lr": "train.lr",
              "context": "model.context"}
AXIS_X = {"data": "tokens", "params": "params", "batch": "batch_tokens", "depth": "layers", "compute": "flops"}
X_NAMES = ("tokens", "params", "batch_tokens", "layers", "flops")
X_LABELS = {"tokens": "training tokens", "params": "non-embedding parameters", "batch_tokens": "tokens per batch",
            "layers": "layers", "flops": "training FLOPs"}
MODEL_SLUG = {"ebt": "ebt", "transformer++": "tpp"}
SPEC_KEYS = {"name", "out", "preset", "system", "models", "seeds", "set", "eval", "axes", "jobs", "fit", "flops",
             "device"}
EVAL_DEFAULTS = {"max_windows": 64, "batch_size": 16, "thinking": False, "thinking_windows": 8,
                 "think_steps": "2,4,8", "bon": "2,4", "tols": "auto"}
FLOPS_FREE_KEYS = ("steps", "seed", "eval_every", "save_every", "log_every", "eval_batches", "lr", "warmup",
                   "min_lr_ratio", "weight_decay", "beta1", "beta2", "grad_clip", "alpha_lr_mult")
INDEX = "sweep.json"
MARKER = "sweep_point.json"


# ------------------------------------------------------------------------------------------------ spec
def load_spec(path: str | Path) -> dict:
    """Read a TOML (``.toml``) or JSON spec; validate it with :func:`normalise_spec`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"sweep spec {path} not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"sweep spec {path}: invalid JSON ({e})") from None
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        try:
            spec = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"sweep spec {path}: invalid TOML ({e})") from None
    spec.setdefault("name", path.stem)
    return normalise_spec(spec)


def _list(v, what: str) -> list:
    if isinstance(v, (str, int, float)):
        v = [v]
    if not isinstance(v, list) or not v:
        raise ValueError(f"sweep spec: {what} must be a non-empty list")
    return v


def normalise_spec(spec: dict) -> dict:
    """Defaults filled in, short keys expanded, every field checked (one-line ``ValueError`` otherwise)."""
    if not isinstance(spec, dict):
        raise ValueError("sweep spec must be a table/object")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ValueError(f"sweep spec: unknown fields {sorted(unknown)}; known: {sorted(SPEC_KEYS)}")
    out = {"name": str(spec.get("name", "sweep")), "preset": str(spec.get("preset", "cpu")),
           "system": spec.get("system"), "models": [str(m) for m in _list(spec.get("models", ["ebt", "transformer++"]), "models")],
           "seeds": [int(s) for s in _list(spec.get("seeds", [0]), "seeds")],
           "set": flatten(dict(spec.get("set", {}))), "jobs": int(spec.get("jobs", 1)), "flops": bool(spec.get("flops", True))}
    if spec.get("out"):
        out["out"] = str(spec["out"])
    out["device"] = str(spec.get("device", "auto"))      # every trial's --device (train and eval)
    resolve_device(out["device"])                        # a device this machine lacks fails before any run
    for m in out["models"]:
        if m not in MODEL_SLUG:
            raise ValueError(f"sweep spec: unknown model {m!r}; choose from {', '.join(MODEL_SLUG)}")
    if len(set(out["seeds"])) != len(out["seeds"]):
        raise ValueError("sweep spec: seeds must be distinct")
    if out["jobs"] < 1:
        raise ValueError("sweep spec: jobs must be >= 1")
    ev = dict(EVAL_DEFAULTS)
    extra = set(spec.get("eval", {})) - set(EVAL_DEFAULTS)
    if extra:
        raise ValueError(f"sweep spec: unknown eval fields {sorted(extra)}; known: {sorted(EVAL_DEFAULTS)}")
    ev.update(spec.get("eval", {}))
    if int(ev["max_windows"]) < 1 or int(ev["thinking_windows"]) < 1:
        raise ValueError("sweep spec: eval windows must be >= 1")
    out["eval"] = ev
    out["fit"] = dict(spec.get("fit", {}))
    axes = spec.get("axes", {})
    if not isinstance(axes, dict) or not axes:
        raise ValueError("sweep spec: at least one axis is needed, e.g. [axes.data] steps = [100, 200, 400, 800]")
    out["axes"] = {}
    for name, ax in axes.items():
        out["axes"][name] = _normalise_axis(name, ax)
    return out


def _normalise_axis(name: str, ax: dict) -> dict:
    if not isinstance(ax, dict):
        raise ValueError(f"sweep spec: axis {name!r} must be a table")
    ax = dict(ax)
    x = ax.pop("x", AXIS_X.get(name))
    if x not in X_NAMES:
        raise ValueError(f"sweep spec: axis {name!r} needs x = one of {', '.join(X_NAMES)}")
    if "points" in ax:
        pts = _list(ax.pop("points"), f"axis {name!r} points")
        if not all(isinstance(p, dict) for p in pts):
            raise ValueError(f"sweep spec: axis {name!r} points must be tables of overrides")
        points = [{SHORT_KEYS.get(k, k): v for k, v in flatten(p).items()} for p in pts]
        key = None
    else:
        if len(ax) != 1:
            raise ValueError(f"sweep spec: axis {name!r} needs exactly one key with a list of values "
                             f"(or 'points'), got {sorted(ax) or 'none'}")
        (k, vals), = ax.items()
        key = SHORT_KEYS.get(k, k)
        if "." not in key:
            raise ValueError(f"sweep spec: axis {name!r}: unknown key {k!r}; use a dotted key like model.d_model")
        points = [{key: v} for v in _list(vals, f"axis {name!r} values")]
    if len(points) < 2:
        raise ValueError(f"sweep spec: axis {name!r} needs at least 2 points")
    return {"x": x, "key": key, "points": points}


def spec_from_flags(*, preset=None, models=None, seeds=None, steps=None, width=None, depth=None, batch=None,
                    sets=None, system=None, name=None) -> dict:
    """A spec from ``ebt sweep`` flags (comma lists); returns an un-normalised dict."""
    spec: dict = {"axes": {}}
    if name:
        spec["name"] = name
    if preset:
        spec["preset"] = preset
    if system:
        spec["system"] = system
    if models:
        spec["models"] = [m.strip() for m in models.split(",") if m.strip()]
    if seeds:
        spec["seeds"] = _ints(seeds, "--seeds", allow_zero=True)
    for axis, key, val in (("data", "steps", steps), ("params", "d_model", width), ("depth", "n_layers", depth),
                           ("batch", "batch_size", batch)):
        if val:
            spec["axes"][axis] = {key: _ints(val, f"--{'width' if key == 'd_model' else axis if axis != 'data' else 'steps'}")}
    if sets:
        spec["set"] = parse_sets(sets)
    return spec


def _ints(text: str, flag: str, allow_zero: bool = False) -> list[int]:
    try:
        vals = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} expects comma-separated integers, got {text!r}") from None
    if not vals or any(v < (0 if allow_zero else 1) for v in vals):
        raise ValueError(f"{flag} expects {'non-negative' if allow_zero else 'positive'} integers, got {text!r}")
    return vals


def parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(val)
        except json.JSONDecodeError:
            out[key.strip()] = val
    return out


def merge_specs(base: dict, flags: dict) -> dict:
    """Flags win over the file; axes given by flags replace the file's axes of the same name."""
    out = {k: v for k, v in base.items()}
    for k, v in flags.items():
        if k == "axes":
            out["axes"] = {**base.get("axes", {}), **v}
        elif k == "set":
            out["set"] = {**base.get("set", {}), **v}
        else:
            out[k] = v
    return out


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)
