"""Evaluating a trained run end to end: what ``ebt eval`` and ``ebt train`` (after training) do with a loaded run.

One function per task, each taking runs already loaded (:class:`ebtkit.tasks.Bundle`, built by
:func:`ebtkit.load`: loading belongs to the task layer above this one, so the command loads and hands the bundles
here) and the run's path, and each writing its results into the run directory:

* :func:`evaluate_text` — the table of :mod:`ebtkit.eval.text_table` (``eval.json``) and, with
  :class:`StudyOptions`, the thinking study (:mod:`ebtkit.eval.thinking_study`; ``thinking.json`` and plots);
* :func:`evaluate_denoise` — PSNR/MSE against NFEs for a denoising run and a second one on the same noisy images
  (:mod:`ebtkit.eval.denoise`; ``eval_denoise.json``, ``psnr_vs_nfe.png``, ``samples.png``);
* :func:`evaluate_sequence` — rollouts, thinking and best-of-N for a sequence run and a second one on the same
  test windows (:mod:`ebtkit.eval.sequence`; ``eval_sequence.json`` and pictures).

Every function checks what it can before evaluating anything, writes all its files together or none
(:func:`ebtkit.core.output.staged_outputs`), prints its table (or, ``as_json``, the JSON document) and returns
the document.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ..core import checkpoint as ckpt
from ..core.hub import weights_stamp
from ..core.output import atomic_write_json, check_dir, staged_outputs
from ..core.thinking import is_energy_model
from ..data.fingerprint import same_data
from ..data.images import load_image_data
from ..data.text import prepare_text_data
from .denoise import EvalSpec, evaluate, format_table, plot_psnr, plot_samples
from .inference import Policy, steps_text
from .sequence import evaluate_sequence as _evaluate_sequence
from .sequence import format_sequence_report
from .text_table import format_table as format_text_table
from .text_table import add_bits_per_byte, merge_study, policy_rows, split_info, study_rows
from .thinking_study import BON_SAMPLES, THINK_STEPS, evaluate_thinking


@dataclass(frozen=True)
class StudyOptions:
    """The thinking study's options (:func:`ebtkit.eval.thinking_study.evaluate_thinking`)."""

    baseline: str | None = None
    think_steps: tuple[int, ...] = THINK_STEPS
    bon: tuple[int, ...] = BON_SAMPLES
    tols: tuple[float, ...] | str = "auto"
    windows: int | None = None            # None: the table's windows (--max-windows)


def _stderr(*a):
    print(*a, file=sys.stderr)


def check_text(b, run) -> None:
    """``b`` (a loaded run) is a text run."""
    if b.task != "text":
        raise ValueError(f"{run} is a {b.task!r} run, not a text run")


def check_baseline(bb, b, name) -> None:
    """The Transformer++ baseline ``bb`` (given as ``name``) can be scored beside the EBT run ``b``: a text
    Transformer++ on the same data and tokenizer, with at least the EBT's context."""
    cfg = b.config
    if bb.task != "text" or is_energy_model(bb.model):
        raise ValueError(f"--baseline {name} must be a Transformer++ text run")
    if bb.config.model.vocab_size != cfg.model.vocab_size or not same_data(bb.config.data, cfg.data):
        raise ValueError(f"--baseline {name} was trained on other data or another tokenizer")
    if bb.config.model.context < cfg.model.context:
        raise ValueError(f"--baseline {name} has a shorter context ({bb.config.model.context}) than the EBT "
                         f"({cfg.model.context})")


def evaluate_text(b, run: str | Path, steps_list: list[int] | None = None, max_windows: int = 64,
                  batch_size: int = 16, seed: int = 0, quiet: bool = False, *, bon=(), extra_steps=(),
                  study: StudyOptions | None = None, baseline=None, as_json: bool = False) -> dict:
    """Evaluate the text run ``b`` (loaded from ``run``): the table of :mod:`ebtkit.eval.text_table` (and the
    thinking study with ``study``, beside the loaded Transformer++ ``baseline`` when ``study.baseline`` names
    one); writes ``eval.json`` (and ``thinking.json`` + plots), prints the table (or, ``as_json``, the
    document) and returns the document."""
    if max_windows < 1 or batch_size < 1:
        raise ValueError("--max-windows and --batch-size must be >= 1")
    if study is not None and study.windows is not None and study.windows < 1:
        raise ValueError("--thinking-windows must be >= 1")
    run = Path(run)
    check_text(b, run)
    out_dir = check_dir(ckpt.run_dir_of(run), "run directory")     # where the results go, before any work
    cfg, model = b.config, b.model
    ebt = is_energy_model(model)
    if study is not None and not ebt:
        raise ValueError(f"the thinking study needs an EBT run; {run} is a Transformer++ run"
                         + (" (--baseline applies to EBT runs)" if study.baseline else ""))
    base = None
    if study is not None and study.baseline:
        if baseline is None:
            raise ValueError(f"--baseline {study.baseline} was not loaded")
        check_baseline(baseline, b, study.baseline)
        base = baseline.model.eval()
    data = prepare_text_data(cfg.data, cfg.model.context, b.tokenizer)
    context = cfg.model.context
    splits = {"val": ("val", data.val)}
    if data.ood is not None:
        splits["ood"] = (cfg.data.ood, data.ood)
    if ebt:
        trained = b.eval_steps
        plain = Policy(steps=trained)
        counts = list(dict.fromkeys([*(steps_list or sorted({trained, 2 * trained})), *extra_steps]))
        policies = [("plain" if s == trained else "steps", f"EBT, {steps_text(s)}" + (" (trained)" if s == trained else ""),
                     Policy(steps=s)) for s in counts]
        if study is None:
            policies += [("best-of-N", f"EBT, best-of-{n} (min E), {steps_text(trained)}", Policy(steps=trained, samples=n))
                         for n in dict.fromkeys(bon) if n > 1]
        title = (f"EBT ({cfg.thinking.system.upper()}, {cfg.preset} preset, {cfg.train.steps} training steps; "
                 f"evaluated at {trained} thinking steps)")
    else:
        trained, plain = None, None
        policies = [("plain", "Transformer++ (1 forward per token)", None)]
        title = f"Transformer++ ({cfg.preset} preset, {cfg.train.steps} training steps)"
    rows = policy_rows(model, splits, context, policies, plain=plain, max_windows=max_windows, batch_size=batch_size,
                       seed=seed)
    info = split_info(splits, context, max_windows, b.tokenizer)
    doc = {"run": str(run), "title": title, "model": cfg.model.model, "system": cfg.thinking.system if ebt else None,
           "preset": cfg.preset, "data": data.source, "val_fraction": cfg.data.val_fraction, "ood": cfg.data.ood,
           "context": context, "max_windows": max_windows, "seed": seed, "plain_steps": trained, "splits": info,
           "table": merge_study(rows, []), "thinking": None,
           # the rows older versions wrote (one per thinking-step count; read by `ebt report`, scripts/grid.py)
           "rows": [_legacy_row(r) for r in rows if r["family"] in ("plain", "steps")]}
    doc["weights"] = weights_stamp(b.path)       # which weights these numbers are of (the model card checks it)
    files = [out_dir / "eval.json"]
    with staged_outputs(out_dir) as stage:       # eval.json, thinking.json and the plots appear together, or none
        if study is not None:
            windows = study.windows or max_windows
            res = evaluate_thinking(model, data, context, trained_steps=trained, baseline=base, max_windows=windows,
                                    batch_size=batch_size, seed=seed, think_steps=study.think_steps, bon=study.bon,
                                    tols=study.tols if study.tols == "auto" else list(study.tols), out_dir=stage.dir,
                                    log=_stderr, title=f"EBT {cfg.thinking.system.upper()} ({cfg.preset} preset)")
            res["plots"] = [str(stage.target(Path(q).name)) for q in res["plots"]]
            atomic_write_json(stage.path("thinking.json"), {
                "run": str(run), "preset": cfg.preset, "system": cfg.thinking.system, "data": data.source,
                "ood": cfg.data.ood, "baseline": str(study.baseline) if study.baseline else None, **res})
            files += [out_dir / "thinking.json", *map(Path, res["plots"])]
            s_info = split_info(splits, context, windows, b.tokenizer)
            extra = study_rows(res, s_info, model, plain)
            thinking = {k: res[k] for k in ("tolerances", "uncertainty", "random_vs_real", "gains", "plots")}
            thinking["max_windows"] = windows
            if s_info == info:
                doc["table"] = merge_study(rows, extra)
            else:
                thinking.update(table=merge_study(extra, []), splits=s_info)
            doc["thinking"] = thinking
        doc["files"] = [str(f) for f in files]
        add_bits_per_byte(doc)                   # bits per byte beside every perplexity: byte and BPE runs compare
        atomic_write_json(stage.path("eval.json"), doc)
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


def check_denoise_pair(first, run, other=None, compare=None) -> None:
    """``first`` (from ``run``) is a denoising run, and ``other`` (from ``compare``), if given, one that can be
    scored on the same noisy images: same image shape and diffusion schedule."""
    cfg = first.config
    for path, b in ((run, first), (compare, other)):
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


def evaluate_denoise(first, run: str | Path, other=None, compare: str | Path | None = None, *, spec: EvalSpec,
                     use_run_sigmas: bool = True, policy: Policy | None = None, quiet: bool = False,
                     as_json: bool = False) -> dict:
    """Evaluate the denoising run ``first`` (loaded from ``run``) and ``other`` (from ``compare``) on the same
    noisy test images; print the table (or, ``as_json``, the summary) and write ``eval_denoise.json``,
    ``psnr_vs_nfe.png`` and ``samples.png`` into the run directory."""
    check_denoise_pair(first, run, other, compare)
    out_dir = check_dir(ckpt.run_dir_of(run), "run directory")     # where the results go, before any work
    cfg = first.config
    models, steps = {}, {}
    for path, b in ((run, first), (compare, other)):
        if b is None:
            continue
        c = b.config
        label = "EBT" if c.model.model == "ebt" else "DiT"
        if label in models:
            label = f"{label} ({Path(path).name})"
        models[label], steps[label] = b.model, c.train.steps
    if use_run_sigmas:
        spec = EvalSpec(**{**spec.__dict__, "sigmas": list(cfg.noise.eval_sigmas)})
    data = load_image_data(cfg.data, cfg.model.image_size, cfg.model.channels)
    spec = EvalSpec(**{**spec.__dict__, "images": min(spec.images, len(data.test))})
    result = evaluate(models, data.test, cfg.noise.diffusion(), spec, policy=policy)
    summary = {k: v for k, v in result.items() if k != "samples"}
    summary.update(run=str(run), compare=str(compare) if compare else None, data=data.source,
                   test_images=len(data.test), params={lab: sum(p.numel() for p in m.parameters())
                                                       for lab, m in models.items()},
                   train_steps=steps, policy=(policy or Policy()).kwargs())
    files = [out_dir / "eval_denoise.json", out_dir / "psnr_vs_nfe.png", out_dir / "samples.png"]
    summary["files"] = [str(f) for f in files]
    summary["weights"] = weights_stamp(first.path)      # which weights these numbers are of (the model card checks it)
    with staged_outputs(out_dir) as stage:       # all three files appear together, or none
        atomic_write_json(stage.path("eval_denoise.json"), summary)
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


def check_sequence_pair(first, run, other=None, compare=None) -> None:
    """``first`` (from ``run``) is a sequence run, and ``other`` (from ``compare``), if given, one trained on the
    same data and windows (so both roll out the same test windows)."""
    if first.task != "sequence":
        raise ValueError(f"{run} is a {first.task!r} run, not a sequence run")
    if other is None:
        return
    cfg = first.config
    if other.task != "sequence":
        raise ValueError(f"{compare} is a {other.task!r} run, not a sequence run")
    if not same_data(other.config.data, cfg.data) or other.config.model.context != cfg.model.context:
        raise ValueError(f"{compare} was trained on other data or windows than {run}; they cannot share test windows")


def evaluate_sequence(first, run: str | Path, other=None, compare: str | Path | None = None, *, windows: int = 256,
                      think_steps=(1, 2, 4, 8), bon=(2, 4, 8), bon_sigma: float = 0.05, batch_size: int = 64,
                      seed: int = 0, quiet: bool = False, as_json: bool = False) -> dict:
    """Evaluate the sequence run ``first`` (loaded from ``run``) and ``other`` (from ``compare``) on the same test
    windows; print the table (or, ``as_json``, the result) and write ``eval_sequence.json`` and the pictures into
    the run directory."""
    from ..data.sequences import load_sequence_data   # noqa: PLC0415 (only sequence runs need it)
    if windows < 1 or batch_size < 1:
        raise ValueError("--windows and --batch-size must be >= 1")
    if bon_sigma < 0:
        raise ValueError(f"--bon-sigma must be >= 0, got {bon_sigma}")
    check_sequence_pair(first, run, other, compare)
    out_dir = check_dir(ckpt.run_dir_of(run), "run directory")     # where the results go, before any work
    cfg = first.config
    bundles = [(run, first)] + ([(compare, other)] if other is not None else [])
    models = {}
    for path, b in bundles:
        label = "EBT" if b.config.model.model == "ebt" else "Transformer++"
        if label in models:
            label = f"{label} ({Path(path).name})"
        models[label] = (b.model, b.eval_steps if is_energy_model(b.model) else None)
    data = load_sequence_data(cfg.data, cfg.model.context + 1)
    with staged_outputs(out_dir) as stage:       # pictures, GIF and eval_sequence.json together, or none
        res = _evaluate_sequence(models, data, stage.dir, max_windows=windows, batch_size=batch_size,
                                 think_steps=think_steps, bon=bon, bon_sigma=bon_sigma, seed=seed,
                                 log=(lambda *_: None) if quiet else (_stderr if as_json else print))
        res.update(run=str(run), compare=str(compare) if compare else None, data=data.source, preset=cfg.preset,
                   test_windows=int(data.test.shape[0]), window=cfg.model.context + 1,
                   train_steps={label: b.config.train.steps for (_, b), label in zip(bundles, models)})
        res["files"] = [str(out_dir / "eval_sequence.json"), *(str(out_dir / p) for p in res["plots"].values())]
        res["weights"] = weights_stamp(first.path)      # which weights these numbers are of (the model card checks it)
        atomic_write_json(stage.path("eval_sequence.json"), res)
    if as_json:
        print(json.dumps(res, indent=1))
    elif not quiet:
        print(f"sequences: {', '.join(models)} on {res['windows']:,} of {res['test_windows']:,} test windows of "
              f"{res['window']} steps; {data.source}")
        print(format_sequence_report(res))
        print("eval: " + ", ".join(res["files"]))
    return res
