"""``ebt report PATH [PATH ...]``: one self-contained HTML page for a sweep, a run, or a comparison of runs.

Learning curves, evaluation, perplexity vs NFEs per inference policy, the slope table and log-log plots with
bootstrap intervals (sweeps), a passage coloured by per-token energy, samples, config and environment; every
asset inlined (no network, no server). See :mod:`ebtkit.study.report`.
"""
from __future__ import annotations

from pathlib import Path

from . import checks
from .output import check_file


def add_parser(sub):
    p = sub.add_parser("report", help="write one self-contained HTML report of a sweep or runs",
                       description="Write one self-contained HTML page (no network, assets inlined) for a sweep "
                       "directory, a run directory, or several runs to compare.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="a sweep directory, or one or more run directories")
    p.add_argument("--out", default=None, help="HTML file, or an existing folder to write report.html into (default "
                   "PATH/report.html; ./report.html for several runs); written atomically, nothing on an error")
    p.add_argument("--metric", default="val_ppl", choices=["val_ppl", "ood_ppl", "val_loss"],
                   help="sweeps: the fitted metric (default val_ppl, as the paper)")
    p.add_argument("--passage", default=None, help="text for the per-token energy view (default: Genesis 1:1-2)")
    p.add_argument("--prompt", default=None, help="prompt for the generated text samples (default 'And God said'; "
                   "'' for none)")
    p.add_argument("--think-steps", type=checks.positive_int, default=None,
                   help="thinking steps for the energy view (default: as trained)")
    p.add_argument("--resamples", type=checks.int_range(100), default=2000, help="bootstrap resamples, >= 100 "
                   "(default 2000)")
    return p


def run(args) -> int:
    from ..study.report import PASSAGE, PROMPT, make_report, report_target
    for p in args.paths:
        if not Path(p).exists():
            raise ValueError(f"{p} does not exist")
    out = check_file(report_target(args.paths, args.out), "--out" if args.out else None)   # before computing
    out = make_report(args.paths, out, metric=args.metric, passage=args.passage or PASSAGE,
                      steps=args.think_steps, resamples=args.resamples,
                      prompt=PROMPT if args.prompt is None else args.prompt)
    print(f"report: {out}")
    return 0
