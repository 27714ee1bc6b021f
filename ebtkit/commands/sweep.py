"""``ebt sweep [SPEC]``: a scaling sweep (data, parameters, batch size, depth) of EBT vs Transformer++.

Each (point, model, seed) becomes an ordinary run directory under ``OUT/runs/`` (``ebt train`` + ``ebt eval``
subprocesses, ``OMP_NUM_THREADS=1`` each, ``--jobs`` at a time); an interrupted sweep resumes where it stopped.
``OUT/sweep.json`` indexes it; at the end the log-log slopes with bootstrap intervals are printed
(``ebt report OUT`` makes the HTML page). Spec format: :mod:`ebtkit.study.sweep`.
"""
from __future__ import annotations

from pathlib import Path

from . import checks
from .output import check_new_dir


def add_parser(sub):
    p = sub.add_parser("sweep", help="run a scaling sweep (resumable) and fit log-log slopes",
                       description="Run a scaling sweep from a TOML/JSON spec and/or flags: every point × model × "
                       "seed is a run directory under OUT/runs; finished runs are skipped on a rerun. Prints the "
                       "slopes (log perplexity vs log resource) with bootstrap 95%% intervals at the end.")
    p.add_argument("spec", nargs="?", default=None, help="sweep spec (.toml or .json); flags below override it")
    p.add_argument("--out", default=None, help="sweep directory (default: the spec's 'out', else runs/sweep-<name>)")
    p.add_argument("--preset", default=None, help="size preset of every run (default cpu)")
    p.add_argument("--system", default=None, help="thinking recipe of the EBT runs (s1 | s2)")
    p.add_argument("--models", default=None, help="comma list (default ebt,transformer++)")
    p.add_argument("--seeds", default=None, help="comma list of training seeds (default 0)")
    p.add_argument("--steps", default=None, metavar="LIST", help="data axis: training steps, e.g. 100,200,400,800")
    p.add_argument("--width", default=None, metavar="LIST", help="parameter axis: d_model values, e.g. 32,48,64,96")
    p.add_argument("--depth", default=None, metavar="LIST", help="depth axis: n_layers values, e.g. 1,2,4,8")
    p.add_argument("--batch", default=None, metavar="LIST", help="batch axis: batch sizes, e.g. 8,16,32,64")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run (repeatable)")
    p.add_argument("--jobs", type=checks.positive_int, default=None, help="parallel runs (default: the spec's, else 1)")
    p.add_argument("--eval-windows", type=checks.positive_int, default=None,
                   help="validation/OOD windows per run (default 64)")
    p.add_argument("--thinking", action="store_true", help="also run the thinking study on EBT runs (ppl vs NFEs)")
    p.add_argument("--no-flops", action="store_true", help="skip counting training FLOPs")
    p.add_argument("--metric", default="val_ppl", choices=["val_ppl", "ood_ppl", "val_loss"], help="fitted metric")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    return p


def build_spec(args) -> dict:
    from ..study.spec import load_spec, merge_specs, normalise_spec, safe_name, spec_from_flags
    base = load_spec(args.spec) if args.spec else {}
    flags = spec_from_flags(preset=args.preset, models=args.models, seeds=args.seeds, steps=args.steps,
                            width=args.width, depth=args.depth, batch=args.batch, sets=args.set, system=args.system)
    if not flags["axes"]:
        del flags["axes"]
    spec = merge_specs(base, flags)
    if "name" not in spec and args.out:
        spec["name"] = safe_name(Path(args.out).resolve().name)   # a flags-only sweep is named after its directory
    if args.jobs is not None:
        spec["jobs"] = args.jobs
    if args.eval_windows is not None:
        spec.setdefault("eval", {})["max_windows"] = args.eval_windows
    if args.thinking:
        spec.setdefault("eval", {})["thinking"] = True
    if args.no_flops:
        spec["flops"] = False
    return normalise_spec(spec, source=args.spec)


def run(args) -> int:
    from ..study.results import fit_sweep, format_fits
    from ..study.sweep import run_sweep
    spec = build_spec(args)
    out = Path(args.out or spec.get("out") or f"runs/sweep-{spec['name']}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"sweep directory {out} exists and is not a folder")
    if not args.dry_run:
        check_new_dir(out, "--out" if args.out else "sweep directory")   # before any run starts
    index = run_sweep(spec, out, dry_run=args.dry_run, source=args.spec)
    if args.dry_run:
        return 0
    rows = fit_sweep(index, metric=args.metric)
    if rows:
        print(format_fits(rows))
    print(f"report: ebt report {out}")
    return 1 if index.get("failures") else 0
