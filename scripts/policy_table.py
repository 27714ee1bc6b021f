"""Perplexity of trained text runs under extra inference policies (thinking longer with a smaller α, Langevin
best-of-N, α multipliers) and of a Transformer++ at temperatures, on the same evenly spaced windows.

    OMP_NUM_THREADS=1 python scripts/policy_table.py EBT_RUN [EBT_RUN ...] --baseline TPP_RUN [--windows 64]

Used for docs/system2.md ("thinking at inference under the official rule"); `ebt eval --baseline` gives the
standard table with bootstrap intervals.
"""
from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

import ebtkit
from ebtkit.data.text import prepare_text_data
from ebtkit.eval.inference import think_text

POLICIES = [dict(), dict(steps=8), dict(steps=8, alpha_mult=0.5), dict(steps=16, alpha_mult=0.25),
            dict(steps=3, alpha_mult=0.75), dict(steps=3, alpha_mult=1.5),
            dict(steps=3, samples=8, langevin_sigma=0.5), dict(steps=8, langevin_sigma=0.5)]


def windows(tokens, S: int, n: int) -> torch.Tensor:
    tokens = torch.as_tensor(tokens)
    W = (len(tokens) - 1) // (S + 1)
    idx = torch.linspace(0, W - 1, min(n, W)).long()
    return torch.stack([tokens[i * (S + 1): (i + 1) * (S + 1)] for i in idx])


def ppl(logits_of, w: torch.Tensor) -> float:
    nll, n = 0.0, 0
    for i in range(0, len(w), 16):
        x = w[i:i + 16]
        L = logits_of(x[:, :-1])
        nll += F.cross_entropy(L.reshape(-1, L.shape[-1]).double(), x[:, 1:].reshape(-1), reduction="sum").item()
        n += x[:, 1:].numel()
    return math.exp(nll / n)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--windows", type=int, default=64)
    a = ap.parse_args()
    base = ebtkit.load(a.baseline)
    data = prepare_text_data(base.config.data, base.config.model.context, base.tokenizer)
    S = base.config.model.context
    splits = {"val": windows(data.val, S, a.windows), "ood": windows(data.ood, S, a.windows)}
    print("| model | policy | val ppl | OOD ppl |\n|---|---|---|---|")
    for T in (1.0, 1.5, 2.0):
        r = {k: ppl(lambda x: base.model.eval()(x) / T, w) for k, w in splits.items()}
        print(f"| {a.baseline} | temperature {T:g} | {r['val']:.3f} | {r['ood']:.2f} |")
    for run in a.runs:
        b = ebtkit.load(run)
        b.model.eval()
        for p in POLICIES:
            f = lambda x, p=p: think_text(b.model, x, generator=torch.Generator().manual_seed(0), **p).candidates  # noqa: E731
            r = {k: ppl(f, w) for k, w in splits.items()}
            label = ", ".join(f"{k}={v}" for k, v in p.items()) or "as trained"
            print(f"| {run} | {label} | {r['val']:.3f} | {r['ood']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
