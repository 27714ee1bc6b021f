"""Report figures without overlaps, and a run report's Environment without empty columns (issue 22 item 10).

The layout is checked by measuring what matplotlib draws (the same figures the report inlines as SVG): on every
axis the tick labels in view are few and do not overlap one another, the axis label overlaps no tick label and
no other panel, the legend is outside every axes (below them, never on the data), and the title clears the axes.
The page itself was looked at in headless Chromium (tests/test_report_browser.py renders the sweep report).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ebtkit.study import plots
from ebtkit.study.report import env_html, run_info

MAX_TICK_LABELS = 8


def _boxes(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _overlap(a, b, pad: float = 0.5) -> bool:
    return a.x0 < b.x1 - pad and b.x0 < a.x1 - pad and a.y0 < b.y1 - pad and b.y0 < a.y1 - pad


def _tick_labels(axis, renderer):
    lo, hi = sorted(axis.get_view_interval())
    out = []
    for tick, loc in [*zip(axis.get_major_ticks(), axis.get_majorticklocs()),
                      *zip(axis.get_minor_ticks(), axis.get_minorticklocs())]:      # minor labels count too
        lab = tick.label1
        if lab.get_visible() and lab.get_text() and lo - 1e-12 <= loc <= hi * (1 + 1e-12) + 1e-12:
            out.append((lab.get_text(), lab.get_window_extent(renderer)))
    return out


def check_layout(fig) -> None:
    r = _boxes(fig)
    axes = [ax for ax in fig.axes if ax.has_data()]
    assert axes
    for ax in fig.axes:
        assert ax.get_legend() is None, "a legend inside the axes covers data"
    frames = [ax.get_window_extent(r) for ax in fig.axes]
    for leg in fig.legends:
        box = leg.get_window_extent(r)
        for f in frames:
            assert not _overlap(box, f), "the legend overlaps an axes"
    for i, ax in enumerate(axes):
        for axis, label in ((ax.xaxis, ax.xaxis.label), (ax.yaxis, ax.yaxis.label)):
            ticks = _tick_labels(axis, r)
            assert 2 <= len(ticks) <= MAX_TICK_LABELS, [t for t, _ in ticks]
            for k, (ta, ba) in enumerate(ticks):
                for tb, bb in ticks[k + 1:]:
                    assert not _overlap(ba, bb), f"tick labels {ta!r} and {tb!r} overlap"
                assert "times" not in ta and "^" not in ta, ta            # plain labels, no 2×10^1
            if label.get_text():
                lb = label.get_window_extent(r)
                for t, b in ticks:
                    assert not _overlap(lb, b), f"axis label {label.get_text()!r} sits on tick label {t!r}"
                for j, other in enumerate(fig.axes):            # nor on the panel beside it, or its tick labels
                    if other is ax:
                        continue
                    assert not _overlap(lb, other.get_window_extent(r)), label.get_text()
                    for t, b in _tick_labels(other.yaxis, r) + _tick_labels(other.xaxis, r):
                        assert not _overlap(lb, b), f"{label.get_text()!r} on the next panel's {t!r}"
    if fig._suptitle is not None:
        st = fig._suptitle.get_window_extent(r)
        for f in frames:
            assert not _overlap(st, f)


def _run(name, model, scale=1.0, n=12):
    steps = [5 * (i + 1) for i in range(n)]
    return {"name": name, "model": model, "tokens_per_step": 256, "config": {},
            "metrics": {"train": [(s, scale * (2.9 + 3 / math.sqrt(s))) for s in steps],
                        "val": [(s, scale * (20 + 800 / s)) for s in steps[1::2]], "val_key": "val_ppl"}}


@pytest.mark.parametrize("runs", [
    [_run("run-ebt", "ebt"), _run("run-transformerpp", "transformer++", 1.05)],
    [_run("run-ebt", "ebt")],
    [_run(f"a-rather-long-run-name-{i}", "ebt" if i % 2 else "transformer++", 1 + i / 20, 6 + 3 * i)
     for i in range(8)],
], ids=["two", "one", "eight"])
def test_learning_curves_have_no_overlaps(runs):
    check_layout(plots.plot_learning_curves(runs, "learning curves", as_figure=True))


def test_learning_curve_ticks_over_many_decades_stay_few():
    r = _run("wide", "ebt", n=4)
    r["metrics"]["train"] = [(s, 10 ** (4 - i)) for i, s in enumerate((1, 10, 100, 1000, 10000, 100000))]
    check_layout(plots.plot_learning_curves([r], "x", as_figure=True))


def test_thinking_denoise_and_scaling_figures_have_no_overlaps():
    table = [{"family": "trained", "label": "2 steps", "val_nfe": 2, "val_ppl": 20.9, "ood_nfe": 2, "ood_ppl": 38.0}]
    for fam, k in (("longer", (4, 8, 16)), ("best-of-N", (4, 8, 16)), ("early stop", (3, 5, 7))):
        table += [{"family": fam, "label": f"{fam} {n}", "val_nfe": n, "val_ppl": 20.9 - n / 50, "ood_nfe": n,
                   "ood_ppl": 38 - n / 20} for n in k]
    check_layout(plots.plot_thinking({"table": table}, "run: perplexity vs NFEs",
                                     {"label": "Transformer++", "val_ppl": 21.7, "ood_ppl": 33.1}, as_figure=True))
    levels = [{"sigma": s, "noisy": {"psnr": 20 - 10 * s},
               "models": {"ebt": [{"nfe": n, "psnr": 24 + n / 5} for n in (1, 2, 3, 5, 10)],
                          "dit": [{"nfe": n, "psnr": 22 + n / 20} for n in (1, 2, 3, 5, 10, 100, 1000)]}}
              for s in (0.1, 0.2)]
    check_layout(plots.plot_denoise({"levels": levels}, "denoise", as_figure=True))
    xs = [1e5, 3e5, 1e6, 3e6]
    fits = {m: {"x": xs, "y_mean": [50 * x ** -0.1 * c for x in xs], "slope": -0.1, "intercept": math.log(50 * c),
                "ci": (-0.12, -0.08), "band": {"x": xs, "lo": [50 * x ** -0.1 * c * 0.97 for x in xs],
                                               "hi": [50 * x ** -0.1 * c * 1.03 for x in xs]}}
            for m, c in (("ebt", 1.0), ("transformer++", 1.1))}
    row = {"axis": "width", "x": "params", "metric": "val_ppl", "fits": fits,
           "data": {m: [(x, 0, f["y_mean"][i]) for i, x in enumerate(xs)] for m, f in fits.items()}}
    check_layout(plots.plot_scaling(row, as_figure=True))


def test_log_ticks_are_few_and_inside_the_range():
    for lo, hi in ((2.9, 5.8), (20, 105), (250, 16000), (1, 1e6), (3.01, 3.02), (0.5, 2)):
        t = plots.log_ticks(lo, hi)
        assert 2 <= len(t) <= 7 and all(lo <= x <= hi for x in t), (lo, hi, t)
    assert plots.short_number(20000) == "20k" and plots.short_number(1.5e6) == "1.5M" and plots.short_number(50) == "50"


def test_one_runs_environment_has_no_column_of_dashes(tmp_path):
    run = tmp_path / "run-ebt"
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "config.json").write_text(json.dumps({
        "task": "text", "format_version": 1, "ebtkit_version": "0.1.0",
        "config": {"model": {"model": "ebt", "context": 32}, "train": {"batch_size": 8, "seed": 33,
                                                                        "precision": "auto"}}}))
    (run / "checkpoint" / "state.json").write_text(json.dumps({"step": 60, "elapsed_s": 14.1, "world_size": 1}))
    (run / "command.txt").write_text("ebt train --preset tiny --steps 60 --out run-ebt\n")
    page = env_html(None, [run_info(run)])
    assert "–" not in page and "recorded by the sweep" not in page
    assert "ebt train --preset tiny --steps 60 --out run-ebt" in page and ">60<" in page and "14 s" in page
    assert 'id="environment"' in page and ">python<" in page
    for table in page.split("<table")[1:]:        # no column is empty in any row
        rows = [r for r in table.split("<tr>")[2:]]
        for col in range(1, table.split("<tr>")[1].count("<th")):
            cells = [r.split("<td")[col + 1].split(">", 1)[1].split("<", 1)[0] for r in rows]
            assert any(c.strip() for c in cells), (col, table[:200])
