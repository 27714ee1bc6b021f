"""``ebt bench``: speed of the fast text EBT against its reference path and Transformer++ (issue 5).

Times a full training step (System 1 and System 2; fast cached-context path and the reference full-2S path)
and generation (KV-cached vs full recomputation), interleaved in one process; prints markdown tables with the
ratios against the targets and writes the JSON. ``--quick`` is a smoke test (well under a minute); the default
grid is the published one (``docs/speed.md``). The measurement code is not part of the library: it lives in
``benchmarks/bench.py`` of a source checkout, which this command loads.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from ..core.device import resolve_device
from . import checks, parse_int_list, write_json_atomic
from .output import check_file


def add_parser(sub):
    p = sub.add_parser("bench", help="benchmark train steps and generation (EBT fast/reference vs Transformer++)",
                       description="Benchmark the text EBT (fast and reference paths) against Transformer++.")
    p.add_argument("--quick", action="store_true", help="tiny grid: a smoke test in well under a minute")
    p.add_argument("--only", choices=("train", "generate"), default=None, help="run one part only")
    p.add_argument("--rounds", type=checks.positive_int, default=None, help="interleaved timing rounds (default 3; quick: 2)")
    p.add_argument("--threads", type=checks.positive_int, default=1,
                   help="torch threads (default 1: stable timings on a shared machine)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--sizes", default=None, help="restrict the grid, e.g. 4xs (comma-separated)")
    p.add_argument("--contexts", type=checks.int_list(1), default=None, help="restrict the grid, e.g. 128")
    p.add_argument("--vocabs", type=checks.int_list(1), default=None, help="restrict the grid, e.g. 256")
    p.add_argument("--batches", type=checks.int_list(1), default=None, help="restrict the train grid, e.g. 8")
    p.add_argument("--out", default=None, help="write the JSON here (default: print tables only)")
    return p


BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"


def load_bench():
    """The benchmark module of the source checkout (``benchmarks/bench.py``)."""
    if not BENCH.is_file():
        raise ValueError(f"ebt bench needs a source checkout of ebtkit ({BENCH} not found); see docs/speed.md")
    spec = importlib.util.spec_from_file_location("ebtkit_benchmarks", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def run(args) -> int:
    out = check_file(args.out, "--out") if args.out else None     # where the JSON goes, before anything is timed
    dev = resolve_device(getattr(args, "device", "auto"))
    if dev.type == "cuda":
        # the GPU benchmark is its own script (parity tests, fp32/bf16 steps, sync check): benchmarks/gpu_check.py
        script = BENCH.parent / "gpu_check.py"
        if not script.is_file():
            raise ValueError(f"ebt bench --device cuda needs a source checkout of ebtkit ({script} not found)")
        cmd = [sys.executable, str(script), "--device", str(dev)] + (["--out", args.out] if args.out else [])
        return subprocess.call(cmd)
    if dev.type != "cpu":
        raise ValueError(f"ebt bench measures the CPU (benchmarks/bench.py) or CUDA (benchmarks/gpu_check.py), "
                         f"not {dev}")
    bench = load_bench()
    if args.rounds is not None and args.rounds < 1:
        raise ValueError("--rounds must be >= 1")
    if args.threads < 1:
        raise ValueError("--threads must be >= 1")
    grid = "quick" if args.quick else "full"
    rounds = args.rounds or (2 if args.quick else 3)
    parts = (args.only,) if args.only else ("train", "generate")
    keep = {k: (set(parse_int_list(v)) if k != "sizes" else set(v.split(",")))
            for k, v in (("sizes", args.sizes), ("contexts", args.contexts), ("vocabs", args.vocabs),
                         ("batches", args.batches)) if v}
    ok = lambda c: all(getattr(c, attr) in keep[k] for k, attr in  # noqa: E731
                       (("sizes", "size"), ("contexts", "context"), ("vocabs", "vocab"), ("batches", "batch"))
                       if k in keep and hasattr(c, attr))
    train = [c for c in bench.GRIDS[grid]["train"] if ok(c)]
    gen = [c for c in bench.GRIDS[grid]["generate"] if ok(c)]
    if not train and not gen:
        raise ValueError("the filters leave nothing to run")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    result = bench.run(grid, rounds=rounds, threads=args.threads, parts=parts, memory=not args.no_memory,
                       train_cases=train, gen_cases=gen, log=log)
    result["summary"] = bench.summary(result)
    print(bench.format_tables(result))
    if out is not None:
        write_json_atomic(out, result)
        print(f"\nwrote {out}")
    return 0
