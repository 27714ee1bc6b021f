"""The GPU check: one command (≤ 8 minutes on one GPU) that proves ebtkit's CUDA paths and measures them.

    python benchmarks/gpu_check.py [--steps 200] [--sizes cpu,3xs] [--out benchmarks/results/gpu_check.json]

1. the test suite's ``gpu``-marked tests (``tests/test_gpu.py``: CUDA fp32 vs CPU float64 parity of losses and
   gradients for every task's models; a training step of every task under ``set_sync_debug_mode("error")``);
2. ``--steps`` steps of the text EBT (System 1) and Transformer++ at two preset sizes, in fp32 and bf16, on the
   built-in corpus: first/last loss and bf16 ÷ fp32 loss parity, tokens/s, peak memory, EBT ÷ T++ step time;
3. the same training step with ``torch.cuda.set_sync_debug_mode("error")`` on: "no host sync" or the op that
   synchronised.

It prints a table and writes JSON. Numbers are only ever published from a run of this script on a GPU.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ebtkit.core.device import autocast  # noqa: E402
from ebtkit.core.rng import step_generator  # noqa: E402
from ebtkit.tasks import get_task, preset  # noqa: E402
from ebtkit.training.optim import lr_factor, make_optimizer, optimizer_step  # noqa: E402


def run_gpu_tests() -> dict:
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py", "-p", "no:cacheprovider"],
                       cwd=ROOT, capture_output=True, text=True)
    tail = (r.stdout + r.stderr).strip().splitlines()[-15:]
    return {"returncode": r.returncode, "summary": tail[-1] if tail else "", "tail": tail,
            "seconds": round(time.time() - t0, 1)}


def train(size: str, model: str, precision: str, steps: int, batch: int, dev: torch.device, data_task=None) -> dict:
    cfg = preset("text", size, "s1" if model == "ebt" else None,
                 **{"model.model": model, "train.batch_size": batch, "train.steps": steps,
                    "train.warmup": max(1, steps // 10), "train.precision": precision})
    task = get_task("text")
    run = data_task if data_task is not None else task(cfg)
    if data_task is None:
        cfg = run.setup(None)
    else:
        run.cfg = cfg.replace(**{"model.vocab_size": run.data.tokenizer.vocab_size})
        cfg = run.cfg
    torch.manual_seed(cfg.train.seed)
    net = task.build_model(cfg).to(dev).train()
    opt, params = make_optimizer(net, cfg.train)
    losses, times = [], []
    torch.cuda.reset_peak_memory_stats(dev)
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * lr_factor(step, cfg.train)
        torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        with autocast(dev, precision):
            loss, _ = run.loss(net, step_generator(cfg.train.seed, step, 0, dev))
        optimizer_step(net, loss, opt, params, cfg.train.grad_clip)
        torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
        if step % 20 == 0 or step == steps - 1:
            losses.append(float(loss.detach()))
    sync = "no host sync"
    torch.cuda.set_sync_debug_mode("error")
    try:
        with autocast(dev, precision):
            loss, _ = run.loss(net, step_generator(cfg.train.seed, steps, 0, dev))
        optimizer_step(net, loss, opt, params, cfg.train.grad_clip)
    except RuntimeError as e:
        sync = f"SYNC: {str(e).splitlines()[0][:160]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    warm = times[10:] if len(times) > 20 else times
    step_s = sum(warm) / len(warm)
    return {"size": size, "model": model, "precision": precision, "batch": batch, "context": cfg.model.context,
            "non_embedding_params": net.non_embedding_params(), "loss_first": losses[0], "loss_last": losses[-1],
            "step_s": step_s, "tokens_per_s": batch * cfg.model.context / step_s,
            "peak_mem_gb": torch.cuda.max_memory_allocated(dev) / 2**30, "sync": sync}, run


def main() -> int:
    ap = argparse.ArgumentParser(description="ebtkit GPU check")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--sizes", default="cpu,3xs")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing measured", file=sys.stderr)
        return 2
    dev = torch.device(args.device)
    info = {"gpu": torch.cuda.get_device_name(dev), "torch": torch.__version__, "cuda": torch.version.cuda,
            "bf16": torch.cuda.is_bf16_supported(), "python": platform.python_version()}
    print(f"device: {info['gpu']}  torch {info['torch']}  CUDA {info['cuda']}")
    result = {"info": info, "tests": None, "runs": []}
    if not args.skip_tests:
        result["tests"] = run_gpu_tests()
        print(f"gpu tests: {result['tests']['summary']} ({result['tests']['seconds']} s)")
    data_task = None
    for size in args.sizes.split(","):
        for precision in ("fp32", "bf16"):
            pair = {}
            for model in ("transformer++", "ebt"):
                row, data_task = train(size, model, precision, args.steps, args.batch, dev, data_task)
                pair[model] = row
                result["runs"].append(row)
            pair["ebt"]["ebt_over_tpp_step_time"] = pair["ebt"]["step_s"] / pair["transformer++"]["step_s"]
        for model in ("transformer++", "ebt"):
            r32 = next(r for r in result["runs"] if r["size"] == size and r["model"] == model and r["precision"] == "fp32")
            r16 = next(r for r in result["runs"] if r["size"] == size and r["model"] == model and r["precision"] == "bf16")
            r16["loss_ratio_vs_fp32"] = r16["loss_last"] / r32["loss_last"]
    hdr = f"{'size':>5} {'model':>13} {'prec':>5} {'loss 0→last':>15} {'bf16/fp32':>9} {'tok/s':>10} {'peak GB':>8} {'EBT/T++':>8}  sync"
    print(hdr)
    for r in result["runs"]:
        print(f"{r['size']:>5} {r['model']:>13} {r['precision']:>5} {r['loss_first']:6.3f}→{r['loss_last']:6.3f} "
              f"{r.get('loss_ratio_vs_fp32', float('nan')):9.3f} {r['tokens_per_s']:10.0f} {r['peak_mem_gb']:8.2f} "
              f"{r.get('ebt_over_tpp_step_time', float('nan')):8.2f}  {r['sync']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    ok = (result["tests"] is None or result["tests"]["returncode"] == 0) and all(r["sync"] == "no host sync"
                                                                                 for r in result["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
