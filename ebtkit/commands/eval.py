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

This module parses the flags, checks every one against the run's task before anything is loaded or evaluated, and
dispatches; the evaluation itself is :mod:`ebtkit.eval.runs`.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from ..core import checkpoint as ckpt
from ..eval.denoise import CHUNK, EvalSpec
from ..eval.inference import SELECTIONS, Policy
from ..eval.runs import (StudyOptions, check_denoise_pair, check_sequence_pair, check_text, evaluate_denoise,
                         evaluate_sequence, evaluate_text)
from ..eval.thinking_study import BON_SAMPLES, THINK_STEPS
from ..tasks import load
from . import check_inference_memory, checks, parse_int_list, run_config
from .downstream import run_tasks


# Which runs take each flag (argparse dest → the tasks of the runs it applies to; "tasks" = a text run evaluated
# on downstream tasks with --tasks). A flag given for a run whose task is not listed is an error naming the tasks
# that take it, checked before anything is loaded or evaluated. Flags absent here (--json, --seed, --device)
# apply to every run.
TASK_FLAGS: dict[str, tuple[str, ...]] = {
    "steps_list": ("text",), "max_windows": ("text",), "batch_size": ("text", "sequence", "reason", "tasks"),
    # the thinking study (text EBTs)
    "thinking": ("text",), "no_thinking": ("text",), "baseline": ("text", "tasks"), "tols": ("text",),
    "thinking_windows": ("text",), "think_steps": ("text", "sequence"), "bon": ("text", "sequence"),
    # a second run beside the first: the text EBT's Transformer++ (= --baseline), the DiT, ...
    "compare": ("text", "tasks", "denoise", "sequence", "reason"),
    # sequences
    "windows": ("sequence",), "bon_sigma": ("sequence",),
    # image denoising
    "images": ("denoise",), "sigmas": ("denoise",), "ebt_nfe": ("denoise",), "dit_nfe": ("denoise",),
    "select": ("denoise",), "tol": ("denoise",), "sigma": ("denoise",), "alpha": ("denoise",),
    "samples": ("denoise", "reason"), "accept_lower": ("denoise", "reason"),
    # reasoning (ebtkit/commands/eval_reason.py)
    "difficulty": ("reason",), "steps": ("reason",), "instances": ("reason",),
    # downstream tasks (ebtkit/commands/downstream.py)
    "tasks": ("text",), "task_examples": ("tasks",), "task_steps": ("tasks",), "task_bon": ("tasks",),
}
_DEFAULTS: dict[str, object] = {}      # the parser's defaults of TASK_FLAGS, filled in once the flags are checked
# a task's own default where the parser's does not suit it: reasoning instances are small, and their curves are read
# in batches of 256 (the batch docs/reasoning.md was measured with; the random starts are drawn per batch)
TASK_DEFAULTS: dict[tuple[str, str], object] = {("reason", "batch_size"): 256}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _kind(task: str) -> str:
    return "text runs with --tasks" if task == "tasks" else f"{task} runs"


def check_flags(args, task: str) -> None:
    """Refuse a flag the run's task does not take (naming the tasks that take it), map a text run's ``--compare``
    to ``--baseline``, then fill in the defaults of the flags not given."""
    mode = "tasks" if task == "text" and getattr(args, "tasks", None) is not None else task
    for dest, tasks in TASK_FLAGS.items():
        if getattr(args, dest, None) in (None, False) or mode in tasks or (dest, mode) == ("tasks", "tasks"):
            continue
        kinds = [_kind(t) for t in tasks]
        takes = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " and " + kinds[-1]
        raise ValueError(f"{_flag(dest)} does not apply to {args.run}, a {task} run"
                         f"{' evaluated with --tasks' if mode == 'tasks' else ''}; it applies to {takes}")
    if mode in ("text", "tasks") and args.compare:
        if len(args.compare) > 1:
            raise ValueError(f"--compare takes one Transformer++ run beside a text run, got {len(args.compare)}")
        if args.baseline is not None and args.baseline != args.compare[0]:
            raise ValueError(f"--compare {args.compare[0]} and --baseline {args.baseline} name two baselines; "
                             "give one (for a text run they mean the same: a Transformer++ row beside the run)")
        args.baseline, args.compare = args.compare[0], None
    for dest, value in _DEFAULTS.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, TASK_DEFAULTS.get((mode, dest), value))


def _defaults_after_check(p) -> None:
    """Give every flag of :data:`TASK_FLAGS` the default None, so that :func:`check_flags` sees exactly the flags
    typed (``--images 500`` on a text run is an error too); the real defaults are filled in after the check."""
    for a in p._actions:
        if a.dest in TASK_FLAGS and a.default not in (None, False):
            _DEFAULTS[a.dest] = a.default
            a.default = None


def add_parser(sub):
    p = sub.add_parser("eval", help="evaluate a trained run", description="Evaluate a run: exact perplexity "
                       "(text), PSNR/MSE vs network evaluations (denoising) or rollouts (sequences).")
    p.add_argument("run", help="run directory (or checkpoint directory)")
    p.add_argument("--json", action="store_true", help="print the evaluation as JSON on stdout instead of the table")
    p.add_argument("--data", default=None, metavar="PATH", help="the run's data at its new place, if it was moved: "
                   "checked against the size and SHA-256 the run recorded, then recorded in the run")
    p.add_argument("--steps-list", type=checks.steps_list, default=None, help="text EBT: thinking-step counts, e.g. 1,2,4,8 (default: trained steps and 2× that)")
    p.add_argument("--max-windows", type=checks.positive_int, default=64, help="text: evaluation windows per split (default 64)")
    p.add_argument("--batch-size", type=checks.positive_int, default=16,
                   help="windows, sequences or instances per forward pass (default 16; reasoning runs 256)")
    p.add_argument("--seed", type=checks.seed_int, default=0, help="seed of the initial candidates")
    g = p.add_argument_group("thinking study (text EBT runs)")
    g.add_argument("--thinking", action="store_true", help="run the thinking study: more policies as rows of the "
                   "table, energy as uncertainty, plots (off by default; its own options below also turn it on)")
    g.add_argument("--no-thinking", action="store_true", help="deprecated, does nothing: the study is off unless "
                   "--thinking is given")
    g.add_argument("--baseline", default=None, metavar="RUN", help="a Transformer++ run to compare against (study)")
    g.add_argument("--think-steps", type=checks.steps_list, default=None, help="thinking-longer step counts (study default 2,4,8,16; "
                   "without the study: extra step-count rows; sequences 1,2,4,8)")
    g.add_argument("--bon", type=checks.samples_list, default=None, help="best-of-N candidate counts (study and sequences default 2,4,8; "
                   "text without the study: best-of-N rows at the trained steps, none by default)")
    g.add_argument("--tols", type=checks.float_list(0, keywords=("auto",)), default=None, help="early-stop tolerances, e.g. 0.001,0.01, or 'auto' (study; default: "
                   "quantiles 0.25/0.5/0.9 of the per-token energy change one step past the trained steps)")
    g.add_argument("--thinking-windows", type=checks.positive_int, default=None, help="windows per split for the study (default: "
                   "--max-windows, the table's own windows)")
    g = p.add_argument_group("sequence runs")
    g.add_argument("--windows", type=checks.positive_int, default=256, help="test windows to roll out (default 256)")
    g.add_argument("--bon-sigma", type=checks.nonneg_float, default=0.05,
                   help="best-of-N: std of the noise added to the starts of samples 2..N (model units; default 0.05)")
    g = p.add_argument_group("image denoising runs")
    g.add_argument("--compare", default=None, metavar="RUN", action="append",
                   help="a second run of the same task (the DiT, the Transformer++) evaluated on the same inputs "
                        "(reasoning runs: repeatable, any number of runs of the same problem)")
    g.add_argument("--images", type=checks.positive_int, default=500, help="test images to evaluate (default 500)")
    g.add_argument("--sigmas", type=checks.float_list(0, lo_open=True), default=None, help="noise levels, e.g. 0.1,0.2 (default: the run's eval_sigmas)")
    g.add_argument("--ebt-nfe", type=checks.steps_list, default="1,2,3,5,10", help="EBT thinking steps to report (default 1,2,3,5,10)")
    g.add_argument("--dit-nfe", type=checks.int_list(1, 100_000), default="1,2,3,5,10,100",
                   help="DiT DDIM steps to report (default 1,2,3,5,10,100; the full chain is always added)")
    g.add_argument("--samples", type=checks.samples_int, default=None, help="EBT best-of-N candidates per image "
                   "(default 1); reasoning runs: starts per instance for best-of-N (default 8)")
    g.add_argument("--select", default="min", choices=SELECTIONS, help="best-of-N selection (min | max_drop)")
    g.add_argument("--accept-lower", action="store_true", help="EBT: keep a step only where it lowers the energy")
    g.add_argument("--tol", type=checks.nonneg_float, default=None, help="EBT: stop an image once its energy changes by less")
    g.add_argument("--sigma", type=checks.sigma, default=0.0, help="EBT: Langevin noise σ at inference (0 = none; at most "
                   f"{checks.SIGMA_MAX:g})")
    g.add_argument("--alpha", type=checks.step_size, default=None, help="EBT: step size α override")
    g = p.add_argument_group("reasoning runs (--task reason; ebtkit/commands/eval_reason.py; also --compare, "
                             "--samples, --accept-lower)")
    g.add_argument("--difficulty", default=None, metavar="D1,D2,...", help="difficulties to evaluate (default: the "
                   "problem's in-distribution and harder ones)")
    g.add_argument("--steps", default=None, metavar="K1,K2,...", help="thinking steps / iterations (default: powers "
                   "of two up to 8× the trained count)")
    g.add_argument("--instances", type=checks.positive_int, default=512, help="test instances per difficulty "
                   "(default 512)")
    g = p.add_argument_group("downstream tasks (text runs; ebtkit/commands/downstream.py)")
    g.add_argument("--tasks", default=None, metavar="NAME[,NAME...]", help="BIG-bench tasks (dyck_languages, "
                   "elementary_math_qa/question_only; 'ebt data bigbench [--from PATH]' first; dyck_languages is "
                   "generated without it), hf:DATASET[:CONFIG[:SPLIT]] (GSM8K, SQuAD, BIG-bench exports; a Hub "
                   "name or a local parquet/JSONL path) or .jsonl files: perplexity and multiple-choice accuracy, "
                   "with --baseline TPP_RUN beside the run; writes eval_tasks.json")
    g.add_argument("--task-examples", type=int, default=None, metavar="N", help="the first N examples of each task")
    g.add_argument("--task-steps", type=checks.steps_list, default=None, help="EBT thinking-step counts (default: trained and 4× that)")
    g.add_argument("--task-bon", type=int, default=4, help="best-of-N rows with N candidates (default 4; 1: none; "
                   "only for a random start)")
    _defaults_after_check(p)
    return p


def evaluate_text_run(run: str | Path, steps_list: list[int] | None = None, max_windows: int = 64,
                      batch_size: int = 16, seed: int = 0, quiet: bool = False, *, bon=(), extra_steps=(),
                      study: StudyOptions | None = None, as_json: bool = False) -> dict:
    """Load the text run ``run`` (and the study's baseline) and evaluate it (:func:`ebtkit.eval.runs.evaluate_text`:
    ``eval.json``, with ``study`` also ``thinking.json`` and plots). ``ebt train`` calls it after training."""
    b = load(run)
    check_text(b, run)
    baseline = load(study.baseline) if study is not None and study.baseline else None
    return evaluate_text(b, run, steps_list, max_windows, batch_size, seed, quiet, bon=bon, extra_steps=extra_steps,
                         study=study, baseline=baseline, as_json=as_json)


def parse_tols(text: str) -> list[float] | str:
    if text.strip() == "auto":
        return "auto"
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--tols expects 'auto' or comma-separated numbers, got {text!r}") from None
    if not vals or not all(math.isfinite(v) and v >= 0 for v in vals):
        raise ValueError(f"--tols must be finite and non-negative, got {text!r}")
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
    steps = parse_int_list(args.steps_list, "--steps-list") if args.steps_list else None
    think_steps = parse_int_list(args.think_steps, "--think-steps") if args.think_steps else None
    bon = parse_int_list(args.bon, "--bon") if args.bon else None
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
    cfg = run_config(meta)
    if meta["config"].get("model", {}).get("model") == "ebt":     # thinking: trajectories grow with steps, samples
        trained = cfg.thinking.default_eval_steps
        counts = [*(steps or (trained, 2 * trained)), *(think_steps or ()), *(study.think_steps if study else ())]
        most = max(counts) + (1 if study else 0)                  # the study's early stop looks one step further
        samples = max([1, *(bon or ()), *(study.bon if study else ())])
    else:
        most, samples = 0, 1
    check_inference_memory(cfg, args.device, "this evaluation", "lower --steps-list, --think-steps, --bon or "
                           "--batch-size", rows=min(args.batch_size, args.max_windows), steps=most, samples=samples)
    evaluate_text_run(args.run, steps, args.max_windows, args.batch_size, args.seed, bon=tuple(bon or ()),
                      extra_steps=tuple(think_steps or ()) if study is None else (), study=study, as_json=args.json)
    return 0


def evaluate_denoise_runs(run: Path, compare: Path | None, spec: EvalSpec, use_run_sigmas: bool = True,
                          policy: Policy | None = None, quiet: bool = False, as_json: bool = False) -> dict:
    """Load a denoising run (and ``compare``) and evaluate them on the same noisy test images
    (:func:`ebtkit.eval.runs.evaluate_denoise`)."""
    first = load(run)
    check_denoise_pair(first, run)
    other = load(compare) if compare else None
    return evaluate_denoise(first, run, other, compare, spec=spec, use_run_sigmas=use_run_sigmas, policy=policy,
                            quiet=quiet, as_json=as_json)


def _denoise(args) -> int:
    sigmas = args.sigmas
    try:
        spec = EvalSpec(ebt_nfe=_ints(args.ebt_nfe, "--ebt-nfe"), dit_nfe=_ints(args.dit_nfe, "--dit-nfe"),
                        images=int(args.images), seed=int(args.seed),
                        **({"sigmas": [float(s) for s in sigmas.split(",") if s.strip()]} if sigmas else {}))
    except ValueError as e:
        raise ValueError(str(e).splitlines()[0]) from None
    policy = Policy(alpha=args.alpha, samples=args.samples or 1, select=args.select, accept_lower=args.accept_lower,
                    tol=args.tol, langevin_sigma=args.sigma)
    cfg = run_config(ckpt.read_config(args.run))
    pixels = cfg.model.channels * cfg.model.image_size ** 2
    check_inference_memory(cfg, args.device, "this evaluation", "lower --ebt-nfe, --samples or --images",
                           rows=min(CHUNK, spec.images), steps=max(spec.ebt_nfe), samples=policy.samples,
                           extra_bytes=3 * 4 * spec.images * pixels)     # clean, noise and noisy test images
    evaluate_denoise_runs(Path(args.run), _one_compare(args), spec,
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
    """Load a sequence run (and ``compare``) and evaluate them on the same test windows
    (:func:`ebtkit.eval.runs.evaluate_sequence`)."""
    if windows < 1 or batch_size < 1:
        raise ValueError("--windows and --batch-size must be >= 1")
    if bon_sigma < 0:
        raise ValueError(f"--bon-sigma must be >= 0, got {bon_sigma}")
    first = load(run)
    check_sequence_pair(first, run)
    other = load(compare) if compare is not None else None
    return evaluate_sequence(first, run, other, compare, windows=windows, think_steps=think_steps, bon=bon,
                             bon_sigma=bon_sigma, batch_size=batch_size, seed=seed, quiet=quiet, as_json=as_json)


def _sequence(args) -> int:
    think_steps = parse_int_list(args.think_steps or "1,2,4,8", "--think-steps")
    bon = parse_int_list(args.bon or "2,4,8", "--bon")
    cfg = run_config(ckpt.read_config(args.run))
    check_inference_memory(cfg, args.device, "this evaluation", "lower --think-steps, --bon or --batch-size",
                           rows=min(args.batch_size, args.windows), steps=max(think_steps), samples=max(bon))
    evaluate_sequence_runs(Path(args.run), _one_compare(args), windows=args.windows,
                           think_steps=think_steps, bon=bon, bon_sigma=args.bon_sigma,
                           batch_size=args.batch_size, seed=args.seed, as_json=args.json)
    return 0


def _one_compare(args) -> Path | None:
    """The one ``--compare`` run of denoising and sequence evaluations (reasoning runs take several)."""
    if not args.compare:
        return None
    if len(args.compare) > 1:
        raise ValueError(f"--compare takes one run for this task, got {len(args.compare)}")
    return Path(args.compare[0])


def run(args) -> int:
    meta = ckpt.read_config(args.run)
    check_flags(args, meta["task"])            # every flag against the run's task, before anything is loaded
    if args.data is not None:                  # a moved run's data: checked against its fingerprint, then recorded
        from ..data.relocate import repoint     # noqa: PLC0415
        if (old := repoint(args.run, args.data)) is not None:
            print(f"ebt: note: {args.run} now reads its data from {args.data} (was {old})", file=sys.stderr)
    if args.tasks is not None:
        return run_tasks(args)
    if meta["task"] == "denoise":
        return _denoise(args)
    if meta["task"] == "sequence":
        return _sequence(args)
    if meta["task"] == "reason":
        from . import eval_reason   # noqa: PLC0415 (the reasoning task's evaluation)
        return eval_reason.run(args)
    return _text(args, meta)
