"""Where a run's data was and what it was: absolute paths with their size and SHA-256.

A run trained on a user's data (text ``data.path``, a denoising IDX file or image folder, a sequence array)
records the path resolved against the directory it was started from, with the data's size in bytes and its
SHA-256 (the config keys ``data.path_size`` and ``data.path_sha256``, which the run sets itself). So ``ebt eval``,
``ebt train --resume`` and ``ebt eval --compare`` work from any directory, and a loader refuses, in one line,
data that was moved (``not found at the stored path …``) or changed (``… was N bytes sha256 …, now …``).

What is hashed:

* **a file** — its bytes, streamed in 1 MiB blocks (constant memory, one pass; a few hundred MB/s);
* **a folder** — the files its loader reads (``files``: an image folder's images, an IDX folder's IDX files), in
  sorted order, as one line each, ``<path relative to the folder>\\t<size>\\t<sha256 of the bytes>\\n``; the
  fingerprint is the SHA-256 of those lines and the size the files' total. Renaming, adding, removing or editing
  any of those files changes it; other files in the folder (notes, a ``.DS_Store``) do not. The contents are
  hashed, not only names and sizes, because the loader reads every byte anyway (hashing costs about one more
  read) and an edited image of the same size is still other data;
* **a folder that carries its own checksums** (a manifest listing every file's SHA-256) can pass the manifest
  alone as ``files``: the manifest's hash then stands for the whole folder, provided its loader checks every
  file against the manifest as it reads it.

Runs saved before fingerprints (no ``data.path_sha256``) keep working as they did: their path is used as saved
(a relative one against the current directory) and nothing is checked.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

BLOCK = 1 << 20            # bytes read per step while hashing
SHOWN = 12                 # hex digits of a SHA-256 shown in messages


class DataChangedError(ValueError):
    """A run's recorded data is missing or differs from what it recorded (one line naming the stored path)."""


@dataclass(frozen=True)
class Fingerprint:
    size: int              # bytes (a folder: the total of its files)
    sha256: str            # 64 hex digits

    def describe(self) -> str:
        return f"{self.size:,} bytes sha256 {self.sha256[:SHOWN]}"


def absolute_path(path: str | os.PathLike) -> str:
    """``path`` with ``~`` expanded, made absolute against the current directory (symlinks kept as given)."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def file_sha256(path: str | os.PathLike, block: int = BLOCK) -> Fingerprint:
    """Size and SHA-256 of one file, read in ``block``-byte pieces."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
            size += len(chunk)
    return Fingerprint(size, h.hexdigest())


def fingerprint(path: str | os.PathLike, files: Iterable[str | os.PathLike] | None = None,
                block: int = BLOCK) -> Fingerprint:
    """The fingerprint of a file, or of a folder through the ``files`` (inside it) that its loader reads."""
    p = Path(path)
    if p.is_file():
        return file_sha256(p, block)
    if files is None:
        raise ValueError(f"{p}: a folder's fingerprint needs the list of files its loader reads")
    h, total = hashlib.sha256(), 0
    for f in sorted(Path(f) for f in files):
        fp = file_sha256(f, block)
        h.update(f"{f.relative_to(p).as_posix()}\t{fp.size}\t{fp.sha256}\n".encode())
        total += fp.size
    return Fingerprint(total, h.hexdigest())


def stored(cfg) -> Fingerprint | None:
    """The fingerprint a data config records (``path_size``, ``path_sha256``), or None (a fresh or older run)."""
    if getattr(cfg, "path", None) is None or getattr(cfg, "path_sha256", None) is None:
        return None
    return Fingerprint(int(cfg.path_size or 0), cfg.path_sha256)


def _files(p: Path, files):
    return files(p) if callable(files) else files


def record(cfg, files=None) -> dict:
    """The keys to record for ``cfg.path`` (``{"path", "path_size", "path_sha256"}``; the path made absolute), or
    ``{}`` without a path, or for a folder whose loader gives no ``files`` (a list, or a callable of the folder)."""
    if getattr(cfg, "path", None) is None:
        return {}
    p = Path(absolute_path(cfg.path))
    if p.is_dir() and files is None:
        return {}
    fp = fingerprint(p, _files(p, files))
    return {"path": str(p), "path_size": fp.size, "path_sha256": fp.sha256}


def check(cfg, files=None, what: str = "data") -> None:
    """Refuse data that moved or changed since its fingerprint was recorded (nothing to check without one).

    ``files``: for a folder, the files its loader reads (a list, or a callable of the folder, called only when
    the folder exists). Raises :class:`DataChangedError` with one line naming the stored path and what changed.
    """
    want = stored(cfg)
    if want is None:
        return
    p = Path(cfg.path)
    if not p.exists():
        raise DataChangedError(f"{what} not found at the stored path {p}; it was moved or deleted (the run recorded "
                               f"{want.describe()}); if it was moved, give its new place with --data PATH")
    if p.is_dir() and files is None:
        raise DataChangedError(f"{what} at {p} changed since the run recorded it: was a file of {want.describe()}, "
                               "now a folder")
    now = fingerprint(p, _files(p, files))
    if now != want:
        raise DataChangedError(f"{what} at {p} changed since the run recorded it: was {want.describe()}, now "
                               f"{now.describe()}")


def same_data(a, b) -> bool:
    """Whether two runs' data configs name the same data: equal fields, with a user's file compared by its
    recorded fingerprint where both runs have one (the same bytes, wherever each run found them), else by its
    absolute path."""
    da, db = a.to_dict(), b.to_dict()
    if da.get("path_sha256") and db.get("path_sha256"):
        da.pop("path", None)
        db.pop("path", None)
    else:
        for d in (da, db):
            d.pop("path_size", None)
            d.pop("path_sha256", None)
            if d.get("path"):
                d["path"] = absolute_path(d["path"])
    return da == db


__all__ = ["DataChangedError", "Fingerprint", "absolute_path", "file_sha256", "fingerprint", "stored", "record", "check", "same_data"]
