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
unknown with one line that names the spec file (when there is one) and the key. ``set`` may also be a list of
``"KEY=VALUE"`` strings, as ``--set`` takes them.

The sweep's ``name`` becomes a directory (``runs/sweep-<name>``, unless ``out`` says where), so it must be one path
component of safe characters (:data:`SAFE_NAME`: letters, digits, ``.``, ``_``, ``-``; starting with a letter or
digit): ``name = "x/../../escape"`` is refused instead of writing outside ``runs/``. A name derived from the spec's
file name or the ``--out`` folder is made safe instead (:func:`safe_name`).
"""
from __future__ import annotations

import json
import math
import os
import re
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
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
NAME_RULE = "one path component of letters, digits, '.', '_' and '-' that starts with a letter or digit (≤ 100)"


def safe_name(text: str, default: str = "sweep") -> str:
    """``text`` made into a safe sweep name (unsafe runs of characters become ``-``), for names the user did not
    type as a name (a spec file's stem, an ``--out`` folder's name)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).lstrip("._-")[:100].rstrip("-")
    return name if SAFE_NAME.fullmatch(name or "") else default


# ------------------------------------------------------------------------------------------------ spec
def load_spec(path: str | Path) -> dict:
    """Read a TOML (``.toml``) or JSON spec; validate it with :func:`normalise_spec`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"sweep spec {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"sweep spec {path}: cannot read it as UTF-8 text ({type(e).__name__})") from None
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
    spec.setdefault("name", safe_name(path.stem))
    return normalise_spec(spec, source=path)


def where(source=None) -> str:
    """The prefix of a spec error: ``sweep spec FILE`` (or ``sweep spec`` for one made from flags)."""
    return f"sweep spec {source}" if source else "sweep spec"


def _list(v, what: str, src: str = "sweep spec") -> list:
    if isinstance(v, (str, int, float)):
        v = [v]
    if not isinstance(v, list) or not v:
        raise ValueError(f"{src}: {what} must be a non-empty list, got {v!r}")
    return v


def _int(v, key: str, src: str, least: int | None = None) -> int:
    """An integer field (``true``, ``1.5`` and ``"3"`` are not integers) with an optional lower bound."""
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            v = int(v)
        else:
            raise ValueError(f"{src}: {key} must be an integer, got {v!r}")
    if least is not None and v < least:
        raise ValueError(f"{src}: {key} must be >= {least}, got {v}")
    return v


def _str(v, key: str, src: str) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{src}: {key} must be a non-empty string, got {v!r}")
    return v


def _table(v, key: str, src: str) -> dict:
    if not isinstance(v, dict):
        raise ValueError(f"{src}: {key} must be a table of KEY = VALUE, got {v!r}")
    return v


def _sets(v, src: str) -> dict:
    """``set``: a table of dotted keys, or a list of ``"KEY=VALUE"`` strings (as ``--set`` takes them)."""
    if isinstance(v, list):
        if not all(isinstance(item, str) for item in v):
            raise ValueError(f"{src}: set must be a table of KEY = VALUE or a list of \"KEY=VALUE\" strings, got {v!r}")
        try:
            return parse_sets(v)
        except ValueError as e:
            raise ValueError(f"{src}: set: {str(e).replace('--set ', '')}") from None
    return flatten(dict(_table(v, "set", src)))


def normalise_spec(spec: dict, source=None) -> dict:
    """Defaults filled in, short keys expanded, every field checked (one-line ``ValueError`` otherwise, naming
    ``source`` — the spec file — and the key)."""
    src = where(source)
    if not isinstance(spec, dict):
        raise ValueError(f"{src} must be a table/object")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ValueError(f"{src}: unknown fields {sorted(unknown)}; known: {sorted(SPEC_KEYS)}")
    name = spec.get("name", "sweep")
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise ValueError(f"{src}: name must be {NAME_RULE} (it names the sweep's directory), got {name!r}")
    system = spec.get("system")
    out = {"name": name, "preset": _str(spec.get("preset", "cpu"), "preset", src),
           "system": None if system is None else _str(system, "system", src),
           "models": [_str(m, "models", src)
                      for m in _list(spec.get("models", ["ebt", "transformer++"]), "models", src)],
           "seeds": [_int(s, "seeds", src, 0) for s in _list(spec.get("seeds", [0]), "seeds", src)],
           "set": _sets(spec.get("set", {}), src), "jobs": _int(spec.get("jobs", 1), "jobs", src, 1)}
    flops = spec.get("flops", True)
    if not isinstance(flops, bool):
        raise ValueError(f"{src}: flops must be true or false, got {flops!r}")
    out["flops"] = flops
    if spec.get("out") is not None:
        out["out"] = _str(spec["out"], "out", src)
    out["device"] = _str(spec.get("device", "auto"), "device", src)   # every trial's --device (train and eval)
    try:
        resolve_device(out["device"])                    # a device this machine lacks fails before any run
    except ValueError as e:
        raise ValueError(f"{src}: device: {e}") from None
    for m in out["models"]:
        if m not in MODEL_SLUG:
            raise ValueError(f"{src}: models: unknown model {m!r}; choose from {', '.join(MODEL_SLUG)}")
    if len(set(out["seeds"])) != len(out["seeds"]):
        raise ValueError(f"{src}: seeds must be distinct, got {out['seeds']}")
    ev = dict(EVAL_DEFAULTS)
    given = _table(spec.get("eval", {}), "eval", src)
    extra = set(given) - set(EVAL_DEFAULTS)
    if extra:
        raise ValueError(f"{src}: unknown eval fields {sorted(extra)}; known: {sorted(EVAL_DEFAULTS)}")
    ev.update(given)
    for k in ("max_windows", "batch_size", "thinking_windows"):
        ev[k] = _int(ev[k], f"eval.{k}", src, 1)
    if not isinstance(ev["thinking"], bool):
        raise ValueError(f"{src}: eval.thinking must be true or false, got {ev['thinking']!r}")
    for k in ("think_steps", "bon", "tols"):
        if isinstance(ev[k], list):
            ev[k] = ",".join(map(str, ev[k]))
        if not isinstance(ev[k], (str, int, float)) or isinstance(ev[k], bool):
            raise ValueError(f"{src}: eval.{k} must be a comma list, got {ev[k]!r}")
        ev[k] = str(ev[k])
    out["eval"] = ev
    out["fit"] = dict(_table(spec.get("fit", {}), "fit", src))
    axes = spec.get("axes", {})
    if not isinstance(axes, dict) or not axes:
        raise ValueError(f"{src}: at least one axis is needed, e.g. [axes.data] steps = [100, 200, 400, 800]")
    out["axes"] = {}
    for name, ax in axes.items():
        out["axes"][name] = _normalise_axis(name, ax, src)
    return out


def _normalise_axis(name: str, ax: dict, src: str = "sweep spec") -> dict:
    if not isinstance(ax, dict):
        raise ValueError(f"{src}: axis {name!r} must be a table")
    ax = dict(ax)
    x = ax.pop("x", AXIS_X.get(name))
    if x not in X_NAMES:
        raise ValueError(f"{src}: axis {name!r} needs x = one of {', '.join(X_NAMES)}")
    if "points" in ax:
        pts = _list(ax.pop("points"), f"axes.{name}.points", src)
        if not all(isinstance(p, dict) for p in pts):
            raise ValueError(f"{src}: axes.{name}.points must be tables of overrides")
        points = [{SHORT_KEYS.get(k, k): v for k, v in flatten(p).items()} for p in pts]
        key = None
    else:
        if len(ax) != 1:
            raise ValueError(f"{src}: axis {name!r} needs exactly one key with a list of values "
                             f"(or 'points'), got {sorted(ax) or 'none'}")
        (k, vals), = ax.items()
        key = SHORT_KEYS.get(k, k)
        if "." not in key:
            raise ValueError(f"{src}: axis {name!r}: unknown key {k!r}; use a dotted key like model.d_model")
        points = [{key: v} for v in _list(vals, f"axes.{name}.{k}", src)]
    if len(points) < 2:
        raise ValueError(f"{src}: axis {name!r} needs at least 2 points")
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
