"""Where BIG-bench comes from, and the user cache that indexes it for ``ebt eval RUN --tasks NAME``.

**Sources.** ``ebt data bigbench --from PATH`` indexes any of:

* a clone of the BIG-bench repository, or its ``bigbench/benchmark_tasks`` folder (``<task>/task.json``,
  ``<task>/<sub>/task.json``): read in place;
* a folder of Hugging Face ``datasets`` exports of BIG-bench tasks, one per task: ``<task>.parquet`` or
  ``<task>.jsonl``, or ``<task>/<split>*.parquet`` (the Hub's layout; the ``default`` split when there, else
  every split in name order), read in place through :mod:`ebtkit.data.hf_tasks`;
* a tarball holding ``*/bigbench/benchmark_tasks/*/task.json``: the PyPI sdist (``bigbench-1.0.0.tar.gz``,
  358 MB, 167 tasks and 874 subtasks) or an archive of the repository.

``ebt data bigbench`` without ``--from`` downloads the sdist once into the cache with pip (checking its
SHA-256) where the registry still serves it. The cache is :func:`cache_dir` (``$EBTKIT_CACHE/bigbench/``, default
``~/.cache/ebtkit/bigbench/``); it holds ``index.json`` — the source (kind, path, and for a tarball its size and
mtime) and every task name with its member — and, for a tarball, the ``task.json`` files extracted so far.

**Reading a tarball without unpacking 1.7 GB.** A gzip stream cannot be read at an offset, so finding a member
means decompressing the archive up to it (about 8 s for the sdist). The first pass writes the index and
extracts only the requested tasks to ``tasks/<task>/task.json`` (written to a temporary name and renamed);
later reads open those plain files. A changed tarball (size or mtime) invalidates the index and the extracted
files; a deleted one leaves the extracted tasks readable. ``--from`` and the download pre-extract the paper's
two tasks (:data:`PAPER_TASKS`). Folders need no extraction: their files are read where they are.

**No BIG-bench at all.** ``dyck_languages`` is then generated (:mod:`ebtkit.data.dyck`) and the output says so;
any other name is one :class:`DataError` line naming every route. Nothing here touches the network except
:func:`pip_download`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

from .bigbench_format import Example, parse_task_json
from .hf_tasks import BIGBENCH_COLUMNS, ROW_FILES, columns
from .text import DataError

PIP_SPEC = "bigbench==1.0.0"
SDIST = "bigbench-1.0.0.tar.gz"
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"   # PyPI's, checked on download
ROOT = "bigbench-1.0.0/bigbench/benchmark_tasks/"                # the sdist's task folder
MEMBER = re.compile(r"^(?:.*/)?bigbench/benchmark_tasks/(.+)/task\.json$")
INDEX = "index.json"
PAPER_TASKS = ("dyck_languages", "elementary_math_qa")      # the paper's Table 3 BIG-bench sets (+ subtasks)


def cache_dir() -> Path:
    """``$EBTKIT_CACHE/bigbench``, else ``$XDG_CACHE_HOME/ebtkit/bigbench``, else ``~/.cache/ebtkit/bigbench``."""
    root = os.environ.get("EBTKIT_CACHE")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ebtkit"
    return Path(root).expanduser() / "bigbench"


def routes(download: bool = True) -> str:
    """Every way to get BIG-bench, in one clause (for one-line errors); ``download=False``: all but the download."""
    get = (f"; 'ebt data bigbench' downloads the sdist ({PIP_SPEC}) where PyPI still serves it" if download else "")
    return ("'ebt data bigbench --from PATH' indexes a BIG-bench clone, its benchmark_tasks folder, a folder of "
            f"Hugging Face exports (<task>.parquet/.jsonl) or the {SDIST} sdist{get}; --tasks hf:DATASET reads a "
            "Hub dataset; dyck_languages is generated when absent")


# ------------------------------------------------------------------------------------------ files
def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)                              # mkstemp's 0600 would hide a shared cache
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _source(kind: str, path: Path) -> dict:
    src = {"kind": kind, "path": str(path.resolve())}
    if kind == "tarball":
        st = path.stat()
        src.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    return src


def _save(cache: Path, source: dict, tasks: dict) -> dict:
    index = {"source": source, "tasks": dict(sorted(tasks.items()))}
    _write_atomic(cache / INDEX, json.dumps(index, indent=1).encode())
    return index


# ------------------------------------------------------------------------------------------ tarballs
def _wanted(name: str, want: set[str]) -> bool:
    """A task is extracted when it or its parent is named (a parent brings all its subtasks)."""
    return name in want or name.split("/")[0] in want


def _scan(tarball: Path, cache: Path, want: set[str], fresh: bool = False) -> dict:
    """One pass over the archive: the index of every task.json, extracting the tasks ``want`` names. They are
    extracted aside and moved in only when the pass succeeds; ``fresh`` replaces every extracted task."""
    tasks, new = {}, cache / ".tasks-new"
    shutil.rmtree(new, ignore_errors=True)
    try:
        with tarfile.open(tarball, "r:*") as tf:
            for m in tf:
                hit = MEMBER.match(m.name) if m.isfile() else None
                if hit is None:
                    continue
                tasks[hit.group(1)] = m.name
                if _wanted(hit.group(1), want):
                    _write_atomic(new / hit.group(1) / "task.json", tf.extractfile(m).read())
        if not tasks:
            raise DataError(f"{tarball}: no bigbench/benchmark_tasks/*/task.json inside; is it the {PIP_SPEC} sdist?")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        shutil.rmtree(new, ignore_errors=True)
        raise DataError(f"{tarball}: unreadable archive ({e}); delete it and index BIG-bench again") from None
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    if fresh:
        _drop_extracted(cache)
    for f in sorted(new.rglob("task.json")) if new.is_dir() else []:
        dest = cache / "tasks" / f.relative_to(new)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f, dest)
    shutil.rmtree(new, ignore_errors=True)
    return _save(cache, _source("tarball", tarball), tasks)


def _drop_extracted(cache: Path) -> None:
    shutil.rmtree(cache / "tasks", ignore_errors=True)


# ------------------------------------------------------------------------------------------ folders
def _task_folder(path: Path) -> Path | None:
    """The ``benchmark_tasks`` folder of a clone (or the folder itself), if ``path`` is one."""
    for root in (path / "bigbench" / "benchmark_tasks", path / "benchmark_tasks", path):
        if root.is_dir() and any(root.glob("*/task.json")):
            return root
    return None


def _export_files(path: Path) -> dict[str, list[str]]:
    """Task → its export files (relative): ``<task>.parquet|.jsonl``, or ``<task>/<split>*`` (``default`` first)."""
    found: dict[str, list[Path]] = {}
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in ROW_FILES):
        rel = f.relative_to(path)
        found.setdefault(rel.stem if len(rel.parts) == 1 else rel.parts[0], []).append(rel)
    tasks = {}
    for name, files in found.items():
        default = [f for f in files if f.name.startswith("default")]
        tasks[name] = [f.as_posix() for f in (default or files)]
    return tasks


def index_from(path: Path, cache: Path | None = None, extract=None) -> dict:
    """Index a BIG-bench source (module docstring) into the cache, extracting ``extract`` (default
    :data:`PAPER_TASKS`) from a tarball; nothing is written when it is not a source."""
    cache = cache or cache_dir()
    extract = PAPER_TASKS if extract is None else extract
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"--from {path}: no such file or folder")
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise DataError(f"--from {path}: not a tarball; expected the {SDIST} sdist, a BIG-bench clone, its "
                            f"benchmark_tasks folder or a folder of Hugging Face exports")
        return _scan(path, cache, set(extract), fresh=True)
    root = _task_folder(path)
    if root is not None:
        tasks = {f.parent.relative_to(root).as_posix(): f.relative_to(root).as_posix()
                 for f in sorted(root.rglob("task.json"))}
        kind = "folder"
    else:
        tasks, kind, root = _export_files(path), "hf", path
        if not tasks:
            raise DataError(f"--from {path}: no BIG-bench tasks inside: expected a BIG-bench clone "
                            f"(bigbench/benchmark_tasks/<task>/task.json), its benchmark_tasks folder, a folder of "
                            f"Hugging Face exports (<task>.parquet or <task>.jsonl) or the {SDIST} sdist")
        for files in tasks.values():                   # every file is an export (its columns), before writing
            missing = BIGBENCH_COLUMNS - columns(root / files[0])
            if missing:
                raise DataError(f"--from {path}: {files[0]} is not a BIG-bench export (no column "
                                f"{', '.join(sorted(missing))})")
    _drop_extracted(cache)
    return _save(cache, _source(kind, root), tasks)


# ------------------------------------------------------------------------------------------ the index
def active_index(cache: Path | None = None) -> dict | None:
    """The index of the current source; None when there is no BIG-bench. A cached sdist that was never indexed
    is indexed now (~8 s); a changed tarball is indexed again; a folder that has gone is an error."""
    cache = cache or cache_dir()
    try:
        index = json.loads((cache / INDEX).read_text())
        src = index["source"]
        assert isinstance(index["tasks"], dict) and src["kind"] in ("tarball", "folder", "hf")
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        index = None
    if index is not None:
        p = Path(src["path"])
        if src["kind"] != "tarball":
            if not p.is_dir():
                raise DataError(f"the BIG-bench folder {p} indexed by 'ebt data bigbench --from' is gone; "
                                f"{routes()}")
            return index
        if not p.is_file() or _source("tarball", p) == src:
            return index                                   # a deleted tarball: its extracted tasks stay readable
        return _scan(p, cache, set(), fresh=True)
    if (cache / SDIST).is_file():                           # downloaded, not indexed yet
        return _scan(cache / SDIST, cache, set(), fresh=True)
    return None


def describe(index: dict) -> str:
    src = index["source"]
    return {"tarball": "tarball", "folder": "BIG-bench task folder", "hf": "folder of Hugging Face exports"}[
        src["kind"]] + f" {src['path']}"


def read_task(index: dict, cache: Path, names: list[str]) -> list[tuple[str, list[Example]]]:
    """``(source label, examples)`` of each task.json in ``names`` (tarball: extracting the missing ones)."""
    src, tasks = index["source"], index["tasks"]
    root = Path(src["path"])
    if src["kind"] == "tarball":
        missing = [n for n in names if not (cache / "tasks" / n / "task.json").is_file()]
        if missing and not root.is_file():
            raise DataError(f"{root} (indexed by 'ebt data bigbench --from') is gone and {missing[0]!r} was not "
                            f"extracted from it; {routes()}")
        if missing:
            _scan(root, cache, set(missing))
        files = [(cache / "tasks" / n / "task.json", f"{root.name}:{tasks[n]}") for n in names]
    else:
        files = [(root / tasks[n], str(root / tasks[n])) for n in names]
    out = []
    for f, label in files:
        try:
            text = f.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{label}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
        except OSError as e:
            raise DataError(f"{label}: unreadable ({e.strerror}); index BIG-bench again") from None
        out.append((label, parse_task_json(text, label)[1]))
    return out


# ------------------------------------------------------------------------------------------ download
def pip_download(dest: Path) -> tuple[int, str]:
    """``pip download`` the sdist into ``dest``, pip's output captured: its exit status and its last error line."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "bigbench", PIP_SPEC,
           "-d", str(dest), "--disable-pip-version-check", "--progress-bar", "off"]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True)
    errors = [ln.strip() for ln in (r.stderr + r.stdout).splitlines() if ln.strip().startswith("ERROR:")]
    return r.returncode, (errors[-1][len("ERROR:"):].strip() if errors else "")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_sdist(cache: Path | None = None, download=None, log=print) -> Path:
    """Download the sdist into the cache (once), check its SHA-256 and move it in atomically.

    On any failure nothing is left behind: the temporary download directory is removed, and so is the cache
    directory if this call created it. Pip's own output is shown only through the one-line error."""
    cache = cache or cache_dir()
    target = cache / SDIST
    if target.is_file():
        log(f"BIG-bench: {target} (already downloaded)")
        return target
    download = download or pip_download
    created = [p for p in (cache.parent, cache) if not p.exists()]
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".download-"))
    ok = False
    try:
        log(f"downloading {PIP_SPEC} ({SDIST}, 358 MB) with pip into {cache} ...")
        r = download(tmp)
        rc, why = r if isinstance(r, tuple) else (r, "")
        got = tmp / SDIST
        if rc != 0 or not got.is_file():
            raise DataError(f"could not download {PIP_SPEC} from PyPI (pip exit status {rc}"
                            f"{': ' + why if why else ''}); other routes: {routes(download=False)}")
        digest = sha256(got)
        if digest != SDIST_SHA256:
            raise DataError(f"downloaded {SDIST} has SHA-256 {digest}, expected {SDIST_SHA256}")
        os.replace(got, target)
        ok = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not ok:
            for p in reversed(created):
                try:
                    p.rmdir()
                except OSError:
                    break
    log(f"BIG-bench: {target}")
    return target


__all__ = ["cache_dir", "routes", "index_from", "active_index", "read_task", "describe", "fetch_sdist",
           "pip_download", "sha256", "PIP_SPEC", "SDIST", "SDIST_SHA256", "ROOT", "PAPER_TASKS", "INDEX"]
