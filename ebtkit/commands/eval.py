"""``ebt eval RUN``: exact evaluation of a trained run.

Text: one table (:mod:`ebtkit.eval.text_table`): exact perplexity (exp of summed NLL over summed tokens) on the
validation text and on the out-of-distribution text, named after its corpus (``pydoc``), every row on the same
windows, whose counts the header gives. One row per inference policy, with the NFEs it spent per token and its
cost relative to the plain evaluation (the EBT at its trained steps = ×1.0): by default the trained steps and twice
that (``--steps-list``); ``--bon`` adds best-of-N rows and ``--think-steps`` more step counts. A row whose result
equals the plain one says so (best-of-N from the System 1 recipe's deterministic start, without noise, thinks N
times along one path).

``--thinking`` adds the System 2 thinking study (:mod:`ebtkit.eval.thinking_study`): thinking longer, best-of-N,
early stop and a Transformer++ run given with ``--baseline`` become rows of the same table (same windows) with
paired gains over the plain row, followed by energy-vs-difficulty correlations and random-vs-real energies;
``thinking.json``, ``thinking.png`` and ``energy_heatmap.png`` in the run directory. The study is off by default (it
evaluates many policies); it also runs when one of its own options is given (``--baseline``, ``--tols``,
``--thinking-windows``: with fewer windows than the table its rows are a second table, whose header says so).
``--no-thinking`` is accepted and does nothing (deprecated: the study is off unless asked for).

Sequences (``--task sequence`` runs): teacher-forced next-step MSE/MAE, autoregressive rollouts over the horizon
(error vs horizon; video: summed per-frame MSE and SSIM), the EBT's error vs thinking steps and best-of-N, and
energy-vs-error Spearman, for the run and a second one given with ``--compare`` on the same test windows
(:mod:`ebtkit.eval.sequence`); ``eval_sequence.json``, ``error_vs_horizon.png``, ``error_vs_nfe.png``,
``rollout.png`` (and ``rollout.gif`` for video) in the run directory.

Image denoising: PSNR/MSE against NFEs (:mod:`ebtkit.eval.denoise`), EBT thinking with any inference policy
(``--samples``, ``--accept-lower``, ``--tol``, ``--sigma``, ``--alpha``), a second run with ``--compare``;
``eval_denoise.json``, ``psnr_vs_nfe.png`` and ``samples.png`` in the run directory.

Every task writes its JSON into the run directory; ``--json`` prints the same document on stdout instead of the
table (progress lines go to stderr).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ..core import checkpoint as ckpt
from ..core.thinking import is_energy_model
from ..data.fingerprint import same_data
from ..data.images import load_image_data
from ..data.text import prepare_text_data
from ..eval.denoise import EvalSpec, evaluate, format_table, plot_psnr, plot_samples
from ..eval.inference import SELECTIONS, Policy
from ..eval.sequence import evaluate_sequence, format_sequence_report
from ..eval.text_table import format_table as format_text_table
from ..eval.text_table import merge_study, policy_rows, split_info, study_rows
from ..eval.thinking_study import BON_SAMPLES, THINK_STEPS, evaluate_thinking
from ..tasks import Bundle, load
from . import checks, parse_int_list, write_json_atomic
from .downstream import run_tasks
from .output import staged_outputs


def add_parser(sub):
    p = sub.add_parser("eval", help="evaluate a trained run", description="Evaluate a run: exact perplexity "
                       "(text), PSNR/MSE vs network evaluations (denoising) or rollouts (sequences).")
    p.add_argument("run", help="run directory (or checkpoint directory)")
    p.add_argument("--json", action="store_true", help="print the evaluation as JSON on stdout instead of the table")
    p.add_argument("--steps-list", default=None, help="text EBT: thinking-step counts, e.g. 1,2,4,8 (default: trained steps and 2× that)")
    p.add_argument("--max-windows", type=checks.positive_int, default=64, help="text: evaluation windows per split (default 64)")
    p.add_argument("--batch-size", type=checks.positive_int, default=16)
    p.add_argument("--seed", type=checks.seed_int, default=0, help="seed of the initial candidates")
    g = p.add_argument_group("thinking study (text EBT runs)")
    g.add_argument("--thinking", action="store_true", help="run the thinking study: more policies as rows of the "
                   "table, energy as uncertainty, plots (off by default; its own options below also turn it on)")
    g.add_argument("--no-thinking", action="store_true", help="deprecated, does nothing: the study is off unless "
                   "--thinking is given")
    g.add_argument("--baseline", default=None, metavar="RUN", help="a Transformer++ run to compare against (study)")
    g.add_argument("--think-steps", default=None, help="thinking-longer step counts (study default 2,4,8,16; "
                   "without the study: extra step-count rows; sequences 1,2,4,8)")
    g.add_argument("--bon", default=None, help="best-of-N candidate counts (study and sequences default 2,4,8; "
                   "text without the study: best-of-N rows at the trained steps, none by default)")
    g.add_argument("--tols", default=None, help="early-stop tolerances, e.g. 0.001,0.01, or 'auto' (study; default: "
                   "quantiles 0.25/0.5/0.9 of the per-token energy change one step past the trained steps)")
    g.add_argument("--thinking-windows", type=checks.positive_int, default=None, help="windows per split for the study (default: "
                   "--max-windows, the table's own windows)")
    g = p.add_argument_group("sequence runs")
    g.add_argument("--windows", type=checks.positive_int, default=256, help="test windows to roll out (default 256)")
    g.add_argument("--bon-sigma", type=checks.nonneg_float, default=0.05,
                   help="best-of-N: std of the noise added to the starts of samples 2..N (model units; default 0.05)")
    g = p.add_argument_group("image denoising runs")
    g.add_argument("--compare", default=None, metavar="RUN",
                   help="a second run of the same task (the DiT, the Transformer++) evaluated on the same inputs")
    g.add_argument("--images", type=checks.positive_int, default=500, help="test images to evaluate (default 500)")
    g.add_argument("--sigmas", default=None, help="noise levels, e.g. 0.1,0.2 (default: the run's eval_sigmas)")
    g.add_argument("--ebt-nfe", default="1,2,3,5,10", help="EBT thinking steps to report (default 1,2,3,5,10)")
    g.add_argument("--dit-nfe", default="1,2,3,5,10,100",
                   help="DiT DDIM steps to report (default 1,2,3,5,10,100; the full chain is always added)")
    g.add_argument("--samples", type=checks.positive_int, default=1, help="EBT best-of-N candidates per image (default 1)")
    g.add_argument("--select", default="min", choices=SELECTIONS, help="best-of-N selection (min | max_drop)")
    g.add_argument("--accept-lower", action="store_true", help="EBT: keep a step only where it lowers the energy")
    g.add_argument("--tol", type=checks.nonneg_float, default=None, help="EBT: stop an image once its energy changes by less")
    g.add_argument("--sigma", type=checks.nonneg_float, default=0.0, help="EBT: Langevin noise σ at inference (0 = none)")
    g.add_argument("--alpha", type=checks.step_size, default=None, help="EBT: step size α override")
    g = p.add_argument_group("downstream tasks (text runs; ebtkit/commands/downstream.py)")
    g.add_argument("--tasks", default=None, metavar="NAME[,NAME...]", help="BIG-bench tasks (dyck_languages, "
                   "elementary_math_qa/question_only; 'ebt data bigbench' first) or .jsonl files: perplexity and "
                   "multiple-choice accuracy, with --baseline TPP_RUN beside the run; writes eval_tasks.json")
    g.add_argument("--task-examples", type=int, default=None, metavar="N", help="the first N examples of each task")
    g.add_argument("--task-steps", default=None, help="EBT thinking-step counts (default: trained and 4× that)")
    g.add_argument("--task-bon", type=int, default=4, help="best-of-N rows with N candidates (default 4; 1: none; "
                   "only for a random start)")
    return p


def _text_bundle(run) -> Bundle:
    b = load(run)
    if b.task != "text":
        raise ValueError(f"{run} is a {b.task!r} run, not a text run")
    return b


@dataclass(frozen=True)
class StudyOptions:
    """The thinking study's options (:func:`ebtkit.eval.thinking_study.evaluate_thinking`)."""

    baseline: str | None = None
    think_steps: tuple[int, ...] = THINK_STEPS
    bon: tuple[int, ...] = BON_SAMPLES
    tols: tuple[float, ...] | str = "auto"
    windows: int | None = None            # None: the table's windows (--max-windows)


def _baseline_model(baseline, b: Bundle):
    """The Transformer++ baseline of the study, checked against the EBT run (before anything is evaluated)."""
    bb = load(baseline)
    cfg = b.config
    if bb.task != "text" or is_energy_model(bb.model):
        raise ValueError(f"--baseline {baseline} must be a Transformer++ text run")
    if bb.config.model.vocab_size != cfg.model.vocab_size or not same_data(bb.config.data, cfg.data):
        raise ValueError(f"--baseline {baseline} was trained on other data or another tokenizer")
    if bb.config.model.context < cfg.model.context:
        raise ValueError(f"--baseline {baseline} has a shorter context ({bb.config.model.context}) than the EBT "
                         f"({cfg.model.context})")
    return bb.model.eval()


def _stderr(*a):
    print(*a, file=sys.stderr)


def evaluate_text_run(run: str | Path, steps_list: list[int] | None = None, max_windows: int = 64,
                      batch_size: int = 16, seed: int = 0, quiet: bool = False, *, bon=(), extra_steps=(),
                      study: StudyOptions | None = None, as_json: bool = False) -> dict:
    """Evaluate a text run: the table of :mod:`ebtkit.eval.text_table` (and the thinking study with ``study``);
    writes ``eval.json`` (and ``thinking.json`` + plots), prints the table (or, ``as_json``, the document) and
    returns the document. ``ebt train`` calls it after training."""
    if max_windows < 1 or batch_size < 1:
        raise ValueError("--max-windows and --batch-size must be >= 1")
    if study is not None and study.windows is not None and study.windows < 1:
        raise ValueError("--thinking-windows must be >= 1")
    run = Path(run)
    b = _text_bundle(run)
    cfg, model = b.config, b.model
    ebt = is_energy_model(model)
    if study is not None and not ebt:
        raise ValueError(f"the thinking study needs an EBT run; {run} is a Transformer++ run"
                         + (" (--baseline applies to EBT runs)" if study.baseline else ""))
    base = _baseline_model(study.baseline, b) if study is not None and study.baseline else None
    data = prepare_text_data(cfg.data, cfg.model.context, b.tokenizer)
    context = cfg.model.context
    splits = {"val": ("val", data.val)}
    if data.ood is not None:
        splits["ood"] = (cfg.data.ood, data.ood)
    if ebt:
        trained = b.eval_steps
        plain = Policy(steps=trained)
        counts = list(dict.fromkeys([*(steps_list or sorted({trained, 2 * trained})), *extra_steps]))
        policies = [("plain" if s == trained else "steps", f"EBT, {s} steps" + (" (trained)" if s == trained else ""),
                     Policy(steps=s)) for s in counts]
        if study is None:
            policies += [("best-of-N", f"EBT, best-of-{n} (min E), {trained} steps", Policy(steps=trained, samples=n))
                         for n in dict.fromkeys(bon) if n > 1]
        title = (f"EBT ({cfg.thinking.system.upper()}, {cfg.preset} preset, {cfg.train.steps} training steps; "
                 f"evaluated at {trained} thinking steps)")
    else:
        trained, plain = None, None
        policies = [("plain", "Transformer++ (1 forward per token)", None)]
        title = f"Transformer++ ({cfg.preset} preset, {cfg.train.steps} training steps)"
    rows = policy_rows(model, splits, context, policies, plain=plain, max_windows=max_windows, batch_size=batch_size,
                       seed=seed)
    info = split_info(splits, context, max_windows)
    out_dir = ckpt.run_dir_of(run)
    doc = {"run": str(run), "title": title, "model": cfg.model.model, "system": cfg.thinking.system if ebt else None,
           "preset": cfg.preset, "data": data.source, "val_fraction": cfg.data.val_fraction, "ood": cfg.data.ood,
           "context": context, "max_windows": max_windows, "seed": seed, "plain_steps": trained, "splits": info,
           "table": merge_study(rows, []), "thinking": None,
           # the rows older versions wrote (one per thinking-step count; read by `ebt report`, scripts/grid.py)
           "rows": [_legacy_row(r) for r in rows if r["family"] in ("plain", "steps")]}
    files = [out_dir / "eval.json"]
    with staged_outputs(out_dir) as stage:       # eval.json, thinking.json and the plots appear together, or none
        if study is not None:
            windows = study.windows or max_windows
            res = evaluate_thinking(model, data, context, trained_steps=trained, baseline=base, max_windows=windows,
                                    batch_size=batch_size, seed=seed, think_steps=study.think_steps, bon=study.bon,
                                    tols=study.tols if study.tols == "auto" else list(study.tols), out_dir=stage.dir,
                                    log=_stderr, title=f"EBT {cfg.thinking.system.upper()} ({cfg.preset} preset)")
            res["plots"] = [str(stage.target(Path(q).name)) for q in res["plots"]]
            write_json_atomic(stage.path("thinking.json"), {
                "run": str(run), "preset": cfg.preset, "system": cfg.thinking.system, "data": data.source,
                "ood": cfg.data.ood, "baseline": str(study.baseline) if study.baseline else None, **res})
            files += [out_dir / "thinking.json", *map(Path, res["plots"])]
            s_info = split_info(splits, context, windows)
            extra = study_rows(res, s_info, model, plain)
            thinking = {k: res[k] for k in ("tolerances", "uncertainty", "random_vs_real", "gains", "plots")}
            thinking["max_windows"] = windows
            if s_info == info:
                doc["table"] = merge_study(rows, extra)
            else:
                thinking.update(table=merge_study(extra, []), splits=s_info)
            doc["thinking"] = thinking
        doc["files"] = [str(f) for f in files]
        write_json_atomic(stage.path("eval.json"), doc)
    if as_json:
        print(json.dumps(doc, indent=1))
    elif not quiet:
        print(format_text_table(doc))
        print("eval: " + ", ".join(doc["files"]))
    return doc


def _legacy_row(r: dict) -> dict:
    row = {"steps": r["steps"] or 0}
    for name, v in r["splits"].items():
        row[f"{name}_ppl"], row[f"{name}_tokens"] = v["ppl"], v["tokens"]
    row["nfe_per_token"] = r["nfe_per_token"]
    return row


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


def _text(args, meta: dict) -> int:
    """Check every option before anything is evaluated or written, then evaluate a text run."""
    given = [name for name, v in (("--baseline", args.baseline), ("--tols", args.tols),
                                  ("--thinking-windows", args.thinking_windows)) if v is not None]
    want_study = args.thinking or bool(given)
    if args.no_thinking:
        if want_study:
            raise ValueError(f"--no-thinking contradicts {'--thinking' if args.thinking else given[0]}, which runs "
                             "the thinking study; drop one of them")
        print("ebt: note: --no-thinking is deprecated and does nothing: the thinking study is off unless --thinking "
              "is given", file=sys.stderr)
    steps = parse_int_list(args.steps_list) if args.steps_list else None
    think_steps = parse_int_list(args.think_steps) if args.think_steps else None
    bon = parse_int_list(args.bon) if args.bon else None
    tols = parse_tols(args.tols) if args.tols is not None else "auto"
    if args.thinking_windows is not None and args.thinking_windows < 1:
        raise ValueError("--thinking-windows must be >= 1")
    if args.baseline is not None:
        if meta["config"].get("model", {}).get("model") != "ebt":
            raise ValueError("--baseline applies to EBT runs")
        base = ckpt.read_config(args.baseline)
        if base["task"] != "text" or base["config"].get("model", {}).get("model") != "transformer++":
            raise ValueError(f"--baseline {args.baseline} must be a Transformer++ text run")
    study = None
    if want_study:
        study = StudyOptions(baseline=args.baseline, think_steps=tuple(think_steps or THINK_STEPS),
                             bon=tuple(bon or BON_SAMPLES), tols=tols if tols == "auto" else tuple(tols),
                             windows=args.thinking_windows)
    evaluate_text_run(args.run, steps, args.max_windows, args.batch_size, args.seed, bon=tuple(bon or ()),
                      extra_steps=tuple(think_steps or ()) if study is None else (), study=study, as_json=args.json)
    return 0


def evaluate_denoise_runs(run: Path, compare: Path | None, spec: EvalSpec, use_run_sigmas: bool = True,
                          policy: Policy | None = None, quiet: bool = False, as_json: bool = False) -> dict:
    """Evaluate a denoising run (and ``compare``, on the same noisy test images); print the table (or, ``as_json``,
    the summary) and write ``eval_denoise.json``, ``psnr_vs_nfe.png`` and ``samples.png`` into the run directory."""
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
                   test_images=len(data.test), params={lab: sum(p.numel() for p in m.parameters())
                                                       for lab, m in models.items()},
                   train_steps=steps, policy=(policy or Policy()).kwargs())
    files = [out_dir / "eval_denoise.json", out_dir / "psnr_vs_nfe.png", out_dir / "samples.png"]
    summary["files"] = [str(f) for f in files]
    with staged_outputs(out_dir) as stage:       # all three files appear together, or none
        write_json_atomic(stage.path("eval_denoise.json"), summary)
        plot_psnr(result, stage.path("psnr_vs_nfe.png"))
        plot_samples(result, stage.path("samples.png"))
    if as_json:
        print(json.dumps(summary, indent=1))
    elif not quiet:
        print(f"denoising: {', '.join(models)} on {summary['images']:,} of {len(data.test):,} test images of "
              f"{data.source}, σ = {', '.join(f'{s:g}' for s in spec.sigmas)} (seed {spec.seed})")
        print(format_table(result), end="")
        print("eval: " + ", ".join(summary["files"]))
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
                          use_run_sigmas=not sigmas, policy=policy, as_json=args.json)
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
                           quiet: bool = False, as_json: bool = False) -> dict:
    """Evaluate a sequence run (and ``compare``, on the same test windows); print the table (or, ``as_json``, the
    result) and write ``eval_sequence.json`` and the pictures into the run directory."""
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
        if not same_data(other.config.data, cfg.data) or other.config.model.context != cfg.model.context:
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
    with staged_outputs(out_dir) as stage:       # pictures, GIF and eval_sequence.json together, or none
        res = evaluate_sequence(models, data, stage.dir, max_windows=windows, batch_size=batch_size,
                                think_steps=think_steps, bon=bon, bon_sigma=bon_sigma, seed=seed,
                                log=(lambda *_: None) if quiet else (_stderr if as_json else print))
        res.update(run=str(run), compare=str(compare) if compare else None, data=data.source, preset=cfg.preset,
                   test_windows=int(data.test.shape[0]), window=cfg.model.context + 1,
                   train_steps={label: b.config.train.steps for (_, b), label in zip(bundles, models)})
        res["files"] = [str(out_dir / "eval_sequence.json"), *(str(out_dir / p) for p in res["plots"].values())]
        write_json_atomic(stage.path("eval_sequence.json"), res)
    if as_json:
        print(json.dumps(res, indent=1))
    elif not quiet:
        print(f"sequences: {', '.join(models)} on {res['windows']:,} of {res['test_windows']:,} test windows of "
              f"{res['window']} steps; {data.source}")
        print(format_sequence_report(res))
        print("eval: " + ", ".join(res["files"]))
    return res


def _sequence(args) -> int:
    think_steps = parse_int_list(args.think_steps or "1,2,4,8")
    evaluate_sequence_runs(Path(args.run), Path(args.compare) if args.compare else None, windows=args.windows,
                           think_steps=think_steps, bon=parse_int_list(args.bon or "2,4,8"), bon_sigma=args.bon_sigma,
                           batch_size=args.batch_size, seed=args.seed, as_json=args.json)
    return 0


def run(args) -> int:
    if args.tasks is not None:
        return run_tasks(args)
    meta = ckpt.read_config(args.run)
    if meta["task"] == "denoise":
        return _denoise(args)
    if meta["task"] == "sequence":
        return _sequence(args)
    return _text(args, meta)
