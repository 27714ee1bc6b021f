"""Scaling sweeps: a plan of ordinary run directories, a resumable parallel runner, an index.

The spec is :mod:`ebtkit.study.spec`; reading a finished sweep back and fitting it is
:mod:`ebtkit.study.results`.

Each (point, model, seed) is an ordinary run directory ``OUT/runs/NAME`` made by ``ebt train`` and ``ebt eval``
subprocesses (``OMP_NUM_THREADS=1`` each; ``jobs`` at a time). Points with identical resolved configs are run
once and belong to every axis that asked for them. A run is finished when its ``sweep_point.json`` (written
last) matches the planned config; anything else in its directory is a half-finished run, removed and rerun.
``OUT/sweep.json`` indexes the sweep (spec, environment, one record per run) and is rewritten after each run.

Before anything runs — a dry run included — every distinct config is sized by arithmetic
(:func:`check_sizes`: the estimate ``ebt train`` uses, :mod:`ebtkit.core.estimate`), and a run that cannot fit the
device is refused in one line, as is a ``jobs`` count whose largest runs cannot fit side by side. Planning builds
no model: non-embedding parameters are counted from the config.
"""
from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from . import api
from .results import eval_metrics
from .spec import FLOPS_FREE_KEYS, INDEX, MARKER, MODEL_SLUG, _read_json, _write_json, where


# ------------------------------------------------------------------------------------------------ plan
@dataclass
class Run:
    """One (point, model, seed): an ordinary run directory."""

    name: str
    model: str
    seed: int
    overrides: dict                  # --set overrides (base + axis), seed excluded
    config: dict                     # resolved config (what ebt train will train)
    config_hash: str
    axes: list = field(default_factory=list)        # axis names this run belongs to
    axis_values: dict = field(default_factory=dict)  # axis name -> the axis' own overrides
    flops_key: str = ""

    def summary(self) -> dict:
        m, t = self.config["model"], self.config["train"]
        return {"steps": t["steps"], "batch_size": t["batch_size"], "context": m["context"],
                "d_model": m["d_model"], "n_layers": m["n_layers"], "n_heads": m["n_heads"], "lr": t["lr"]}


def _slug(axis_over: dict) -> str:
    """The axis part of a run's directory name: only letters, digits, ``.``, ``_``, ``-`` and ``=`` (a value such
    as a path cannot make the name leave ``OUT/runs``)."""
    parts = []
    for k, v in axis_over.items():
        short = k.rsplit(".", 1)[-1]
        parts.append(re.sub(r"[^A-Za-z0-9._=-]", "_", f"{short}{v}"))
    return "-".join(parts)


def plan(spec: dict, source=None) -> list[Run]:
    """Every run of the spec, deduplicated by resolved config; fails before anything runs on a bad key (one line
    naming ``source``, the spec file, and the field: ``set`` or the axis point)."""
    runs: dict[str, Run] = {}
    by_hash: dict[str, Run] = {}
    model0 = spec["models"][0]
    system0 = spec.get("system") if model0 == "ebt" else None
    for key, over in (("preset", {}), ("set", dict(spec["set"]))):     # the base alone first: errors name their field
        try:
            api.resolve_config(spec["preset"], model0, over, system0)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where(source)}: {key}: {e}") from None
    for axis, ax in spec["axes"].items():
        for pt in ax["points"]:
            for model in spec["models"]:
                for seed in spec["seeds"]:
                    over = {**spec["set"], **pt}
                    over.pop("train.seed", None)
                    try:
                        cfg = api.resolve_config(spec["preset"], model, {**over, "train.seed": seed}, spec.get("system")
                                                 if model == "ebt" else None)
                    except (ValueError, TypeError) as e:
                        raise ValueError(f"{where(source)}: axis {axis!r} point {pt}: {e}") from None
                    h = api.config_hash(cfg)
                    if h in by_hash:
                        r = by_hash[h]
                        if axis not in r.axes:
                            r.axes.append(axis)
                            r.axis_values[axis] = pt
                        continue
                    name = f"{MODEL_SLUG[model]}-{_slug(pt)}-s{seed}"
                    while name in runs:          # same axis overrides, different base: keep names unique
                        name += "b"
                    fcfg = json.loads(json.dumps(cfg))
                    for k in FLOPS_FREE_KEYS:             # what does not change the FLOPs of one step
                        fcfg["train"].pop(k, None)
                    r = Run(name=name, model=model, seed=seed, overrides=over, config=cfg, config_hash=h,
                            axes=[axis], axis_values={axis: pt}, flops_key=api.config_hash(fcfg))
                    runs[name] = r
                    by_hash[h] = r
    return list(runs.values())


def x_values(run: Run, params_cache: dict) -> dict:
    """The resources of a run: tokens, non-embedding params, tokens per batch, layers (FLOPs come later)."""
    s = run.summary()
    key = run.flops_key
    if key not in params_cache:
        params_cache[key] = api.non_embedding_params(run.config)
    return {"tokens": s["steps"] * s["batch_size"] * s["context"], "params": params_cache[key],
            "batch_tokens": s["batch_size"] * s["context"], "layers": s["n_layers"]}


def environment() -> dict:
    """Where the sweep ran: interpreter, library versions, CPU, threads."""
    import numpy
    import torch
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            **api.versions(), "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "omp_num_threads_per_run": 1}


def check_sizes(runs: list[Run], spec: dict, jobs: int) -> dict[str, int]:
    """Estimated training memory of every run (bytes, by name), by arithmetic on its config; raises a one-line
    ``ValueError`` naming the run when one cannot fit the device (the refusal ``ebt train`` gives), or when the
    ``jobs`` largest cannot run side by side (the sweep's runs share one device: the CPU's RAM, or one GPU)."""
    device = spec.get("device", "auto")
    need: dict[str, int] = {}
    by_hash: dict[str, int] = {}
    for r in runs:
        if r.config_hash not in by_hash:
            try:
                by_hash[r.config_hash] = api.training_memory(r.config, device)
            except ValueError as e:
                raise ValueError(f"sweep run {r.name} ({' '.join(_sets(r.overrides)) or 'base config'}): {e}") from None
        need[r.name] = by_hash[r.config_hash]
    free, what = api.free_memory(device)
    big = sorted(need.items(), key=lambda kv: -kv[1])[:max(1, min(jobs, len(need)))]
    together = sum(b for _, b in big)
    if free is not None and len(big) > 1 and together > free:
        raise ValueError(f"--jobs {jobs}: the {len(big)} largest runs of the sweep ({', '.join(n for n, _ in big)}) "
                         f"need about {api.human_bytes(together)} side by side, but {device} has "
                         f"{api.human_bytes(free)} {what}; lower --jobs (or the spec's jobs)")
    return need


# ------------------------------------------------------------------------------------------------ runner

def is_finished(run_dir: Path, run: Run, spec: dict) -> bool:
    m = _read_json(run_dir / MARKER)
    if not m or m.get("config_hash") != run.config_hash or m.get("status") != "done":
        return False
    if not (run_dir / "eval.json").exists():
        return False
    return not (run.model == "ebt" and spec["eval"]["thinking"] and not (run_dir / "thinking.json").exists())


class _Procs:
    """The subprocesses this runner started (each in its own session), so an interrupt ends exactly them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.live: set = set()
        self.stopping = False

    def run(self, cmd: list[str], log: Path, env: dict) -> int:
        with open(log, "a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            with self.lock:
                if self.stopping:
                    return 130
                p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                self.live.add(p)
            try:
                return p.wait()
            finally:
                with self.lock:
                    self.live.discard(p)

    def stop(self):
        with self.lock:
            self.stopping = True
            for p in list(self.live):
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass


def _env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "ebtkit.cli", *map(str, args)]


def _sets(over: dict) -> list[str]:
    out = []
    for k, v in over.items():
        out += ["--set", f"{k}={json.dumps(v)}"]
    return out


def train_command(run: Run, spec: dict, run_dir: Path) -> list[str]:
    cmd = _cli("train", "--out", run_dir, "--no-progress", "--no-eval", "--preset", spec["preset"],
               "--model", run.model, "--seed", run.seed, "--device", spec.get("device", "auto"))
    if spec.get("system") and run.model == "ebt":
        cmd += ["--system", spec["system"]]
    return cmd + _sets(run.overrides)


def eval_command(run: Run, spec: dict, run_dir: Path) -> list[str]:
    ev = spec["eval"]
    cmd = _cli("eval", run_dir, "--max-windows", ev["max_windows"], "--batch-size", ev["batch_size"],
               "--device", spec.get("device", "auto"))
    if run.model == "ebt" and ev["thinking"]:
        cmd += ["--thinking-windows", str(ev["thinking_windows"]), "--think-steps", str(ev["think_steps"]),
                "--bon", str(ev["bon"]), "--tols", str(ev["tols"])]
    else:
        cmd += ["--no-thinking"]
    return cmd


def flops_command(run: Run, spec: dict) -> list[str]:
    cmd = [sys.executable, "-m", "ebtkit.study.flops", "--preset", spec["preset"], "--model", run.model]
    if spec.get("system") and run.model == "ebt":
        cmd += ["--system", spec["system"]]
    return cmd + _sets(run.overrides)


def _cost(run: Run, xs: dict) -> float:
    """A rough relative cost for progress estimates (the EBT's S1 step ≈ 5× a Transformer++ step here)."""
    s = run.summary()
    per_token = xs["params"] + s["d_model"] * 256 * 2
    return s["steps"] * s["batch_size"] * s["context"] * per_token * (5.0 if run.model == "ebt" else 1.0)


def run_sweep(spec: dict, out: str | Path, *, jobs: int | None = None, log=print, dry_run: bool = False,
              source=None) -> dict:
    """Plan and run (or resume) a sweep into ``out``; returns the index (also written to ``out/sweep.json``).
    ``source``: the spec file, named by errors. Sizes are checked (:func:`check_sizes`) before anything is
    written, a dry run included."""
    out = Path(out)
    runs = plan(spec, source)
    jobs = jobs or spec.get("jobs", 1)
    check_sizes(runs, spec, jobs)
    params_cache: dict = {}
    xs = {r.name: x_values(r, params_cache) for r in runs}
    prev = _read_json(out / INDEX) or {}
    flops_cache: dict = dict(prev.get("flops", {}))
    todo = [r for r in runs if not is_finished(out / "runs" / r.name, r, spec)]
    need_flops = {}
    if spec.get("flops", True):
        for r in runs:
            if r.flops_key not in flops_cache and r.flops_key not in need_flops:
                need_flops[r.flops_key] = r
    log(f"sweep '{spec['name']}': {len(runs)} runs ({len(spec['axes'])} axes × {len(spec['models'])} models × "
        f"{len(spec['seeds'])} seeds, deduplicated); {len(runs) - len(todo)} finished, {len(todo)} to run, "
        f"{len(need_flops)} FLOP counts; {jobs} parallel job(s) → {out}")
    if dry_run:
        for r in runs:
            state = "done" if r not in todo else "todo"
            log(f"  [{state}] {r.name}: axes {','.join(r.axes)}; {' '.join(_sets(r.overrides)) or '(base)'}")
        return {}
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    records: dict[str, dict] = {rec["name"]: rec for rec in prev.get("runs", []) if isinstance(rec, dict)}
    index = {"version": 1, "name": spec["name"], "spec": spec, "created": prev.get("created") or _now(),
             "env": environment(), "flops": flops_cache, "runs": []}

    def record(r: Run, status: str, **extra) -> dict:
        d = out / "runs" / r.name
        rec = {"name": r.name, "dir": f"runs/{r.name}", "model": r.model, "seed": r.seed, "axes": r.axes,
               "axis_values": r.axis_values, "overrides": r.overrides, "config_hash": r.config_hash,
               "flops_key": r.flops_key, **r.summary(), **xs[r.name], "status": status}
        fps = flops_cache.get(r.flops_key, {}).get("flops_per_step")
        rec["flops_per_step"] = fps
        rec["flops"] = fps * rec["steps"] if fps is not None else None
        marker = _read_json(d / MARKER) or {}
        rec["wall_s"] = extra.pop("wall_s", marker.get("wall_s"))
        if status == "done":
            rec.update(eval_metrics(d))
        rec.update(extra)
        return rec

    def save_index():
        index["updated"] = _now()
        index["flops"] = flops_cache
        index["runs"] = [records.get(r.name) or record(r, "todo") for r in runs]
        _write_json(out / INDEX, index)

    for r in runs:
        records[r.name] = record(r, "done" if r not in todo else "todo")
    save_index()

    procs = _Procs()
    env = _env()
    costs = {r.name: _cost(r, xs[r.name]) for r in todo}
    n_total = len(todo) + len(need_flops)
    t0 = time.time()
    tally = {"n": 0, "run_cost": 0.0, "run_wall": 0.0, "flops_n": 0, "flops_wall": 0.0,
             "left_cost": sum(costs.values()), "left_flops": len(need_flops), "left_runs": len(todo), "seen": []}
    failures = []

    def do_flops(key: str, r: Run):
        logf = out / "logs" / f"flops-{key}.log"
        cmd = flops_command(r, spec)
        t = time.time()
        rc = procs.run(cmd, logf, env)
        if rc != 0:
            return key, None, time.time() - t, rc
        res = None
        for line in reversed(logf.read_text().splitlines()):
            if line.startswith("{"):
                res = json.loads(line)
                break
        return key, res, time.time() - t, rc

    def do_run(r: Run):
        d = out / "runs" / r.name
        logf = out / "logs" / f"{r.name}.log"
        if d.exists():
            shutil.rmtree(d)                      # half-finished or stale: rerun from scratch
        if logf.exists():
            logf.unlink()
        t = time.time()
        rc = procs.run(train_command(r, spec, d), logf, env)
        if rc == 0:
            rc = procs.run(eval_command(r, spec, d), logf, env)
        wall = time.time() - t
        if rc == 0:
            _write_json(d / MARKER, {"status": "done", "name": r.name, "model": r.model, "seed": r.seed,
                                      "config_hash": r.config_hash, "overrides": r.overrides, "axes": r.axes,
                                      "wall_s": round(wall, 2), "finished": _now()})
        return r, rc, wall, logf

    def progress(label: str, wall: float, cost: float | None):
        """One line per finished task: count, elapsed, and an ETA from the measured time per unit of cost."""
        tally["n"] += 1
        if cost is None:
            tally["flops_n"] += 1
            tally["flops_wall"] += wall
            tally["left_flops"] -= 1
        else:
            tally["run_cost"] += cost
            tally["run_wall"] += wall
            tally["left_cost"] -= cost
            tally["left_runs"] -= 1
            tally["seen"].append((cost, wall))
        eta = float("nan")
        if tally["run_cost"] > 0:
            per_flop = tally["flops_wall"] / tally["flops_n"] if tally["flops_n"] else 0.0
            fixed, rate = _wall_model(tally["seen"])
            left = tally["left_runs"] * fixed + tally["left_cost"] * rate + tally["left_flops"] * per_flop
            eta = left / jobs
        log(f"[{tally['n']}/{n_total}] {label} — elapsed {_hms(time.time() - t0)}, ETA {_hms(eta)}")

    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futs = {}
        for key, r in need_flops.items():
            futs[pool.submit(do_flops, key, r)] = ("flops", key)
        for r in todo:
            futs[pool.submit(do_run, r)] = ("run", r.name)
        for fut in as_completed(futs):
            kind, _ = futs[fut]
            if kind == "flops":
                key, res, wall, rc = fut.result()
                if res is None:
                    failures.append(f"FLOP count {key} (status {rc}; log {out / 'logs' / f'flops-{key}.log'})")
                    progress(f"FLOP count {key} FAILED", wall, None)
                else:
                    flops_cache[key] = res
                    progress(f"FLOPs/step {need_flops[key].model} {key}: {res['flops_per_step']:.3g} "
                             f"({wall:.0f}s)", wall, None)
                for name, rec in list(records.items()):
                    if rec.get("flops_key") == key and res is not None:
                        rec["flops_per_step"] = res["flops_per_step"]
                        rec["flops"] = res["flops_per_step"] * rec["steps"]
            else:
                r, rc, wall, logf = fut.result()
                if rc == 0:
                    records[r.name] = record(r, "done", wall_s=round(wall, 2))
                    rec = records[r.name]
                    vp = rec.get("val_ppl")
                    progress(f"{r.name} done in {wall:.0f}s (val ppl {vp:.3f})" if vp is not None
                             else f"{r.name} done in {wall:.0f}s", wall, costs[r.name])
                else:
                    last = _last_line(logf)
                    records[r.name] = record(r, "failed", wall_s=round(wall, 2), error=last)
                    failures.append(f"{r.name}: {last} (log {logf})")
                    progress(f"{r.name} FAILED: {last}", wall, costs[r.name])
            save_index()
    except KeyboardInterrupt:          # end the subprocesses we started, drop queued runs, keep the index
        procs.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        save_index()
        raise
    pool.shutdown(wait=True)
    index["failures"] = failures
    save_index()
    if failures:
        log(f"{len(failures)} failed:")
        for f in failures:
            log(f"  {f}")
    log(f"sweep index: {out / INDEX} ({_hms(time.time() - t0)})")
    return index


def _wall_model(seen: list[tuple[float, float]]) -> tuple[float, float]:
    """``wall ≈ fixed + rate · cost`` fitted on finished runs (process start-up and evaluation are the fixed
    part); a plain ratio until the costs differ, or when the fit is not sensible."""
    import numpy as np
    cost = np.array([c for c, _ in seen], dtype=float)
    wall = np.array([w for _, w in seen], dtype=float)
    ratio = (0.0, float(wall.sum() / cost.sum()))
    if len(seen) < 2 or np.ptp(cost) <= 0.05 * cost.mean():
        return ratio
    rate, fixed = np.polyfit(cost, wall, 1)
    return (float(fixed), float(rate)) if rate > 0 and fixed >= 0 else ratio


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("$ ")]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "no output"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _hms(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
