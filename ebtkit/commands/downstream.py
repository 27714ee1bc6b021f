"""``ebt eval RUN --tasks NAME[,NAME...]``: downstream tasks (BIG-bench tasks, ``hf:`` datasets, your JSONL files).

Not a subcommand: ``ebt eval`` dispatches here when ``--tasks`` is given. For the run (an EBT under each
inference policy, or a Transformer++) and an optional ``--baseline`` Transformer++ run, on every task: the
teacher-forced perplexity (all tokens and answer only) and multiple-choice accuracy by likelihood and, for
EBTs, by energy (:mod:`ebtkit.eval.downstream`). One table on stdout (``--json``: the JSON instead) and
``RUN/eval_tasks.json`` (written to a temporary name and renamed); a progress line per task and row on stderr.
Where a task's data did not come from a file — ``dyck_languages`` generated because no BIG-bench is indexed —
its note is printed on stderr before the work and under the table, and kept in the JSON.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..core import checkpoint as ckpt
from ..core.thinking import is_energy_model
from ..data.bigbench import load_task
from ..eval.downstream import Scorer, default_policies, evaluate_task, format_table, random_start
from ..tasks import load
from . import parse_int_list, write_json_atomic

PROTOCOL = ("teacher-forced text 'Question: {q}\\nAnswer: {a}' (BIG-bench zero-shot formatting of q), perplexity "
            "over all tokens with a predecessor in the window and over the answer's tokens; windows of at most "
            "context+1 tokens, left-truncated; multiple choice: lowest mean NLL over the choice's tokens, and "
            "(EBT) lowest mean energy E(context, onehot(token)) on the final landscape; ties to the first choice")


def _text_run(path, what: str):
    b = load(path)
    if b.task != "text":
        raise ValueError(f"{what} {path} is a {b.task!r} run; downstream tasks need a text run")
    return b


def _same_tokenizer(a, b) -> bool:
    return a.kind == b.kind and a.vocab_size == b.vocab_size and a.files() == b.files()


def _options(args) -> tuple[list[str], int | None, list[int] | None, int]:
    names = [n.strip() for n in str(args.tasks).split(",") if n.strip()]
    if not names:
        raise ValueError(f"--tasks expects BIG-bench task names, hf:DATASET[:CONFIG[:SPLIT]] or .jsonl paths, "
                         f"got {args.tasks!r}")
    n = args.task_examples
    if n is not None and n < 1:
        raise ValueError(f"--task-examples must be >= 1, got {n}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    steps = parse_int_list(args.task_steps) if args.task_steps else None
    if args.task_bon < 1:
        raise ValueError(f"--task-bon must be >= 1 (1: no best-of-N), got {args.task_bon}")
    return names, n, steps, args.task_bon


def scorers_for(bundle, label: str, steps: list[int] | None, bon: int) -> list[Scorer]:
    """The rows of one run: a Transformer++ forward, or the EBT under each policy (energy on the first)."""
    model = bundle.model
    if not is_energy_model(model):
        return [Scorer(label, model)]
    pols = default_policies(bundle.eval_steps, random_start(model), steps, bon)
    return [Scorer(label, model, p, name, verifier=i == 0) for i, (name, p) in enumerate(pols)]


def _progress(t0: float):
    return lambda line: print(f"[{time.perf_counter() - t0:6.0f} s] {line.strip()}", file=sys.stderr, flush=True)


def run_tasks(args) -> int:
    names, limit, steps, bon = _options(args)
    tasks = [load_task(n) for n in names]               # every task file is read (and checked) first
    notes = [t.note for t in tasks if t.note]
    run = Path(args.run)
    main = _text_run(run, "run")
    bundles = [(main, "EBT" if is_energy_model(main.model) else "Transformer++")]
    if args.baseline is not None:
        base = _text_run(args.baseline, "--baseline")
        if is_energy_model(base.model):
            raise ValueError(f"--baseline {args.baseline} must be a Transformer++ run")
        if not _same_tokenizer(base.tokenizer, main.tokenizer):
            raise ValueError(f"--baseline {args.baseline} uses another tokenizer than {run}; perplexities per "
                             f"token would not compare")
        bundles.insert(0, (base, "Transformer++"))
    if steps and not is_energy_model(main.model):
        raise ValueError("--task-steps applies to EBT runs")
    context = min(b.config.model.context for b, _ in bundles)
    scorers = [s for b, label in bundles for s in scorers_for(b, label, steps, bon)]
    for note in notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    results = []
    for t in tasks:
        if limit is not None:
            t.examples = t.examples[:limit]
        results.append(evaluate_task(scorers, t, main.tokenizer, context, batch_size=args.batch_size,
                                     seed=args.seed, log=_progress(t0)))
        if t.note:
            results[-1]["note"] = t.note
    seconds = time.perf_counter() - t0
    out = {"run": str(run), "baseline": str(args.baseline) if args.baseline else None, "context": context,
           "seed": args.seed, "batch_size": args.batch_size, "task_examples": limit, "best_of_n": bon,
           "protocol": PROTOCOL, "seconds": seconds, "tasks": results}
    path = ckpt.run_dir_of(run) / "eval_tasks.json"
    write_json_atomic(path, out)
    if getattr(args, "json", False):
        print(json.dumps(out, indent=2))
    else:
        print(format_table(results))
        print(f"context {context} tokens, seed {args.seed}, {seconds:.1f} s; eval_tasks: {path}")
        for note in notes:
            print(f"note: {note}")
    return 0

