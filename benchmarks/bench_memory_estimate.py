"""Calibrate and check the training-memory estimate (:mod:`ebtkit.core.estimate`) against measured peaks on CPU.

Every configuration runs in its own process: build the model and AdamW, read the resident set (``/proc/self/statm``),
take two real training steps (the task's loss through thinking, backward, clipping, AdamW), read the peak resident
set (``ru_maxrss``). ``MALLOC_MMAP_THRESHOLD_`` is fixed so that glibc serves every large tensor with ``mmap`` and
returns it on free; the resident set then follows live tensors (checked against PyTorch's profiler memory timeline
within ~5–10 MB on the ``cpu`` preset). Measured training memory = peak − RSS before the steps + the weights (already
resident before the steps).

The estimate is ``16·N + max(Σ coefficient × rows × term, OPTIMIZER_TRANSIENT·N)`` (see the module). ``--fit``
re-fits the coefficients (non-negative least squares on relative error, backbone terms shared by text and sequence
models) and prints them as Python to paste into ``ebtkit/core/estimate.py``; without it the module's coefficients
are checked. Either way every point's ``estimate / measured`` is written to ``results/memory_estimate.json``.

``python benchmarks/bench_memory_estimate.py [--fit] [--quick]`` (fp32, one thread; ~4 min for the full grid).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
OFF = {"thinking.max_steps": None, "thinking.replay_fraction": 0.0, "thinking.replay_size": 0}
TRANSIENT = {"model.vocab_size": 32768, "model.d_model": 256, "model.n_heads": 4, "model.n_layers": 1,
             "model.context": 8, "train.batch_size": 1}

# (task, preset, model, system, overrides); the EBT's step count is fixed (max_steps off) and replay off, so the
# graph measured is the largest the recipe builds
GRID: list[tuple] = [
    # text EBT around 'cpu' (D 64, L 4, 2 heads, S 64, V 256, batch 16, System 1, 2 steps)
    ("text", "cpu", "ebt", "s1", {}),
    ("text", "cpu", "ebt", "s1", {"model.d_model": 128, "model.n_heads": 4}),
    ("text", "cpu", "ebt", "s1", {"model.ffn_mult": 3.0}),
    ("text", "cpu", "ebt", "s1", {"model.context": 128}),
    ("text", "cpu", "ebt", "s1", {"model.context": 256, "train.batch_size": 8}),
    ("text", "cpu", "ebt", "s1", {"model.context": 32, "train.batch_size": 32}),
    ("text", "cpu", "ebt", "s1", {"model.n_heads": 8}),
    ("text", "cpu", "ebt", "s1", {"model.n_layers": 2}),
    ("text", "cpu", "ebt", "s1", {"model.n_layers": 8}),
    ("text", "cpu", "ebt", "s1", {"thinking.steps": 1, "model.n_landscapes": 1}),
    ("text", "cpu", "ebt", "s1", {"thinking.steps": 3}),
    ("text", "cpu", "ebt", "s2", {"thinking.steps": 3}),
    ("text", "cpu", "ebt", "s2", {"thinking.steps": 3, "model.d_model": 128, "model.n_heads": 4}),
    ("text", "cpu", "ebt", "s1", {"model.vocab_size": 1024}),
    ("text", "cpu", "ebt", "s1", {"model.step_cond": "token"}),
    ("text", "tiny", "ebt", "s1", {"train.batch_size": 64}),
    ("text", "cpu", "ebt", "s1", {"model.ffn_mult": 2.0, "model.d_model": 128, "model.n_heads": 4}),
    ("text", "cpu", "ebt", "s1", {"model.ffn_mult": 0.5}),
    # sequence EBT around 'cpu' (D 128, L 4, 4 heads, S 19, F = 32² pixels, batch 16)
    ("sequence", "cpu", "ebt", "s1", {"model.features": 1024}),
    ("sequence", "cpu", "ebt", "s1", {"model.features": 4, "model.context": 64}),
    ("sequence", "cpu", "ebt", "s2", {"model.features": 1024, "thinking.steps": 3}),
    ("sequence", "cpu", "ebt", "s1", {"model.features": 4096, "model.d_model": 64, "model.n_heads": 2}),
    ("sequence", "cpu", "ebt", "s1", {"model.features": 16, "model.context": 128, "train.batch_size": 8}),
    ("sequence", "cpu", "ebt", "s1", {"model.features": 64, "model.ffn_mult": 3.0}),
    # activation checkpointing of the prediction-stream blocks (train.checkpoint_blocks)
    ("text", "cpu", "ebt", "s1", {"train.checkpoint_blocks": True}),
    ("text", "cpu", "ebt", "s1", {"train.checkpoint_blocks": True, "model.n_layers": 8}),
    ("text", "cpu", "ebt", "s1", {"train.checkpoint_blocks": True, "thinking.steps": 3, "model.d_model": 128,
                                  "model.n_heads": 4}),
    ("text", "cpu", "ebt", "s2", {"train.checkpoint_blocks": True, "thinking.steps": 3, "model.context": 128}),
    ("sequence", "cpu", "ebt", "s1", {"train.checkpoint_blocks": True, "model.features": 1024, "model.n_layers": 8}),
    # Transformer++ (text, sequence)
    ("text", "cpu", "transformer++", None, {"train.batch_size": 32}),
    ("text", "cpu", "transformer++", None, {"model.d_model": 256, "model.n_heads": 4, "train.batch_size": 32}),
    ("text", "cpu", "transformer++", None, {"model.context": 256, "train.batch_size": 32}),
    ("text", "cpu", "transformer++", None, {"model.vocab_size": 4096, "train.batch_size": 32}),
    ("text", "cpu", "transformer++", None, {"model.ffn_mult": 4.0, "model.n_layers": 8, "train.batch_size": 32}),
    ("text", "cpu", "transformer++", None, {"model.n_heads": 8, "model.context": 128, "train.batch_size": 32}),
    ("sequence", "cpu", "transformer++", None, {"model.features": 1024, "train.batch_size": 32}),
    ("sequence", "cpu", "transformer++", None, {"model.features": 4, "model.context": 128, "train.batch_size": 32}),
    ("sequence", "cpu", "transformer++", None, {"model.features": 4096, "model.d_model": 64, "model.n_heads": 2,
                                                "train.batch_size": 32}),
    ("text", "cpu", "transformer++", None, {"model.ffn_mult": 2.0, "train.batch_size": 32}),
    # parameters dominate: the optimizer's transient (OPTIMIZER_TRANSIENT; not part of the activation fit)
    ("text", "cpu", "transformer++", None, TRANSIENT),
    # image EBT and DiT around 'cpu' (28×28, patch 4 → 49 patches, D 64, L 4, 4 heads, MLP 2D, batch 32)
    ("denoise", "cpu", "ebt", "s1", {}),
    ("denoise", "cpu", "ebt", "s1", {"model.patch_size": 2}),
    ("denoise", "cpu", "ebt", "s1", {"model.d_model": 128}),
    ("denoise", "cpu", "ebt", "s1", {"model.mlp_ratio": 4.0, "model.n_layers": 8}),
    ("denoise", "cpu", "ebt", "s1", {"thinking.steps": 2}),
    ("denoise", "cpu", "ebt", "s2", {"thinking.steps": 3}),
    ("denoise", "cpu", "ebt", "s1", {"model.n_heads": 16, "train.batch_size": 16}),
    ("denoise", "cpu", "ebt", "s1", {"model.mlp_ratio": 4.0}),
    ("denoise", "cpu", "ebt", "s1", {"model.mlp_ratio": 1.0, "model.d_model": 128}),
    ("denoise", "cpu", "dit", None, {}),
    ("denoise", "cpu", "dit", None, {"model.patch_size": 2}),
    ("denoise", "cpu", "dit", None, {"model.d_model": 128}),
    ("denoise", "cpu", "dit", None, {"model.mlp_ratio": 4.0, "model.n_layers": 8}),
    ("denoise", "cpu", "dit", None, {"model.n_heads": 16, "model.patch_size": 2}),
    ("denoise", "cpu", "dit", None, {"model.mlp_ratio": 4.0}),
    ("denoise", "cpu", "dit", None, {"model.mlp_ratio": 1.0, "model.d_model": 128}),
    # bf16 autocast (ACTIVATIONS_16BIT; not part of the fp32 fit)
    ("text", "cpu", "ebt", "s1", {"train.precision": "bf16"}),
    ("text", "cpu", "ebt", "s2", {"train.precision": "bf16", "thinking.steps": 3}),
    ("text", "cpu", "transformer++", None, {"train.precision": "bf16", "train.batch_size": 32}),
    ("denoise", "cpu", "ebt", "s1", {"train.precision": "bf16"}),
    ("sequence", "cpu", "ebt", "s1", {"train.precision": "bf16", "model.features": 1024}),
]
# --quick: the first configuration of every (task, model), a System 2 one and the optimizer's transient
QUICK = sorted({next(i for i, g in enumerate(GRID) if g[0] == t and g[2] == m) for t, _, m, _, _ in GRID}
               | {next(i for i, g in enumerate(GRID) if g[3] == "s2"), GRID.index(("text", "cpu", "transformer++",
                                                                                 None, TRANSIENT))})

# columns of the joint fits: backbone terms shared by the models of one family, the rest per model kind
FAMILIES = {"ar-ebt": ("text-ebt", "sequence-ebt"), "ar-tpp": ("text-transformer++", "sequence-transformer++"),
            "image-ebt": ("image-ebt",), "image-dit": ("image-dit",)}
PER_KIND = {"step_cand", "free_cand", "head"}    # the rest (backbone terms, the fixed overhead) shared


def precision(cfg) -> str:
    p = getattr(cfg.train, "precision", "fp32")
    return p if p in ("bf16", "fp16") else "fp32"


def resolve(task: str, preset: str, model: str, system: str | None, over: dict):
    from ebtkit.tasks import get_task

    t = get_task(task)
    derived = {k: over[k] for k in ("model.vocab_size", "model.features") if k in over}
    rest = {k: v for k, v in over.items() if k not in derived}
    extra = OFF if model == "ebt" else {}
    cfg = t.preset(preset, system, **{"model.model": model, **extra, **rest})
    return t, cfg.replace(**derived) if derived else cfg


# ------------------------------------------------------------------------------------------- the child
def _rss() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so the measured peak excludes what imports touched and freed
    (a fresh environment's first imports peak higher); False where /proc/self/clear_refs is not writable."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(spec: dict) -> dict:
    import torch

    from ebtkit.core.thinking import is_energy_model
    from ebtkit.tasks import get_task
    from ebtkit.training.optim import make_optimizer, optimizer_step

    torch.set_num_threads(1)
    task = get_task(spec["task"])
    cfg = task.config_from_dict(spec["config"])
    torch.manual_seed(0)
    model = task.build_model(cfg)
    if getattr(cfg.train, "checkpoint_blocks", False) and hasattr(model, "checkpoint_blocks"):
        model.checkpoint_blocks = True          # as fit() does
    model.train()
    opt, params = make_optimizer(model, cfg.train)
    gen = torch.Generator().manual_seed(0)
    B, m = cfg.train.batch_size, cfg.model

    def loss_of():
        if task.name == "text":
            from ebtkit.tasks.text import ebt_text_loss, transformer_loss
            tokens = torch.randint(0, m.vocab_size, (B, m.context + 1), generator=gen)
            return ebt_text_loss(model, tokens, cfg.thinking, gen)[0] if is_energy_model(model) else \
                transformer_loss(model, tokens)[0]
        if task.name == "sequence":
            from ebtkit.tasks.sequence import ebt_sequence_loss, regressor_loss
            window = torch.randn(B, m.context + 1, m.features, generator=gen)
            return ebt_sequence_loss(model, window, cfg, gen)[0] if is_energy_model(model) else \
                regressor_loss(model, window, cfg)[0]
        from ebtkit.tasks.denoise import dit_loss, ebt_denoise_loss
        clean = torch.rand(B, m.channels, m.image_size, m.image_size, generator=gen) * 2 - 1
        if is_energy_model(model):
            noisy = clean + 0.3 * torch.randn(clean.shape, generator=gen)
            return ebt_denoise_loss(model, clean, noisy, cfg, gen)[0]
        diffusion = cfg.noise.diffusion()
        return dit_loss(model, diffusion, clean, diffusion.t_for_sigma(cfg.noise.train_sigma), gen)[0]

    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    half = getattr(cfg.train, "precision", "fp32") in ("bf16", "fp16")
    gc.collect()
    hwm = _reset_peak()                         # the peak from here on, not an import's transient high-water mark
    r0 = _rss()
    t0 = time.perf_counter()
    for _ in range(2):
        if half:                                # as fit() does: autocast around the loss, fp32 weights and state
            with torch.autocast("cpu", dtype=torch.bfloat16 if cfg.train.precision == "bf16" else torch.float16):
                loss = loss_of()
        else:
            loss = loss_of()
        optimizer_step(model, loss, opt, params, cfg.train.grad_clip)
    peak = _peak() if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"measured": peak - r0 + weights, "seconds": time.perf_counter() - t0}


def measure(task, cfg) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0", "OMP_NUM_THREADS": "1"}
    spec = json.dumps({"task": task.name, "config": cfg.to_dict()})
    r = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(f"child failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- fit and check
def fit(points: list[dict]) -> dict[str, dict[str, float]]:
    """Non-negative least squares on relative error, per family (shared backbone columns)."""
    import numpy as np

    from ebtkit.core import estimate as E

    out: dict[str, dict[str, float]] = {}
    for fam, kinds in FAMILIES.items():
        pts = [p for p in points if p["kind"] in kinds and p["activations"] > 0 and p["overrides"] != TRANSIENT
               and p["precision"] == "fp32"]
        if not pts:
            continue
        cols: list[str] = []
        for p in pts:
            for k in p["terms"]:
                c = f"{p['kind']}:{k}" if k in PER_KIND else k
                if c not in cols:
                    cols.append(c)
        X = np.zeros((len(pts), len(cols)))
        y = np.zeros(len(pts))
        for i, p in enumerate(pts):
            for k, v in p["terms"].items():
                c = f"{p['kind']}:{k}" if k in PER_KIND else k
                X[i, cols.index(c)] = 1.0 if k == "const" else v * p["rows"]
            y[i] = p["activations"]
        w = 1.0 / y
        try:
            from scipy.optimize import nnls
            coef, _ = nnls(X * w[:, None], y * w)
        except ImportError:                                  # plain least squares, clipped at zero
            coef = np.clip(np.linalg.lstsq(X * w[:, None], y * w, rcond=None)[0], 0, None)
        for kind in kinds:
            out[kind] = {k: round(float(coef[cols.index(f"{kind}:{k}" if k in PER_KIND else k)]), 3)
                         for k in E.COEFFICIENTS[kind] if (f"{kind}:{k}" if k in PER_KIND else k) in cols}
            for k in E.COEFFICIENTS[kind]:
                out[kind].setdefault(k, E.COEFFICIENTS[kind][k])
    return out


def leave_one_out(points: list[dict]) -> list[float]:
    """Out-of-sample check of the fit: each fp32 point's estimate with coefficients fitted without it."""
    from ebtkit.core import estimate as E

    saved = {k: dict(v) for k, v in E.COEFFICIENTS.items()}
    out = []
    try:
        for i, pt in enumerate(points):
            if pt["precision"] != "fp32" or pt["overrides"] == TRANSIENT:
                continue
            E.COEFFICIENTS.update(fit(points[:i] + points[i + 1:]))
            _, cfg = resolve(pt["task"], pt["preset"], pt["model"], pt["system"], pt["overrides"])
            out.append(round(E.estimate(cfg).total_bytes / pt["measured"], 3))
            E.COEFFICIENTS.update({k: dict(v) for k, v in saved.items()})
    finally:
        E.COEFFICIENTS.update(saved)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--fit", action="store_true", help="re-fit the coefficients and print them")
    p.add_argument("--quick", action="store_true", help=f"{len(QUICK)} configurations instead of {len(GRID)}")
    p.add_argument("--out", default=str(RESULTS / "memory_estimate.json"))
    p.add_argument("--reuse", default=None, metavar="JSON", help="take the measurements of configurations already "
                   "in this results file (same task, preset, model, system, overrides) instead of re-measuring")
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(json.loads(a.child))))
        return 0
    from ebtkit.core import estimate as E

    grid = [GRID[i] for i in QUICK] if a.quick else GRID
    old = {}
    if a.reuse:
        for pt in json.loads(Path(a.reuse).read_text())["points"]:
            old[json.dumps([pt["task"], pt["preset"], pt["model"], pt["system"], pt["overrides"]])] = pt
    points = []
    for task_name, preset, model, system, over in grid:
        task, cfg = resolve(task_name, preset, model, system, over)
        est = E.estimate(cfg, precision(cfg))
        key = json.dumps([task_name, preset, model, system, over])
        res = old[key] if key in old else measure(task, cfg)
        state = E.STATE_BYTES_PER_PARAM * est.params
        points.append({"task": task_name, "preset": preset, "model": model, "system": system, "overrides": over,
                       "precision": precision(cfg), "fp32_activation_estimate": E.estimate(cfg).activation_bytes,
                       "kind": est.kind, "params": est.params, "rows": est.rows, "terms": est.terms,
                       "measured": res["measured"], "activations": res["measured"] - state,
                       "seconds": round(res["seconds"], 2)})
        print(f"{est.kind:<24} {json.dumps(over):<80} measured {res['measured'] / 1e6:8.1f} MB  "
              f"estimate {est.total_bytes / 1e6:8.1f} MB  ratio {est.total_bytes / res['measured']:.2f}",
              file=sys.stderr, flush=True)
    coefs = fit(points) if a.fit else E.COEFFICIENTS
    if a.fit:
        E.COEFFICIENTS.update(coefs)
        print("COEFFICIENTS = " + json.dumps(coefs, indent=4))
    for pt in points:
        task, cfg = resolve(pt["task"], pt["preset"], pt["model"], pt["system"], pt["overrides"])
        pt["estimate"] = E.estimate(cfg, precision(cfg)).total_bytes
        pt["ratio"] = round(pt["estimate"] / pt["measured"], 3)
    half = [pt["activations"] / pt["fp32_activation_estimate"] for pt in points if pt["precision"] != "fp32"]
    if half:
        print(f"16-bit autocast: measured activations / fp32 estimate = {min(half):.2f}..{max(half):.2f} "
              f"(ACTIVATIONS_16BIT = {E.ACTIVATIONS_16BIT})")
    for pt in points:
        if pt["overrides"] == TRANSIENT:
            print(f"optimizer transient: {pt['activations'] / pt['params']:.2f} bytes per parameter "
                  f"(OPTIMIZER_TRANSIENT = {E.OPTIMIZER_TRANSIENT})")
    ratios = [pt["ratio"] for pt in points]
    worst = max(max(ratios), 1 / min(ratios))
    loo = leave_one_out(points)
    summary = {"points": len(points), "worst_factor": round(worst, 3), "min_ratio": min(ratios),
               "max_ratio": max(ratios), "stated_factor": E.STATED_FACTOR, "fitted": a.fit,
               "leave_one_out_min_ratio": min(loo), "leave_one_out_max_ratio": max(loo),
               "leave_one_out_worst_factor": round(max(max(loo), 1 / min(loo)), 3)}
    print(json.dumps(summary))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"summary": summary, "coefficients": coefs, "points": points,
                               "torch_threads": 1, "note": "fp32, CPU, peak RSS per process"}, indent=1))
    os.replace(tmp, out)
    return 0 if worst <= E.STATED_FACTOR else 1


if __name__ == "__main__":
    sys.exit(main())
