"""The one table ``ebt eval`` prints for a text run: perplexity per split and per inference policy, with its cost.

Every row is one policy scored on the same windows of every split: the first ``max_windows`` non-overlapping
windows of ``context + 1`` tokens (:func:`ebtkit.data.text.eval_windows`), exact perplexity
``exp(Σ NLL / Σ tokens)`` (:func:`ebtkit.eval.metrics.perplexity`). A split is the validation text (``val``) or an
out-of-distribution text, named after its corpus (``pydoc``). The header gives each split's windows and tokens
(and the bytes those tokens spell, when the tokenizer is known).

Columns:

* **NFE/token** — energy evaluations (a forward pass and an input gradient) actually spent per scored token,
  over all splits (best-of-N counts every sample; early stop counts the steps each token took);
* **cost** — NFE/token relative to the plain evaluation, the EBT at its trained thinking steps (``×1.0``);
  best-of-4 at the trained steps is ``×4.0``. A Transformer++ run's own row is its plain evaluation (one forward
  pass per token, no NFEs); a Transformer++ *baseline* row in an EBT's table has no cost in NFEs (``—``);
* **<split> ppl**, and with the thinking study **<split> Δ%**: the perplexity gain over the plain row with a
  paired bootstrap 95 % interval over windows (:func:`ebtkit.eval.thinking_study.policy_table`);
* **<split> bpb** — bits per byte, ``Σ NLL / ln 2 / Σ bytes`` of the scored tokens (= ``log2(ppl) · tokens /
  bytes``): the figure that compares runs with different tokenizers (a byte run's bpb is ``log2(ppl)``; a BPE
  run's perplexity is per token, several bytes each, so its perplexities are not comparable with a byte run's);
* **note** — the plain row; rows whose perplexities equal the plain row's. Best-of-N from a deterministic start
  (``model.init = "zeros"``, the System 1 recipe) without inference noise thinks N times from the same
  candidate along the same path: its N samples are one, so it gives the plain result at N times the cost. That is
  what the algorithm does, not a bug (``docs/system2.md``: only Langevin noise at inference makes the samples
  differ); the row says ``identical: deterministic start, no noise``.

:func:`policy_rows` evaluates rows, :func:`merge_study` folds in the rows of the thinking study
(:func:`ebtkit.eval.thinking_study.evaluate_thinking`) when it scored the same windows, :func:`format_table`
prints the document that ``ebt eval --json`` prints as JSON.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch

from ..core.thinking import is_energy_model
from .inference import Policy, steps_text
from .metrics import perplexity

IDENTICAL_NOTE = "identical: deterministic start, no noise"
EQUAL_NOTE = "same perplexities as plain"
PLAIN_NOTE = "plain evaluation"
FAMILY_ORDER = ("plain", "steps", "longer", "best-of-N", "early stop", "transformer++")


def split_info(splits: dict[str, tuple[str, torch.Tensor]], context: int, max_windows: int,
               tokenizer=None) -> list[dict]:
    """Header facts of each split (``name → (label, tokens)``): windows scored and tokens scored, and with the
    run's ``tokenizer`` the bytes those scored tokens spell (for bits per byte)."""
    out = []
    lengths = tokenizer.byte_lengths() if tokenizer is not None and hasattr(tokenizer, "byte_lengths") else None
    for name, (label, tokens) in splits.items():
        windows = min(max_windows, len(tokens) // (context + 1))
        info = {"name": name, "label": label, "windows": windows, "tokens": windows * context}
        if lengths is not None and windows:
            targets = torch.as_tensor(tokens[: windows * (context + 1)]).view(windows, context + 1)[:, 1:]
            info["bytes"] = int(lengths[targets.long().clamp(max=len(lengths) - 1)].sum())
        out.append(info)
    return out


def bits_per_byte(ppl: float, tokens: int, nbytes: int | None) -> float | None:
    """``log2(ppl) · tokens / bytes``: the summed NLL in bits per byte of text (None without a byte count)."""
    if not nbytes or not tokens or not ppl > 0:
        return None
    return math.log2(ppl) * tokens / nbytes if math.isfinite(ppl) else math.inf


def add_bits_per_byte(doc: dict) -> dict:
    """Write ``bpb`` beside every ``ppl`` of the document's tables (the main one and a thinking study's on other
    windows), from their splits' byte counts. Returns ``doc``."""
    def fill(rows, splits):
        nbytes = {s["name"]: s.get("bytes") for s in splits or []}
        for r in rows or []:
            for name, v in r.get("splits", {}).items():
                b = bits_per_byte(v.get("ppl", math.nan), v.get("tokens", 0), nbytes.get(name))
                if b is not None:
                    v["bpb"] = b
    fill(doc.get("table"), doc.get("splits"))
    study = doc.get("thinking") or {}
    if study.get("table"):
        fill(study["table"], study.get("splits"))
    return doc


def deterministic_samples(model, policy: Policy | None, plain: Policy | None) -> bool:
    """True when best-of-N under ``policy`` provably equals ``plain``: the same policy but for N > 1 samples, from
    the model's deterministic start (``init = "zeros"``) and without Langevin noise, so every sample is the same."""
    if policy is None or plain is None or policy.samples < 2 or policy.langevin_sigma > 0:
        return False
    if getattr(getattr(model, "cfg", None), "init", None) != "zeros":
        return False
    return replace(policy, samples=1, select="min") == plain


def _row(family: str, label: str, policy: Policy | None, per_split: dict[str, dict], plain_nfe: float | None) -> dict:
    tokens = sum(s["tokens"] for s in per_split.values())
    nfe = sum(s["nfe_per_token"] * s["tokens"] for s in per_split.values()) / tokens if tokens else 0.0
    cost = (nfe / plain_nfe if plain_nfe else 1.0) if family != "transformer++" else None
    return {"family": family, "label": label, "policy": policy.kwargs() if policy is not None else None,
            "steps": policy.steps if policy is not None else None, "nfe_per_token": nfe, "cost": cost,
            "splits": per_split, "note": "", "identical_to_plain": False}


def policy_rows(model, splits: dict[str, tuple[str, torch.Tensor]], context: int,
                policies: list[tuple[str, str, Policy | None]], *, plain: Policy | None, max_windows: int,
                batch_size: int, seed: int = 0) -> list[dict]:
    """Evaluate each ``(family, label, policy)`` on every split (``policy`` None: a model without thinking);
    ``plain`` is the reference policy (the EBT at its trained steps; None for a Transformer++ run)."""
    rows = []
    for family, label, policy in policies:
        per = {}
        for name, (_, tokens) in splits.items():
            kw = policy.kwargs() if policy is not None and is_energy_model(model) else {}
            steps = kw.pop("steps", None)
            r = perplexity(model, tokens, context, steps=steps, batch_size=batch_size, max_windows=max_windows,
                           seed=seed, **kw)
            per[name] = {"ppl": r["ppl"], "tokens": r["tokens"], "nfe_per_token": r["nfe_per_token"]}
        rows.append(_row(family, label, policy, per, plain.steps if plain is not None else None))
    annotate(rows, model, plain)
    return rows


def annotate(rows: list[dict], model, plain: Policy | None) -> None:
    """Notes: the plain row, rows provably identical to it, rows whose perplexities equal it (same windows)."""
    ref = next((r for r in rows if r["family"] == "plain"), None)
    for r in rows:
        pol = Policy(**r["policy"]) if r["policy"] is not None else None
        if r is ref:
            r["note"] = PLAIN_NOTE
        elif deterministic_samples(model, pol, plain):
            r["note"], r["identical_to_plain"] = IDENTICAL_NOTE, True
        elif ref is not None and r["family"] != "transformer++" and r["splits"].keys() == ref["splits"].keys() and \
                all(r["splits"][s]["ppl"] == ref["splits"][s]["ppl"] for s in r["splits"]):
            r["note"], r["identical_to_plain"] = EQUAL_NOTE, True


def study_rows(study: dict, splits: list[dict], model, plain: Policy) -> list[dict]:
    """The thinking study's table (``evaluate_thinking(...)["table"]``) as rows of this table (the study's trained
    row becomes the plain row)."""
    tokens = {s["name"]: s["tokens"] for s in splits}
    rows = []
    for rec in study["table"]:
        family = "plain" if rec["family"] == "trained" else rec["family"]
        pol = Policy(**rec["policy"]) if rec.get("policy") else None
        per = {}
        for name in tokens:
            if f"{name}_ppl" not in rec:
                continue
            per[name] = {"ppl": rec[f"{name}_ppl"], "tokens": tokens[name],
                         "nfe_per_token": rec[f"{name}_nfe"] if family != "transformer++" else 0.0}
            if rec.get(f"{name}_gain_pct") is not None and family != "plain":
                per[name]["gain_pct"] = rec[f"{name}_gain_pct"]
                per[name]["gain_ci95"] = rec.get(f"{name}_gain_ci95")
        if family == "transformer++":
            label = "Transformer++ baseline (1 forward)"
        elif family in ("plain", "longer"):
            label = f"EBT, {steps_text(pol.steps)}" + (" (trained)" if family == "plain" else "")
        else:
            label = "EBT, " + rec["label"]
        rows.append(_row(family, label, pol, per, plain.steps))
    annotate(rows, model, plain)
    return rows


def merge_study(table: list[dict], extra: list[dict]) -> list[dict]:
    """The table's rows with the study's (scored on the same windows): a study row with the policy of a table row
    adds its paired gains to it (the numbers are the same evaluation); the others are appended. Sorted by family
    (plain, step counts, best-of-N, early stop, Transformer++) and steps."""
    out = [dict(r, splits={k: dict(v) for k, v in r["splits"].items()}) for r in table]
    for s in extra:
        same = next((r for r in out if s["policy"] is not None and r["policy"] == s["policy"]), None)
        if same is None:
            out.append(s)
            continue
        for name, v in s["splits"].items():
            if name in same["splits"] and "gain_pct" in v:
                same["splits"][name]["gain_pct"], same["splits"][name]["gain_ci95"] = v["gain_pct"], v["gain_ci95"]
        if s["identical_to_plain"] and not same["identical_to_plain"]:
            same["note"], same["identical_to_plain"] = s["note"], True
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    steps_like = ("steps", "longer")
    return sorted(out, key=lambda r: (rank.get("steps" if r["family"] in steps_like else r["family"], 99),
                                      (r["policy"] or {}).get("samples", 0), r["steps"] or 0))


# ------------------------------------------------------------------------------------------ printing
def _fmt_ppl(v: float) -> str:
    return f"{v:.3f}" if math.isfinite(v) else str(v)


def _gain(v: dict) -> str:
    g, ci = v.get("gain_pct"), v.get("gain_ci95")
    if g is None:
        return "—"
    return f"{g:+.1f}" + (f" [{ci[0]:+.1f},{ci[1]:+.1f}]" if ci else "")


def table_lines(rows: list[dict], splits: list[dict]) -> list[str]:
    """The rows as aligned text: policy, NFE/token, cost, then each split's perplexity (and gain), and a note."""
    gains = any("gain_pct" in v for r in rows for v in r["splits"].values())
    nbytes = {s["name"]: s.get("bytes") for s in splits}
    bpb = {s["name"]: bool(nbytes[s["name"]]) for s in splits}
    head = f"{'policy':<42}{'NFE/token':>10}{'cost':>7}"
    for s in splits:
        head += f"{s['label'] + ' ppl':>{max(11, len(s['label']) + 6)}}" + \
            (f"{'bpb':>7}" if bpb[s["name"]] else "") + (f"{s['label'] + ' Δ%':>{20}}" if gains else "")
    lines = [head + "  note", "-" * (len(head) + 6)]
    for r in rows:
        nfe = "1 fwd" if r["family"] == "transformer++" else \
            ("—" if r["nfe_per_token"] == 0 and r["policy"] is None else f"{r['nfe_per_token']:.2f}")
        cost = "—" if r["cost"] is None else f"×{r['cost']:.1f}"
        line = f"{r['label'][:41]:<42}{nfe:>10}{cost:>7}"
        for s in splits:
            v = r["splits"].get(s["name"])
            width = max(11, len(s["label"]) + 6)
            line += f"{_fmt_ppl(v['ppl']) if v else '—':>{width}}"
            if bpb[s["name"]]:
                b = bits_per_byte(v["ppl"], v["tokens"], nbytes[s["name"]]) if v else None
                line += f"{'—' if b is None else f'{b:.3f}':>7}"
            line += f"{_gain(v) if v else '—':>20}" if gains else ""
        lines.append((line + "  " + r["note"]).rstrip())
    return lines


def header_lines(doc: dict) -> list[str]:
    parts = []
    for s in doc["splits"]:
        what = "out of distribution" if s["name"] != "val" else f"{doc['data']}, its last {100 * doc['val_fraction']:g} %"
        parts.append(f"{s['label']} ({what}): {s['windows']} windows = {s['tokens']:,} tokens"
                     + (f" = {s['bytes']:,} bytes" if s.get("bytes") else ""))
    return [f"{doc['title']}: {doc['run']}",
            f"scored: windows of {doc['context']} predicted tokens, the first {doc['max_windows']} of each split; "
            + "; ".join(parts)]


def format_table(doc: dict) -> str:
    """The document of :func:`ebtkit.eval.runs.evaluate_text` as text (``--json`` prints it as JSON)."""
    lines = header_lines(doc) + table_lines(doc["table"], doc["splits"])
    plain = doc.get("plain_steps")
    foot = ("NFE/token: energy evaluations (forward + input gradient) spent per scored token; cost: relative to the "
            f"plain evaluation ({plain} thinking steps = ×1.0)") if plain else \
        "cost: relative to this model's plain evaluation (one forward pass per token)"
    if any(s.get("bytes") for s in doc["splits"]):
        foot += "; bpb: bits per byte of the scored text (compares byte and BPE runs)"
    if any("gain_pct" in v for r in doc["table"] for v in r["splits"].values()):
        foot += "; Δ%: perplexity gain over plain, paired bootstrap 95 % interval over windows"
    lines.append(f"({foot})")
    study = doc.get("thinking")
    if study:
        if study.get("table"):
            lines.append("")
            lines.append(f"thinking study on fewer windows (--thinking-windows {study['max_windows']}): " + "; ".join(
                f"{s['label']}: {s['windows']} windows = {s['tokens']:,} tokens" for s in study["splits"]) +
                "; its perplexities differ from the table above because it scores fewer windows")
            lines += table_lines(study["table"], study["splits"])
        lines += study_lines(study, {s["name"]: s["label"] for s in doc["splits"]})
    return "\n".join(lines)


def study_lines(study: dict, labels: dict[str, str]) -> list[str]:
    """The thinking study's findings beyond the table: best policy, energy as uncertainty, random vs real."""
    lines = []
    for split, g in study.get("gains", {}).items():
        lines.append(f"{labels.get(split, split)}: best policy {g['best_label']!r}: {g['best_gain_pct']:+.1f}%")
    for split, u in study.get("uncertainty", {}).items():
        extra = (f", vs Transformer++ CE {u['spearman_within_vs_baseline_ce']:+.3f}"
                 if "spearman_within_vs_baseline_ce" in u else "")
        lines.append(f"uncertainty ({labels.get(split, split)}): Spearman(final energy, CE) within windows "
                     f"{u['spearman_within_mean']:+.3f} ± {u['spearman_within_std']:.3f} "
                     f"({u['frac_windows_positive'] * 100:.0f}% of {u['windows']} windows > 0); pooled "
                     f"{u['spearman_pooled']:+.3f}{extra}")
    rv = study.get("random_vs_real")
    if rv:
        lines.append(f"random vs real text: mean energy {rv['random_mean']:.4g} ± {rv['random_std']:.3g} vs "
                     f"{rv['real_mean']:.4g} ± {rv['real_std']:.3g}; P(random > real) = {rv['p_random_higher']:.2f}")
    return lines


__all__ = ["IDENTICAL_NOTE", "EQUAL_NOTE", "PLAIN_NOTE", "split_info", "bits_per_byte", "add_bits_per_byte",
           "deterministic_samples", "policy_rows",
           "annotate", "study_rows", "merge_study", "table_lines", "format_table", "study_lines"]
