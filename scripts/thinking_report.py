"""Tables and plots of issue 16's thinking study from ``thinking_budget.py``'s JSON (research script).

Reads the results directory that ``thinking_budget.py`` and ``ebt eval --tasks --json`` wrote (layout below),
prints the markdown tables of ``docs/thinking.md`` and writes its plots::

    python scripts/thinking_report.py /work/runs16/results --img docs/img > /tmp/tables.md

    RESULTS/fig7/   {s1,s2}-n800-sN.budget.json | s1-n800-sN.ppl.json | tpp-n800-sN.ppl.json   (Table 3, Fig. 7)
    RESULTS/budget/ {s1,s2}-nB-sN.budget.json | tpp-nB-sN.ppl.json                          (Fig. 6b)
    RESULTS/mech/   {s1,s2}-n800-sN.mechanisms.json                                         (mechanisms)
    RESULTS/corpus/ {corpus}-{ebt,tpp}-sN.ppl.json                                          (corpora)
    RESULTS/tasks-{s1,s2}-sN.json                                                           (accuracy)
    RESULTS/max6/   s2max6a10-n800-sN.budget.json                                           (training mechanism)

Summaries are mean ± half-range over seeds (the half-range is half of max − min). The Fig. 7 slope is the
ordinary least-squares slope of the % gain of maximal thinking against the distribution shift, with a
hierarchical bootstrap interval (resample OOD sets, then seeds within each set; 10,000 draws, 95 %).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
from collections import defaultdict
from pathlib import Path

OOD_ORDER = ("pydoc", "austen", "brown", "dyck", "mathqa", "logic", "pysrc")
SETS = ("val",) + OOD_ORDER


def load(paths) -> list[dict]:
    out = []
    for p in sorted(paths):
        r = json.loads(Path(p).read_text())
        r["_name"] = Path(p).name
        out.append(r)
    return out


def mr(vals, fmt="{:.3f}", signed=False) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—"
    f = (lambda v: ("+" if v >= 0 else "") + fmt.format(v)) if signed else fmt.format
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f(mean) + " (1 seed)"
    return f"{f(mean)} ± {fmt.format((max(vals) - min(vals)) / 2)}"


def gain(r, split, policy) -> float | None:
    s = r["splits"].get(split, {})
    if policy not in s or "trained" not in s:
        return None
    return 100 * (1 - s[policy]["ppl"] / s["trained"]["ppl"])


def kind(r) -> str:
    return "tpp" if r["model"] != "ebt" else r["system"]


# ------------------------------------------------------------------------------------------ Table 3 analogue
def _bars(path: Path, groups: list[str], series: dict[str, list], ylabel: str, title: str, ref: float | None = None):
    """Grouped bars (mean) with min–max whiskers: ``series[name][i]`` = the seed values for ``groups[i]``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.5, 0.75 * len(groups) * max(1, len(series)) ** 0.5 + 2), 3.4))
    w = 0.8 / max(1, len(series))
    for j, (name, vals) in enumerate(series.items()):
        xs = [i + (j - (len(series) - 1) / 2) * w for i in range(len(groups))]
        mean = [sum(v) / len(v) if v else float("nan") for v in vals]
        lo = [m - min(v) if v else 0 for m, v in zip(mean, vals)]
        hi = [max(v) - m if v else 0 for m, v in zip(mean, vals)]
        ax.bar(xs, mean, w, yerr=[lo, hi], capsize=2, label=name)
    if ref is not None:
        ax.axhline(ref, color="grey", lw=0.7)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"\n(plot: {path})")


def table3(res: Path, img: Path | None = None):
    recs = load((res / "fig7").glob("*.json"))
    by = defaultdict(dict)                      # kind -> seed -> splits
    for r in recs:
        if r["_name"].startswith(("s1-", "s2-", "tpp-")):
            by[kind(r)][r["seed"]] = r["splits"]
    print("\n**Table 3 analogue: perplexity at the trained steps** (128 windows of 65 bytes per set)\n")
    print("| model | seeds | " + " | ".join(SETS) + " |")
    print("|---|---|" + "---|" * len(SETS))
    names = {"tpp": "Transformer++", "s1": "EBT S1 (2 steps)", "s2": "EBT S2 (3 steps)"}
    for k in ("tpp", "s1", "s2"):
        if k not in by:
            continue
        seeds = sorted(by[k])
        cells = [mr([by[k][s][x]["trained"]["ppl"] for s in seeds if x in by[k][s]], "{:.2f}") for x in SETS]
        print(f"| {names[k]} | {','.join(map(str, seeds))} | " + " | ".join(c.replace(' (1 seed)', '') for c in cells) + " |")
    for k in ("s1", "s2"):
        if k not in by or "tpp" not in by:
            continue
        seeds = sorted(set(by[k]) & set(by["tpp"]))
        cells = [mr([by[k][s][x]["trained"]["ppl"] / by["tpp"][s][x]["trained"]["ppl"] for s in seeds
                     if x in by[k][s]], "{:.2f}") for x in SETS]
        print(f"| {names[k]} ÷ T++ | {','.join(map(str, seeds))} | " + " | ".join(c.replace(' (1 seed)', '') for c in cells) + " |")
    if img is not None and "tpp" in by:
        series = {}
        for k in ("s1", "s2"):
            if k in by:
                seeds = sorted(set(by[k]) & set(by["tpp"]))
                series[names[k]] = [[by[k][s][x]["trained"]["ppl"] / by["tpp"][s][x]["trained"]["ppl"] for s in seeds
                                     if x in by[k][s]] for x in SETS]
        _bars(img / "thinking-table3.png", list(SETS), series, "EBT ppl ÷ Transformer++ ppl",
              "Table 3 analogue: EBT ÷ Transformer++ at the trained steps (cpu preset, 800 steps)", ref=1.0)
    tasks = load(res.glob("tasks-*.json"))
    if not tasks:
        return
    rows = defaultdict(lambda: defaultdict(list))     # (task, label) -> metric -> values
    for t in tasks:
        sysname = "S2" if t["_name"].startswith("tasks-s2") else "S1"
        for task in t["tasks"]:
            for row in task["rows"]:
                label = "Transformer++" if row["model"] == "Transformer++" else f"EBT {sysname}, {row['policy']}"
                for m in ("ppl", "answer_ppl", "mc_acc", "mc_acc_energy"):
                    if row.get(m) is not None:
                        rows[task["task"], label][m].append(row[m])
                rows[task["task"], label]["chance"] = [task["chance"]]
                rows[task["task"], label]["n"] = [task["examples"]]
    print("\n**Downstream protocol** (`ebt eval --tasks`, first 250 examples; accuracy: lowest mean NLL; acc(E): "
          "lowest mean energy)\n")
    print("| task (chance) | model | seeds | ppl | answer ppl | acc | acc(E) |")
    print("|---|---|---|---|---|---|---|")
    for (task, label), m in sorted(rows.items()):
        print(f"| {task} ({m['chance'][0]:.3f}) | {label} | {len(m['ppl'])} | {mr(m['ppl'], '{:.1f}')} | "
              f"{mr(m['answer_ppl'], '{:.0f}')} | {mr(m['mc_acc'])} | {mr(m.get('mc_acc_energy', []))} |")


# ------------------------------------------------------------------------------------------ Fig. 7 analogue
def ols(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else float("nan")


def boot_slope(points: dict, draws=10_000, seed=0, logx=False):
    """points: set -> [(shift, gain)] over seeds. Resample sets, then seeds within each set."""
    rng = random.Random(seed)
    sets = list(points)
    tx = (lambda v: math.log2(v)) if logx else (lambda v: v)
    slopes = []
    for _ in range(draws):
        xs, ys = [], []
        for s in (rng.choice(sets) for _ in sets):
            for x, y in (rng.choice(points[s]) for _ in points[s]):
                xs.append(tx(x))
                ys.append(y)
        b = ols(xs, ys)
        if not math.isnan(b):
            slopes.append(b)
    slopes.sort()
    allx = [tx(x) for p in points.values() for x, _ in p]
    ally = [y for p in points.values() for _, y in p]
    return ols(allx, ally), slopes[int(0.025 * len(slopes))], slopes[int(0.975 * len(slopes)) - 1]


def fig7(res: Path, img: Path | None):
    recs = load((res / "fig7").glob("*.json"))
    tpp = {r["seed"]: r["splits"] for r in recs if kind(r) == "tpp"}
    print("\n**Fig. 7 analogue: % gain of thinking against distribution shift** (shift = Transformer++ ppl on "
          "the set ÷ on KJV validation, same seed; gains = perplexity reduction vs the trained steps)\n")
    out = {}
    for k in ("s2", "s1"):
        rs = [r for r in recs if kind(r) == k and r["_name"].endswith(".budget.json")]
        if not rs:
            continue
        pol = [p for p in ("4x", "bon8", "4x bon8") if p in rs[0]["splits"]["val"]]
        print(f"\nEBT {k.upper()}, seeds {sorted(r['seed'] for r in rs)}:\n")
        print("| set | shift | " + " | ".join(f"{p} Δ%" for p in pol) + " |")
        print("|---|---|" + "---|" * len(pol))
        pts = defaultdict(list)
        for x in SETS:
            shifts = [tpp[r["seed"]][x]["trained"]["ppl"] / tpp[r["seed"]]["val"]["trained"]["ppl"] for r in rs
                      if r["seed"] in tpp and x in r["splits"]]
            if not shifts:
                continue
            print(f"| {x} | {mr(shifts, '{:.2f}').replace(' (1 seed)', '')} | " +
                  " | ".join(mr([gain(r, x, p) for r in rs], "{:.1f}", signed=True).replace(" (1 seed)", "")
                             for p in pol) + " |")
            if x != "val":
                for r in rs:
                    if r["seed"] in tpp:
                        sh = tpp[r["seed"]][x]["trained"]["ppl"] / tpp[r["seed"]]["val"]["trained"]["ppl"]
                        pts[x].append((sh, gain(r, x, "4x bon8" if "4x bon8" in pol else "4x")))
        if len(pts) >= 2 and len(rs) > 1:
            for logx in (False, True):
                b, lo, hi = boot_slope(pts, logx=logx)
                unit = "per doubling of the shift" if logx else "per unit of shift"
                print(f"\nslope of maximal thinking's gain: {b:+.3f} %-points {unit}, 95 % bootstrap interval "
                      f"[{lo:+.3f}, {hi:+.3f}] ({len(pts)} OOD sets × {len(rs)} seeds)")
        out[k] = pts
    if img is not None and "s2" in out:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for i, (x, p) in enumerate(sorted(out["s2"].items(), key=lambda kv: kv[1][0][0])):
            ax.scatter([a for a, _ in p], [b for _, b in p], label=x, s=22)
        allp = [q for p in out["s2"].values() for q in p]
        lx = [math.log2(a) for a, _ in allp]
        b = ols(lx, [c for _, c in allp])
        mx = sum(lx) / len(lx)
        my = sum(c for _, c in allp) / len(allp)
        xs = [min(a for a, _ in allp), max(a for a, _ in allp)]
        ax.plot(xs, [my + b * (math.log2(x) - mx) for x in xs], "k--", lw=1,
                label=f"OLS {b:+.2f} %-pts per doubling")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xscale("log")
        ax.set_xticks([2, 5, 10, 20, 50])
        ax.set_xticklabels(["2", "5", "10", "20", "50"])
        ax.minorticks_off()
        ax.set_xlabel("distribution shift (T++ ppl on set ÷ on KJV val)")
        ax.set_ylabel("% ppl gain, 12 steps × best-of-8")
        ax.set_title("EBT S2 (cpu preset, 800 steps): maximal thinking vs shift", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(img / "thinking-fig7.png", dpi=110)
        print(f"\n(plot: {img / 'thinking-fig7.png'})")


# ------------------------------------------------------------------------------------------ Fig. 6b analogue
def fig6b(res: Path, img: Path | None):
    recs = load((res / "budget").glob("*.json"))
    by = defaultdict(list)
    for r in recs:
        by[kind(r), r["train_steps"]].append(r)
    budgets = sorted({n for _, n in by})
    print("\n**Fig. 6b analogue: gains of thinking against training budget** (256 windows per split; "
          "tokens = steps × 16 × 64)\n")
    curves = {}
    for split in ("val", "pydoc"):
        print(f"\n| {split}: steps (tokens) | T++ ppl | S2 ppl (seeds) | S2 4× Δ% | S2 BoN-8 Δ% | S1 ppl | S1 4× Δ% | "
              "S1 BoN-8 Δ% |")
        print("|---|---|---|---|---|---|---|---|")
        for n in budgets:
            t = [r["splits"][split]["trained"]["ppl"] for r in by.get(("tpp", n), [])]
            row = f"| {n} ({n * 1024 / 1e6:.2f} M) | {mr(t, '{:.2f}')} |"
            for k in ("s2", "s1"):
                rs = by.get((k, n), [])
                g4 = [gain(r, split, "4x") for r in rs]
                gb = [gain(r, split, "bon8") for r in rs]
                ppl = mr([r["splits"][split]["trained"]["ppl"] for r in rs], "{:.2f}")
                row += (f" {ppl.replace(' (1 seed)', '')} ({len(rs)}) |" if k == "s2" else f" {ppl} |")
                row += f" {mr(g4, '{:.2f}', True).replace(' (1 seed)', '')} | {mr(gb, '{:.2f}', True).replace(' (1 seed)', '')} |"
                curves[k, split] = curves.get((k, split), []) + [(n, g4, gb)]
            print(row)
    if img is not None:
        plt = _plt()
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharex=True)
        for ax, split in zip(axes, ("val", "pydoc")):
            for k, style in (("s2", "-"), ("s1", ":")):
                for idx, (lab, color) in enumerate((("4× steps", "C0"), ("best-of-8", "C3"))):
                    pts = [(n * 1024, v[idx + 1]) for v in curves.get((k, split), []) for n in [v[0]] if v[idx + 1]]
                    if not pts:
                        continue
                    xs = [p[0] for p in pts]
                    mean = [sum(p[1]) / len(p[1]) for p in pts]
                    lo = [m - min(p[1]) for m, p in zip(mean, pts)]
                    hi = [max(p[1]) - m for m, p in zip(mean, pts)]
                    n_seeds = max(len(p[1]) for p in pts)
                    ax.errorbar(xs, mean, yerr=[lo, hi], fmt=style + "o", color=color, ms=3, capsize=2,
                                label=f"{k.upper()} {lab} ({n_seeds} seed{'s' if n_seeds > 1 else ''})")
            ax.axhline(0, color="grey", lw=0.5)
            ax.set_xscale("log")
            ax.set_xlabel("training tokens")
            ax.set_title({"val": "KJV validation", "pydoc": "pydoc (OOD)"}[split], fontsize=9)
        axes[0].set_ylabel("% ppl gain vs trained steps")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(img / "thinking-fig6b.png", dpi=110)
        print(f"\n(plot: {img / 'thinking-fig6b.png'})")


# ------------------------------------------------------------------------------------------ mechanisms
MECH_ROWS = (
    ("longer 12", "thinking longer 3 → 12 (plain)"),
    ("langevin 12, iterate mean", "Langevin σ 12 steps, mean of iterates 4–12"),
    ("annealed 12", "annealed Langevin σ → 0, 12 steps"),
    ("annealed 12, iterate mean", "annealed, mean of iterates"),
    ("longer 12, iterate mean", "noise-free, mean of iterates 4–12"),
    ("early stop ≤12", "per-token adaptive: stop when ΔE < tol (≤ 12)"),
    ("accept-lower 12", "accept-only-lower steps, 12"),
    ("bon8 min", "best-of-8, min energy (paper)"),
    ("bon8 max_drop", "best-of-8, largest energy drop"),
    ("bon8 consensus", "best-of-8, agreement across samples"),
    ("bon8 mixture", "best-of-8, mixture of samples"),
    ("bon8 entropy", "best-of-8, energy + λ·entropy (λ calibrated)"),
    ("bon8 softmin", "best-of-8, softmin-weighted pool (T calibrated)"),
    ("bon8 σ min", "best-of-8 with Langevin σ, min energy"),
    ("bon8 σ entropy", "best-of-8 with σ, energy + λ·entropy (calibrated)"),
    ("bon8 σ mixture", "best-of-8 with σ, mixture"),
    ("bon8 oracle", "oracle best-of-8 (picks by the true next byte: a bound, not a policy)"),
    ("bon8 σ oracle", "oracle best-of-8 with σ (a bound)"),
    ("think8x12 mixture of iterate means", "combined: 8 Langevin runs × 12 steps, mixture of iterate means"),
    ("think8x12 entropy-picked iterate mean", "combined: 8 × 12, iterate mean of the run picked by E + λ·H"),
    ("trained+energyT", "energy-derived temperature (β calibrated)"),
    ("trained+T", "global temperature (calibrated on KJV val)"),
    ("longer 12+T", "thinking longer + global temperature"),
)


PLOT_MECH = ("longer 12", "langevin 12, iterate mean", "early stop ≤12", "bon8 min", "bon8 mixture",
             "think8x12 mixture of iterate means", "trained+T")


def mechanisms(res: Path, system="s2", img: Path | None = None):
    recs = [r for r in load((res / "mech").glob(f"{system}-n800-*.mechanisms.json"))]
    if not recs:
        return
    extra = {r["seed"]: r for r in load((res / "think").glob(f"{system}-n800-*.mechanisms.json"))}
    for r in recs:     # the combined policies were scored later, on the same windows and noise: merge them in
        e = extra.get(r["seed"])
        if e is not None:
            for sp, pol in e["splits"].items():
                for n, v in pol.items():
                    r["splits"].setdefault(sp, {}).setdefault(n, v)
            r["calibrated"] = {**e.get("calibrated", {}), **r.get("calibrated", {})}
    splits = ("val", "pydoc", "austen", "brown")
    print(f"\n**Mechanisms, EBT {system.upper()}** (800 steps; 128 windows per set; seeds "
          f"{sorted(r['seed'] for r in recs)}; Δ% = perplexity reduction vs the trained steps, mean ± half-range; "
          "calibrated knobs fitted per seed on 64 windows from the second half of KJV validation)\n")
    print("| mechanism | NFE/token | seeds | " + " | ".join(f"{s} Δ%" for s in splits) + " |")
    print("|---|---|---|" + "---|" * len(splits))
    trained = [mr([r["splits"][s]["trained"]["ppl"] for r in recs], "{:.2f}").replace(" (1 seed)", "") for s in splits]
    print(f"| trained steps (ppl) | {recs[0]['at_steps']} | {len(recs)} | " + " | ".join(trained) + " |")
    K = recs[0]["at_steps"]
    L = recs[0]["mult"] * K
    for key, label in MECH_ROWS:
        key = key.replace("12", str(L))
        label = label.replace("3 → 12", f"{K} → {L}").replace("4–12", f"{K + 1}–{L}").replace("12", str(L))

        def name(r, key=key):
            if key in r.get("calibrated", {}):
                return r["calibrated"][key]
            return key
        have = [r for r in recs if name(r) in r["splits"]["val"]]
        if not have:
            continue
        nfe = have[0]["splits"]["val"][name(have[0])]["nfe"]
        cells = [mr([gain(r, s, name(r)) for r in have if s in r["splits"]], "{:.1f}", True).replace(" (1 seed)", "")
                 for s in splits]
        print(f"| {label} | {nfe if isinstance(nfe, int) else f'{nfe:.1f}'} | {len(have)} | " + " | ".join(cells) + " |")
    if img is not None:
        series = {}
        for key in PLOT_MECH:
            key = key.replace("12", str(L))
            vals = [[gain(r, x, r.get("calibrated", {}).get(key, key)) for r in recs
                     if r.get("calibrated", {}).get(key, key) in r["splits"][x]] for x in splits]
            if any(vals):
                series[dict(MECH_ROWS).get(key.replace(str(L), "12"), key).split(" (")[0]] = vals
        _bars(img / f"thinking-mechanisms-{system}.png", list(splits), series, "% ppl gain vs trained steps",
              f"EBT {system.upper()}: inference mechanisms (800 steps, {len(recs)} seeds)", ref=0.0)
    cal = "; ".join(f"seed {r['seed']}: " + ", ".join(f"{k}={v.rsplit('@', 1)[1]}" for k, v in sorted(r["calibrated"].items())
                                                     if k.replace(str(L), "12") in dict(MECH_ROWS)) for r in recs)
    print(f"\ncalibrated values: {cal}")


def max6(res: Path):
    recs = load((res / "max6").glob("*.budget.json"))
    base = {r["seed"]: r for r in load((res / "fig7").glob("s2-n800-*.budget.json"))}
    if not recs:
        return
    splits = ("val", "pydoc", "austen", "brown")
    print(f"\n**Training mechanism: S2 with 2–6 random steps and α = 10** (seeds {sorted(r['seed'] for r in recs)}; "
          f"trained = {recs[0]['trained_steps']} steps, 4× = {4 * recs[0]['trained_steps']})\n")
    print("| run | " + " | ".join(f"{s} ppl | {s} 4× Δ% | {s} BoN-8 Δ%" for s in splits) + " |")
    print("|---|" + "---|---|---|" * len(splits))
    for lab, rs in (("S2 default (3 steps, α = 20)", [base[r["seed"]] for r in recs if r["seed"] in base]),
                    ("S2 2–6 steps, α = 10", recs)):
        cells = []
        for s in splits:
            cells += [mr([r["splits"][s]["trained"]["ppl"] for r in rs if s in r["splits"]], "{:.2f}").replace(" (1 seed)", ""),
                      mr([gain(r, s, "4x") for r in rs], "{:.1f}", True).replace(" (1 seed)", ""),
                      mr([gain(r, s, "bon8") for r in rs], "{:.1f}", True).replace(" (1 seed)", "")]
        print(f"| {lab} ({len(rs)}) | " + " | ".join(cells) + " |")


def _study(res: Path, sub: str):
    """The ``RESULTS/sub`` mechanism records with their trained steps K, 4K and the sets they hold (None if none)."""
    recs = load((res / sub).glob("*.mechanisms.json"))
    if not recs:
        return None
    K = recs[0]["at_steps"]
    return recs, K, recs[0]["mult"] * K, [x for x in SETS if x in recs[0]["splits"]]


def _header(title: str, recs: list[dict], note: str, sets: list[str], cols: tuple[str, ...] = ("policy",)):
    print(f"\n**{title}** (EBT {recs[0]['system'].upper()}, seeds {sorted(r['seed'] for r in recs)}; {note})\n")
    print("| " + " | ".join(cols + tuple(sets)) + " |")
    print("|" + "---|" * (len(cols) + len(sets)))


def alpha(res: Path):
    """Smaller inference step size (α × m) with more steps, every set; ``RESULTS/alpha/*.mechanisms.json``."""
    study = _study(res, "alpha")
    if study is None:
        return
    recs, K, L, sets = study
    _header("Step size at inference: α × m, thinking longer", recs, f"Δ% vs the trained {K} steps at the trained α",
            sets, ("policy", "steps"))
    print(f"| trained (ppl) | {K} | " + " | ".join(
        mr([r["splits"][x]["trained"]["ppl"] for r in recs], "{:.2f}") for x in sets) + " |")
    names = [f"longer {L}"] + [n for n in recs[0]["splits"]["val"] if n.startswith("alpha×")]
    for n in names:
        steps = L if n.startswith("longer") or "iterate" in n else int(n.split()[1])
        print(f"| {n} | {steps} | " + " | ".join(mr([gain(r, x, n) for r in recs], "{:.1f}", True) for x in sets) + " |")
    return recs


def stepsel(res: Path):
    """Choosing the step count: thinking less, the energy-guarded last step, the min-energy step, the oracle."""
    study = _study(res, "stepsel")
    if study is None:
        return
    recs, K, L, sets = study
    _header("Choosing the step count per position", recs, f"Δ% vs the trained {K} steps", sets)
    for n in (f"{K - 1} steps (thinking less)", f"longer {L}", f"step {K} only if it lowers E",
              f"min-energy step in 2..{L}", f"oracle step ≤{L}"):
        print(f"| {n} | " + " | ".join(mr([gain(r, x, n) for r in recs], "{:.1f}", True) for x in sets) + " |")
    key = f"P(E_{K} < E_{K - 1})"
    print(f"| share of positions where step {K} lowers the energy | " + " | ".join(
        mr([r["stats"][x][key] for r in recs], "{:.2f}") for x in sets) + " |")


def gate(res: Path):
    recs = load((res / "gate").glob("*.gate.json"))
    if not recs:
        return
    K = recs[0]["trained_steps"]
    sets = [x for x in SETS if x in recs[0]["splits"]]
    print(f"\n**An energy-gated step count** (seeds {sorted(r['seed'] for r in recs)}: a window whose mean final "
          f"energy is above the q-quantile of in-distribution calibration windows stops at {K - 1} steps; Δ% vs "
          f"{K} steps, and the share of windows gated)\n")
    print("| policy | " + " | ".join(sets) + " |")
    print("|---|" + "---|" * len(sets))
    print(f"| {K - 1} steps everywhere | " + " | ".join(mr([gain(r, x, f'{K - 1} steps') for r in recs], "{:.1f}", True)
                                               for x in sets) + " |")
    for q in (0.5, 0.9, 0.99):
        n = f"gate eK@{q}"
        print(f"| gate q = {q} | " + " | ".join(
            mr([gain(r, x, n) for r in recs], "{:.1f}", True) + " (" +
            mr([r["splits"][x][n]["fraction_gated"] for r in recs], "{:.2f}").split(" ±")[0] + ")" for x in sets) + " |")


def nll_per_step(res: Path, sub="alpha"):
    recs = load((res / sub).glob("*.mechanisms.json"))
    if not recs or "NLL step 1" not in recs[0]["stats"].get("val", {}):
        return
    L = recs[0]["mult"] * recs[0]["at_steps"]
    sets = [x for x in SETS if x in recs[0]["stats"]]
    print(f"\n**Mean NLL (nats/byte) after each thinking step at the trained α** (seeds "
          f"{sorted(r['seed'] for r in recs)}; the trained step count is {recs[0]['at_steps']})\n")
    print("| set | " + " | ".join(str(k) for k in range(1, L + 1)) + " |")
    print("|---|" + "---|" * L)
    for x in sets:
        vals = [sum(r["stats"][x][f"NLL step {k}"] for r in recs) / len(recs) for k in range(1, L + 1)]
        best = min(range(L), key=lambda i: vals[i])
        print(f"| {x} | " + " | ".join((f"**{v:.3f}**" if i == best else f"{v:.3f}") for i, v in enumerate(vals)) + " |")


# ------------------------------------------------------------------------------------------ corpora
def corpora(res: Path, img: Path | None = None):
    recs = load((res / "corpus").glob("*.ppl.json"))
    fig = {(kind(r), r["seed"]): r for r in load((res / "fig7").glob("*-n800-*.json"))
           if kind(r) in ("tpp", "s1")}
    by = defaultdict(dict)
    for r in recs:
        corpus = r["_name"].split("-")[0]
        by[corpus][("tpp" if r["model"] != "ebt" else "ebt"), r["seed"]] = r["splits"]
    for (k, s), r in fig.items():
        by["kjv (128 windows)"]["tpp" if k == "tpp" else "ebt", s] = r["splits"]
    print("\n**Corpora: EBT S1 (`ebt train --data FILE`) ÷ Transformer++ at the main budget** (800 steps; "
          "256 windows per split, KJV 128)\n")
    print("| corpus | seeds | T++ val | EBT val | EBT ÷ T++ val | T++ pydoc | EBT pydoc | EBT ÷ T++ pydoc |")
    print("|---|---|---|---|---|---|---|---|")
    for corpus, d in sorted(by.items()):
        seeds = sorted({s for m, s in d if ("tpp", s) in d and ("ebt", s) in d})
        cells = []
        for sp in ("val", "pydoc"):
            t = [d["tpp", s][sp]["trained"]["ppl"] for s in seeds]
            e = [d["ebt", s][sp]["trained"]["ppl"] for s in seeds]
            cells += [mr(t, "{:.2f}"), mr(e, "{:.2f}"), mr([a / b for a, b in zip(e, t)], "{:.3f}")]
        print(f"| {corpus} | {','.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    if img is not None:
        names = sorted(by)
        ratio = lambda c, sp: [by[c]["ebt", s][sp]["trained"]["ppl"] / by[c]["tpp", s][sp]["trained"]["ppl"]  # noqa: E731
                               for s in sorted({s for m, s in by[c]}) if ("ebt", s) in by[c] and ("tpp", s) in by[c]]
        _bars(img / "thinking-corpora.png", [n.split(" ")[0] for n in names],
              {"own validation": [ratio(c, "val") for c in names], "pydoc (OOD)": [ratio(c, "pydoc") for c in names]},
              "EBT S1 ppl ÷ Transformer++ ppl", "Defaults that travel: EBT ÷ Transformer++ per training corpus", ref=1.0)


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results")
    p.add_argument("--img", default=None, help="directory for the PNG plots (default: none)")
    p.add_argument("--only", default="table3,fig7,fig6b,mech,max6,alpha,nll,stepsel,gate,corpora")
    a = p.parse_args(argv)
    res, img = Path(a.results), (Path(a.img) if a.img else None)
    for part in a.only.split(","):
        {"table3": lambda: table3(res, img), "fig7": lambda: fig7(res, img), "fig6b": lambda: fig6b(res, img),
         "mech": lambda: (mechanisms(res, "s2", img), mechanisms(res, "s1", img)),
         "mech2": lambda: mechanisms(res, "s2", img), "mech1": lambda: mechanisms(res, "s1", img), "max6": lambda: max6(res), "corpora": lambda: corpora(res, img),
         "alpha": lambda: alpha(res), "nll": lambda: nll_per_step(res), "stepsel": lambda: stepsel(res),
         "gate": lambda: gate(res)}[part]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
