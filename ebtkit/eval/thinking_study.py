"""Evaluation of System 2 thinking for text EBTs: perplexity vs compute per policy, and energy as uncertainty.

For a trained run, on in-distribution validation text and on the built-in out-of-distribution text:

* **Policies table** — exact perplexity (``exp(ΣNLL/Σtokens)``, :func:`ebtkit.evaluate.perplexity`) against
  the NFEs actually spent per token, for: the EBT at its trained steps; thinking longer (2, 4, 8, 16 steps);
  best-of-N (2, 4, 8 candidates at the trained steps, chosen per position by lowest final energy); early stop
  at several tolerances (16 steps at most); and a Transformer++ run given as a baseline (one forward per
  token; drawn as a flat line, as in the paper's Fig. 6a). Every policy sees the same initial noise (same seed),
  so differences between rows are paired.
* **Uncertainty** — Spearman rank correlation between per-token final energy and per-token cross-entropy,
  computed *within* each evaluation window and averaged over windows (energies carry an arbitrary
  context-dependent offset: only the ranking inside one passage means anything); the pooled correlation over
  all tokens is reported beside it to show the offset effect. With a baseline, also against the
  Transformer++'s CE (a difficulty measure that does not depend on the EBT's own prediction).
* **Random vs real** — mean per-window final energy of windows of uniformly random tokens (drawn from the
  tokens that occur in the validation text) vs real validation windows (the paper's Fig. B.2), with
  ``P(E_random > E_real)`` over window pairs.
* **Plots** — ``thinking.png`` (perplexity vs NFEs per token, one line per policy family, validation and OOD
  panels) and ``energy_heatmap.png`` (per-token energy at every thinking step for a sample passage of each
  split, z-scored within the passage, as in the paper's Fig. 8).

Entry point: :func:`evaluate_thinking` (``ebt eval RUN`` calls it for EBT runs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pathlib import Path

from ..core.thinking import is_energy_model
from ..data.text import eval_windows
from .inference import Policy, steps_text, think_text
from .metrics import perplexity, token_nll

THINK_STEPS = (2, 4, 8, 16)
BON_SAMPLES = (2, 4, 8)
EARLY_STOP_STEPS = 16
TOL_QUANTILES = (0.25, 0.5, 0.9)


# ------------------------------------------------------------------------------------------ statistics
def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n along the last dim, ties sharing their average rank (the Spearman convention)."""
    less = (x[..., None, :] < x[..., :, None]).sum(-1).to(torch.float64)     # elements below each entry
    equal = (x[..., None, :] == x[..., :, None]).sum(-1).to(torch.float64)   # incl. itself
    return less + (equal + 1) / 2


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation along the last dim (Pearson correlation of average ranks); NaN if a row is
    constant."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    ra, rb = average_ranks(a), average_ranks(b)
    ra = ra - ra.mean(-1, keepdim=True)
    rb = rb - rb.mean(-1, keepdim=True)
    den = (ra.pow(2).sum(-1) * rb.pow(2).sum(-1)).sqrt()
    return (ra * rb).sum(-1) / den


def prob_greater(x: torch.Tensor, y: torch.Tensor) -> float:
    """``P(X > Y)`` over all pairs (ties count one half): the AUROC of separating x from y."""
    gt = (x[:, None] > y[None, :]).double().mean()
    eq = (x[:, None] == y[None, :]).double().mean()
    return float(gt + eq / 2)


# ------------------------------------------------------------------------------------------ policies
@dataclass
class PolicyRow:
    family: str          # "trained" | "longer" | "best-of-N" | "early stop" | "transformer++"
    label: str
    policy: Policy | None
    nfe_budget: int      # steps × samples (the most a policy can spend per token)


def default_policies(trained_steps: int, think_steps=THINK_STEPS, bon=BON_SAMPLES,
                     tols: list[float] | None = None, early_stop_steps: int = EARLY_STOP_STEPS) -> list[PolicyRow]:
    """The rows of the thinking table (the trained policy first)."""
    rows = [PolicyRow("trained", f"EBT, trained ({steps_text(trained_steps)})", Policy(steps=trained_steps),
                      trained_steps)]
    for s in think_steps:
        if s != trained_steps:
            rows.append(PolicyRow("longer", f"think longer: {steps_text(s)}", Policy(steps=s), s))
    for n in bon:
        if n > 1:
            rows.append(PolicyRow("best-of-N", f"best-of-{n} (min E), {steps_text(trained_steps)}",
                                  Policy(steps=trained_steps, samples=n), n * trained_steps))
    for t in tols or []:
        rows.append(PolicyRow("early stop", f"early stop: tol {t:.3g}, ≤{early_stop_steps} steps",
                              Policy(steps=early_stop_steps, tol=t), early_stop_steps))
    return rows


def auto_tolerances(model, tokens: torch.Tensor, trained_steps: int, quantiles=TOL_QUANTILES,
                    steps: int = EARLY_STOP_STEPS, seed: int = 0) -> list[float]:
    """Tolerances at the given quantiles of the per-token energy change ``|E(ŷ_{T+1}) − E(ŷ_T)|`` of the first
    step beyond the trained ``T`` (on ``tokens``, B×S): the quantile-q tolerance lets a fraction ≈ q of the
    positions stop as soon as the trained steps are done."""
    gen = torch.Generator().manual_seed(seed)
    out = think_text(model, tokens, steps=max(steps, trained_steps + 1), generator=gen)
    traj = out.energy_trajectory.double()                                 # (steps+1)×B×S
    delta = (traj[trained_steps + 1] - traj[trained_steps]).abs().flatten()
    qs = torch.quantile(delta, torch.tensor(quantiles, dtype=torch.float64))
    return sorted({float(f"{float(q):.3g}") for q in qs if q > 0})


def window_nll(model, data: torch.Tensor, context: int, *, max_windows: int, batch_size: int, seed: int = 0,
               **policy) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-window summed NLL and NFEs (each ``(N,)`` float64) over the deterministic evaluation windows.

    Same windows, batching and generator as :func:`ebtkit.evaluate.perplexity`, so
    ``exp(nll.sum() / tokens)`` is exactly its perplexity."""
    windows = eval_windows(data, context + 1, max_windows)
    dev = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    nll, nfe = [], []
    for i in range(0, len(windows), batch_size):
        batch = windows[i:i + batch_size].to(dev)
        n, f = token_nll(model, batch, generator=gen, **policy)
        nll.append(n.double().sum(1).cpu())
        nfe.append(f.double().sum(1).cpu())
    return torch.cat(nll), torch.cat(nfe)


def paired_gain_ci(base: torch.Tensor, other: torch.Tensor, tokens_per_window: int, *, resamples: int = 2000,
                   seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Bootstrap interval (over windows, paired) of the perplexity gain ``100·(ppl_base − ppl_other)/ppl_base``."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(base), (resamples, len(base)), generator=g)
    tok = tokens_per_window * len(base)
    pb, po = (base[idx].sum(1) / tok).exp(), (other[idx].sum(1) / tok).exp()
    gain = 100.0 * (pb - po) / pb
    lo, hi = torch.quantile(gain, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=gain.dtype))
    return float(lo), float(hi)


def policy_table(model, splits: dict[str, torch.Tensor], context: int, rows: list[PolicyRow], *,
                 max_windows: int, batch_size: int, seed: int = 0, baseline=None, log=None) -> list[dict]:
    """Exact perplexity, NFEs per token and the paired gain over the trained policy (with a 95% bootstrap
    interval over windows) for every policy row on every split."""
    table, per_window = [], {}
    if baseline is not None:
        rec = {"family": "transformer++", "label": "Transformer++ (1 forward)", "nfe_budget": 1}
        for split, data in splits.items():
            r = perplexity(baseline, data, context, batch_size=batch_size, max_windows=max_windows)
            rec[f"{split}_ppl"], rec[f"{split}_nfe"] = r["ppl"], 1.0
        table.append(rec)
    for i, row in enumerate(rows):
        rec = {"family": row.family, "label": row.label, "nfe_budget": row.nfe_budget, "policy": row.policy.kwargs()}
        for split, data in splits.items():
            nll, nfe = window_nll(model, data, context, max_windows=max_windows, batch_size=batch_size, seed=seed,
                                  **row.policy.kwargs())
            per_window[i, split] = nll
            tokens = len(nll) * context
            rec[f"{split}_ppl"] = math.exp(float(nll.sum()) / tokens)
            rec[f"{split}_nfe"] = float(nfe.sum()) / tokens
        table.append(rec)
        if log is not None:
            log("  " + row.label + ": " + ", ".join(f"{s} ppl {rec[f'{s}_ppl']:.3f}" for s in splits))
    trained_i = next(i for i, r in enumerate(rows) if r.family == "trained")
    for i, rec in enumerate(table[len(table) - len(rows):]):
        for split in splits:
            base, other = per_window[trained_i, split], per_window[i, split]
            pb, po = math.exp(float(base.sum()) / (len(base) * context)), rec[f"{split}_ppl"]
            rec[f"{split}_gain_pct"] = 100.0 * (pb - po) / pb
            rec[f"{split}_gain_ci95"] = list(paired_gain_ci(base, other, context, seed=seed))
    for rec in table[: len(table) - len(rows)]:
        for split in splits:
            rec[f"{split}_gain_pct"], rec[f"{split}_gain_ci95"] = None, None
    return table


# ------------------------------------------------------------------------------------------ uncertainty
@torch.no_grad()
def _baseline_nll(baseline, tokens: torch.Tensor) -> torch.Tensor:
    logits = baseline(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tokens[:, 1:].reshape(-1),
                           reduction="none").view(tokens.shape[0], -1)


def token_energies(model, windows: torch.Tensor, *, batch_size: int, seed: int = 0, policy: Policy | None = None,
                   steps: int | None = None):
    """Per-token final energies and CE (each N×S) of windows (N×(S+1)) under ``policy`` (default: ``steps``
    plain thinking steps, e.g. the trained ones)."""
    policy = policy or Policy(steps=steps)
    gen = torch.Generator().manual_seed(seed)
    energies, nlls = [], []
    for i in range(0, len(windows), batch_size):
        batch = windows[i:i + batch_size]
        out = think_text(model, batch[:, :-1], generator=gen, **policy.kwargs())
        logits = out.candidates
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1), reduction="none")
        energies.append(out.final_energy.double())
        nlls.append(nll.view(batch.shape[0], -1).double())
    return torch.cat(energies), torch.cat(nlls)


def uncertainty(model, data: torch.Tensor, context: int, *, max_windows: int, batch_size: int, seed: int = 0,
                steps: int | None = None,
                baseline=None) -> dict:
    """Does the final energy rank tokens by difficulty? Spearman within each window, averaged."""
    windows = eval_windows(data, context + 1, max_windows)
    E, nll = token_energies(model, windows, batch_size=batch_size, seed=seed, steps=steps)
    rho = spearman(E, nll)
    res = {"windows": len(windows), "tokens": E.numel(),
           "spearman_within_mean": float(rho.nanmean()), "spearman_within_std": float(rho[~rho.isnan()].std()),
           "spearman_pooled": float(spearman(E.flatten(), nll.flatten())),
           "frac_windows_positive": float((rho > 0).double().mean())}
    if baseline is not None:
        ref = torch.cat([_baseline_nll(baseline, windows[i:i + batch_size]) for i in range(0, len(windows), batch_size)])
        rho_b = spearman(E, ref.double())
        res["spearman_within_vs_baseline_ce"] = float(rho_b.nanmean())
    return res


def random_vs_real(model, data: torch.Tensor, context: int, *, windows: int, batch_size: int, seed: int = 0,
                   steps: int | None = None) -> dict:
    """Mean final energy per window: uniformly random token windows vs real windows (paper Fig. B.2)."""
    real = eval_windows(data, context + 1, windows)
    vocab = torch.unique(data)
    gen = torch.Generator().manual_seed(seed + 1)
    rand = vocab[torch.randint(0, len(vocab), real.shape, generator=gen)]
    e_real, _ = token_energies(model, real, batch_size=batch_size, seed=seed, steps=steps)
    e_rand, _ = token_energies(model, rand, batch_size=batch_size, seed=seed, steps=steps)
    mr, mx = e_real.mean(1), e_rand.mean(1)                                   # per-window means
    return {"windows": len(real), "real_mean": float(mr.mean()), "real_std": float(mr.std()),
            "random_mean": float(mx.mean()), "random_std": float(mx.std()),
            "p_random_higher": prob_greater(mx, mr)}


# ------------------------------------------------------------------------------------------ plots
def plot_policies(table: list[dict], splits: list[str], path, title: str = "") -> None:
    """Perplexity vs NFEs per token, one line per policy family, one panel per split."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(splits), figsize=(6.2 * len(splits), 4.4), squeeze=False)
    trained = next(r for r in table if r["family"] == "trained")
    styles = {"longer": ("o-", "tab:blue"), "best-of-N": ("s-", "tab:orange"), "early stop": ("^-", "tab:green")}
    for ax, split in zip(axes[0], splits):
        for family, (marker, color) in styles.items():
            pts = [trained] + [r for r in table if r["family"] == family]
            pts = sorted(pts, key=lambda r: r[f"{split}_nfe"])
            if len(pts) > 1:
                ax.plot([r[f"{split}_nfe"] for r in pts], [r[f"{split}_ppl"] for r in pts], marker, color=color,
                        label=family if family != "longer" else "think longer")
        ax.plot([trained[f"{split}_nfe"]], [trained[f"{split}_ppl"]], "k*", ms=13, label="EBT, trained steps", zorder=5)
        for r in table:
            if r["family"] == "transformer++":
                ax.axhline(r[f"{split}_ppl"], color="gray", ls="--", label="Transformer++")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("NFEs per token (energy evaluations with input gradient)")
        ax.set_ylabel("perplexity (exact)")
        ax.set_title({"val": "in-distribution (validation)", "ood": "out-of-distribution"}.get(split, split))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def token_pieces(tokenizer, ids) -> list[str]:
    """One display string per token (newlines and tabs made visible)."""
    return [tokenizer.decode([int(i)]).replace("\n", "↵").replace("\t", "⇥") for i in ids]


def passage_energies(model, ids: torch.Tensor, *, seed: int = 0, **policy) -> dict:
    """Think about every position of one passage (1-D ids); returns per-token trajectories and final energies.

    Position r's energy scores the candidate for token ``ids[r+1]``, so token 0 has none."""
    gen = torch.Generator().manual_seed(seed)
    out = think_text(model, ids[None, :-1], generator=gen, **policy)
    nll = F.cross_entropy(out.candidates[0].float(), ids[1:], reduction="none")
    return {"trajectory": out.energy_trajectory[:, 0].double(), "final": out.final_energy[0].double(),
            "nll": nll.double(), "nfe": out.nfe[0]}


def plot_heatmaps(passages: list[tuple[str, list[str], torch.Tensor]], path) -> None:
    """Energy heatmaps (thinking step × token) for passages ``(title, pieces, trajectory (steps+1)×T)``.

    Energies are z-scored within each passage (only within-context comparisons are meaningful)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    width = max(8.0, 0.16 * max(len(p[1]) for p in passages))
    fig, axes = plt.subplots(len(passages), 1, figsize=(width, 2.2 + 1.6 * len(passages)), squeeze=False)
    for ax, (title, pieces, traj) in zip(axes[:, 0], passages):
        z = (traj - traj.mean()) / traj.std().clamp_min(1e-12)
        im = ax.imshow(z.numpy(), aspect="auto", cmap="RdYlGn_r", interpolation="nearest")
        ax.set_yticks(range(traj.shape[0]))
        ax.set_yticklabels([f"ŷ{k}" for k in range(traj.shape[0])], fontsize=6)
        ax.set_xticks(range(len(pieces)))
        ax.set_xticklabels([p if p.strip() else "␣" for p in pieces], fontsize=6, family="monospace")
        ax.set_ylabel("thinking step")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01, label="energy (z within passage)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ the whole study
def evaluate_thinking(model, data, context: int, *, trained_steps: int, baseline=None, max_windows: int = 32,
                      batch_size: int = 16, seed: int = 0, think_steps=THINK_STEPS, bon=BON_SAMPLES,
                      tols: list[float] | str = "auto", heatmap_tokens: int = 64, out_dir=None, title: str = "EBT",
                      log=print) -> dict:
    """Run the thinking study for a text EBT on ``data`` (a :class:`~ebtkit.data.text.TextData`, whose tokenizer
    labels the heatmaps), ``trained_steps`` being the run's evaluation steps.

    Writes ``thinking.png`` and ``energy_heatmap.png`` into ``out_dir`` (if given). Returns a JSON-able dict
    with the policies table, uncertainty, random-vs-real and the gains summary.
    """
    if not is_energy_model(model):
        raise ValueError("the thinking evaluation needs an EBT run (Transformer++ cannot think)")
    trained = int(trained_steps)
    splits = {"val": data.val} if data.ood is None else {"val": data.val, "ood": data.ood}
    model.eval()
    if baseline is not None:
        baseline.eval()
    if tols == "auto":
        first = eval_windows(data.val, context + 1, min(batch_size, max_windows))
        tols = auto_tolerances(model, first[:, :-1], trained, seed=seed)
    rows = default_policies(trained, think_steps, bon, list(tols))
    log(f"thinking table: {len(rows)} EBT policies × {len(splits)} splits, ≤{max_windows} windows of {context} tokens")
    table = policy_table(model, splits, context, rows, max_windows=max_windows, batch_size=batch_size, seed=seed,
                         baseline=baseline, log=log)
    unc = {split: uncertainty(model, d, context, max_windows=max_windows, batch_size=batch_size, seed=seed,
                              steps=trained, baseline=baseline) for split, d in splits.items()}
    rvr = random_vs_real(model, data.val, context, windows=max_windows, batch_size=batch_size, seed=seed,
                         steps=trained)
    gains = {}
    for split in splits:
        best = min((r for r in table if r["family"] not in ("transformer++",)), key=lambda r: r[f"{split}_ppl"])
        fam = {key: max((r[f"{split}_gain_pct"] for r in table if r["family"] == f), default=None)
               for f, key in (("longer", "think_longer"), ("best-of-N", "best_of_n"), ("early stop", "early_stop"))}
        gains[split] = {"best_label": best["label"], "best_gain_pct": best[f"{split}_gain_pct"],
                        **{f"{k}_best_gain_pct": v for k, v in fam.items()}}
    result = {"trained_steps": trained, "tolerances": list(tols), "max_windows": max_windows, "seed": seed,
              "table": table, "uncertainty": unc, "random_vs_real": rvr, "gains": gains, "plots": []}
    if out_dir is not None:
        out_dir = Path(out_dir)
        p1 = out_dir / "thinking.png"
        plot_policies(table, list(splits), p1, title=title)
        passages = []
        for split, d in splits.items():
            ids = d[: min(heatmap_tokens, context) + 1]
            pe = passage_energies(model, ids, seed=seed, steps=max(trained, 8))
            passages.append((f"{split}: per-token energy while thinking ({pe['trajectory'].shape[0] - 1} steps)",
                             token_pieces(data.tokenizer, ids[1:].tolist()), pe["trajectory"]))
        p2 = out_dir / "energy_heatmap.png"
        plot_heatmaps(passages, p2)
        result["plots"] = [str(p1), str(p2)]
    return result


def format_report(result: dict) -> str:
    """The thinking table, uncertainty and random-vs-real as plain text."""
    table = result["table"]
    splits = [s for s in ("val", "ood") if f"{s}_ppl" in table[0]]
    head = f"{'policy':<40}" + "".join(f"{s + ' NFE':>9}{s + ' ppl':>10}{'Δ% [95% CI]':>20}" for s in splits)
    lines = [head, "-" * len(head)]

    def gain(r, s):
        g, ci = r[f"{s}_gain_pct"], r.get(f"{s}_gain_ci95")
        if g is None:
            return f"{'—':>20}"
        return f"{g:>+7.1f}" + (f" [{ci[0]:+.1f},{ci[1]:+.1f}]".rjust(13) if ci else " " * 13)

    for r in table:
        cells = "".join(f"{r[f'{s}_nfe']:>9.2f}{r[f'{s}_ppl']:>10.3f}{gain(r, s)}" for s in splits)
        lines.append(f"{r['label'][:40]:<40}{cells}")
    lines.append("(Δ% = perplexity improvement over the EBT at its trained steps, paired bootstrap 95% interval over "
                 "windows; NFE = energy evaluations actually spent per token)")
    for split in splits:
        g = result["gains"][split]
        lines.append(f"{split}: best policy {g['best_label']!r}: {g['best_gain_pct']:+.1f}%")
    for split, u in result["uncertainty"].items():
        extra = (f", vs Transformer++ CE {u['spearman_within_vs_baseline_ce']:+.3f}"
                 if "spearman_within_vs_baseline_ce" in u else "")
        lines.append(f"uncertainty ({split}): Spearman(final energy, CE) within windows {u['spearman_within_mean']:+.3f}"
                     f" ± {u['spearman_within_std']:.3f} ({u['frac_windows_positive'] * 100:.0f}% of {u['windows']}"
                     f" windows > 0); pooled {u['spearman_pooled']:+.3f}{extra}")
    rv = result["random_vs_real"]
    lines.append(f"random vs real text: mean energy {rv['random_mean']:.4g} ± {rv['random_std']:.3g} vs "
                 f"{rv['real_mean']:.4g} ± {rv['real_std']:.3g}; P(random > real) = {rv['p_random_higher']:.2f}")
    if not math.isfinite(table[0].get("val_ppl", 0.0)):
        lines.append("warning: non-finite perplexity")
    return "\n".join(lines)
