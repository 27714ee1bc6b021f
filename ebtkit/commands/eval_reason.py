"""``ebt eval`` of reasoning runs (``--task reason``): the thinking curves of a run and of the runs given with ``--compare`` on the same
test instances, written as ``eval_reason.json`` and ``reason_curves.png`` (staged: both appear, or neither).

The document holds a flat list ``rows`` (:func:`ebtkit.eval.reason.curve_rows`): every row has ``model``,
``problem``, ``difficulty``, ``steps``, ``policy``, ``metric``, ``value``, ``nfe`` and ``samples``, so a script can read
any curve without knowing the table's layout.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..core import checkpoint as ckpt
from ..core.device import model_device
from ..eval.reason import curve_rows, format_report, metric_names, plot_curves
from ..tasks import load
from ..tasks.reason import TEST_SEED, instances
from . import parse_int_list
from .output import atomic_write_json, staged_outputs

MAX_STEPS = 4096               # thinking steps per curve (memory is flat in steps; time is not)
MAX_SAMPLES = 256              # starts per instance for best-of-N
MAX_INSTANCES = 100_000


def default_steps(trained: int) -> list[int]:
    """Powers of two up to 8× the trained step count, with the trained count T and 2T, 4T, 8T."""
    top = 8 * trained
    out, k = {trained, 2 * trained, 4 * trained, top}, 1
    while k < top:
        out.add(k)
        k *= 2
    return sorted(out)


def _label(b, path: Path, taken: set) -> str:
    name = {"ebt": "EBT", "feedforward": "feed-forward", "looped": "looped"}[b.config.model.model]
    if name in taken:
        name = f"{name} ({Path(path).name})"
    taken.add(name)
    return name


def evaluate_reason_runs(run, compare=(), *, difficulties=None, steps=None, samples: int = 8,
                         accept_lower: bool = False, n_instances: int = 512, seed: int = 0, batch_size: int = 256,
                         quiet: bool = False, as_json: bool = False, log=lambda *a: None) -> dict:
    """Evaluate reasoning run ``run`` and the runs in ``compare`` (same problem and size) on the same instances."""
    if not 1 <= samples <= MAX_SAMPLES:
        raise ValueError(f"--samples must be in [1, {MAX_SAMPLES}], got {samples}")
    if not 1 <= n_instances <= MAX_INSTANCES:
        raise ValueError(f"--instances must be in [1, {MAX_INSTANCES}], got {n_instances}")
    if steps is not None and (not steps or min(steps) < 1 or max(steps) > MAX_STEPS):
        raise ValueError(f"--steps must be integers in [1, {MAX_STEPS}], got {','.join(map(str, steps))}")
    first = load(run)
    if first.task != "reason":
        raise ValueError(f"{run} is a {first.task!r} run, not a reasoning run")
    cfg = first.config
    bundles = [(Path(run), first)]
    for c in compare:
        b = load(c)
        if b.task != "reason" or b.config.data.problem != cfg.data.problem or b.config.shape != cfg.shape:
            raise ValueError(f"--compare {c} is not a reasoning run of problem {cfg.data.problem!r} at the same size")
        bundles.append((Path(c), b))
    problem = cfg.data.make()
    diffs = [problem.check(d) for d in (difficulties or cfg.data.tests)]
    id_d = cfg.data.id_difficulty
    trained = max([b.config.thinking.default_eval_steps for _, b in bundles if b.config.model.model != "feedforward"]
                  or [1])
    steps = sorted(set(steps)) if steps else default_steps(trained)
    dev = model_device(first.model)
    check_memory(cfg, diffs, max(steps), min(batch_size, n_instances), dev)
    data = {}
    for d in dict.fromkeys([*diffs, id_d] if id_d not in diffs else diffs):
        x, y = instances(problem, n_instances, d, TEST_SEED)
        data[d] = (torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev))
    rows, models, taken = [], {}, set()
    for path, b in bundles:
        label = _label(b, path, taken)
        log(f"{label}: {path}")
        rows += curve_rows(label, b.model, cfg.shape, cfg.data.problem, data, id_d, steps, samples, accept_lower,
                           seed, batch_size, log)
        m = b.config.model
        models[label] = {"run": str(path), "model": m.model, "arch": m.arch, "d_model": m.d_model,
                         "n_layers": m.n_layers, "params": sum(p.numel() for p in b.model.parameters()),
                         "train_steps": b.config.train.steps, "seed": b.config.train.seed,
                         "trained_thinking_steps": None if m.model == "feedforward" else
                         [b.config.thinking.steps, b.config.thinking.max_steps or b.config.thinking.steps]}
    rows = [r for r in rows if r["difficulty"] in diffs]
    doc = {"run": str(run), "problem": cfg.data.problem, "knob": problem.knob, "knob_short": _short(cfg.data.problem),
           "id_difficulty": id_d, "difficulties": diffs, "steps": steps, "samples": samples,
           "accept_lower": accept_lower, "instances": n_instances, "seed": seed, "batch_size": batch_size, "test_seed": TEST_SEED,
           "headline_metric": metric_names(cfg.shape)[-1], "models": models, "rows": rows}
    out_dir = ckpt.run_dir_of(run)
    doc["files"] = [str(out_dir / "eval_reason.json"), str(out_dir / "reason_curves.png")]
    with staged_outputs(out_dir) as stage:
        plot_curves(doc, stage.path("reason_curves.png"))
        atomic_write_json(stage.path("eval_reason.json"), doc)
    if as_json:
        print(json.dumps(doc, indent=1))
    elif not quiet:
        print(format_report(doc))
        print("eval: " + ", ".join(doc["files"]))
    return doc


def check_memory(cfg, difficulties, top: int, batch: int, dev) -> None:
    """Refuse, in one line and before any model runs, a curve whose trajectories do not fit: a batch keeps its
    ``top + 1`` candidates, their points and energies (fp32) while a curve is read off it."""
    from ..core.estimate import ENV_SWITCH, available_memory, check_enabled, human_bytes   # noqa: PLC0415
    n = cfg.data.size
    numel = max({"addition": n * n, "inverse": n * n, "connectivity": int(d) ** 2 * 2, "parity": int(d) * 2,
                 "sudoku": 81 * 9}[cfg.data.problem] for d in difficulties)
    need = 3 * 4 * (top + 1) * batch * numel
    free, where = available_memory(dev)
    if check_enabled() and free is not None and need > free:
        raise ValueError(f"a thinking curve to {top} steps at --batch-size {batch} keeps about {human_bytes(need)} of "
                         f"trajectories, but {dev} has {human_bytes(free)} {where}; lower --steps or --batch-size "
                         f"(or set {ENV_SWITCH}=0 to try anyway)")


def _short(problem: str) -> str:
    return {"addition": "range", "inverse": "d", "connectivity": "nodes", "parity": "length", "sudoku": "givens"}[problem]


def parse_difficulties(text: str) -> list[float]:
    vals = []
    for v in text.split(","):
        if not v.strip():
            continue
        try:
            vals.append(float(v))
        except ValueError:
            raise ValueError(f"--difficulty expects comma-separated numbers, got {text!r}") from None
    if not vals:
        raise ValueError(f"--difficulty expects comma-separated numbers, got {text!r}")
    return vals


def run(args) -> int:
    """``ebt eval REASON_RUN ...``: every option is checked before anything is evaluated or written."""
    diffs = parse_difficulties(args.difficulty) if args.difficulty else None
    try:
        steps = parse_int_list(args.steps) if args.steps else None
    except ValueError as e:
        raise ValueError(f"--steps: {e}") from None
    samples = 8 if args.samples is None else args.samples
    evaluate_reason_runs(args.run, list(args.compare or []), difficulties=diffs, steps=steps, samples=samples,
                         accept_lower=args.accept_lower, n_instances=args.instances, seed=args.seed,
                         batch_size=args.batch_size, as_json=args.json, log=_stderr)
    return 0


def _stderr(*a):
    import sys   # noqa: PLC0415
    print(*a, file=sys.stderr)


__all__ = ["evaluate_reason_runs", "run", "parse_difficulties", "default_steps", "MAX_STEPS", "MAX_SAMPLES"]
