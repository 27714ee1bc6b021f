"""What the training step of a text EBT keeps for backward, and what activation checkpointing saves.

Measures, for one System 1 / System 2 training step (forward through thinking + the second-order graph), the
bytes of every tensor autograd saves for backward (``torch.autograd.graph.saved_tensors_hooks``: exact and
device-independent, unlike RSS on a CPU) and the step time, with and without:

* ``checkpoint_blocks`` — activation checkpointing of the prediction-stream blocks inside unrolled thinking;
* ``context_attention="sdpa"`` — the fused kernel for the observed stream (the CUDA default), which keeps no
  (B, H, S, S) probabilities. On the CPU the fused kernel is a different float path, so CPU runs keep the
  explicit kernel; here it is measured for the bytes.

Usage: ``python benchmarks/bench_memory.py [--sizes cpu,3xs] [--out benchmarks/results/memory.json]``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ebtkit.tasks import get_task, preset
from ebtkit.tasks.text import ebt_text_loss


def saved_bytes_and_time(model, tokens, cfg, repeats: int = 2) -> tuple[int, float]:
    total = 0
    seen: set[int] = set()

    def pack(t: torch.Tensor):
        nonlocal total
        key = t.untyped_storage().data_ptr() if t.device.type != "meta" else id(t)
        if key not in seen:                          # count each storage once (views share it)
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _, _ = ebt_text_loss(model, tokens, cfg.thinking, torch.Generator().manual_seed(0))
    loss.backward()
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    for _ in range(repeats):
        loss, _, _ = ebt_text_loss(model, tokens, cfg.thinking, torch.Generator().manual_seed(0))
        loss.backward()
        model.zero_grad(set_to_none=True)
    return total, (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="cpu,3xs")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--context", type=int, default=None, help="override the preset's context")
    ap.add_argument("--out", default="benchmarks/results/memory.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for size in args.sizes.split(","):
        for system in ("s1", "s2"):
            over = {"model.context": args.context} if args.context else {}
            cfg = preset("text", size, system, **over)
            torch.manual_seed(0)
            model = get_task("text").build_model(cfg).train()
            S = cfg.model.context
            tokens = torch.randint(0, cfg.model.vocab_size, (args.batch, S + 1), generator=torch.Generator().manual_seed(1))
            res = {}
            for name, attrs in (("plain", {}), ("checkpoint_blocks", {"checkpoint_blocks": True}),
                                ("context_sdpa", {"context_attention": "sdpa"}),
                                ("both", {"checkpoint_blocks": True, "context_attention": "sdpa"})):
                model.checkpoint_blocks, model.context_attention = False, "math"
                for k, v in attrs.items():
                    setattr(model, k, v)
                b, t = saved_bytes_and_time(model, tokens, cfg)
                res[name] = {"saved_mb": round(b / 2**20, 2), "step_s": round(t, 3)}
            row = {"size": size, "system": system, "batch": args.batch, "context": S,
                   "non_embedding_params": model.non_embedding_params(), **res}
            rows.append(row)
            p = res["plain"]
            print(f"{size:>5} {system}: saved {p['saved_mb']:8.1f} MB, {p['step_s']:.3f} s | "
                  + " | ".join(f"{k}: {v['saved_mb'] / p['saved_mb']:.2f}× memory, {v['step_s'] / p['step_s']:.2f}× time"
                               for k, v in res.items() if k != "plain"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "device": "cpu", "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
