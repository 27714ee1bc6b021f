"""Prediction-stream attention kernels on CPU: forward + ∇ (create_graph) + backward of the gradient — the
pattern of every EBT training step. Interleaved rounds, CPU time, medians. Decides ``TextEBT.attn_block``.

Kernels (all exact, all twice differentiable):
  cat      the first implementation: q·kᵀ·scale, masked_fill, cat([ctx ; self]), softmax (S×(S+P), half masked)
  bias     scale and mask folded into one ``baddbmm`` (ebtkit.nn.prediction_attention.prediction_attention)
  block=N  ``bias`` over row blocks of N rows, each scoring only the keys it may see (causal_prediction_attention)

``python benchmarks/bench_attention.py`` → table on stdout and results/attention.json.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

from ebtkit.core.nn.prediction_attention import CausalPlan, causal_prediction_attention, prediction_attention, visible_to_bias

SHAPES = [(8, 2, 128, 64), (8, 2, 256, 64), (8, 4, 128, 64), (8, 4, 256, 64), (16, 4, 256, 64)]   # B,H,S,hd
BLOCKS = [None, 32, 64, 128]


def cat_kernel(q, kc, vc, ks, vs, visible, scale):
    s_ctx = (q @ kc.transpose(-2, -1)) * scale
    s_ctx = s_ctx.masked_fill(~visible, float("-inf"))
    s_self = (q * ks).sum(-1, keepdim=True) * scale
    Tc = kc.shape[2]
    w = torch.softmax(torch.cat([s_ctx, s_self], -1), dim=-1)
    return w[..., :Tc] @ vc + w[..., Tc:] * vs


def run(rounds: int = 7) -> list[dict]:
    torch.set_num_threads(1)
    out = []
    for B, H, S, hd in SHAPES:
        g = torch.Generator().manual_seed(0)
        mk = lambda *s: torch.randn(*s, generator=g).requires_grad_()  # noqa: E731
        args = (mk(B, H, S, hd), mk(B, H, S, hd), mk(B, H, S, hd), mk(B, H, S, hd), mk(B, H, S, hd))  # q,kc,vc,ks,vs
        visible = torch.arange(S)[None, :] <= torch.arange(S)[:, None]
        bias, scale = visible_to_bias(visible, torch.float32), hd ** -0.5
        w = torch.randn(B, H, S, hd, generator=g)
        kernels = {"cat": lambda *a: cat_kernel(*a, visible, scale),
                   "bias": lambda *a: prediction_attention(*a, bias, scale)}
        for blk in BLOCKS[1:]:
            plan = CausalPlan(S, S, 0, torch.float32, "cpu", blk)
            kernels[f"block={blk}"] = lambda *a, plan=plan: causal_prediction_attention(*a, plan, scale)
        times: dict[str, list[float]] = {k: [] for k in kernels}
        for r in range(rounds + 1):
            for name, f in kernels.items():
                t = time.process_time()
                o = f(*args)
                grads = torch.autograd.grad((o * w).sum(), args, create_graph=True)
                sum((x * x).sum() for x in grads).backward()
                if r:                                    # round 0 warms up
                    times[name].append(time.process_time() - t)
        res = {"shape": {"B": B, "H": H, "S": S, "hd": hd},
               "ms": {k: 1000 * statistics.median(v) for k, v in times.items()},
               "spread_ms": {k: [1000 * min(v), 1000 * max(v)] for k, v in times.items()}}
        out.append(res)
        print(f"B={B} H={H} S={S} hd={hd}: " + "  ".join(f"{k} {v:.1f}" for k, v in res["ms"].items()),
              file=sys.stderr, flush=True)
    return out


if __name__ == "__main__":
    res = run()
    names = list(res[0]["ms"])
    print("| B, H, S, hd | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for r in res:
        s = r["shape"]
        base = r["ms"]["cat"]
        print(f"| {s['B']}, {s['H']}, {s['S']}, {s['hd']} | "
              + " | ".join(f"{v:.1f} ({base / v:.2f}×)" for v in r["ms"].values()) + " |")
    path = Path(__file__).resolve().parent / "results" / "attention.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"torch": torch.__version__, "threads": 1, "unit": "CPU ms, median",
                                "results": res}, indent=2))
