"""The report's figures: matplotlib, returned as SVG text (glyphs as paths, fixed hash salt, no date) so pages
are self-contained and reproducible.

Layout rules (checked in ``tests/test_item10_report.py`` by measuring the drawn text, and by eye in Chromium):

* figures use matplotlib's constrained layout, so axis labels, tick labels, titles and panels never overlap;
* log axes carry few, plain tick labels (``20``, ``50``, ``2k``, ``10k``, not ``2 × 10^1``): the sparsest of
  1-2-5-style sets that gives at least three ticks in view (:func:`log_ticks`), and no minor tick labels;
* legends go below the axes (one per figure, never on top of the data).

Each ``plot_*`` returns SVG text, or the matplotlib figure with ``as_figure=True`` (for tests).
"""
from __future__ import annotations

import io
import math

from .spec import X_LABELS

COLOURS = {"ebt": "#d62728", "transformer++": "#1f77b4"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"svg.hashsalt": "ebtkit", "svg.fonttype": "path", "font.size": 9})
    return plt


def _svg(fig) -> str:
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return buf.getvalue()


def _out(fig, as_figure: bool):
    return fig if as_figure else _svg(fig)


def short_number(v: float, _pos=None) -> str:
    """A tick label: ``2k``, ``1.5M``, ``20``, ``0.05`` (no exponents; SI suffixes from a thousand up)."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:.3g}"


# tick sets per decade, sparsest first
_SUBS = ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0), (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0))


def log_ticks(lo: float, hi: float, most: int = 7) -> list[float]:
    """Tick positions for a log axis showing ``[lo, hi]``: the sparsest set of :data:`_SUBS` that gives at least
    three ticks in view (at most ``most``); a range too narrow for any gets three evenly spaced round values."""
    import numpy as np
    lo, hi = min(lo, hi), max(lo, hi)
    if not (lo > 0 and math.isfinite(hi)):
        return []
    best: list[float] = []
    for subs in _SUBS:
        ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                 for m in subs]
        ticks = [t for t in ticks if lo <= t * (1 + 1e-9) and t <= hi * (1 + 1e-9)]
        if len(ticks) > most:
            ticks = ticks[::math.ceil(len(ticks) / most)]
        if len(ticks) >= 3:
            return ticks
        best = ticks if len(ticks) > len(best) else best
    if len(best) >= 2:
        return best
    from matplotlib.ticker import MaxNLocator
    return [float(t) for t in MaxNLocator(nbins=3, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
            if lo <= t <= hi] or [float(np.sqrt(lo * hi))]


def _log_axes(ax, x: bool = True, y: bool = True) -> None:
    """Log scale on the chosen axes of ``ax`` with :func:`log_ticks` labels (call after the data is drawn)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    for on, axis, scale, lim in ((x, ax.xaxis, ax.set_xscale, ax.get_xlim), (y, ax.yaxis, ax.set_yscale, ax.get_ylim)):
        if not on:
            continue
        scale("log")
        lo, hi = lim()
        axis.set_major_locator(FixedLocator(log_ticks(lo, hi)))
        axis.set_major_formatter(FuncFormatter(short_number))
        axis.set_minor_formatter(NullFormatter())


def _legend_below(fig, axes, ncol: int = 4, fontsize: float = 7) -> None:
    """One legend for the figure, below the axes (entries of every panel, each label once)."""
    seen: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if not lab.startswith("_"):
                seen.setdefault(lab, h)
    if seen:
        fig.legend(list(seen.values()), list(seen.keys()), loc="outside lower center", fontsize=fontsize,
                   ncol=min(ncol, len(seen)), frameon=False)


def plot_scaling(row: dict, *, as_figure: bool = False):
    """Log-log plot of one axis: runs, seed means, fitted lines and their bootstrap bands."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.2), layout="constrained")
    for m, pts in row["data"].items():
        c = COLOURS.get(m, None)
        ax.scatter([p[0] for p in pts], [p[2] for p in pts], s=14, alpha=0.45, color=c)
        f = row["fits"].get(m)
        if f is None:
            continue
        ax.plot(f["x"], f["y_mean"], "o", color=c, ms=5)
        if f["band"]:
            ax.fill_between(f["band"]["x"], f["band"]["lo"], f["band"]["hi"], color=c, alpha=0.15, lw=0)
        if len(f["x"]) >= 2 and math.isfinite(f["slope"]):
            xs = [f["x"][0], f["x"][-1]]
            ax.plot(xs, [math.exp(f["intercept"]) * x ** f["slope"] for x in xs], "-", color=c,
                    label=f"{m}: slope {f['slope']:.3f} [{f['ci'][0]:.3f}, {f['ci'][1]:.3f}]")
    _log_axes(ax)
    ax.set_xlabel(X_LABELS.get(row["x"], row["x"]))
    ax.set_ylabel(row["metric"].replace("_", " "))
    ax.set_title(f"axis '{row['axis']}': {row['metric']} vs {X_LABELS.get(row['x'], row['x'])}", fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    _legend_below(fig, [ax], ncol=1)
    return _out(fig, as_figure)


def plot_learning_curves(runs: list[dict], title: str, *, as_figure: bool = False):
    """Training loss and validation perplexity against tokens seen, one line per run (legend below, up to 12)."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.9), layout="constrained")
    cmap = plt.get_cmap("viridis")
    for i, r in enumerate(runs):
        tps = r["tokens_per_step"] or (r["config"].get("train", {}).get("batch_size") or 1)
        colour = COLOURS.get(r["model"]) if len(runs) <= 2 else cmap(i / max(1, len(runs) - 1))
        style = "-" if r["model"] == "ebt" else "--"
        if r["metrics"]["train"]:
            s, v = zip(*r["metrics"]["train"])
            a1.plot([x * tps for x in s], v, style, color=colour, lw=1, label=r["name"])
        if r["metrics"]["val"]:
            s, v = zip(*r["metrics"]["val"])
            a2.plot([x * tps for x in s], v, style, marker="o", ms=3, color=colour, lw=1, label=r["name"])
    psnr = any(r["metrics"].get("val_key") == "val_psnr" for r in runs)
    for a, lab in ((a1, "training loss"), (a2, "validation PSNR (dB)" if psnr else "validation perplexity")):
        a.set_xlabel("tokens seen" if not psnr else "training steps × batch")
        a.set_ylabel(lab)
        if a.has_data():
            _log_axes(a, x=True, y=not (psnr and a is a2))
        a.grid(True, which="both", alpha=0.25)
    if len(runs) <= 12:
        _legend_below(fig, [a1, a2], ncol=4)
    both = {r["model"] for r in runs} >= {"ebt", "transformer++"}
    fig.suptitle(title + ("  (solid: EBT, dashed: Transformer++)" if both else ""), fontsize=10)
    return _out(fig, as_figure)


def plot_thinking(th: dict, title: str, baseline: dict | None = None, *, as_figure: bool = False):
    """Perplexity vs NFEs per token for each policy family (thinking.json's table), val and OOD panels.

    ``baseline``: ``{"label", "val_ppl", "ood_ppl"}`` of a Transformer++ run drawn as a flat line (one forward
    per token), when thinking.json has none of its own."""
    plt = _plt()
    table = list(th["table"])
    if baseline and not any(r["family"] == "transformer++" for r in table):
        table.append({"family": "transformer++", "label": baseline["label"],
                      **{f"{s}_ppl": baseline.get(f"{s}_ppl") for s in ("val", "ood")}})
    splits = [s for s in ("val", "ood") if table and f"{s}_ppl" in table[0]]
    from matplotlib.ticker import FuncFormatter, NullFormatter
    fig, axes = plt.subplots(1, max(1, len(splits)), figsize=(5 * max(1, len(splits)), 3.8), squeeze=False,
                             layout="constrained")
    markers = {"trained": "*", "longer": "o", "best-of-N": "s", "early stop": "^"}
    for ax, split in zip(axes[0], splits):
        fams: dict[str, list] = {}
        for r in table:
            fams.setdefault(r["family"], []).append(r)
        trained = fams.get("trained", [])
        for fam, rows in fams.items():
            if fam == "transformer++":
                if rows[0].get(f"{split}_ppl") is not None:
                    ax.axhline(rows[0][f"{split}_ppl"], color=COLOURS["transformer++"], ls="--",
                               label=rows[0].get("label") or "Transformer++")
                continue
            if fam != "trained":                      # each family starts from the trained policy, as in Fig. 6
                rows = trained[:1] + rows
            rows = sorted(rows, key=lambda r: r[f"{split}_nfe"])
            ax.plot([r[f"{split}_nfe"] for r in rows], [r[f"{split}_ppl"] for r in rows], marker=markers.get(fam, "o"),
                    label=fam)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(short_number))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("NFEs per token")
        ax.set_ylabel(f"{split} perplexity")
        ax.set_title(split, fontsize=9)
        ax.grid(True, alpha=0.25)
    _legend_below(fig, axes[0], ncol=5)
    fig.suptitle(title, fontsize=10)
    return _out(fig, as_figure)


def plot_denoise(ev: dict, title: str, *, as_figure: bool = False):
    """Image denoising: PSNR vs NFEs per model at each noise level (``eval_denoise.json``), noisy input dashed."""
    plt = _plt()
    levels = ev.get("levels", [])
    fig, axes = plt.subplots(1, max(1, len(levels)), figsize=(4.6 * max(1, len(levels)), 3.8), squeeze=False,
                             layout="constrained")
    for ax, lv in zip(axes[0], levels):
        for name, rows in lv.get("models", {}).items():
            rows = sorted(rows, key=lambda r: r.get("nfe_spent", r["nfe"]))
            ax.plot([r.get("nfe_spent", r["nfe"]) for r in rows], [r["psnr"] for r in rows], marker="o", label=name)
        if "noisy" in lv:
            ax.axhline(lv["noisy"]["psnr"], color="grey", ls="--", label="noisy input")
        if ax.has_data():
            _log_axes(ax, x=True, y=False)
        ax.set_xlabel("NFEs")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"σ = {lv.get('sigma')}", fontsize=9)
        ax.grid(True, alpha=0.25)
    _legend_below(fig, axes[0], ncol=5)
    fig.suptitle(title, fontsize=10)
    return _out(fig, as_figure)
