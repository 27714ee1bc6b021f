"""``ebt data bigbench``: fetch BIG-bench (PyPI ``bigbench==1.0.0``, 358 MB sdist) into the user cache once.

Runs ``python -m pip download --no-deps --no-binary bigbench bigbench==1.0.0`` into a temporary directory
inside the cache (pip's progress bar stays visible), checks the SHA-256, moves the tarball in atomically, and
indexes it, extracting the paper's two tasks (``dyck_languages``, ``elementary_math_qa``). Without the network
it fails with one line and leaves nothing behind. ``--list`` prints every task name. The cache is
``$EBTKIT_CACHE/bigbench`` (default ``~/.cache/ebtkit/bigbench``); ``ebt eval RUN --tasks NAME`` reads it.
"""
from __future__ import annotations

import time

from ..data.bigbench import PAPER_TASKS, build_index, cache_dir, fetch_sdist, list_tasks

SOURCES = ("bigbench",)


def add_parser(sub):
    p = sub.add_parser("data", help="download benchmark data into the user cache (network, once)",
                       description="Download benchmark data once into the user cache ($EBTKIT_CACHE, default "
                       "~/.cache/ebtkit). 'bigbench': the BIG-bench JSON tasks (PyPI bigbench==1.0.0, 358 MB) "
                       "for 'ebt eval RUN --tasks NAME'.")
    p.add_argument("source", choices=SOURCES, help="what to fetch: bigbench")
    p.add_argument("--list", action="store_true", help="print every task name (after fetching if needed)")
    return p


def run(args) -> int:
    cache = cache_dir()
    index_file = cache / "index.json"
    had = (cache / "bigbench-1.0.0.tar.gz").is_file() and index_file.is_file()
    fetch_sdist(cache)
    if not had:
        t0 = time.perf_counter()
        index = build_index(cache, PAPER_TASKS)
        print(f"indexed {len(index['tasks'])} tasks and extracted {', '.join(PAPER_TASKS)} in "
              f"{time.perf_counter() - t0:.1f} s; other tasks are extracted on first use")
    if args.list:
        print("\n".join(list_tasks(cache)))
    return 0
