"""``ebt eval RUN``: exact evaluation of a trained run.

Text: validation and out-of-distribution perplexity (exp of summed NLL over summed tokens) at a list of
thinking-step counts; a table on stdout and ``eval.json`` in the run directory. Image denoising runs are
handed to :mod:`ebtkit.denoise`.
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
    evaluate_text_run(args.run, steps, args.max_windows, args.batch_size, args.seed)
    return 0
