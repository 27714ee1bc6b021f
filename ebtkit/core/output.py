"""Writing a command's output files without ever leaving a half-written one.

The rule of every command: check where the output goes **before** computing anything (:func:`check_file`,
:func:`check_dir`, :func:`check_new_dir`: the folder exists and a probe file can be created and removed there);
write each file under a hidden temporary name in its target directory; rename it into place only when everything
the command writes has been produced; remove the temporaries on any failure (an
exception, Ctrl-C, or SIGTERM, which the CLI turns into ``SystemExit``). A process killed outright (SIGKILL)
can leave a hidden ``.NAME.XXXXXXXX.tmp.EXT`` file or ``.ebt-staging-XXXXXXXX`` folder, never a damaged output.

* :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json` — one file.
* :func:`staged_files` — several files in any directories, renamed into place together on success.
* :func:`staged_outputs` — a directory's outputs written by code that takes a folder (plots, GIFs): it writes
  into a hidden staging folder inside the directory, whose files are moved into the directory on success. A
  stage opened again for the same directory inside an open one joins it, so a command can commit the outputs
  of several steps together.

Temporary names keep the file's extension (matplotlib and PIL choose the format from it). Files are created
with the usual permissions (0666 less the umask).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _label(path: Path, flag: str | None) -> str:
    return f"{flag} {path}" if flag else str(path)


def probe_dir(d: Path, label: str) -> None:
    """Create and remove a hidden file in the folder ``d``: the one test of "can outputs go here" that also
    holds for root (who passes every permission check), read-only file systems and pseudo-file systems
    (``/proc``), which ``os.access`` does not see. A one-line ``ValueError`` starting with ``label``."""
    try:
        fd, name = tempfile.mkstemp(prefix=".ebt-probe-", dir=d)
    except OSError as e:
        raise ValueError(f"{label}: cannot create a file in {d} ({e.strerror or e})") from None
    os.close(fd)
    try:
        os.unlink(name)
    except OSError as e:
        raise ValueError(f"{label}: cannot remove a file in {d} ({e.strerror or e})") from None


def check_dir(path: str | os.PathLike, flag: str | None = None) -> Path:
    """An existing folder in which a file can be created and removed (outputs go into it); else a one-line
    ``ValueError`` naming ``flag`` and the path."""
    d = Path(path)
    if not d.exists():
        raise ValueError(f"{_label(d, flag)}: folder does not exist")
    if not d.is_dir():
        raise ValueError(f"{_label(d, flag)}: not a folder")
    if not os.access(d, os.W_OK | os.X_OK):
        raise ValueError(f"{_label(d, flag)}: cannot write in this folder (permission denied)")
    probe_dir(d, _label(d, flag))
    return d


def check_new_dir(path: str | os.PathLike, flag: str | None = None) -> Path:
    """A folder that a command will create (with its missing parents) or fill: an existing folder must be
    writable, else the nearest existing ancestor must be a folder in which a file can be created and removed."""
    d = Path(path)
    if d.exists() or d.is_symlink():
        if not d.is_dir():
            raise ValueError(f"{_label(d, flag)}: exists and is not a folder")
        probe_dir(d, _label(d, flag))
        return d
    parent = d.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{_label(d, flag)}: {parent} is not a folder")
    probe_dir(parent, _label(d, flag))
    return d


def check_file(path: str | os.PathLike, flag: str | None = None) -> Path:
    """A file that can be (over)written: not a directory, in an existing writable folder, and not an existing
    non-regular or read-only file; else a one-line ``ValueError`` naming ``flag`` and the path."""
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise ValueError(f"{_label(p, flag)}: expected a file name")
    if p.is_dir():
        raise ValueError(f"{_label(p, flag)}: is a folder (expected a file name)")
    parent = p.parent
    if not parent.exists():
        raise ValueError(f"{_label(p, flag)}: folder {parent} does not exist")
    if not parent.is_dir():
        raise ValueError(f"{_label(p, flag)}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{_label(p, flag)}: cannot write in {parent} (permission denied)")
    if p.exists() or p.is_symlink():
        if not p.is_file():
            raise ValueError(f"{_label(p, flag)}: exists and is not a regular file")
        if not os.access(p, os.W_OK):
            raise ValueError(f"{_label(p, flag)}: exists and is read-only")
    probe_dir(parent, _label(p, flag))          # the file is written as a temporary there and renamed
    return p


def temp_path(path: str | os.PathLike) -> Path:
    """Create and return a new empty hidden file next to ``path`` with the same extension."""
    p = Path(path)
    for _ in range(100):
        tmp = p.with_name(f".{p.stem}.{secrets.token_hex(4)}.tmp{p.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise OSError(f"cannot create a temporary file next to {p}")  # pragma: no cover


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass


@contextmanager
def staged_files(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Temporary paths for ``paths`` (checked with :func:`check_file` first); on success each is renamed onto
    its target, on failure all are removed."""
    targets = [check_file(p) for p in paths]
    tmps: list[Path] = []
    try:
        for t in targets:
            tmps.append(temp_path(t))
        yield list(tmps)
        for tmp, t in zip(tmps, targets):
            if t.is_dir():
                raise ValueError(f"{t}: is a folder (expected a file name)")
        for tmp, t in zip(tmps, targets):
            os.replace(tmp, t)
    finally:
        for tmp in tmps:
            _unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with staged_files(path) as (tmp,):
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent))


class Stage:
    """The staging folder of one output directory: write ``stage.path(name)`` (or anything into ``stage.dir``);
    ``target(name)`` is where the file will be once committed."""

    def __init__(self, directory: Path, staging: Path):
        self.directory, self.dir = directory, staging

    def path(self, name: str) -> Path:
        return self.dir / name

    def target(self, name: str) -> Path:
        return self.directory / name

    def commit(self) -> list[Path]:
        """Move every staged file into the directory (all targets are checked first)."""
        names = sorted(e.name for e in self.dir.iterdir() if not e.name.startswith("."))
        for n in names:
            if not (self.dir / n).is_file():
                raise ValueError(f"staged output {n} is not a file")
            if self.target(n).is_dir():
                raise ValueError(f"{self.target(n)}: is a folder (expected a file name)")
        for n in names:
            os.replace(self.dir / n, self.target(n))
        return [self.target(n) for n in names]


_ACTIVE: dict[str, Stage] = {}


@contextmanager
def staged_outputs(directory: str | os.PathLike) -> Iterator[Stage]:
    """A :class:`Stage` for ``directory`` (which must exist and be writable): committed when the outermost
    ``staged_outputs`` of that directory exits normally, removed with everything in it otherwise."""
    d = check_dir(directory)
    key = os.path.realpath(d)
    if key in _ACTIVE:                       # nested: the outer stage commits
        yield _ACTIVE[key]
        return
    stage = Stage(d, Path(_mkdtemp(d)))
    _ACTIVE[key] = stage
    try:
        yield stage
        stage.commit()
    finally:
        del _ACTIVE[key]
        shutil.rmtree(stage.dir, ignore_errors=True)


def _mkdtemp(d: Path) -> Path:
    for _ in range(100):
        p = d / f".ebt-staging-{secrets.token_hex(4)}"
        try:
            p.mkdir()
        except FileExistsError:
            continue
        return p
    raise OSError(f"cannot create a staging folder in {d}")  # pragma: no cover
