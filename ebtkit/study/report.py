"""One self-contained HTML page for a run, a comparison of runs, or a sweep.

No server, no network, no scripts: figures are matplotlib SVGs inlined as ``data:`` URIs, PNGs found in run
directories are inlined as base64, styles are in the page. Sections (those with nothing to show say so):

* **Scaling** (sweeps) — the slope table (:mod:`ebtkit.study.fit`: log-log OLS slope with a two-level bootstrap
  95 % interval per model, the EBT/Transformer++ ratio with its paired interval, flags) and one log-log plot per
  axis and resource with every run, the seed means, the fitted lines and their interval bands.
* **Learning curves** — training loss and validation perplexity from ``metrics.jsonl`` against tokens seen.
* **Evaluation** — ``eval.json`` per run (val/OOD perplexity at each thinking-step count).
* **Thinking** — perplexity vs NFEs per token for each inference policy, from ``thinking.json`` where present.
* **Energy view** — a passage coloured by the EBT's per-token final energy (rank within the passage), with the
  token's energy and cross-entropy on hover; computed here by :func:`ebtkit.study.api.energy_passage`.
* **Samples** — PNG files in the run directory (plots, image samples), inlined.
* **Config and environment** — the resolved config of each run, the sweep spec, the environment recorded by the
  sweep and the one this page was made in.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
import tempfile
import time
from pathlib import Path

from . import api
from .results import fit_sweep, load_index
from .spec import INDEX, X_LABELS
from .plots import plot_denoise, plot_learning_curves, plot_scaling, plot_thinking
from .sweep import environment
from ..core.config import flatten

PROMPT = "And God said"
PASSAGE = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; "
           "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.")
MAX_PNG_BYTES = 1_500_000
MAX_THINKING_RUNS = 4

CSS = """
body{font:14px/1.45 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px;background:#fff}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#666}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td.l,th.l{text-align:left}table.slopes td{white-space:nowrap}table.slopes td:last-child{white-space:normal}
figure{margin:12px 0;display:inline-block;vertical-align:top}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:12px;color:#555;max-width:1000px}
.flag{display:inline-block;background:#fff3cd;border:1px solid #e0c36a;border-radius:3px;padding:0 4px;margin:1px;font-size:11px}
.note{color:#555;font-size:13px}.passage{font:15px/2 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;
border:1px solid #ddd;padding:8px;background:#fff}
.passage span.tok{border-radius:2px;padding:1px 0}.passage span.tok:hover{outline:2px solid #000}
.legend span{display:inline-block;width:22px;height:12px}
pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px;max-height:420px}
nav a{margin-right:12px}pre.sample{white-space:pre-wrap;max-height:none;background:#fff;border:1px solid #ddd}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:8px}.grid figure{margin:4px 0}
"""


# ------------------------------------------------------------------------------------------------ io
def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


VAL_KEYS = ("val_ppl", "val_psnr")       # text: perplexity; image denoising: PSNR (dB)


def read_metrics(run: Path) -> dict:
    """``{"train": [(step, loss)], "val": [(step, value)], "val_key": ...}`` from ``metrics.jsonl`` (duplicate
    steps keep the last record; unreadable lines are skipped)."""
    train, val, key = {}, {}, None
    try:
        lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return {"train": [], "val": [], "val_key": None}
    for line in lines:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(r, dict) or "step" not in r:
            continue
        if r.get("split") == "train" and isinstance(r.get("loss"), (int, float)):
            train[int(r["step"])] = float(r["loss"])
        elif r.get("split") == "val":
            for k in VAL_KEYS:
                if isinstance(r.get(k), (int, float)):
                    val[int(r["step"])], key = float(r[k]), k
    return {"train": sorted(train.items()), "val": sorted(val.items()), "val_key": key}


def run_info(run: Path, name: str | None = None) -> dict:
    """What the report needs from one run directory (files only)."""
    run = Path(run)
    meta = api.run_config(run) or {}
    cfg = meta.get("config", {})
    m, t = cfg.get("model", {}), cfg.get("train", {})
    return {"name": name or run.name, "dir": run, "task": meta.get("task", "?"), "config": cfg,
            "model": m.get("model", "?"), "tokens_per_step": (t.get("batch_size") or 0) * (m.get("context") or 0),
            "metrics": read_metrics(run), "eval": _read_json(run / "eval.json"),
            "thinking": _read_json(run / "thinking.json"), "denoise": _read_json(run / "eval_denoise.json"),
            "pngs": sorted(run.glob("*.png")), "recorded": recorded_by_run(run, meta)}


def recorded_by_run(run: Path, meta: dict) -> dict:
    """What a run directory records about how it was made (a run has no sweep's environment record): the ebtkit
    version that wrote its checkpoint, its step, processes, training time, precision and seed, and the command
    that trained it. Absent facts are left out, not shown as dashes."""
    state = _read_json(Path(run) / "checkpoint" / "state.json") or {}
    t = (meta.get("config") or {}).get("train", {})
    out = {"ebtkit": meta.get("ebtkit_version"), "step": state.get("step"), "processes": state.get("world_size"),
           "training time": f"{state['elapsed_s']:.0f} s" if isinstance(state.get("elapsed_s"), (int, float)) else None,
           "precision": t.get("precision"), "seed": t.get("seed")}
    try:
        lines = (Path(run) / "command.txt").read_text(encoding="utf-8").splitlines()
        out["trained with"] = "; then ".join(ln for ln in lines if ln.strip()) or None
    except OSError:
        pass
    return {k: v for k, v in out.items() if v is not None}



def figure(svg: str, caption: str, fid: str) -> str:
    data = base64.b64encode(svg.encode()).decode()
    return (f'<figure class="fig" id="{fid}"><img alt="{html.escape(caption)}" src="data:image/svg+xml;base64,'
            f'{data}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def png_figure(path: Path, caption: str, fid: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure class="fig sample" id="{fid}"><img alt="{html.escape(caption)}" src="data:image/png;base64,'
            f'{data}"><figcaption>{html.escape(caption)}</figcaption></figure>')


# ------------------------------------------------------------------------------------------------ html parts
def _esc(x) -> str:
    return html.escape(str(x))


def _fmt(v, nd=4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        return f"{v:.{nd}g}"
    return _esc(v)


def slope_table(rows: list[dict]) -> str:
    from .fit import FLAG_TEXT
    out = ['<table id="slope-table" class="slopes"><tr><th class="l">axis</th><th class="l">x</th>'
           '<th class="l">model</th><th>points</th><th>runs</th><th>slope</th><th>95 % interval</th><th>R²</th>'
           '<th>EBT / T++ slope ratio [95 %]</th><th>"faster scaling" (ratio − 1)</th><th class="l">flags</th></tr>']
    for row in rows:
        comp = row["comparison"]
        n = len(row["fits"])
        for i, (m, f) in enumerate(row["fits"].items()):
            flags = "".join(f'<span class="flag" title="{_esc(FLAG_TEXT.get(fl, fl))}">{_esc(fl)}</span>'
                            for fl in f["flags"])
            cells = (f'<td class="l">{_esc(m)}</td><td>{f["n_points"]}</td><td>{f["n_runs"]}</td>'
                     f'<td>{f["slope"]:.4f}</td><td>[{f["ci"][0]:.4f}, {f["ci"][1]:.4f}]</td><td>{_fmt(f["r2"], 3)}</td>')
            if i == 0:
                head = (f'<td class="l" rowspan="{n}">{_esc(row["axis"])}</td>'
                        f'<td class="l" rowspan="{n}">{_esc(X_LABELS.get(row["x"], row["x"]))}</td>')
                if comp is not None and comp["ratio"] == comp["ratio"]:
                    cflags = "".join(f'<span class="flag" title="{_esc(FLAG_TEXT.get(fl, fl))}">{_esc(fl)}</span>'
                                     for fl in comp["flags"] if fl not in f["flags"])
                    rc = (f'<td rowspan="{n}">{comp["ratio"]:.3f} [{comp["ci"][0]:.3f}, {comp["ci"][1]:.3f}]</td>'
                          f'<td rowspan="{n}">{comp["faster_pct"]:+.1f} % [{comp["faster_pct_ci"][0]:+.1f}, '
                          f'{comp["faster_pct_ci"][1]:+.1f}]</td>')
                    flags += cflags
                else:
                    rc = f'<td rowspan="{n}">–</td><td rowspan="{n}">–</td>'
                out.append(f"<tr>{head}{cells}{rc}<td class='l'>{flags}</td></tr>")
            else:
                out.append(f"<tr>{cells}<td class='l'>{flags}</td></tr>")
    out.append("</table>")
    return "".join(out)


def energy_html(ep: dict, run_name: str) -> str:
    """The passage as spans coloured by per-token energy rank (green low → red high); energy and CE on hover."""
    vals = sorted(e for e in ep["energy"] if e is not None)
    spans = []
    for piece, e, ce in zip(ep["pieces"], ep["energy"], ep["ce"]):
        shown = _esc(piece)
        if e is None:
            spans.append(f'<span class="tok none" title="no prediction (first token)">{shown}</span>')
            continue
        rank = sum(v < e for v in vals) / max(1, len(vals) - 1)
        colour = f"hsl({120 * (1 - rank):.0f},75%,72%)"
        tip = f"token {piece!r}\nenergy {e:.4g} (rank {rank:.2f} in passage)\nCE {ce:.3f} nats"
        spans.append(f'<span class="tok" style="background:{colour}" data-energy="{e:.6g}" data-ce="{ce:.6g}" '
                     f'title="{_esc(tip)}">{shown}</span>')
    legend = "".join(f'<span style="background:hsl({h},75%,72%)"></span>' for h in range(120, -1, -20))
    return (f'<div class="passage" id="energy-passage">{"".join(spans)}</div>'
            f'<p class="note legend">{legend} low → high energy (rank within the passage; energies carry a '
            f'context-dependent offset, so only the ranking inside one passage means anything). Run '
            f'<code>{_esc(run_name)}</code>, {ep["steps"]} thinking steps, context {ep["context"]} tokens (longer '
            f'passages are cut into windows). Hover a token for its energy and cross-entropy.</p>')


def eval_table(runs: list[dict]) -> str:
    out = ['<table class="eval"><tr><th class="l">run</th><th class="l">model</th><th>thinking steps</th>'
           '<th>NFE/token</th><th>val ppl</th><th>OOD ppl</th></tr>']
    n = 0
    for r in runs:
        ev = r["eval"]
        if not ev:
            continue
        for row in ev.get("rows", []):
            n += 1
            out.append(f'<tr><td class="l">{_esc(r["name"])}</td><td class="l">{_esc(r["model"])}</td>'
                       f'<td>{_fmt(row.get("steps") or "–")}</td><td>{_fmt(row.get("nfe_per_token"))}</td>'
                       f'<td>{_fmt(row.get("val_ppl"))}</td><td>{_fmt(row.get("ood_ppl"))}</td></tr>')
    out.append("</table>")
    return "".join(out) if n else '<p class="note">No eval.json in these runs (run <code>ebt eval RUN</code>).</p>'


def env_html(recorded: dict | None, runs: list[dict] | None = None) -> str:
    """The environment table: a sweep's recorded environment beside this report's; for runs (no sweep record),
    what each run recorded (:func:`recorded_by_run`) and then this report's environment, with no empty column."""
    now = environment()
    now["made"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    try:
        import matplotlib
        now["matplotlib"] = matplotlib.__version__
    except ImportError:
        pass
    if recorded is None:
        parts = []
        if runs:
            keys = list(dict.fromkeys(k for r in runs for k in r.get("recorded", {})))
            head = "".join(f'<th class="l">{_esc(r["name"])}</th>' for r in runs)
            body = "".join(f'<tr><td class="l">{_esc(k)}</td>' + "".join(
                f'<td class="l">{_esc(r.get("recorded", {}).get(k, ""))}</td>' for r in runs) + "</tr>" for k in keys)
            parts.append(f'<h3>recorded by the run{"s" if len(runs) > 1 else ""}</h3><table id="run-environment">'
                         f'<tr><th class="l">key</th>{head}</tr>{body}</table>')
        rows = "".join(f'<tr><td class="l">{_esc(k)}</td><td class="l">{_esc(v)}</td></tr>' for k, v in now.items())
        parts.append(f'<h3>this report</h3><table id="environment"><tr><th class="l">key</th><th class="l">this '
                     f'report</th></tr>{rows}</table>')
        return "".join(parts)
    keys = list(dict.fromkeys(list((recorded or {}).keys()) + list(now.keys())))
    rows = "".join(f'<tr><td class="l">{_esc(k)}</td><td class="l">{_esc((recorded or {}).get(k, "–"))}</td>'
                   f'<td class="l">{_esc(now.get(k, "–"))}</td></tr>' for k in keys)
    return (f'<table id="environment"><tr><th class="l">key</th><th class="l">recorded by the sweep</th>'
            f'<th class="l">this report</th></tr>{rows}</table>')


def _pre(obj) -> str:
    return f"<pre>{_esc(json.dumps(obj, indent=2, sort_keys=True))}</pre>"


# ------------------------------------------------------------------------------------------------ pages
def _energy_section(runs: list[dict], passage: str, steps: int | None) -> str:
    cands = [r for r in runs if r["model"] == "ebt" and r["task"] == "text"]
    if not cands:
        return '<p class="note">No text EBT run here: no energies to show.</p>'
    best = min(cands, key=lambda r: (_val(r), r["name"]))
    try:
        ep = api.energy_passage(best["dir"], passage, steps=steps)
    except Exception as e:  # noqa: BLE001 — the page still renders; the failure is shown
        return f'<p class="note">Could not compute energies for {_esc(best["name"])}: {_esc(e)}</p>'
    return energy_html(ep, best["name"])


def _val(r: dict) -> float:
    ev = r.get("eval") or {}
    rows = ev.get("rows") or [{}]
    v = rows[0].get("val_ppl")
    return v if v is not None else float("inf")


def _best_per_model(runs: list[dict]) -> list[dict]:
    best: dict[str, dict] = {}
    for r in sorted(runs, key=lambda r: (_val(r), r["name"])):
        best.setdefault(r["model"], r)
    return list(best.values())


def _baseline_for(run: dict, runs: list[dict]) -> dict | None:
    """The Transformer++ run to draw beside an EBT's thinking curves: in a sweep, the one at the same point and
    seed; among plain runs, the only Transformer++ run given (if exactly one)."""
    tpps = [r for r in runs if r["model"] == "transformer++" and r.get("eval")]
    if run.get("point") is not None:
        tpps = [r for r in tpps if r.get("point") == run["point"]]
    if len(tpps) != 1:
        return None
    row = (tpps[0]["eval"].get("rows") or [{}])[0]
    return {"label": f"Transformer++ ({tpps[0]['name']})", "val_ppl": row.get("val_ppl"), "ood_ppl": row.get("ood_ppl")}


def _thinking_section(runs: list[dict]) -> str:
    have = [r for r in runs if r["thinking"] and r["thinking"].get("table")]
    den = [r for r in runs if r.get("denoise") and r["denoise"].get("levels")][:MAX_THINKING_RUNS]
    if not have and not den:
        return ('<p class="note">No thinking.json here (EBT runs get one from <code>ebt eval RUN</code>; '
                'sweeps with <code>--thinking</code>).</p>')
    have = sorted(have, key=lambda r: (_val(r), r["name"]))[:MAX_THINKING_RUNS]
    parts = [figure(plot_denoise(r["denoise"], f"{r['name']}: PSNR vs NFEs"), f"{r['name']}: denoising PSNR vs "
                    f"network evaluations at each noise level (eval_denoise.json)", f"fig-denoise-{i}")
             for i, r in enumerate(den)]
    for i, r in enumerate(have):
        parts.append(figure(plot_thinking(r["thinking"], f"{r['name']}: perplexity vs NFEs per inference policy",
                                          _baseline_for(r, runs)),
                            f"{r['name']}: perplexity vs energy evaluations (NFEs) per token, one line per "
                            f"inference policy family (thinking.json)", f"fig-thinking-{i}"))
    return "".join(parts)


def _text_samples(runs: list[dict], prompt: str | None) -> str:
    """Greedy continuations of ``prompt`` by the best text run of each model (``ebt generate``)."""
    if not prompt:
        return ""
    parts = []
    for r in _best_per_model([r for r in runs if r["task"] == "text"]):
        try:
            text = api.text_sample(r["dir"], prompt)
            body = f'<b>{_esc(prompt)}</b>{_esc(text)}'
        except Exception as e:  # noqa: BLE001 — shown on the page, the rest still renders
            body = f'<i>could not generate: {_esc(e)}</i>'
        parts.append(f'<h3>{_esc(r["name"])} ({_esc(r["model"])})</h3><pre class="sample">{body}</pre>')
    if not parts:
        return ""
    return ('<div id="text-samples"><p class="note">Greedy continuations (<code>ebt generate RUN --prompt ... '
            '--max-new-tokens 120</code>; the EBT at its trained thinking steps).</p>' + "".join(parts) + "</div>")


def _samples_section(runs: list[dict], prompt: str | None) -> str:
    parts = [_text_samples(runs, prompt)]
    k = 0
    for r in runs:
        for p in r["pngs"]:
            if p.stat().st_size > MAX_PNG_BYTES:
                continue
            parts.append(png_figure(p, f"{r['name']}/{p.name}", f"fig-sample-{k}"))
            k += 1
    return "".join(parts) or '<p class="note">No image or sample files (PNG) in these run directories.</p>'


def _page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    nav = "".join(f'<a href="#{sid}">{_esc(t)}</a>' for sid, t, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_esc(t)}</h2>{content}</section>' for sid, t, content in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f'<body><main><h1>{_esc(title)}</h1><p class="sub">{subtitle}</p><nav>{nav}</nav>{body}</main></body></html>')


def sweep_report(path: Path, *, metric: str = "val_ppl", passage: str = PASSAGE, steps: int | None = None,
                 resamples: int = 2000, prompt: str | None = None) -> str:
    from .fit import FLAG_TEXT, describe
    idx = load_index(path)
    done = [rec for rec in idx["runs"] if rec.get("status") == "done"]
    runs = [run_info(path / rec["dir"], rec["name"]) for rec in done]
    for r, rec in zip(runs, done):          # same point and seed = same overrides and seed, either model
        r["point"] = json.dumps([rec.get("overrides"), rec.get("seed")], sort_keys=True)
    rows = fit_sweep(idx, metric=metric, resamples=resamples)
    spec = idx["spec"]
    scaling = []
    if rows:
        scaling.append(slope_table(rows))
        notes = []
        for row in rows:
            if row["comparison"] is not None:
                from .fit import Comparison
                c = row["comparison"]
                comp = Comparison(c["ratio"], tuple(c["ci"]), c["faster_pct"], tuple(c["faster_pct_ci"]), c["level"],
                                  c["resamples"], c["flags"])
                notes.append(f"<li><b>{_esc(row['axis'])}</b> vs {_esc(X_LABELS.get(row['x'], row['x']))}: "
                             f"{_esc(describe(comp))}.</li>")
        scaling.append(f"<ul class='note'>{''.join(notes)}</ul>")
        scaling.append('<p class="note">Slope: OLS of log(' + _esc(metric) + ') on log(x) over every run; interval: '
                       '95 % percentile bootstrap resampling points, then seeds within points (the ratio resamples '
                       'both models together). Flags: ' + "; ".join(f"<i>{_esc(k)}</i> — {_esc(v)}"
                                                                     for k, v in FLAG_TEXT.items()) + '.</p>')
        plots = [figure(plot_scaling(row), f"{row['axis']}: {metric} vs {X_LABELS.get(row['x'], row['x'])} "
                        f"(log-log; dots: runs, circles: seed means, lines: fits, bands: bootstrap 95 %)",
                        f"fig-scaling-{i}") for i, row in enumerate(rows)]
        scaling.append('<div class="grid">' + "".join(plots) + "</div>")
    else:
        scaling.append('<p class="note">No finished runs to fit yet.</p>')
    curves = []
    for i, (axis, ax) in enumerate(spec["axes"].items()):
        members = [r for r, rec in zip(runs, done) if axis in rec["axes"]]
        if members:
            curves.append(figure(plot_learning_curves(members, f"axis '{axis}'"),
                                 f"learning curves of axis '{axis}' ({len(members)} runs)", f"fig-curves-{i}"))
    status = {}
    for rec in idx["runs"]:
        status[rec["status"]] = status.get(rec["status"], 0) + 1
    run_rows = "".join(
        f'<tr><td class="l">{_esc(r["name"])}</td><td class="l">{_esc(r["model"])}</td><td>{r["seed"]}</td>'
        f'<td class="l">{_esc(",".join(r["axes"]))}</td><td>{r["steps"]}</td><td>{r["batch_size"]}</td>'
        f'<td>{r["d_model"]}</td><td>{r["n_layers"]}</td><td>{_fmt(r.get("tokens"))}</td><td>{_fmt(r.get("params"))}</td>'
        f'<td>{_fmt(r.get("flops"), 3)}</td><td>{_fmt(r.get("val_ppl"))}</td><td>{_fmt(r.get("ood_ppl"))}</td>'
        f'<td>{_fmt(r.get("wall_s"), 3)}</td><td class="l">{_esc(r["status"])}</td></tr>' for r in idx["runs"])
    runs_table = ('<table id="runs"><tr><th class="l">run</th><th class="l">model</th><th>seed</th><th class="l">axes</th>'
                  '<th>steps</th><th>batch</th><th>d_model</th><th>layers</th><th>tokens</th><th>non-emb params</th>'
                  '<th>train FLOPs</th><th>val ppl</th><th>OOD ppl</th><th>wall s</th><th class="l">status</th></tr>'
                  + run_rows + "</table>")
    total = sum(r.get("wall_s") or 0 for r in idx["runs"])
    subtitle = (f"sweep <code>{_esc(path)}</code> · preset {_esc(spec['preset'])} · models {_esc(', '.join(spec['models']))}"
                f" · seeds {_esc(spec['seeds'])} · {', '.join(f'{v} {k}' for k, v in status.items())} · "
                f"{total / 60:.1f} CPU-minutes of runs (sum of wall times)")
    cfg = runs[0]["config"] if runs else {}
    sections = [("scaling", "Scaling: slopes with 95 % intervals", "".join(scaling)),
                ("curves", "Learning curves", "".join(curves) or '<p class="note">No metrics yet.</p>'),
                ("runs", "Runs", runs_table),
                ("thinking", "Perplexity or error vs NFEs per inference policy", _thinking_section(runs)),
                ("energy", "Per-token energy of a passage", _energy_section(runs, passage, steps)),
                ("samples", "Samples (the best run of each model)", _samples_section(_best_per_model(runs), prompt)),
                ("config", "Config", "<h3>sweep spec</h3>" + _pre(spec) + f"<h3>resolved config of {_esc(runs[0]['name']) if runs else '–'}"
                 "</h3>" + _pre(cfg)),
                ("environment", "Environment", env_html(idx.get("env")))]
    return _page(f"ebtkit sweep report: {spec['name']}", subtitle, sections)


def runs_report(paths: list[Path], *, passage: str = PASSAGE, steps: int | None = None,
                prompt: str | None = None) -> str:
    runs = []
    for p in paths:
        if api.run_config(p) is None:
            raise ValueError(f"{p} is not a run directory (no checkpoint/config.json) or a sweep (no {INDEX})")
        runs.append(run_info(p, p.name if len({q.name for q in paths}) == len(paths) else str(p)))
    title = f"ebtkit run report: {runs[0]['name']}" if len(runs) == 1 else f"ebtkit comparison of {len(runs)} runs"
    curves = figure(plot_learning_curves(runs, "learning curves"), "training loss and the validation metric "
                    "(perplexity, or PSNR for denoising) vs examples seen (metrics.jsonl)", "fig-curves-0")
    cfgs = "".join(f"<h3>{_esc(r['name'])}</h3>" + _pre(r["config"]) for r in runs)
    if len(runs) > 1:
        flat = [flatten(r["config"]) for r in runs]
        keys = sorted(k for k in set().union(*flat) if len({json.dumps(f.get(k)) for f in flat}) > 1)
        diff = ('<table id="config-diff"><tr><th class="l">key</th>' + "".join(f'<th class="l">{_esc(r["name"])}</th>' for r in runs)
                + "</tr>" + "".join(f'<tr><td class="l">{_esc(k)}</td>' + "".join(f'<td class="l">{_esc(f.get(k))}</td>' for f in flat)
                                    + "</tr>" for k in keys) + "</table>")
        cfgs = "<h3>differences</h3>" + diff + cfgs
    sections = [("curves", "Learning curves", curves), ("eval", "Evaluation", eval_table(runs)),
                ("thinking", "Perplexity or error vs NFEs per inference policy", _thinking_section(runs)),
                ("energy", "Per-token energy of a passage", _energy_section(runs, passage, steps)),
                ("samples", "Samples", _samples_section(runs, prompt)),
                ("config", "Config", cfgs), ("environment", "Environment", env_html(None, runs))]
    subtitle = " · ".join(f"<code>{_esc(r['dir'])}</code> ({_esc(r['model'])})" for r in runs)
    return _page(title, subtitle, sections)


def report_target(paths: list[str | Path], out: str | Path | None = None) -> Path:
    """Where the report of ``paths`` goes: ``out`` as given (an existing folder gets ``report.html`` inside it);
    by default ``PATH/report.html`` for one sweep or run and ``./report.html`` for several runs."""
    paths = [Path(p) for p in paths]
    if out is not None:
        out = Path(out)
        return out / "report.html" if out.is_dir() else out
    return paths[0] / "report.html" if len(paths) == 1 else Path("report.html")


def make_report(paths: list[str | Path], out: str | Path | None = None, **kw) -> Path:
    """Write the report of one sweep, one run or several runs; returns the HTML path (:func:`report_target`).
    The target is checked before anything is computed and written atomically: a failure leaves no file."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise ValueError(f"{p} does not exist")
    sweep = len(paths) == 1 and (paths[0] / INDEX).exists()
    if not sweep and any((p / INDEX).exists() for p in paths):
        raise ValueError("give one sweep directory, or one or more run directories")
    target = report_target(paths, out)
    if target.is_dir() or not target.parent.is_dir():
        raise ValueError(f"cannot write the report to {target}: "
                         f"{'it is a folder' if target.is_dir() else f'folder {target.parent} does not exist'}")
    if sweep:
        text = sweep_report(paths[0], **kw)
    else:
        kw.pop("metric", None)
        kw.pop("resamples", None)
        text = runs_report(paths, **kw)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
