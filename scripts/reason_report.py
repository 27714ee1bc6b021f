"""Tables and plots of docs/reasoning.md from the result files of scripts/reason_grid.py (one per problem, tag, seed).

    python scripts/reason_report.py docs/reasoning/results [--plots docs/reasoning] [--tag default]

Every figure is the mean over seeds ± half the range (max − min)/2, with the seed count. Curves: the headline
metric (MSE, or whole-instance exact accuracy) of each model against steps, one line per difficulty.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def load(root: Path, tag: str | None = None) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for f in sorted(root.glob("*.json")):
        d = json.loads(f.read_text())
        if "rows" not in d or (tag is not None and d.get("tag") != tag):
            continue
        groups[(d["problem"], d.get("tag", "default"))].append(d)
    return groups


def values(docs: list[dict], **where) -> list[float]:
    out = []
    for d in docs:
        hit = [r["value"] for r in d["rows"] if all(r.get(k) == v for k, v in where.items())]
        if hit and hit[0] is not None:
            out.append(hit[0])
    return out


def fmt(vals: list[float], digits: int = 3, pct: bool = False) -> str:
    if not vals:
        return "—"
    a = np.asarray(vals, dtype=float) * (100 if pct else 1)
    m, h = a.mean(), (a.max() - a.min()) / 2
    f = (lambda v: f"{v:.{digits}g}") if not pct else (lambda v: f"{v:.1f}")
    return f"{f(m)} ± {f(h)}" + ("" if len(a) == 3 else f" (n={len(a)})")


def metric_of(docs) -> str:
    return docs[0]["headline_metric"]


def trained_steps(docs) -> int:
    ebt = docs[0]["models"].get("EBT") or next(iter(docs[0]["models"].values()))
    return (ebt.get("trained_thinking_steps") or [1, 1])[1]


def curve_table(docs: list[dict]) -> str:
    metric, steps = metric_of(docs), docs[0]["steps"]
    pct = metric != "mse"
    lines = [f"| model | {docs[0]['knob_short']} | " + " | ".join(f"{k} steps" for k in steps) + " |",
             "|---|---|" + "---|" * len(steps)]
    for label in docs[0]["models"]:
        for d in docs[0]["difficulties"]:
            ff = values(docs, model=label, metric=metric, policy="plain", difficulty=d, steps=None)
            if ff:
                lines.append(f"| {label} (1 pass) | {d:g} | " + fmt(ff, pct=pct) + " |" + " |" * (len(steps) - 1))
                continue
            cells = [fmt(values(docs, model=label, metric=metric, policy="plain", difficulty=d, steps=k), pct=pct)
                     for k in steps]
            lines.append(f"| {label} | {d:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def policy_table(docs: list[dict], difficulty: float, steps: int) -> str:
    metric = metric_of(docs)
    pct = metric != "mse"
    lines = ["| model | plain | accept-lower | best-of-N | mean-of-N | oracle-of-N |", "|---|---|---|---|---|---|"]
    for label in docs[0]["models"]:
        cells = [fmt(values(docs, model=label, metric=metric, policy=p, difficulty=difficulty, steps=steps), pct=pct)
                 for p in ("plain", "accept-lower", "best-of-N", "mean-of-N", "oracle-of-N")]
        if all(c == "—" for c in cells):
            continue
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verifier_table(docs: list[dict], label: str, difficulty: float) -> str:
    """Best-of-N against plain and the oracle at every step count: the energy (EBT) or residual (looped) as verifier;
    'share' = (plain − best-of-N) / (plain − oracle), the part of the oracle's gain the selection finds."""
    metric = metric_of(docs)
    pct, lower = metric != "mse", metric == "mse"
    lines = [f"| steps | plain | best-of-N | oracle-of-N | gain of best-of-N | share of the oracle's gain |",
             "|---|---|---|---|---|---|"]
    for k in docs[0]["steps"]:
        p, b, o = (values(docs, model=label, metric=metric, policy=q, difficulty=difficulty, steps=k)
                   for q in ("plain", "best-of-N", "oracle-of-N"))
        if not (p and b and o):
            continue
        gain = [(x - y) / x if lower else (y - x) for x, y in zip(p, b)]
        share = [(x - y) / (x - z) if abs(x - z) > 1e-12 else float("nan") for x, y, z in zip(p, b, o)]
        lines.append(f"| {k} | {fmt(p, pct=pct)} | {fmt(b, pct=pct)} | {fmt(o, pct=pct)} | "
                     f"{fmt(gain, pct=True)}{' % less error' if lower else ' points'} | {fmt(share, 2)} |")
    return "\n".join(lines)


def uncertainty_table(docs: list[dict], steps: int) -> str:
    lines = ["| model | difficulty | AUROC wrong (E) | AUROC OOD (E) | AUROC wrong (abs dy) | AUROC OOD (abs dy) |",
             "|---|---|---|---|---|---|"]
    for label in docs[0]["models"]:
        for d in docs[0]["difficulties"]:
            cells = [fmt(values(docs, model=label, metric=m, policy="plain", difficulty=d, steps=steps))
                     for m in ("auroc_wrong", "auroc_ood", "auroc_wrong_dy", "auroc_ood_dy")]
            if all(c == "—" for c in cells):
                continue
            lines.append(f"| {label} | {d:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(docs: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    metric = metric_of(docs)
    labels = [m for m in docs[0]["models"] if values(docs, model=m, metric=metric, steps=docs[0]["steps"][0])]
    ffs = [m for m in docs[0]["models"] if m not in labels]
    fig, axes = plt.subplots(1, len(labels), figsize=(5 * len(labels), 4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, label in zip(axes[0], labels):
        for i, d in enumerate(docs[0]["difficulties"]):
            c = colors[i % len(colors)]
            ks, ms, lo, hi = [], [], [], []
            for k in docs[0]["steps"]:
                v = values(docs, model=label, metric=metric, policy="plain", difficulty=d, steps=k)
                if v:
                    ks.append(k)
                    ms.append(np.mean(v))
                    lo.append(min(v))
                    hi.append(max(v))
            ax.plot(ks, ms, marker="o", color=c, label=f"{docs[0]['knob_short']} {d:g}")
            ax.fill_between(ks, lo, hi, color=c, alpha=0.15)
            for f in ffs:
                v = values(docs, model=f, metric=metric, policy="plain", difficulty=d, steps=None)
                if v:
                    ax.axhline(np.mean(v), ls="--", lw=1, color=c)
        ax.set_xscale("log", base=2)
        if metric == "mse":
            ax.set_yscale("log")
        ax.axvline(trained_steps(docs), color="grey", lw=0.8, ls=":")
        ax.set_xlabel("steps (NFE per instance); dotted: trained")
        ax.set_ylabel(metric)
        ax.set_title(f"{label}, {docs[0]['problem']} ({len(docs)} seeds; dashed: feed-forward)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--plots", default=None)
    ap.add_argument("--tag", default=None)
    a = ap.parse_args()
    for (problem, tag), docs in sorted(load(Path(a.root), a.tag).items()):
        T = trained_steps(docs)
        steps = docs[0]["steps"]
        hard = docs[0]["difficulties"][-1]
        four = min(steps, key=lambda k: abs(k - 4 * T))
        print(f"\n## {problem} [{tag}] — {len(docs)} seeds ({', '.join(str(d['models']['EBT']['seed']) for d in docs if 'EBT' in d['models'])}), "
              f"trained steps {T}, metric {metric_of(docs)}\n")
        print(curve_table(docs))
        print(f"\nPolicies at difficulty {hard:g}, {four} steps (N = {docs[0]['samples']}):\n")
        print(policy_table(docs, hard, four))
        for label in ("EBT", "looped"):
            if label in docs[0]["models"]:
                print(f"\nVerifier ({label}, best-of-{docs[0]['samples']}) at difficulty {hard:g}:\n")
                print(verifier_table(docs, label, hard))
        print(f"\nUncertainty at {four} steps:\n")
        print(uncertainty_table(docs, four))
        if a.plots:
            out = Path(a.plots) / f"{problem}-{tag}.png"
            plot(docs, out)
            print(f"\n![{problem}]({out})")


if __name__ == "__main__":
    main()
