"""Reading a sweep back: its index with each run's metrics from its files, and the slopes per axis."""
from __future__ import annotations

import math
from pathlib import Path

from .spec import INDEX, _read_json


def eval_metrics(run_dir: Path) -> dict:
    """Validation/OOD perplexity at the trained thinking steps (first row of eval.json) and the curve's last
    training loss."""
    ev = _read_json(run_dir / "eval.json") or {}
    rows = ev.get("rows") or [{}]
    row = rows[0]
    return {"val_ppl": row.get("val_ppl"), "ood_ppl": row.get("ood_ppl"), "eval_steps": row.get("steps"),
            "nfe_per_token": row.get("nfe_per_token")}


def load_index(path: str | Path) -> dict:
    """``sweep.json`` of a sweep directory, with each finished run's metrics re-read from its files."""
    path = Path(path)
    idx = _read_json(path / INDEX)
    if idx is None:
        raise ValueError(f"{path} has no readable {INDEX}; is it a sweep directory?")
    for rec in idx.get("runs", []):
        d = path / rec["dir"]
        if rec.get("status") == "done" and (d / "eval.json").exists():
            rec.update(eval_metrics(d))
    return idx


def axis_triples(index: dict, axis: str, metric: str = "val_ppl", x: str | None = None) -> dict[str, list]:
    """``{model: [(x, seed, y), ...]}`` of one axis' finished runs (``metric``: val_ppl | ood_ppl | val_loss)."""
    ax = index["spec"]["axes"][axis]
    x = x or ax["x"]
    out: dict[str, list] = {}
    for rec in index.get("runs", []):
        if rec.get("status") != "done" or axis not in rec.get("axes", []):
            continue
        y = metric_value(rec, metric)
        xv = rec.get(x)
        if y is None or xv is None:
            continue
        out.setdefault(rec["model"], []).append((xv, rec["seed"], y))
    return out


def metric_value(rec: dict, metric: str):
    if metric == "val_loss":
        v = rec.get("val_ppl")
        return math.log(v) if v else None
    if metric not in ("val_ppl", "ood_ppl"):
        raise ValueError(f"unknown metric {metric!r}; choose from val_ppl, ood_ppl, val_loss")
    return rec.get(metric)


def fit_sweep(index: dict, metric: str = "val_ppl", resamples: int = 2000, seed: int = 0) -> list[dict]:
    """Per axis (and per axis against FLOPs): each model's fit and the EBT/Transformer++ ratio."""
    from .fit import compare
    rows = []
    for axis, ax in index["spec"]["axes"].items():
        for x in dict.fromkeys([ax["x"], "flops"]):
            tr = axis_triples(index, axis, metric, x)
            if not tr:
                continue
            if x == "flops" and x != ax["x"] and _proportional(index, axis, ax["x"]):
                continue                  # FLOPs ∝ x on this axis (data, batch): the same slope, not repeated
            fits, comp = compare(tr, "ebt", "transformer++", resamples=resamples, seed=seed)
            rows.append({"axis": axis, "x": x, "metric": metric, "fits": {m: f.to_dict() for m, f in fits.items()},
                         "comparison": comp.to_dict() if comp is not None else None,
                         "data": {m: [list(t) for t in v] for m, v in tr.items()}})
    return rows


def _proportional(index: dict, axis: str, x: str) -> bool:
    """Whether FLOPs / x is the same at every run of this axis, per model (then log FLOPs = log x + const)."""
    ratios: dict[str, set] = {}
    for rec in index.get("runs", []):
        if rec.get("status") == "done" and axis in rec.get("axes", []) and rec.get("flops") and rec.get(x):
            ratios.setdefault(rec["model"], set()).add(round(math.log(rec["flops"] / rec[x]), 9))
    return bool(ratios) and all(len(v) == 1 for v in ratios.values())


def format_fits(rows: list[dict]) -> str:
    """The slope table as text."""
    from .fit import FLAG_TEXT
    lines = [f"{'axis':<10}{'x':<14}{'model':<15}{'pts':>4}{'runs':>5}{'slope':>9}  {'95% CI':<19}"
             f"{'EBT/T++ ratio [95% CI]':<28}flags"]
    for row in rows:
        comp = row["comparison"]
        for i, (m, f) in enumerate(row["fits"].items()):
            ratio = ""
            if i == 0 and comp is not None and comp["ratio"] == comp["ratio"]:
                ratio = f"{comp['ratio']:.3f} [{comp['ci'][0]:.3f}, {comp['ci'][1]:.3f}]"
            flags = list(f["flags"]) + ([f"ratio: {x}" for x in comp["flags"] if x not in f["flags"]]
                                        if i == 0 and comp else [])
            lines.append(f"{row['axis']:<10}{row['x']:<14}{m:<15}{f['n_points']:>4}{f['n_runs']:>5}{f['slope']:>9.4f}  "
                         f"{'[%.4f, %.4f]' % tuple(f['ci']):<19}{ratio:<28}{', '.join(flags)}")
    used = sorted({fl.split(': ')[-1] for row in rows for f in row["fits"].values() for fl in f["flags"]}
                  | {fl for row in rows if row["comparison"] for fl in row["comparison"]["flags"]})
    for fl in used:
        lines.append(f"  {fl}: {FLAG_TEXT.get(fl, fl)}")
    return "\n".join(lines)
