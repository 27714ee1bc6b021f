"""``ebt train``: train a model (default: the main job — the text EBT on the built-in corpus)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import PRESETS, RECIPES, preset


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def add_parser(sub):
    p = sub.add_parser("train", help="train a model", description="Train a model. With no options: the text EBT "
                       "('cpu' preset, System 1) on the built-in King James Bible corpus, then evaluate it.")
    p.add_argument("--task", default="text", choices=["text", "denoise"], help="text (default) or image denoising")
    p.add_argument("--model", default=None, help="text: ebt | transformer++ (default ebt); denoise: ebt | dit")
    p.add_argument("--preset", default=None, help=f"size/hyperparameter preset (text: {', '.join(PRESETS)}; default cpu)")
    p.add_argument("--system", default=None, help=f"thinking recipe for the EBT: {', '.join(RECIPES)} (default: the preset's own; s1 for size presets)")
    p.add_argument("--data", default=None, help="text: a UTF-8 text file (default: built-in corpus); "
                   "denoise: an IDX file, a folder of IDX files or a folder of images")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (with --resume: extend the run to N)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--alpha", type=float, default=None, help="EBT thinking step size α")
    p.add_argument("--context", type=int, default=None, help="text: context length S")
    p.add_argument("--tokenizer", default=None, choices=["byte", "bpe"], help="text: byte (default) or a BPE trained here")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", default=None, help="run directory (default runs/<model>-<preset>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN", help="continue the run in RUN")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted config override, e.g. --set thinking.steps=3 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    try:
        from .. import denoise
        denoise.add_train_arguments(p)
    except ImportError:
        pass
    return p


def text_config(args):
    model = args.model or "ebt"
    overrides = {"model.model": model}
    if args.system is not None:
        if args.system not in RECIPES:
            raise ValueError(f"unknown system {args.system!r}; choose from {', '.join(RECIPES)}")
        if model != "ebt":
            raise ValueError("--system applies to --model ebt only")
    for key, val in (("train.steps", args.steps), ("train.batch_size", args.batch_size), ("train.lr", args.lr),
                     ("model.alpha", args.alpha), ("model.context", args.context), ("train.seed", args.seed),
                     ("data.tokenizer", args.tokenizer), ("data.path", args.data)):
        if val is not None:
            overrides[key] = val
    for item in args.set:
        key, eq, val = item.partition("=")
        if not eq:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = _value(val)
    return preset(args.preset or "cpu", system=args.system, **overrides)


def run(args) -> int:
    if args.task == "denoise":
        from .. import denoise
        res = denoise.train_main(args)
        print(f"checkpoint: {res['checkpoint']}")
        return 0
    from ..train import train
    if args.resume:
        if args.out:
            raise ValueError("give --resume RUN or --out DIR, not both")
        res = train(None, args.resume, resume=True, steps=args.steps, progress=not args.no_progress)
        out = Path(args.resume)
    else:
        cfg = text_config(args)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(args.out or f"runs/{cfg.model.model.replace('+', 'p')}-{cfg.preset}-{stamp}")
        res = train(cfg, out, progress=not args.no_progress)
    print(f"checkpoint: {res['checkpoint']}")
    print(f"metrics:    {res['metrics']}")
    if not args.no_eval:
        from .eval import evaluate_text_run
        evaluate_text_run(out)
    return 0
