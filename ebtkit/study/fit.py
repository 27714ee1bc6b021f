"""Log-log scaling fits with bootstrap intervals (numpy only; no torch).

The paper (Gladstone et al., 2025, Figs. 4–5) calls the slope of an ordinary least-squares fit of
``log(validation perplexity)`` against ``log(resource)`` the *scaling rate*, and reports EBT vs Transformer++ as
``|slope_EBT| / |slope_T++| − 1`` ("35 % faster scaling"): a *steeper decline*, not a lower perplexity. Here:

* :func:`fit_power_law` — OLS slope and intercept of ``log y = b·log x + a`` over every run (all seeds at all
  points), with a 95 % percentile-bootstrap interval. One resample draws the **points** (distinct x values) with
  replacement and then, within each drawn point, the **seeds** with replacement (a two-level bootstrap), so the
  interval carries both seed noise and the points' scatter about the line. Resamples with fewer than two distinct
  x have no slope and are dropped (their share is reported).
* :func:`compare` — the same bootstrap run jointly for two models on the same points and seeds (paired: one
  resample uses the same points and seed labels for both), giving the slope ratio ``b_EBT / b_T++`` with its
  interval, and ``faster_pct = 100·(ratio − 1)``.
* Flags: ``too_few_points`` (< 3 distinct x), ``non_monotone`` (seed-mean y does not move one way along x),
  ``single_seed`` (the interval then reflects the points' scatter only), ``slope_ci_includes_zero``, and for a
  comparison ``ratio_ci_includes_1`` / ``baseline_slope_ci_includes_zero``.

Input is a list of ``(x, seed, y)`` triples per model. Everything is deterministic given ``seed``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95

FLAG_TEXT = {
    "too_few_points": "fewer than 3 distinct points: the slope is not constrained",
    "non_monotone": "the seed-mean metric does not move one way along the axis",
    "single_seed": "one seed per point: the interval reflects the points' scatter only",
    "slope_ci_includes_zero": "the slope's interval includes 0",
    "ratio_ci_includes_1": "the ratio's interval includes 1: no evidence of a different scaling rate",
    "baseline_slope_ci_includes_zero": "the baseline's slope interval includes 0: the ratio is unstable",
    "no_common_points": "the models share no points",
    "paired_by_rank": "the models' x differ (e.g. FLOPs): points paired by rank for the ratio",
}


@dataclass
class PowerLawFit:
    """``y ≈ exp(intercept) · x ** slope`` fitted in log-log space."""

    slope: float
    intercept: float
    ci: tuple[float, float]            # percentile bootstrap interval of the slope at ``level``
    level: float
    r2: float
    n_points: int                      # distinct x
    n_runs: int                        # (x, seed) pairs
    n_seeds: int                       # most seeds at any point
    resamples: int                     # resamples with a defined slope
    dropped: int                       # resamples with < 2 distinct x
    flags: list[str] = field(default_factory=list)
    x: list[float] = field(default_factory=list)      # distinct x, ascending
    y_mean: list[float] = field(default_factory=list)  # geometric mean of y over seeds at each x
    band: dict = field(default_factory=dict)           # {"x": grid, "lo": ..., "hi": ...}: interval of the fitted line

    def predict(self, x) -> np.ndarray:
        return np.exp(self.intercept) * np.asarray(x, dtype=float) ** self.slope

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = list(self.ci)
        return d


@dataclass
class Comparison:
    """Slope ratio of a model against a baseline on shared points."""

    ratio: float
    ci: tuple[float, float]
    faster_pct: float                  # 100·(ratio − 1): the paper's "% faster scaling"
    faster_pct_ci: tuple[float, float]
    level: float
    resamples: int
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci"], d["faster_pct_ci"] = list(self.ci), list(self.faster_pct_ci)
        return d


def _table(triples) -> dict[float, dict]:
    """``{x: {seed: log y}}`` from ``(x, seed, y)``; x and y must be positive and finite."""
    out: dict[float, dict] = {}
    for x, seed, y in triples:
        x, y = float(x), float(y)
        if not (x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"log-log fit needs positive finite values, got x={x}, y={y}")
        out.setdefault(x, {})[seed] = math.log(y)
    return out


def _ols(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of the least-squares line (numpy's polyfit, degree 1)."""
    slope, intercept = np.polyfit(lx, ly, 1)
    return float(slope), float(intercept)


def _resample(levels: list[float], seeds_at: dict[float, list], rng: np.random.Generator):
    """One two-level bootstrap draw: points with replacement, then seeds within each point."""
    pick = rng.integers(0, len(levels), len(levels))
    out = []
    for i in pick:
        x = levels[i]
        seeds = seeds_at[x]
        out.append((x, [seeds[j] for j in rng.integers(0, len(seeds), len(seeds))]))
    return out


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    lo, hi = np.quantile(values, [a, 1 - a])
    return float(lo), float(hi)


def _flags(table: dict[float, dict], slope: float, ci) -> list[str]:
    flags = []
    xs = sorted(table)
    if len(xs) < 3:
        flags.append("too_few_points")
    means = [np.mean(list(table[x].values())) for x in xs]
    diffs = np.diff(means)
    if len(diffs) and not (np.all(diffs * np.sign(slope) > 0) if slope != 0 else False):
        flags.append("non_monotone")
    if max(len(v) for v in table.values()) < 2:
        flags.append("single_seed")
    if ci[0] <= 0 <= ci[1]:
        flags.append("slope_ci_includes_zero")
    return flags


def _arrays(table: dict[float, dict], draw=None, xmap: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    lx, ly = [], []
    items = draw if draw is not None else [(x, list(table[x])) for x in sorted(table)]
    for x, seeds in items:
        for s in seeds:
            lx.append(math.log(xmap[x] if xmap else x))
            ly.append(table[x][s])
    return np.asarray(lx), np.asarray(ly)


def fit_power_law(triples, *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0,
                  band_points: int = 50) -> PowerLawFit:
    """Fit ``log y = slope·log x + intercept`` over ``(x, seed, y)`` triples, with a bootstrap interval."""
    fits, _ = _bootstrap({"m": _table(triples)}, resamples=resamples, seed=seed)
    return _summarise(_table(triples), fits["m"], level, band_points)


def _bootstrap(tables: dict[str, dict], *, resamples: int, seed: int, xmaps: dict | None = None):
    """Joint bootstrap over the points common to all tables (seeds drawn by label, shared across models).

    ``xmaps`` (``{name: {key: x}}``) lets the tables be keyed by a point id with each model's own x (pairing
    points by rank when the models' x differ, e.g. FLOPs). Returns ``{name: (slope, intercept, slopes[], intercepts[])}`` and the number of dropped draws."""
    names = list(tables)
    levels = sorted(set.intersection(*(set(t) for t in tables.values())))
    if not levels:
        raise ValueError("no points in common")
    # seeds by label; a label missing for one model at a point is drawn only where present
    seeds_at = {x: sorted(set().union(*(tables[n][x] for n in names)), key=str) for x in levels}
    point = {}
    for n in names:
        sub = {x: tables[n][x] for x in levels}
        lx, ly = _arrays(sub, xmap=(xmaps or {}).get(n))
        if len(set(lx.tolist())) < 2:
            slope, icpt = float("nan"), float("nan")
        else:
            slope, icpt = _ols(lx, ly)
        point[n] = (slope, icpt, sub)
    rng = np.random.default_rng(seed)
    boots = {n: ([], []) for n in names}
    dropped = 0
    for _ in range(resamples):
        draw = _resample(levels, seeds_at, rng)
        if len({x for x, _ in draw}) < 2:
            dropped += 1
            continue
        for n in names:
            sub = point[n][2]
            d = [(x, [s for s in ss if s in sub[x]] or list(sub[x])) for x, ss in draw]
            b, a = _ols(*_arrays(sub, d, (xmaps or {}).get(n)))
            boots[n][0].append(b)
            boots[n][1].append(a)
    return {n: (point[n][0], point[n][1], np.asarray(boots[n][0]), np.asarray(boots[n][1]), point[n][2])
            for n in names}, dropped


def _summarise(table, fit, level: float, band_points: int, dropped: int = 0) -> PowerLawFit:
    slope, icpt, bs, bi, sub = fit
    xs = sorted(sub)
    lx, ly = _arrays(sub)
    if len(bs):
        ci = _interval(bs, level)
    else:
        ci = (float("nan"), float("nan"))
    if len(xs) >= 2:
        pred = slope * lx + icpt
        ss_res, ss_tot = float(((ly - pred) ** 2).sum()), float(((ly - ly.mean()) ** 2).sum())
        r2 = 1 - ss_res / ss_tot if ss_tot > 0 else 1.0
    else:
        r2 = float("nan")
    band = {}
    if len(bs) and len(xs) >= 2:
        grid = np.exp(np.linspace(math.log(xs[0]), math.log(xs[-1]), band_points))
        lines = bs[:, None] * np.log(grid)[None, :] + bi[:, None]          # resamples × grid
        a = (1 - level) / 2
        lo, hi = np.quantile(lines, [a, 1 - a], axis=0)
        band = {"x": grid.tolist(), "lo": np.exp(lo).tolist(), "hi": np.exp(hi).tolist()}
    flags = _flags(sub, slope, ci) if len(bs) else ["too_few_points"]
    return PowerLawFit(slope=slope, intercept=icpt, ci=ci, level=level, r2=r2, n_points=len(xs), n_runs=len(lx),
                       n_seeds=max(len(v) for v in sub.values()), resamples=len(bs), dropped=dropped,
                       flags=flags, x=xs, y_mean=[math.exp(float(np.mean(list(sub[x].values())))) for x in xs],
                       band=band)


def compare(triples: dict[str, list], model: str, baseline: str, *, resamples: int = RESAMPLES,
            level: float = LEVEL, seed: int = 0, band_points: int = 50) -> tuple[dict[str, PowerLawFit], Comparison | None]:
    """Fits for every model in ``triples`` (``{name: [(x, seed, y), ...]}``) and, when both ``model`` and
    ``baseline`` are present with shared points, their slope ratio from a paired bootstrap.

    Each model's own fit uses all of its points; the ratio uses the points both models have."""
    tables = {n: _table(t) for n, t in triples.items() if t}
    fits = {}
    for i, (n, t) in enumerate(tables.items()):
        f, dropped = _bootstrap({n: t}, resamples=resamples, seed=seed + i)
        fits[n] = _summarise(t, f[n], level, band_points, dropped)
    if model not in tables or baseline not in tables:
        return fits, None
    common = set(tables[model]) & set(tables[baseline])
    pair_tables, xmaps, flags = {model: tables[model], baseline: tables[baseline]}, None, []
    if len(common) < 2 and len(tables[model]) == len(tables[baseline]) >= 2:
        # different x per model (e.g. FLOPs of the same axis points): pair the points by rank
        xmaps, pair_tables = {}, {}
        for n in (model, baseline):
            xs = sorted(tables[n])
            xmaps[n] = {float(i + 1): x for i, x in enumerate(xs)}
            pair_tables[n] = {float(i + 1): tables[n][x] for i, x in enumerate(xs)}
        common = set(pair_tables[model])
        flags.append("paired_by_rank")
    elif len(common) < 2:
        return fits, Comparison(float("nan"), (float("nan"),) * 2, float("nan"), (float("nan"),) * 2, level, 0,
                                ["no_common_points" if not common else "too_few_points"])
    pair, dropped = _bootstrap(pair_tables, resamples=resamples, seed=seed, xmaps=xmaps)
    bm, bb = pair[model][2], pair[baseline][2]
    ratio = pair[model][0] / pair[baseline][0]
    ok = bb != 0
    ratios = bm[ok] / bb[ok]
    ci = _interval(ratios, level) if len(ratios) else (float("nan"), float("nan"))
    if len(common) < 3:
        flags.append("too_few_points")
    if ci[0] <= 1 <= ci[1]:
        flags.append("ratio_ci_includes_1")
    bci = _interval(bb, level) if len(bb) else (float("nan"), float("nan"))
    if bci[0] <= 0 <= bci[1]:
        flags.append("baseline_slope_ci_includes_zero")
    return fits, Comparison(ratio=ratio, ci=ci, faster_pct=100 * (ratio - 1),
                            faster_pct_ci=(100 * (ci[0] - 1), 100 * (ci[1] - 1)), level=level,
                            resamples=len(ratios), flags=flags)


def describe(comp: Comparison, model: str = "EBT", baseline: str = "Transformer++") -> str:
    """One careful sentence about a slope ratio."""
    if comp is None or not math.isfinite(comp.ratio):
        return "no ratio: the models share too few points"
    lo, hi = comp.ci
    pct = f"{comp.faster_pct:+.1f} % [{comp.faster_pct_ci[0]:+.1f}, {comp.faster_pct_ci[1]:+.1f}]"
    text = (f"{model}'s log-log slope is {comp.ratio:.3f}× {baseline}'s (95 % interval {lo:.3f}–{hi:.3f}); "
            f"in the paper's terms {pct} 'faster scaling' (a steeper slope, not a lower value)")
    if "ratio_ci_includes_1" in comp.flags:
        text += "; the interval includes 1, so the data do not distinguish the two rates"
    return text
