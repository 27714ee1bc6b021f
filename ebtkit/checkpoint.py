"""Checkpoints that survive refactors: safetensors weights + a JSON config that rebuilds the model.

A run directory holds ``metrics.jsonl`` and one ``checkpoint/`` folder::

    checkpoint/config.json          resolved config + {"task", "format_version", "ebtkit_version"}
    checkpoint/model.safetensors    weights (no pickles)
    checkpoint/optimizer.pt         optimizer state, loaded with ``weights_only=True`` (training only)
    checkpoint/state.json           step, data position, RNG-free training state
    checkpoint/<extra files>        e.g. a trained BPE ``tokenizer.json``

Writes are atomic: the new checkpoint is written to ``checkpoint.tmp/`` and swapped in with renames, so a kill
at any moment leaves the previous checkpoint loadable (``checkpoint.old/`` is used if the swap was cut short).
Compatibility shims for old formats live here and only here.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT_VERSION = 1
CKPT, TMP, OLD = "checkpoint", "checkpoint.tmp", "checkpoint.old"


class CheckpointError(Exception):
    """A checkpoint is missing, incomplete or corrupt."""


# task name → builder(config dict) → nn.Module; modalities register theirs (fails loudly on unknown tasks)
BUILDERS: dict[str, Callable[[dict], nn.Module]] = {}


def register_task(name: str, builder: Callable[[dict], nn.Module]) -> None:
    BUILDERS[name] = builder


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(run_dir: str | os.PathLike, model: nn.Module, config: dict, *, task: str,
                    optimizer: torch.optim.Optimizer | None = None, state: dict | None = None,
                    extra_files: dict[str, bytes] | None = None) -> Path:
    """Atomically write ``run_dir/checkpoint``. Returns its path."""
    from . import __version__
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    tmp, final, old = run / TMP, run / CKPT, run / OLD
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    meta = {"config": config, "task": task, "format_version": FORMAT_VERSION, "ebtkit_version": __version__}
    _write_json(tmp / "config.json", meta)
    _write_json(tmp / "state.json", state or {})
    if optimizer is not None:
        with open(tmp / "optimizer.pt", "wb") as f:
            torch.save(optimizer.state_dict(), f)
            f.flush()
            os.fsync(f.fileno())
    for name, data in (extra_files or {}).items():
        with open(tmp / name, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    _fsync_dir(tmp)
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(run)
    if old.exists():
        shutil.rmtree(old)
    return final


def find_checkpoint(path: str | os.PathLike) -> Path:
    """Resolve a run directory or a checkpoint directory to a complete checkpoint folder."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"no such run or checkpoint: {p}")
    if (p / "config.json").is_file() and (p / "model.safetensors").is_file():
        return p
    for name in (CKPT, OLD):
        c = p / name
        if (c / "config.json").is_file() and (c / "model.safetensors").is_file():
            return c
    raise CheckpointError(f"{p} holds no complete checkpoint (expected config.json and model.safetensors)")


def read_config(path: str | os.PathLike) -> dict:
    """The checkpoint's metadata: ``{"config", "task", "format_version", ...}``."""
    c = find_checkpoint(path)
    try:
        meta = json.loads((c / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt config.json in {c}: {e}") from None
    if not isinstance(meta, dict) or "config" not in meta or "task" not in meta:
        raise CheckpointError(f"config.json in {c} is not an ebtkit checkpoint config")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{c} was written by a newer ebtkit (format {meta['format_version']})")
    return meta


def read_state(path: str | os.PathLike) -> dict:
    c = find_checkpoint(path)
    try:
        return json.loads((c / "state.json").read_text()) if (c / "state.json").exists() else {}
    except json.JSONDecodeError as e:
        raise CheckpointError(f"corrupt state.json in {c}: {e}") from None


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    c = find_checkpoint(path)
    try:
        sd = load_file(str(c / "model.safetensors"))
    except Exception as e:  # safetensors raises its own error types on truncated/corrupt files
        raise CheckpointError(f"corrupt weights in {c / 'model.safetensors'}: {e}") from None
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:   # size mismatches
        raise CheckpointError(f"weights in {c} do not match the model config: {str(e).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise CheckpointError(f"weights in {c} do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def load_optimizer_state(path: str | os.PathLike) -> dict | None:
    c = find_checkpoint(path)
    f = c / "optimizer.pt"
    if not f.exists():
        return None
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"corrupt optimizer state in {f}: {e}") from None


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from a run or checkpoint directory (config.json + model.safetensors).

    The returned model is in eval mode; a text model carries ``model.tokenizer`` and ``model.run_config``.
    """
    from . import tasks  # noqa: F401  (registers the built-in builders)
    meta = read_config(path)
    task = meta["task"]
    if task not in BUILDERS:
        raise CheckpointError(f"unknown task {task!r} in checkpoint; known: {', '.join(sorted(BUILDERS))}")
    try:
        model = BUILDERS[task](meta["config"], find_checkpoint(path))
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"config in {find_checkpoint(path)} does not build a model: {e}") from None
    load_weights(model, path)
    return model.to(map_location).eval()
