"""Thinking curves of the reasoning task: quality against steps for each difficulty, for the EBT and its baselines.

For every model and difficulty, on fixed test instances (the same for every run: :data:`TEST_SEED`), one run to the
largest step count gives every shorter count's answer (thinking and looping are deterministic at inference, and
accept-lower decides each step from the energies up to it, so a prefix of a long run *is* the short run). Rows:

* ``plain`` — one start (sample 0); ``accept-lower`` — the same start, keeping a step only where it lowers the
  instance's energy (EBT only);
* ``best-of-N`` — N starts, the instance's answer with the lowest final energy (EBT) or the smallest last-step
  change |Δy| (looped: the convergence residual as its verifier); ``mean-of-N`` — the average over the N starts;
  ``oracle-of-N`` — the start with the lowest error, an upper bound for any selection;
* uncertainty (``plain``): ``auroc_wrong`` — AUROC of the final energy for wrong vs right instances (right:
  exactly solved, or relative MSE ≤ :data:`RIGHT_REL_MSE`); ``auroc_ood`` — for instances of this difficulty vs the
  in-distribution one; ``*_dy`` — the same for the last step's mean |Δy| per answer cell. The energy is a sum over
  the answer's cells, so it is compared per cell (energy ÷ cells): totals of instances of different sizes (longer
  strings, larger graphs) differ by their cell count alone, which would decide an ID-vs-OOD AUROC by size. Within
  one difficulty, and for fixed-size answers, the division changes no ranking.

``nfe``: network evaluations per instance (a thinking step = one energy evaluation with its input gradient; a
looped iteration = one forward; the feed-forward model = 1); best-of-N multiplies by N.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.models.reason import ReasonEBT, ReasonFeedForward, Shape
from ..core.thinking import think

RIGHT_REL_MSE = 0.01          # a continuous answer is "right" when its MSE is ≤ 1 % of the answer's mean square
POLICIES = ("plain", "accept-lower", "best-of-N", "mean-of-N", "oracle-of-N")


@dataclass
class Answers:
    """A model's answers to a batch: ``candidates[k]`` after k steps (k = 0..steps; one entry for the feed-forward
    model), the energies ``E(ŷ_k)`` (EBT) and ``points[k]`` the candidates as the trunk reads them."""

    candidates: list[torch.Tensor]
    energies: list[torch.Tensor] | None
    points: list[torch.Tensor]


def answer(model, x: torch.Tensor, steps: int, generator: torch.Generator | None, *,
           accept_lower: bool = False) -> Answers:
    """Answer ``x`` with ``steps`` thinking steps / iterations from a start drawn with ``generator``."""
    with torch.no_grad():
        if isinstance(model, ReasonFeedForward):
            pred = model(x)
            return Answers([pred], None, [model.point(pred)])
        y0 = model.initial_candidates(x, generator)
        if not isinstance(model, ReasonEBT):
            ys = model.iterate(x, y0, steps, detach=True)
            return Answers(ys, None, [model.point(y) for y in ys])
    tr = think(model.energy_fn(x), y0, steps=steps, alpha=model.step_size().detach(), create_graph=False,
               final_energy=True, accept_lower=accept_lower)
    cands = [c.detach() for c in tr.candidates]
    return Answers(cands, [e.detach() for e in tr.energies], [model.point(c) for c in cands])


def instance_metrics(shape: Shape, cand: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-instance metrics (B,): ``mse`` and ``right`` (continuous), ``cell_acc``, ``exact_acc`` and ``right``
    (categorical), ``error`` (the quantity selections minimise: MSE, or 1 − cell accuracy)."""
    if shape.kind == "continuous":
        mse = ((cand - y) ** 2).flatten(1).mean(1)
        right = mse <= RIGHT_REL_MSE * (y ** 2).flatten(1).mean(1)
        return {"mse": mse, "right": right.float(), "error": mse}
    hit = (cand.argmax(-1) == y).flatten(1).float()
    cell = hit.mean(1)
    exact = (hit.min(1).values > 0).float()
    return {"cell_acc": cell, "exact_acc": exact, "right": exact, "error": 1 - cell}


def metric_names(shape: Shape) -> tuple[str, ...]:
    return ("mse",) if shape.kind == "continuous" else ("cell_acc", "exact_acc")


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for ``positive`` (Mann–Whitney, ties counted half); None when one
    class is empty."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):                                   # average ranks of ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass
class Trace:
    """One start's results at each requested step count: per-instance metrics, final energies and |Δy|."""

    metrics: dict[int, dict[str, np.ndarray]]
    energy: dict[int, np.ndarray] | None
    dy: dict[int, np.ndarray]


def trace(model, shape: Shape, x: torch.Tensor, y: torch.Tensor, steps_list: list[int], seed: int,
          accept_lower: bool, batch_size: int) -> Trace:
    """Run one start (seeded by ``seed``) to ``max(steps_list)`` in batches and read every requested count."""
    top = max(steps_list)
    counts = [1] if isinstance(model, ReasonFeedForward) else steps_list
    gen = torch.Generator(device=x.device).manual_seed(seed)
    parts = []
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        a = answer(model, xb, top, gen, accept_lower=accept_lower)
        out = {}
        for k in counts:
            kk = 0 if isinstance(model, ReasonFeedForward) else k
            m = {n: v.cpu().numpy() for n, v in instance_metrics(shape, a.candidates[kk], yb).items()}
            e = a.energies[kk].cpu().numpy() if a.energies is not None else None
            dy = (a.points[kk] - a.points[kk - 1]).abs().flatten(1).mean(1).cpu().numpy() if kk > 0 else \
                np.zeros(xb.shape[0])
            out[k] = (m, e, dy)
        parts.append(out)
    metrics = {k: {n: np.concatenate([p[k][0][n] for p in parts]) for n in parts[0][k][0]} for k in counts}
    energy = {k: np.concatenate([p[k][1] for p in parts]) for k in counts} if parts[0][counts[0]][1] is not None \
        else None
    dy = {k: np.concatenate([p[k][2] for p in parts]) for k in counts}
    return Trace(metrics, energy, dy)


def curve_rows(label: str, model, shape: Shape, problem: str, data: dict[float, tuple], id_difficulty: float,
               steps_list: list[int], samples: int, accept_lower: bool, seed: int, batch_size: int,
               log=lambda *a: None) -> list[dict]:
    """Every row of one model over the difficulties in ``data`` (difficulty → (x, y) tensors)."""
    ff = isinstance(model, ReasonFeedForward)
    ebt = isinstance(model, ReasonEBT)
    counts = [1] if ff else steps_list
    rows: list[dict] = []
    names = metric_names(shape)

    def add(d, k, policy, metric, value, nfe, n=1):
        rows.append({"model": label, "problem": problem, "difficulty": d, "steps": None if ff else k,
                     "policy": policy, "metric": metric, "value": None if value is None else float(value),
                     "nfe": nfe, "samples": n})

    traces: dict[float, list[Trace]] = {}
    for d, (x, y) in data.items():
        log(f"  {label}: difficulty {d:g}")
        n_starts = 1 if ff else samples
        runs = [trace(model, shape, x, y, steps_list, seed * 1000 + s, False, batch_size) for s in range(n_starts)]
        traces[d] = runs
        for k in counts:
            nfe = 1 if ff else k
            for n in names:
                add(d, k, "plain", n, runs[0].metrics[k][n].mean(), nfe)
            if n_starts > 1:
                err = np.stack([r.metrics[k]["error"] for r in runs])                 # N, B
                score = np.stack([r.energy[k] for r in runs]) if ebt else np.stack([r.dy[k] for r in runs])
                pick, best = score.argmin(0), err.argmin(0)
                cols = np.arange(err.shape[1])
                for n in names:
                    vals = np.stack([r.metrics[k][n] for r in runs])
                    add(d, k, "best-of-N", n, vals[pick, cols].mean(), nfe * n_starts, n_starts)
                    add(d, k, "mean-of-N", n, vals.mean(), nfe * n_starts, n_starts)
                    add(d, k, "oracle-of-N", n, vals[best, cols].mean(), nfe * n_starts, n_starts)
        if ebt and accept_lower:
            al = trace(model, shape, x, y, steps_list, seed * 1000, True, batch_size)
            for k in counts:
                for n in names:
                    add(d, k, "accept-lower", n, al.metrics[k][n].mean(), k)
    # uncertainty: final energy per answer cell (EBT) and last-step |Δy| (EBT and looped), plain start
    if not ff:
        ids = traces.get(id_difficulty)
        cells = {d: int(y[0].numel()) for d, (_, y) in data.items()}
        for d, runs in traces.items():
            r = runs[0]
            for k in counts:
                wrong = r.metrics[k]["right"] < 0.5
                if ebt:
                    add(d, k, "plain", "auroc_wrong", auroc(r.energy[k] / cells[d], wrong), k)
                add(d, k, "plain", "auroc_wrong_dy", auroc(r.dy[k], wrong), k)
                if ids is not None and d != id_difficulty:
                    ood = np.r_[np.zeros(len(ids[0].dy[k]), bool), np.ones(len(r.dy[k]), bool)]
                    if ebt:
                        e = np.r_[ids[0].energy[k] / cells[id_difficulty], r.energy[k] / cells[d]]
                        add(d, k, "plain", "auroc_ood", auroc(e, ood), k)
                    add(d, k, "plain", "auroc_ood_dy", auroc(np.r_[ids[0].dy[k], r.dy[k]], ood), k)
    return rows


def lookup(rows: list[dict], **where) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def format_report(doc: dict) -> str:
    """Tables: per model, the headline metric against steps (rows: difficulties), then best-of-N and AUROC."""
    rows, steps = doc["rows"], doc["steps"]
    metric = doc["headline_metric"]
    lines = [f"reason: {doc['problem']} — {metric} on {doc['instances']} test instances per difficulty "
             f"({doc['knob']}; in distribution: {doc['id_difficulty']:g})"]
    for label in doc["models"]:
        mine = lookup(rows, model=label, metric=metric)
        if not mine:
            continue
        ff = mine[0]["steps"] is None
        policies = [p for p in ("plain", "accept-lower", "best-of-N", "oracle-of-N") if lookup(mine, policy=p)]
        for pol in policies:
            n_tag = "" if pol in ("plain", "accept-lower") else f", N={doc['samples']}"
            head = f"  {label} [{pol}{n_tag}]"
            if ff:
                lines.append(head + " (1 pass)")
                vals = [(d, lookup(mine, policy=pol, difficulty=d)[0]["value"]) for d in doc["difficulties"]]
                lines.append("    " + "  ".join(f"d={d:g}: {v:.4g}" for d, v in vals))
                continue
            lines.append(head)
            lines.append(f"    {'difficulty / steps':<20}" + " ".join(f"{k:>9}" for k in steps))
            for d in doc["difficulties"]:
                vals = [lookup(mine, policy=pol, difficulty=d, steps=k) for k in steps]
                lines.append(f"    {d:<20g}" + " ".join(f"{v[0]['value']:>9.4g}" if v else f"{'—':>9}" for v in vals))
        for m in ("auroc_wrong", "auroc_ood", "auroc_wrong_dy", "auroc_ood_dy"):
            got = [r for r in lookup(rows, model=label, metric=m) if r["steps"] == steps[-1] and r["value"] is not None]
            if got:
                lines.append(f"    {m} at {steps[-1]} steps: " + ", ".join(f"d={r['difficulty']:g} {r['value']:.3f}"
                                                                           for r in got))
    return "\n".join(lines)


def plot_curves(doc: dict, path) -> None:
    """One panel per model: the headline metric against steps (log₂ axis), one line per difficulty; the
    feed-forward model as dashed horizontal lines."""
    import matplotlib                                             # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt                               # noqa: PLC0415
    rows, metric = doc["rows"], doc["headline_metric"]
    thinkers = [m for m in doc["models"] if any(r["steps"] is not None for r in lookup(rows, model=m))]
    ffs = [m for m in doc["models"] if m not in thinkers]
    fig, axes = plt.subplots(1, max(1, len(thinkers)), figsize=(5.2 * max(1, len(thinkers)), 4.2), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, label in zip(axes[0], thinkers or [None]):
        for i, d in enumerate(doc["difficulties"]):
            c = colors[i % len(colors)]
            if label is not None:
                pts = sorted((r["steps"], r["value"]) for r in lookup(rows, model=label, metric=metric, policy="plain",
                                                                     difficulty=d) if r["value"] is not None)
                if pts:
                    ax.plot(*zip(*pts), marker="o", color=c, label=f"{doc['knob_short']} {d:g}")
                al = sorted((r["steps"], r["value"]) for r in lookup(rows, model=label, metric=metric,
                                                                    policy="accept-lower", difficulty=d))
                if al:
                    ax.plot(*zip(*al), ls=":", color=c)
            for f in ffs:
                v = lookup(rows, model=f, metric=metric, difficulty=d)
                if v:
                    ax.axhline(v[0]["value"], ls="--", lw=1, color=c)
        ax.set_xscale("log", base=2)
        if metric == "mse":
            ax.set_yscale("log")
        ax.set_xlabel("thinking steps / iterations (NFE per instance)")
        ax.set_ylabel(metric)
        ax.set_title(f"{label or ''} on {doc['problem']}" + (" (dashed: feed-forward)" if ffs else ""), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["answer", "instance_metrics", "auroc", "trace", "curve_rows", "format_report", "plot_curves", "lookup",
           "Answers", "RIGHT_REL_MSE", "POLICIES"]
