"""Checkpoints that survive refactors: safetensors weights + a JSON config that rebuilds the model.

A run directory holds ``metrics.jsonl`` and one ``checkpoint/`` folder::

    checkpoint/config.json          resolved config + {"task", "format_version", "ebtkit_version"}
    checkpoint/model.safetensors    weights (no pickles)
    checkpoint/optimizer.pt         optimizer state, loaded with ``weights_only=True`` (training only)
    checkpoint/state.json           step, data position, RNG-free training state
    checkpoint/<extra files>        e.g. a trained BPE ``tokenizer.json``

Writes are atomic: the new checkpoint is written to ``checkpoint.tmp/`` and swapped in with renames, so a kill
at any moment leaves the previous checkpoint loadable (``checkpoint.old/`` is used if the swap was cut short).
Pure I/O: this module imports nothing else from ebtkit's layers. Which model a config builds is the task
table's business (:mod:`ebtkit.tasks`). A tensor that is not finite is never written, and never loaded.
Compatibility shims for old formats live here and in :meth:`Config.upgrade`.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import __version__

FORMAT_VERSION = 1
CKPT, TMP, OLD = "checkpoint", "checkpoint.tmp", "checkpoint.old"


class CheckpointError(Exception):
    """A checkpoint is missing, incomplete or corrupt."""


class NonFiniteError(FloatingPointError):
    """A tensor or metric is NaN or infinite (training stops; nothing non-finite is saved)."""


def nonfinite_tensors(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity (one host sync)."""
    names = [k for k, v in tensors.items() if v.is_floating_point()]
    if not names:
        return []
    flags = torch.stack([torch.isfinite(tensors[k]).all() for k in names]).tolist()
    return [k for k, ok in zip(names, flags) if not ok]


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
                    extra_files: dict[str, bytes] | None = None, name: str = CKPT) -> Path:
    """Atomically write ``run_dir/<name>`` (default ``checkpoint``; ``best`` for the best-by-validation copy).
    Returns its path.

    Raises NonFiniteError (and writes nothing) if a weight is NaN or infinite."""
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    bad = nonfinite_tensors(weights)
    if bad:
        raise NonFiniteError(f"refusing to save a checkpoint with non-finite weights ({len(bad)} of "
                             f"{len(weights)} tensors, e.g. {bad[0]}) in {run_dir}")
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    tmp, final, old = (run / TMP, run / CKPT, run / OLD) if name == CKPT else \
        (run / f"{name}.tmp", run / name, run / f"{name}.old")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
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


def run_dir_of(path: str | os.PathLike) -> Path:
    """The run directory of a run or checkpoint path (where reports, plots and eval results go)."""
    c = find_checkpoint(path)
    return c.parent if c.name in (CKPT, OLD) else c


def read_config(path: str | os.PathLike) -> dict:
    """The checkpoint's metadata: ``{"config", "task", "format_version", ...}``."""
    c = find_checkpoint(path)
    try:
        meta = json.loads((c / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
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
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise CheckpointError(f"corrupt state.json in {c}: {e}") from None


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load the checkpoint's weights into ``model``; refuses corrupt, mismatched and non-finite weights."""
    c = find_checkpoint(path)
    try:
        sd = load_file(str(c / "model.safetensors"))
    except Exception as e:  # safetensors raises its own error types on truncated/corrupt files
        raise CheckpointError(f"corrupt weights in {c / 'model.safetensors'}: {e}") from None
    bad = nonfinite_tensors(sd)
    if bad:
        raise CheckpointError(f"{c / 'model.safetensors'} holds non-finite weights ({len(bad)} of {len(sd)} "
                              f"tensors, e.g. {bad[0]}); it cannot be used")
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
