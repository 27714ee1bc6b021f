"""scripts/thinking_report.py (issue 16's tables): the Fig. 7 slope and its bootstrap, and the tables it prints
from results in the layout thinking_budget.py writes."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("thinking_report", ROOT / "scripts" / "thinking_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tr = _load()


def test_ols_recovers_an_exact_line():
    xs = [1.0, 2.0, 5.0, 9.0]
    assert tr.ols(xs, [3 - 0.5 * x for x in xs]) == pytest.approx(-0.5)
    assert math.isnan(tr.ols([2.0, 2.0], [1.0, 3.0]))


def test_bootstrap_interval_excludes_zero_only_for_a_real_trend():
    # 6 sets × 3 seeds: gain = 2·shift + seed noise → a positive slope whose interval excludes 0
    trend = {f"set{i}": [(1.0 + i, 2.0 * (1.0 + i) + d) for d in (-0.3, 0.0, 0.3)] for i in range(6)}
    b, lo, hi = tr.boot_slope(trend, draws=2000)
    assert b == pytest.approx(2.0)
    assert 0 < lo <= b <= hi
    # the same shifts with gains unrelated to them: the interval straddles 0
    flat = {f"set{i}": [(1.0 + i, g) for g in ((-1) ** i * 1.0, 0.5, -0.5)] for i in range(6)}
    _, lo, hi = tr.boot_slope(flat, draws=2000)
    assert lo < 0 < hi
    # log2 shifts: a gain linear in log2(shift) has slope 1 per doubling
    logt = {f"set{i}": [(2.0 ** i, float(i))] * 2 for i in range(5)}
    assert tr.boot_slope(logt, draws=200, logx=True)[0] == pytest.approx(1.0)


def _rec(model, system, seed, splits, steps=800, **kw):
    return {"model": model, "system": system, "seed": seed, "train_steps": steps, "data": "bible", **kw,
            "splits": {s: {p: {"ppl": v, "nfe": 1} for p, v in pol.items()} for s, pol in splits.items()}}


def test_fig7_and_table3_from_result_files(tmp_path, capsys):
    fig = tmp_path / "fig7"
    fig.mkdir()
    sets = ("val", "pydoc", "austen", "dyck")
    for seed in (33, 34):
        tpp = {s: {"trained": 5.0 * (1 + i)} for i, s in enumerate(sets)}        # shifts 1, 2, 3, 4
        (fig / f"tpp-n800-s{seed}.ppl.json").write_text(json.dumps(_rec("transformer++", None, seed, tpp)))
        # S2: maximal thinking gains 10 % × (shift - 1) on each set
        s2 = {s: {"trained": 10.0, "4x": 10.0, "bon8": 10.0, "4x bon8": 10.0 * (1 - 0.1 * i)} for i, s in enumerate(sets)}
        (fig / f"s2-n800-s{seed}.budget.json").write_text(json.dumps(_rec("ebt", "s2", seed, s2, mult=4, bon=8)))
    tr.table3(tmp_path)
    tr.fig7(tmp_path, None)
    out = capsys.readouterr().out
    assert "| Transformer++ | 33,34 | 5.00 ± 0.00 | 10.00 ± 0.00 |" in out
    assert "| EBT S2 (3 steps) ÷ T++ | 33,34 | 2.00 ± 0.00 | 1.00 ± 0.00 |" in out
    assert "| dyck | 4.00 ± 0.00 | +0.0 ± 0.0 | +0.0 ± 0.0 | +30.0 ± 0.0 |" in out
    assert "slope of maximal thinking's gain: +10.000 %-points per unit of shift, 95 % bootstrap interval " \
           "[+10.000, +10.000] (3 OOD sets × 2 seeds)" in out
