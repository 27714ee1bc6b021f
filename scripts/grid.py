"""Run a grid of text runs (variants × seeds) with the CLI, N at a time, then summarise mean ± spread.

Used for the measured decisions in LOG.md. Each run is ``ebt train`` (no progress) + ``ebt eval`` (256
windows per split, no thinking study) into ``ROOT/<variant>/s<seed>``; finished runs (``eval.json``
present) are skipped, so an interrupted grid continues. Every job gets ``OMP_NUM_THREADS=1``.

    python scripts/grid.py ROOT --variant 'code=--set model.update=code' --variant 'tpp=--model transformer++' \
        --seeds 33,34,35 --jobs 2 [--steps-list 2,4,8] [--common '--preset cpu']
    python scripts/grid.py ROOT --summary            # the table only
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run_one(root: Path, name: str, flags: str, seed: int, common: str, steps_list: str, windows: int) -> str:
    out = root / name / f"s{seed}"
    if (out / "eval.json").exists():
        return f"skip {out}"
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    py = [sys.executable, "-m", "ebtkit.cli"]
    t0 = time.time()
    log = root / name / f"s{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        cmd = py + ["train", "--no-progress", "--no-eval", "--seed", str(seed), "--out", str(out)]
        cmd += shlex.split(common) + shlex.split(flags)
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        if r.returncode:
            return f"FAIL train {out} (see {log})"
        train_s = time.time() - t0
        cmd = py + ["eval", str(out), "--max-windows", str(windows), "--no-thinking"]
        if steps_list:
            cmd += ["--steps-list", steps_list]
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        if r.returncode:
            return f"FAIL eval {out} (see {log})"
    ev = json.loads((out / "eval.json").read_text())
    ev["train_s"] = round(train_s, 1)
    (out / "eval.json").write_text(json.dumps(ev, indent=1))
    return f"done {out} {train_s:.0f}s"


def summary(root: Path) -> list[dict]:
    rows = []
    for vdir in sorted(p for p in root.iterdir() if p.is_dir()):
        evs = [json.loads(e.read_text()) for e in sorted(vdir.glob("s*/eval.json"))]
        if not evs:
            continue
        by_steps: dict = {}
        for ev in evs:
            for r in ev["rows"]:
                by_steps.setdefault(r["steps"], []).append(r)
        for steps, rs in sorted(by_steps.items()):
            row = {"variant": vdir.name, "steps": steps, "n": len(rs)}
            for k in ("val_ppl", "ood_ppl"):
                vals = [r[k] for r in rs if k in r]
                if vals:
                    row[k] = vals
            rows.append(row)
    return rows


def fmt(vals: list[float]) -> str:
    m = statistics.mean(vals)
    if len(vals) == 1:
        return f"{m:.3f}"
    return f"{m:.3f} ± {(max(vals) - min(vals)) / 2:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--variant", action="append", default=[], help="NAME=FLAGS")
    ap.add_argument("--seeds", default="33,34,35")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--common", default="")
    ap.add_argument("--steps-list", default="")
    ap.add_argument("--windows", type=int, default=256)
    ap.add_argument("--summary", action="store_true")
    a = ap.parse_args()
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    if not a.summary:
        jobs = []
        for v in a.variant:
            name, _, flags = v.partition("=")
            for s in a.seeds.split(","):
                jobs.append((root, name, flags, int(s), a.common, a.steps_list, a.windows))
        with ThreadPoolExecutor(a.jobs) as ex:
            for msg in ex.map(lambda j: run_one(*j), jobs):
                print(msg, flush=True)
    print("| variant | steps | seeds | val ppl (mean ± half-range) | OOD ppl |")
    print("|---|---|---|---|---|")
    for r in summary(root):
        print(f"| {r['variant']} | {r['steps']} | {r['n']} | {fmt(r.get('val_ppl', [float('nan')]))} | "
              f"{fmt(r.get('ood_ppl', [float('nan')]))} |")
    (root / "summary.json").write_text(json.dumps(summary(root), indent=1))


if __name__ == "__main__":
    main()
