"""Train and evaluate the reasoning task's models over seeds: the runs behind docs/reasoning.md.

    OMP_NUM_THREADS=1 python scripts/reason_grid.py --problem addition --seeds 33,34,35 \
        --models ebt,feedforward,looped --tag default --root runs/reason

For each seed it trains every model (``ebt train --task reason`` in-process, the ``cpu`` preset unless ``--preset``)
into ``ROOT/<problem>-<tag>-<model>-s<seed>`` (reused when its checkpoint exists), then evaluates them together
(``ebt eval RUN --compare ...``) and copies ``eval_reason.json`` to ``docs/reasoning/results/<problem>-<tag>-s<seed>.json``
(``--results``). ``--set KEY=VALUE`` (repeatable) overrides every model's config; ``--ebt-set`` only the EBT's.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from ebtkit.commands.eval_reason import evaluate_reason_runs
from ebtkit.tasks import get_task
from ebtkit.training import fit


def parse_sets(items):
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        out[k.strip()] = v
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problem", required=True)
    ap.add_argument("--models", default="ebt,feedforward,looped")
    ap.add_argument("--seeds", default="33,34,35")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--tag", default="default")
    ap.add_argument("--root", default="runs/reason")
    ap.add_argument("--results", default="docs/reasoning/results")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--ebt-set", action="append", default=[])
    ap.add_argument("--difficulty", default=None)
    ap.add_argument("--steps", default=None)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--instances", type=int, default=512)
    ap.add_argument("--no-accept-lower", action="store_true")
    ap.add_argument("--no-eval", action="store_true")
    a = ap.parse_args()
    task = get_task("reason")
    root, res = Path(a.root), Path(a.results)
    res.mkdir(parents=True, exist_ok=True)
    for seed in [int(s) for s in a.seeds.split(",")]:
        runs = {}
        for model in a.models.split(","):
            over = {"data.problem": a.problem, "model.model": model, "train.seed": str(seed), **parse_sets(a.set)}
            if model == "ebt":
                over.update(parse_sets(a.ebt_set))
            cfg = task.preset(a.preset, None, **over)
            out = root / f"{a.problem}-{a.tag}-{model}-s{seed}"
            if not (out / "checkpoint" / "model.safetensors").exists():
                if out.exists():
                    shutil.rmtree(out)
                t0 = time.time()
                fit(task, cfg, out, progress=False, log=lambda *x: print(*x, flush=True))
                print(f"trained {out} in {time.time() - t0:.0f}s", flush=True)
                (out / "train_seconds.txt").write_text(f"{time.time() - t0:.1f}\n")
            runs[model] = out
        if a.no_eval:
            continue
        first, *rest = runs.values()
        t0 = time.time()
        doc = evaluate_reason_runs(
            first, rest, difficulties=[float(d) for d in a.difficulty.split(",")] if a.difficulty else None,
            steps=[int(k) for k in a.steps.split(",")] if a.steps else None, samples=a.samples,
            accept_lower=not a.no_accept_lower, n_instances=a.instances, quiet=True)
        doc["train_seconds"] = {m: float((p / "train_seconds.txt").read_text()) if (p / "train_seconds.txt").exists()
                                else None for m, p in runs.items()}
        doc["tag"], doc["sets"], doc["ebt_sets"] = a.tag, a.set, a.ebt_set
        (res / f"{a.problem}-{a.tag}-s{seed}.json").write_text(json.dumps(doc, indent=1))
        print(f"evaluated seed {seed} in {time.time() - t0:.0f}s -> {res / f'{a.problem}-{a.tag}-s{seed}.json'}",
              flush=True)


if __name__ == "__main__":
    main()
