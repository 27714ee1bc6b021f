"""Shared driver for the benchmark scripts: run a part of a :mod:`bench` grid, write JSON + markdown.

The measurement code lives in ``bench.py`` beside this file (also behind ``ebt bench``); these scripts only pick a part
of the grid and keep the results under ``benchmarks/results/``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import bench

RESULTS = Path(__file__).resolve().parent / "results"


def main(part: str, argv=None) -> int:
    p = argparse.ArgumentParser(description=f"{part} benchmark (see docs/speed.md)")
    p.add_argument("--grid", default="full", choices=sorted(bench.GRIDS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--out", default=None, help=f"JSON path (default results/{part}_<grid>.json)")
    a = p.parse_args(argv)
    out = Path(a.out) if a.out else RESULTS / f"{part}_{a.grid}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    res = bench.run(a.grid, rounds=a.rounds, threads=a.threads, parts=(part,), memory=not a.no_memory, log=log)
    res["summary"] = bench.summary(res)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=2))
    os.replace(tmp, out)
    table = bench.format_tables(res)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {out} and {out.with_suffix('.md')}")
    return 0
