"""Sequence-task grids: EBT variants × seeds against a Transformer++ per seed, then mean ± spread.

For each seed: ``ebt train --task sequence --model transformer++`` into ``ROOT/tpp/s<seed>``, each EBT variant into
``ROOT/<variant>/s<seed>``, then ``ebt eval EBT --compare TPP`` (the same test windows) → ``eval_sequence.json`` in the
EBT's run directory. Finished pieces are skipped, so an interrupted grid continues; every job gets
``OMP_NUM_THREADS=1`` (``--threads N`` to change it: the EBT's float summation order, hence its numbers, depend
on it). Used for the numbers in docs/sequences.md.

    python scripts/sequence_grid.py ROOT --common '--preset cpu' --variant 'ebt=' --variant 'a100=--alpha 100' \
        --seeds 33,34,35 --jobs 2
    python scripts/sequence_grid.py ROOT --summary
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

PY = [sys.executable, "-m", "ebtkit.cli"]
THREADS = "1"     # OMP_NUM_THREADS of every job (--threads)


def _run(cmd: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        r = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": THREADS}, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        raise RuntimeError(f"failed ({r.returncode}): {' '.join(cmd)}; see {log}")


def train(root: Path, name: str, flags: str, seed: int, common: str) -> Path:
    out = root / name / f"s{seed}"
    if (out / "checkpoint" / "model.safetensors").exists() and (out / "state.json").exists():
        return out
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    t0 = time.time()
    _run(PY + ["train", "--task", "sequence", "--no-progress", "--seed", str(seed), "--out", str(out)]
         + shlex.split(common) + shlex.split(flags), root / name / f"s{seed}.log")
    print(f"trained {out} in {time.time() - t0:.0f}s", flush=True)
    return out


def evaluate(root: Path, ebt: Path, tpp: Path, eval_flags: str) -> None:
    if (ebt / "eval_sequence.json").exists():
        return
    _run(PY + ["eval", str(ebt), "--compare", str(tpp)] + shlex.split(eval_flags), ebt.parent / f"{ebt.name}.eval.log")
    print(f"evaluated {ebt}", flush=True)


def job(root: Path, name: str, flags: str, seed: int, common: str, eval_flags: str) -> None:
    tpp = root / "tpp" / f"s{seed}"
    ebt = train(root, name, flags, seed, common)
    while not (tpp / "checkpoint" / "model.safetensors").exists():
        time.sleep(5)
    evaluate(root, ebt, tpp, eval_flags)


def spread(vals: list[float]) -> str:
    if not vals:
        return "-"
    m = statistics.mean(vals)
    h = (max(vals) - min(vals)) / 2
    return f"{m:.4g} ± {h:.2g} (n={len(vals)})"


def summary(root: Path) -> dict:
    rows: dict[str, dict[str, list[float]]] = {}
    for f in sorted(root.glob("*/s*/eval_sequence.json")):
        res = json.loads(f.read_text())
        video = res["video"]
        key = "frame_mse" if video else "mse"
        variant = f.parent.parent.name
        for label, m in res["models"].items():
            name = variant if m["ebt"] else "Transformer++"
            r = rows.setdefault(name, {})
            if not m["ebt"] and "seen" in r and f.parent.name in r["seen"]:
                continue
            r.setdefault("seen", []).append(f.parent.name)
            r.setdefault("next_mse", []).append(m["next_step"]["mse"])
            r.setdefault(f"roll_{key}", []).append(m["rollout"][key]["mean"])
            r.setdefault("roll_mae", []).append(m["rollout"]["mae"]["mean"])
            if video:
                r.setdefault("ssim", []).append(m["rollout"]["ssim"]["mean"])
            if m["ebt"]:
                r.setdefault("rho_rollout", []).append(m["rollout"]["energy_error_spearman"])
                r.setdefault("rho_next", []).append(m["next_step"]["energy_error_spearman"])
                for s in m.get("thinking", []):
                    r.setdefault(f"think {s['policy']}", []).append(s["error"])
        p = res.get("persistence")
        if p is not None:
            r = rows.setdefault("persistence", {})
            if f.parent.name not in r.setdefault("seen", []):
                r["seen"].append(f.parent.name)
                r.setdefault("next_mse", []).append(p["next_step"]["mse"])
                r.setdefault(f"roll_{key}", []).append(p["rollout"][key]["mean"])
                r.setdefault("roll_mae", []).append(p["rollout"]["mae"]["mean"])
                if video:
                    r.setdefault("ssim", []).append(p["rollout"]["ssim"]["mean"])
    out = {}
    for name, r in rows.items():
        r.pop("seen", None)
        out[name] = {k: {"mean": statistics.mean(v), "min": min(v), "max": max(v), "n": len(v)} for k, v in r.items()}
        print(name)
        for k, v in r.items():
            print(f"  {k:<28} {spread(v)}")
    (root / "summary.json").write_text(json.dumps(out, indent=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--variant", action="append", default=[], help="NAME=FLAGS for the EBT")
    ap.add_argument("--tpp", default="", help="extra flags of the Transformer++ runs")
    ap.add_argument("--seeds", default="33,34,35")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--common", default="")
    ap.add_argument("--eval", default="", help="extra flags of ebt eval")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every job")
    ap.add_argument("--summary", action="store_true")
    a = ap.parse_args()
    global THREADS
    THREADS = str(a.threads)
    root = Path(a.root)
    if not a.summary:
        seeds = [int(s) for s in a.seeds.split(",")]
        with ThreadPoolExecutor(a.jobs) as ex:
            futs = [ex.submit(train, root, "tpp", "--model transformer++ " + a.tpp, s, a.common) for s in seeds]
            for f in futs:
                f.result()
            futs = [ex.submit(job, root, *v.split("=", 1), s, a.common, a.eval) for v in a.variant for s in seeds]
            for f in futs:
                f.result()
    summary(root)


if __name__ == "__main__":
    main()
