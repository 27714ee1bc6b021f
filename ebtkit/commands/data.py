"""``ebt data bigbench [--from PATH] [--list]``: index BIG-bench into the user cache, for ``ebt eval --tasks``.

``--from PATH`` indexes a local source (:mod:`ebtkit.data.bigbench_sources`): a clone of the BIG-bench
repository or its ``bigbench/benchmark_tasks`` folder, a folder of Hugging Face ``datasets`` exports of
BIG-bench tasks (``<task>.parquet`` or ``<task>.jsonl``), or the ``bigbench-1.0.0.tar.gz`` sdist. Without
``--from`` it downloads the sdist (PyPI ``bigbench==1.0.0``, 358 MB) with pip, checks its SHA-256, moves it in
atomically and indexes it; offline it fails in one line that names the other routes, and leaves nothing behind.
Either way the paper's two tasks are extracted from a tarball at once. ``--list`` prints every task name. The
cache is ``$EBTKIT_CACHE/bigbench`` (default ``~/.cache/ebtkit/bigbench``).
"""
from __future__ import annotations

import time
from pathlib import Path

from ..data.bigbench import PAPER_TASKS, SDIST, active_index, cache_dir, fetch_sdist, index_from, list_tasks

SOURCES = ("bigbench",)


def add_parser(sub):
    p = sub.add_parser("data", help="index benchmark data into the user cache (a local copy, or a download once)",
                       description="Index benchmark data into the user cache ($EBTKIT_CACHE, default "
                       "~/.cache/ebtkit) for 'ebt eval RUN --tasks NAME'. 'bigbench': the BIG-bench JSON tasks, "
                       "from --from PATH (a BIG-bench clone, its benchmark_tasks folder, a folder of Hugging Face "
                       "exports, or the sdist tarball) or downloaded (PyPI bigbench==1.0.0, 358 MB, where still "
                       "served). Without any of them, dyck_languages is generated.")
    p.add_argument("source", choices=SOURCES, help="what to index: bigbench")
    p.add_argument("--from", dest="from_path", metavar="PATH", default=None,
                   help="a BIG-bench clone or its bigbench/benchmark_tasks folder, a folder of Hugging Face "
                   "exports (<task>.parquet or <task>.jsonl), or the bigbench-1.0.0.tar.gz sdist")
    p.add_argument("--list", action="store_true", help="print every task name (after indexing if needed)")
    return p


def _report(index: dict, seconds: float) -> None:
    src = index["source"]
    extracted = f" and extracted {', '.join(PAPER_TASKS)}" if src["kind"] == "tarball" else ""
    print(f"indexed {len(index['tasks'])} tasks from {src['path']} ({src['kind']}){extracted} in {seconds:.1f} s"
          + ("; other tasks are extracted on first use" if extracted else "; read in place"))


def run(args) -> int:
    cache = cache_dir()
    t0 = time.perf_counter()
    if args.from_path is not None:
        _report(index_from(Path(args.from_path), cache), time.perf_counter() - t0)
    else:
        was = (cache / SDIST).is_file()
        fetch_sdist(cache)
        try:
            current = active_index(cache) if was else None
        except ValueError:                                  # the index points at a folder that has gone
            current = None
        if current is None or current["source"]["path"] != str((cache / SDIST).resolve()):
            t0 = time.perf_counter()
            _report(index_from(cache / SDIST, cache), time.perf_counter() - t0)
    if args.list:
        print("\n".join(list_tasks(cache)))
    return 0
