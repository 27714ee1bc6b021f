"""Pointing a moved run at the new place of its data (``ebt eval RUN --data PATH``, ``ebt train --resume RUN
--data PATH``).

A run records its data's absolute path with its size and SHA-256 (:mod:`ebtkit.data.fingerprint`). When run and
data move, the stored path no longer exists, and the loaders refuse it in one line that names ``--data``. Given
the new place, :func:`relocated` hashes what is there the way the run's loader would (a file's bytes, a prepared
corpus's manifest, an image folder's images) and accepts it only when size and SHA-256 equal the recorded ones;
anything else is one line naming both places and both fingerprints. ``eval`` then writes the new path into the
run (:func:`repoint`), so later commands need no ``--data``; ``--resume`` passes it to the training loop as a
change of ``data.path`` (allowed only for a fingerprinted run, whose loader checks the data again), and its next
checkpoint records it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..core import checkpoint as ckpt
from .fingerprint import DataChangedError, absolute_path, fingerprint, stored
from .images import image_data_files
from .shards import MANIFEST


def _loader_files(task: str, p: Path):
    """What a task's loader reads of a data folder (what its fingerprint covers): a prepared corpus's manifest, an
    image folder's images; None for a file or a task with no folder data."""
    if not p.is_dir():
        return None
    if task == "text":
        return [p / MANIFEST]
    if task == "denoise":
        return image_data_files(p)
    return None


def relocated(meta: dict, path: str | os.PathLike, run: str | os.PathLike, flag: str = "--data") -> dict:
    """The data config of a run (``meta``: its ``config.json``) pointed at ``path``, the new place of the data it
    was trained on: ``path`` must hold the same bytes as recorded (``data.path_size`` and ``data.path_sha256``),
    else a one-line :class:`DataChangedError` naming both places and both fingerprints. Reads only; a run that
    recorded no data file, or no fingerprint of it (a run saved before fingerprints), is refused unless ``path``
    is where it already points."""
    data = dict((meta.get("config") or {}).get("data") or {})
    old = data.get("path")
    new = absolute_path(path)
    if not old:
        raise DataChangedError(f"{flag} {path}: {run} was trained on built-in data, not on a file of its own, so "
                               "there is nothing to re-point")
    if not os.path.exists(new):
        raise DataChangedError(f"{flag} {path}: no such file or folder")
    want = stored(_Recorded(old, data.get("path_size"), data.get("path_sha256")))
    if want is None:
        if new == absolute_path(old):
            return data
        raise DataChangedError(f"{flag} {path}: {run} recorded no fingerprint of its data (saved before "
                               f"fingerprints), so {new} cannot be checked against {old}; put the data back there")
    p = Path(new)
    files = _loader_files(str(meta.get("task")), p)
    if p.is_dir() and files is None:
        raise DataChangedError(f"{flag} {path} is a folder; {run} was trained on a file ({want.describe()} at {old})")
    now = fingerprint(p, files)
    if now != want:
        raise DataChangedError(f"{flag} {path} is not the data {run} was trained on: {new} is {now.describe()}, the "
                               f"run recorded {want.describe()} at {old}")
    data["path"] = new
    return data


@dataclass(frozen=True)
class _Recorded:
    path: str | None
    path_size: int | None
    path_sha256: str | None


def repoint(run: str | os.PathLike, path: str | os.PathLike, flag: str = "--data") -> str | None:
    """Point the run ``run`` at the new place of its data, for good: after :func:`relocated` has checked ``path``,
    the new absolute path is written into the run's checkpoint ``config.json`` (and ``best/``'s, where it names
    the same data), atomically; nothing is written on any error. Returns the old path when it changed, else None
    (``path`` is where the run already points). ``ebt eval RUN --data PATH`` calls it; ``ebt train --resume RUN
    --data PATH`` uses :func:`relocated` and records the new place with its next checkpoint."""
    meta = ckpt.read_config(run)
    data = relocated(meta, path, run, flag)
    old = meta["config"]["data"]["path"]
    if data["path"] == old:
        return None
    targets = [ckpt.find_checkpoint(run)]
    best = ckpt.run_dir_of(run) / "best"
    if (best / "config.json").is_file() and targets[0] != best:
        targets.append(best)
    for c in targets:
        m = meta if c == targets[0] else ckpt.read_config(c)
        if (m.get("config") or {}).get("data", {}).get("path") != old:
            continue
        m = {**m, "config": {**m["config"], "data": {**m["config"]["data"], "path": data["path"]}}}
        tmp = c / "config.json.tmp"
        tmp.write_text(json.dumps(m, indent=2, sort_keys=True))
        os.replace(tmp, c / "config.json")
    return old


__all__ = ["relocated", "repoint"]
