"""``ebt eval RUN``: exact evaluation of a trained run.

Text: validation and out-of-distribution perplexity (exp of summed NLL over summed tokens) at a list of
thinking-step counts; a table on stdout and ``eval.json`` in the run directory. For EBT runs, then the System 2
thinking study (:mod:`ebtkit.thinking_eval`): perplexity vs NFEs for thinking longer, best-of-N and early stop
(and a Transformer++ run given with ``--baseline``), energy-vs-difficulty correlations and random-vs-real
energies — a table on stdout, ``thinking.json``, ``thinking.png`` and ``energy_heatmap.png`` in the run
directory (``--no-thinking`` skips it). Image denoising runs are handed to :mod:`ebtkit.denoise`.
"""
from __future__ import annotations

from pathlib import Path

from .. import checkpoint as ckpt
from . import parse_int_list, write_json_atomic


def add_parser(sub):
    p = sub.add_parser("eval", help="evaluate a trained run", description="Evaluate a run: exact perplexity "
                       "(text) or PSNR/MSE vs network evaluations (denoising).")
    p.add_argument("run", help="run directory (or checkpoint directory)")
    p.add_argument("--steps-list", default=None, help="text EBT: thinking-step counts, e.g. 1,2,4,8 (default: trained steps and 2× that)")
    p.add_argument("--max-windows", type=int, default=64, help="text: evaluation windows per split (default 64)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help="seed of the initial candidates")
    g = p.add_argument_group("thinking study (text EBT runs)")
    g.add_argument("--no-thinking", action="store_true", help="skip the thinking study")
    g.add_argument("--baseline", default=None, metavar="RUN", help="a Transformer++ run to compare against")
    g.add_argument("--think-steps", default="2,4,8,16", help="thinking-longer step counts (default 2,4,8,16)")
    g.add_argument("--bon", default="2,4,8", help="best-of-N candidate counts (default 2,4,8)")
    g.add_argument("--tols", default="auto", help="early-stop tolerances, e.g. 0.001,0.01, or 'auto' (default: "
                   "quantiles 0.25/0.5/0.9 of the per-token energy change one step past the trained steps)")
    g.add_argument("--thinking-windows", type=int, default=32, help="windows per split for the study (default 32)")
    try:
        from .. import denoise
        if hasattr(denoise, "add_eval_arguments"):
            denoise.add_eval_arguments(p)
    except ImportError:
        pass
    return p


def evaluate_text_run(run: str | Path, steps_list: list[int] | None = None, max_windows: int = 64,
                      batch_size: int = 16, seed: int = 0, quiet: bool = False) -> dict:
    from ..data.text import prepare_text_data
    from ..evaluate import is_ebt, perplexity
    run = Path(run)
    model = ckpt.load(run)
    cfg = model.run_config
    data = prepare_text_data(cfg.data, cfg.model.context, model.tokenizer)
    if max_windows < 1 or batch_size < 1:
        raise ValueError("--max-windows and --batch-size must be >= 1")
    if is_ebt(model):
        trained = cfg.thinking.default_eval_steps
        steps_list = steps_list or sorted({trained, 2 * trained})
    else:
        steps_list = [0]
    rows = []
    for steps in steps_list:
        row = {"steps": steps}
        for split, tokens in (("val", data.val), ("ood", data.ood)):
            if tokens is None:
                continue
            r = perplexity(model, tokens, cfg.model.context, steps=steps or None, batch_size=batch_size,
                           max_windows=max_windows, seed=seed)
            row[f"{split}_ppl"], row[f"{split}_tokens"] = r["ppl"], r["tokens"]
            row["nfe_per_token"] = r["nfe_per_token"]
        rows.append(row)
    result = {"run": str(run), "model": cfg.model.model, "preset": cfg.preset, "data": data.source,
              "ood": cfg.data.ood, "rows": rows}
    out_dir = run if (run / ckpt.CKPT).exists() or not (run / "config.json").exists() else run.parent
    write_json_atomic(out_dir / "eval.json", result)
    if not quiet:
        print(f"{'model':<14}{'steps':>6}{'val ppl':>10}{'ood ppl':>10}")
        for r in rows:
            print(f"{cfg.model.model:<14}{r['steps'] or '-':>6}{r.get('val_ppl', float('nan')):>10.3f}"
                  f"{r.get('ood_ppl', float('nan')):>10.3f}")
        print(f"eval: {out_dir / 'eval.json'}")
    return result


def run(args) -> int:
    meta = ckpt.read_config(args.run)
    if meta["task"] == "denoise":
        from .. import denoise
        denoise.eval_main(Path(args.run), args)
        return 0
    steps = parse_int_list(args.steps_list) if args.steps_list else None
    # check every thinking-study option before anything is evaluated or written
    think_steps, bon, tols = parse_int_list(args.think_steps), parse_int_list(args.bon), parse_tols(args.tols)
    if args.thinking_windows < 1:
        raise ValueError("--thinking-windows must be >= 1")
    if args.baseline is not None:
        if args.no_thinking:
            raise ValueError("--baseline is used by the thinking study; drop --no-thinking")
        if meta["config"]["model"]["model"] != "ebt":
            raise ValueError("--baseline applies to EBT runs")
        base = ckpt.read_config(args.baseline)
        if base["task"] != "text" or base["config"]["model"]["model"] != "transformer++":
            raise ValueError(f"--baseline {args.baseline} must be a Transformer++ text run")
    evaluate_text_run(args.run, steps, args.max_windows, args.batch_size, args.seed)
    if not args.no_thinking:
        evaluate_thinking_run(args.run, baseline=args.baseline, think_steps=think_steps, bon=bon, tols=tols,
                              max_windows=args.thinking_windows, batch_size=args.batch_size, seed=args.seed)
    return 0


def parse_tols(text: str) -> list[float] | str:
    if text.strip() == "auto":
        return "auto"
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--tols expects 'auto' or comma-separated numbers, got {text!r}") from None
    if not vals or any(v < 0 for v in vals):
        raise ValueError(f"--tols must be non-negative, got {text!r}")
    return vals


def evaluate_thinking_run(run: str | Path, *, baseline: str | Path | None = None, think_steps=(2, 4, 8, 16),
                          bon=(2, 4, 8), tols: list[float] | str = "auto", max_windows: int = 32,
                          batch_size: int = 16, seed: int = 0, quiet: bool = False) -> dict | None:
    """The thinking study of a text EBT run (None for Transformer++ runs); writes thinking.json and plots."""
    from ..data.text import prepare_text_data
    from ..evaluate import is_ebt
    from ..thinking_eval import evaluate_thinking, format_report
    from .think import run_dir
    model = ckpt.load(run)
    if not is_ebt(model):
        if baseline is not None:
            raise ValueError("--baseline applies to EBT runs")
        return None
    cfg = model.run_config
    base = None
    if baseline is not None:
        base = ckpt.load(baseline)
        if is_ebt(base) or ckpt.read_config(baseline)["task"] != "text":
            raise ValueError(f"--baseline {baseline} must be a Transformer++ text run")
        if base.cfg.vocab_size != model.cfg.vocab_size or base.run_config.data != cfg.data:
            raise ValueError(f"--baseline {baseline} was trained on other data or another tokenizer")
        if base.cfg.context < cfg.model.context:
            raise ValueError(f"--baseline {baseline} has a shorter context ({base.cfg.context}) than the EBT "
                             f"({cfg.model.context})")
    if max_windows < 1 or batch_size < 1:
        raise ValueError("--thinking-windows and --batch-size must be >= 1")
    data = prepare_text_data(cfg.data, cfg.model.context, model.tokenizer)
    out_dir = run_dir(run)
    log = (lambda *_: None) if quiet else print
    res = evaluate_thinking(model, data, cfg.model.context, baseline=base, max_windows=max_windows,
                            batch_size=batch_size, seed=seed, think_steps=think_steps, bon=bon, tols=tols,
                            out_dir=out_dir, log=log)
    res = {"run": str(run), "preset": cfg.preset, "system": cfg.thinking.system, "data": data.source,
           "ood": cfg.data.ood, "baseline": str(baseline) if baseline else None, **res}
    write_json_atomic(out_dir / "thinking.json", res)
    if not quiet:
        print(format_report(res))
        print(f"thinking: {out_dir / 'thinking.json'}; plots: {', '.join(res['plots'])}")
    return res
