"""``ebt eval RUN``: exact evaluation of a trained run.

Text: validation and out-of-distribution perplexity (exp of summed NLL over summed tokens) at a list of
thinking-step counts; a table on stdout and ``eval.json`` in the run directory. For EBT runs, then the System 2
thinking study (:mod:`ebtkit.eval.thinking_study`): perplexity vs NFEs for thinking longer, best-of-N and early
stop (and a Transformer++ run given with ``--baseline``), energy-vs-difficulty correlations and random-vs-real
energies — a table on stdout, ``thinking.json``, ``thinking.png`` and ``energy_heatmap.png`` in the run
directory (``--no-thinking`` skips it).

Sequences (``--task sequence`` runs): teacher-forced next-step MSE/MAE, autoregressive rollouts over the horizon
(error vs horizon; video: summed per-frame MSE and SSIM), the EBT's error vs thinking steps and best-of-N, and
energy-vs-error Spearman, for the run and a second one given with ``--compare`` on the same test windows
(:mod:`ebtkit.eval.sequence`); ``eval_sequence.json``, ``error_vs_horizon.png``, ``error_vs_nfe.png``,
``rollout.png`` (and ``rollout.gif`` for video) in the run directory.

Image denoising: PSNR/MSE against NFEs (:mod:`ebtkit.eval.denoise`), EBT thinking with any inference policy
(``--samples``, ``--accept-lower``, ``--tol``, ``--sigma``, ``--alpha``), a second run with ``--compare``;
``eval_denoise.json``, ``psnr_vs_nfe.png`` and ``samples.png`` in the run directory.
"""
from __future__ import annotations

from pathlib import Path

from ..core import checkpoint as ckpt
from ..core.thinking import is_energy_model
from ..data.images import load_image_data
from ..data.text import prepare_text_data
from ..eval.denoise import EvalSpec, evaluate, format_table, plot_psnr, plot_samples
from ..eval.inference import SELECTIONS, Policy
from ..eval.metrics import perplexity
from ..eval.sequence import evaluate_sequence, format_sequence_report
from ..eval.thinking_study import evaluate_thinking, format_report
from ..tasks import Bundle, load
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
    g.add_argument("--think-steps", default=None, help="thinking-longer step counts (default 2,4,8,16; "
                   "sequences 1,2,4,8)")
    g.add_argument("--bon", default="2,4,8", help="best-of-N candidate counts (default 2,4,8)")
    g.add_argument("--tols", default="auto", help="early-stop tolerances, e.g. 0.001,0.01, or 'auto' (default: "
                   "quantiles 0.25/0.5/0.9 of the per-token energy change one step past the trained steps)")
    g.add_argument("--thinking-windows", type=int, default=32, help="windows per split for the study (default 32)")
    g = p.add_argument_group("sequence runs")
    g.add_argument("--windows", type=int, default=256, help="test windows to roll out (default 256)")
    g.add_argument("--bon-sigma", type=float, default=0.05,
                   help="best-of-N: std of the noise added to the starts of samples 2..N (model units; default 0.05)")
    g = p.add_argument_group("image denoising runs")
    g.add_argument("--compare", default=None, metavar="RUN",
                   help="a second run of the same task (the DiT, the Transformer++) evaluated on the same inputs")
    g.add_argument("--images", type=int, default=500, help="test images to evaluate (default 500)")
    g.add_argument("--sigmas", default=None, help="noise levels, e.g. 0.1,0.2 (default: the run's eval_sigmas)")
    g.add_argument("--ebt-nfe", default="1,2,3,5,10", help="EBT thinking steps to report (default 1,2,3,5,10)")
    g.add_argument("--dit-nfe", default="1,2,3,5,10,100",
                   help="DiT DDIM steps to report (default 1,2,3,5,10,100; the full chain is always added)")
    g.add_argument("--samples", type=int, default=1, help="EBT best-of-N candidates per image (default 1)")
    g.add_argument("--select", default="min", choices=SELECTIONS, help="best-of-N selection (min | max_drop)")
    g.add_argument("--accept-lower", action="store_true", help="EBT: keep a step only where it lowers the energy")
    g.add_argument("--tol", type=float, default=None, help="EBT: stop an image once its energy changes by less")
    g.add_argument("--sigma", type=float, default=0.0, help="EBT: Langevin noise σ at inference (0 = none)")
    g.add_argument("--alpha", type=float, default=None, help="EBT: step size α override")
    return p


def _text_bundle(run) -> Bundle:
    b = load(run)
    if b.task != "text":
        raise ValueError(f"{run} is a {b.task!r} run, not a text run")
    return b


def evaluate_text_run(run: str | Path, steps_list: list[int] | None = None, max_windows: int = 64,
                      batch_size: int = 16, seed: int = 0, quiet: bool = False) -> dict:
    if max_windows < 1 or batch_size < 1:
        raise ValueError("--max-windows and --batch-size must be >= 1")
    run = Path(run)
    b = _text_bundle(run)
    cfg, model = b.config, b.model
    data = prepare_text_data(cfg.data, cfg.model.context, b.tokenizer)
    ebt = is_energy_model(model)
    steps_list = (steps_list or sorted({b.eval_steps, 2 * b.eval_steps})) if ebt else [0]
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
    out_dir = ckpt.run_dir_of(run)
    write_json_atomic(out_dir / "eval.json", result)
    if not quiet:
        print(f"{'model':<14}{'steps':>6}{'val ppl':>10}{'ood ppl':>10}")
        for r in rows:
            print(f"{cfg.model.model:<14}{r['steps'] or '-':>6}{r.get('val_ppl', float('nan')):>10.3f}"
                  f"{r.get('ood_ppl', float('nan')):>10.3f}")
        print(f"eval: {out_dir / 'eval.json'}")
    return result


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
    b = _text_bundle(run)
    model, cfg = b.model, b.config
    if not is_energy_model(model):
        if baseline is not None:
            raise ValueError("--baseline applies to EBT runs")
        return None
    base = None
    if baseline is not None:
        bb = load(baseline)
        if bb.task != "text" or is_energy_model(bb.model):
            raise ValueError(f"--baseline {baseline} must be a Transformer++ text run")
        if bb.config.model.vocab_size != cfg.model.vocab_size or bb.config.data != cfg.data:
            raise ValueError(f"--baseline {baseline} was trained on other data or another tokenizer")
        if bb.config.model.context < cfg.model.context:
            raise ValueError(f"--baseline {baseline} has a shorter context ({bb.config.model.context}) than the EBT "
                             f"({cfg.model.context})")
        base = bb.model
    if max_windows < 1 or batch_size < 1:
        raise ValueError("--thinking-windows and --batch-size must be >= 1")
    data = prepare_text_data(cfg.data, cfg.model.context, b.tokenizer)
    out_dir = ckpt.run_dir_of(run)
    log = (lambda *_: None) if quiet else print
    res = evaluate_thinking(model, data, cfg.model.context, trained_steps=b.eval_steps, baseline=base,
                            max_windows=max_windows, batch_size=batch_size, seed=seed, think_steps=think_steps,
                            bon=bon, tols=tols, out_dir=out_dir, log=log,
                            title=f"EBT {cfg.thinking.system.upper()} ({cfg.preset} preset)")
    res = {"run": str(run), "preset": cfg.preset, "system": cfg.thinking.system, "data": data.source,
           "ood": cfg.data.ood, "baseline": str(baseline) if baseline else None, **res}
    write_json_atomic(out_dir / "thinking.json", res)
    if not quiet:
        print(format_report(res))
        print(f"thinking: {out_dir / 'thinking.json'}; plots: {', '.join(res['plots'])}")
    return res


def evaluate_denoise_runs(run: Path, compare: Path | None, spec: EvalSpec, use_run_sigmas: bool = True,
                          policy: Policy | None = None, quiet: bool = False) -> dict:
    """Evaluate a denoising run (and ``compare``, on the same noisy test images); print the table and write
    ``eval_denoise.json``, ``psnr_vs_nfe.png`` and ``samples.png`` into the run directory."""
    first = load(run)
    if first.task != "denoise":
        raise ValueError(f"{run} is a {first.task!r} run, not a denoising run")
    cfg = first.config
    models, steps = {}, {}
    for path, b in ((run, first), (compare, load(compare) if compare else None)):
        if b is None:
            continue
        if b.task != "denoise":
            raise ValueError(f"{path} is a {b.task!r} run, not a denoising run")
        c = b.config
        if (c.model.image_size, c.model.channels) != (cfg.model.image_size, cfg.model.channels):
            raise ValueError(f"{path} works on {c.model.channels}×{c.model.image_size}² images, {run} on "
                             f"{cfg.model.channels}×{cfg.model.image_size}²")
        if (c.noise.diffusion_steps, c.noise.beta_start, c.noise.beta_end) != \
                (cfg.noise.diffusion_steps, cfg.noise.beta_start, cfg.noise.beta_end):
            raise ValueError(f"{path} and {run} use different diffusion schedules; their noise levels differ")
        label = "EBT" if c.model.model == "ebt" else "DiT"
        if label in models:
            label = f"{label} ({Path(path).name})"
        models[label], steps[label] = b.model, c.train.steps
    if use_run_sigmas:
        spec = EvalSpec(**{**spec.__dict__, "sigmas": list(cfg.noise.eval_sigmas)})
    data = load_image_data(cfg.data, cfg.model.image_size, cfg.model.channels)
    spec = EvalSpec(**{**spec.__dict__, "images": min(spec.images, len(data.test))})
    result = evaluate(models, data.test, cfg.noise.diffusion(), spec, policy=policy)
    out_dir = ckpt.run_dir_of(run)
    summary = {k: v for k, v in result.items() if k != "samples"}
    summary.update(run=str(run), compare=str(compare) if compare else None, data=data.source,
                   params={lab: sum(p.numel() for p in m.parameters()) for lab, m in models.items()},
                   train_steps=steps, policy=(policy or Policy()).kwargs())
    write_json_atomic(out_dir / "eval_denoise.json", summary)
    plot_psnr(result, out_dir / "psnr_vs_nfe.png")
    plot_samples(result, out_dir / "samples.png")
    if not quiet:
        print(format_table(result), end="")
        print(f"eval: {out_dir / 'eval_denoise.json'}, {out_dir / 'psnr_vs_nfe.png'}, {out_dir / 'samples.png'}")
    return summary


def _denoise(args) -> int:
    sigmas = args.sigmas
    try:
        spec = EvalSpec(ebt_nfe=_ints(args.ebt_nfe, "--ebt-nfe"), dit_nfe=_ints(args.dit_nfe, "--dit-nfe"),
                        images=int(args.images), seed=int(args.seed),
                        **({"sigmas": [float(s) for s in sigmas.split(",") if s.strip()]} if sigmas else {}))
    except ValueError as e:
        raise ValueError(str(e).splitlines()[0]) from None
    policy = Policy(alpha=args.alpha, samples=args.samples, select=args.select, accept_lower=args.accept_lower,
                    tol=args.tol, langevin_sigma=args.sigma)
    evaluate_denoise_runs(Path(args.run), Path(args.compare) if args.compare else None, spec,
                          use_run_sigmas=not sigmas, policy=policy)
    return 0


def _ints(text: str, name: str) -> list[int]:
    try:
        vals = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} expects comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise ValueError(f"{name} expects positive integers, got {text!r}")
    return vals


def evaluate_sequence_runs(run: Path, compare: Path | None = None, *, windows: int = 256, think_steps=(1, 2, 4, 8),
                           bon=(2, 4, 8), bon_sigma: float = 0.05, batch_size: int = 64, seed: int = 0,
                           quiet: bool = False) -> dict:
    """Evaluate a sequence run (and ``compare``, on the same test windows); print the table and write
    ``eval_sequence.json`` and the pictures into the run directory."""
    from ..data.sequences import load_sequence_data   # noqa: PLC0415 (only sequence runs need it)
    if windows < 1 or batch_size < 1:
        raise ValueError("--windows and --batch-size must be >= 1")
    if bon_sigma < 0:
        raise ValueError(f"--bon-sigma must be >= 0, got {bon_sigma}")
    first = load(run)
    if first.task != "sequence":
        raise ValueError(f"{run} is a {first.task!r} run, not a sequence run")
    cfg = first.config
    bundles = [(run, first)]
    if compare is not None:
        other = load(compare)
        if other.task != "sequence":
            raise ValueError(f"{compare} is a {other.task!r} run, not a sequence run")
        if other.config.data != cfg.data or other.config.model.context != cfg.model.context:
            raise ValueError(f"{compare} was trained on other data or windows than {run}; they cannot share test windows")
        bundles.append((compare, other))
    models = {}
    for path, b in bundles:
        label = "EBT" if b.config.model.model == "ebt" else "Transformer++"
        if label in models:
            label = f"{label} ({Path(path).name})"
        models[label] = (b.model, b.eval_steps if is_energy_model(b.model) else None)
    data = load_sequence_data(cfg.data, cfg.model.context + 1)
    out_dir = ckpt.run_dir_of(run)
    res = evaluate_sequence(models, data, out_dir, max_windows=windows, batch_size=batch_size, think_steps=think_steps,
                            bon=bon, bon_sigma=bon_sigma, seed=seed, log=(lambda *_: None) if quiet else print)
    res.update(run=str(run), compare=str(compare) if compare else None, data=data.source, preset=cfg.preset,
               train_steps={label: b.config.train.steps for (_, b), label in zip(bundles, models)})
    write_json_atomic(out_dir / "eval_sequence.json", res)
    if not quiet:
        print(format_sequence_report(res))
        print(f"eval: {out_dir / 'eval_sequence.json'}; plots: " + ", ".join(str(out_dir / p) for p in res["plots"].values()))
    return res


def _sequence(args) -> int:
    think_steps = parse_int_list(args.think_steps or "1,2,4,8")
    evaluate_sequence_runs(Path(args.run), Path(args.compare) if args.compare else None, windows=args.windows,
                           think_steps=think_steps, bon=parse_int_list(args.bon), bon_sigma=args.bon_sigma,
                           batch_size=args.batch_size, seed=args.seed)
    return 0


def run(args) -> int:
    meta = ckpt.read_config(args.run)
    if meta["task"] == "denoise":
        return _denoise(args)
    if meta["task"] == "sequence":
        return _sequence(args)
    steps = parse_int_list(args.steps_list) if args.steps_list else None
    # check every thinking-study option before anything is evaluated or written
    think_steps, bon, tols = parse_int_list(args.think_steps or "2,4,8,16"), parse_int_list(args.bon), parse_tols(args.tols)
    if args.thinking_windows < 1:
        raise ValueError("--thinking-windows must be >= 1")
    if args.baseline is not None:
        if args.no_thinking:
            raise ValueError("--baseline is used by the thinking study; drop --no-thinking")
        if meta["config"].get("model", {}).get("model") != "ebt":
            raise ValueError("--baseline applies to EBT runs")
        base = ckpt.read_config(args.baseline)
        if base["task"] != "text" or base["config"].get("model", {}).get("model") != "transformer++":
            raise ValueError(f"--baseline {args.baseline} must be a Transformer++ text run")
    evaluate_text_run(args.run, steps, args.max_windows, args.batch_size, args.seed)
    if not args.no_thinking:
        evaluate_thinking_run(args.run, baseline=args.baseline, think_steps=think_steps, bon=bon, tols=tols,
                              max_windows=args.thinking_windows, batch_size=args.batch_size, seed=args.seed)
    return 0
