"""``ebt report PATH [PATH ...]``: one self-contained HTML page for a sweep, a run, or a comparison of runs.

Learning curves, evaluation, perplexity vs NFEs per inference policy, the slope table and log-log plots with
bootstrap intervals (sweeps), a passage coloured by per-token energy, samples, config and environment; every
asset inlined (no network, no server). See :mod:`ebtkit.study.report`.
"""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("report", help="write one self-contained HTML report of a sweep or runs",
                       description="Write one self-contained HTML page (no network, assets inlined) for a sweep "
                       "directory, a run directory, or several runs to compare.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="a sweep directory, or one or more run directories")
    p.add_argument("--out", default=None, help="HTML file (default PATH/report.html; ./report.html for several runs)")
    p.add_argument("--metric", default="val_ppl", choices=["val_ppl", "ood_ppl", "val_loss"],
                   help="sweeps: the fitted metric (default val_ppl, as the paper)")
    p.add_argument("--passage", default=None, help="text for the per-token energy view (default: Genesis 1:1-2)")
    p.add_argument("--prompt", default=None, help="prompt for the generated text samples (default 'And God said'; "
                   "'' for none)")
    p.add_argument("--think-steps", type=int, default=None, help="thinking steps for the energy view (default: as trained)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    return p


def run(args) -> int:
    from ..study.report import PASSAGE, PROMPT, make_report
    if args.resamples < 100:
        raise ValueError("--resamples must be >= 100")
    if args.think_steps is not None and args.think_steps < 1:
        raise ValueError("--think-steps must be >= 1")
    out = make_report(args.paths, args.out, metric=args.metric, passage=args.passage or PASSAGE,
                      steps=args.think_steps, resamples=args.resamples,
                      prompt=PROMPT if args.prompt is None else args.prompt)
    print(f"report: {out}")
    return 0
