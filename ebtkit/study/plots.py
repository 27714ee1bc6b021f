"""The report's figures: matplotlib, returned as SVG text (glyphs as paths, fixed hash salt, no date) so pages
are self-contained and reproducible."""
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


def plot_scaling(row: dict) -> str:
    """Log-log plot of one axis: runs, seed means, fitted lines and their bootstrap bands."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
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
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(X_LABELS.get(row["x"], row["x"]))
    ax.set_ylabel(row["metric"].replace("_", " "))
    ax.set_title(f"axis '{row['axis']}': {row['metric']} vs {X_LABELS.get(row['x'], row['x'])}")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7)
    return _svg(fig)


def plot_learning_curves(runs: list[dict], title: str) -> str:
    """Training loss and validation perplexity against tokens seen, one line per run."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
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
        a.set_xscale("log")
        if not (psnr and a is a2):
            a.set_yscale("log")
        a.grid(True, which="both", alpha=0.25)
    if len(runs) <= 12:
        a1.legend(fontsize=6)
    fig.suptitle(title + "  (solid: EBT, dashed: Transformer++)", fontsize=10)
    return _svg(fig)


def plot_thinking(th: dict, title: str, baseline: dict | None = None) -> str:
    """Perplexity vs NFEs per token for each policy family (thinking.json's table), val and OOD panels.

    ``baseline``: ``{"label", "val_ppl", "ood_ppl"}`` of a Transformer++ run drawn as a flat line (one forward
    per token), when thinking.json has none of its own."""
    plt = _plt()
    table = list(th["table"])
    if baseline and not any(r["family"] == "transformer++" for r in table):
        table.append({"family": "transformer++", "label": baseline["label"],
                      **{f"{s}_ppl": baseline.get(f"{s}_ppl") for s in ("val", "ood")}})
    splits = [s for s in ("val", "ood") if table and f"{s}_ppl" in table[0]]
    fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 3.4), squeeze=False)
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
        ax.set_xlabel("NFEs per token")
        ax.set_ylabel(f"{split} perplexity")
        ax.set_title(split)
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _svg(fig)


def plot_denoise(ev: dict, title: str) -> str:
    """Image denoising: PSNR vs NFEs per model at each noise level (``eval_denoise.json``), noisy input dashed."""
    plt = _plt()
    levels = ev.get("levels", [])
    fig, axes = plt.subplots(1, max(1, len(levels)), figsize=(4.6 * max(1, len(levels)), 3.4), squeeze=False)
    for ax, lv in zip(axes[0], levels):
        for name, rows in lv.get("models", {}).items():
            rows = sorted(rows, key=lambda r: r.get("nfe_spent", r["nfe"]))
            ax.plot([r.get("nfe_spent", r["nfe"]) for r in rows], [r["psnr"] for r in rows], marker="o", label=name)
        if "noisy" in lv:
            ax.axhline(lv["noisy"]["psnr"], color="grey", ls="--", label="noisy input")
        ax.set_xscale("log")
        ax.set_xlabel("NFEs")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"σ = {lv.get('sigma')}")
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _svg(fig)
