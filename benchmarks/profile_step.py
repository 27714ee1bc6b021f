"""Where a training step's CPU time goes: Transformer++ vs the fast text EBT (System 1), one configuration.

Splits the profiler's self CPU time into matmul-class ops (mm/bmm/baddbmm/SDPA) and everything else, each
further split by whether the op touches a vocabulary-sized tensor (last dim = V: logits, candidates,
softmax(ŷ), the V×D projections) or only the backbone. Also prints FLOPs and achieved GFLOP/s of the
matmul-class ops. ``python benchmarks/profile_step.py 4xs 256 256 8``.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

import torch

import bench

MATMUL = {"aten::mm", "aten::bmm", "aten::baddbmm", "aten::addmm", "aten::matmul",
          "aten::_scaled_dot_product_flash_attention_for_cpu",
          "aten::_scaled_dot_product_flash_attention_for_cpu_backward"}


def profile(case: bench.TrainCase, variants=("tpp", "fast_s1")) -> dict:
    torch.set_num_threads(1)
    steps, tokens = bench.train_variants(case), bench._tokens(case)
    out = {}
    for v in variants:
        steps[v](tokens)                                                   # warm-up
        with torch.profiler.profile(record_shapes=True) as prof:
            steps[v](tokens)
        cats: dict[str, float] = defaultdict(float)
        for e in prof.key_averages(group_by_input_shape=True):
            if e.key.startswith(("autograd::", "ProfilerStep")) or e.self_cpu_time_total == 0:
                cats["autograd engine / python"] += e.self_cpu_time_total / 1e3
                continue
            vocab = any(len(s) and s[-1] == case.vocab for s in e.input_shapes if isinstance(s, list))
            kind = "matmul" if e.key in MATMUL else "other ops"
            cats[f"{kind}, {'V-sized' if vocab else 'backbone'}"] += e.self_cpu_time_total / 1e3
        total = sum(cats.values())
        out[v] = {"total_ms": total, "ms": dict(cats), "share": {k: c / total for k, c in cats.items()},
                  "flops": bench.count_flops(lambda v=v: steps[v](tokens[:1])) * case.batch}
    return out


if __name__ == "__main__":
    size, S, V, B = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    res = profile(bench.TrainCase(size, S, V, B))
    keys = sorted({k for r in res.values() for k in r["ms"]})
    print(f"{size} S={S} V={V} B={B}: self CPU ms (share)")
    print("| category | " + " | ".join(res) + " |")
    print("|---" * (len(res) + 1) + "|")
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{r['ms'].get(k, 0):.0f} ({100 * r['share'].get(k, 0):.0f}%)"
                                        for r in res.values()) + " |")
    print("| total | " + " | ".join(f"{r['total_ms']:.0f}" for r in res.values()) + " |")
    print("| GFLOP (matmul-class) | " + " | ".join(f"{r['flops'] / 1e9:.2f}" for r in res.values()) + " |")
    print(json.dumps({k: {"total_ms": r["total_ms"], "ms": r["ms"], "flops": r["flops"]} for k, r in res.items()}))
