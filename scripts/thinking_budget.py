"""Does thinking pay, and when? Evaluation for issue 16 (research script, not part of the package).

Three measurements on trained text runs, each writing one JSON per run into ``--out``:

``ppl RUN...``         exact val and OOD (pydoc) perplexity at the trained steps (Transformer++: one forward).
``budget RUN...``      the Fig. 6b analogue: val and pydoc perplexity at the trained steps ``K``, thinking longer
                       (``4K`` steps) and best-of-8 at ``K`` (lowest final energy). System 1 starts from zeros,
                       so its 8 samples start from N(0, 1) logits instead (labelled).
``mechanisms RUN...``  the mechanisms of ``scripts/policies_extra.py`` plus accept-lower and early stop, on
                       val, pydoc and extra OOD files (``--ood NAME=FILE``: the file's last 5 %, as ebtkit's
                       split); calibrated knobs are fitted on windows from the second half of the run's own
                       validation text (disjoint from the reported windows) and reported at that choice.
``table JSON...``      markdown tables (mean ± half-range over seeds) from those JSON files.

Pairing: every policy sees the same windows, and the initial candidates of batch ``i`` come from a generator
seeded ``seed + i`` for every policy, so sample 0 of best-of-N is the trained-steps candidate and sample 0 of
``4K`` steps passes through it. Perplexity = ``exp(Σ NLL / Σ tokens)`` over the windows.

    export OMP_NUM_THREADS=1
    python scripts/thinking_budget.py budget /work/runs16/budget/* --out /work/runs16/results/budget
    python scripts/thinking_budget.py mechanisms RUN --out DIR --ood austen=/work/data16/austen.txt \
        --ood brown=/work/data16/brown.txt --windows 128
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

import ebtkit
from ebtkit.core.thinking import is_energy_model
from ebtkit.data.text import eval_windows, load_text_file, prepare_text_data, split_text
from ebtkit.eval.inference import think_text
from ebtkit.eval.thinking_study import auto_tolerances

sys.path.insert(0, str(Path(__file__).resolve().parent))   # research code beside this script
import policies_extra as px  # noqa: E402

ENTROPY_LAMBDAS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)
SOFTMIN_TEMPS = (0.1, 0.3, 1.0, 3.0)            # × the median per-position std of energies across samples
BETAS = (-0.3, -0.15, 0.0, 0.1, 0.2, 0.3, 0.5)
GLOBAL_TEMPS = (0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def load_run(run):
    b = ebtkit.load(run)
    b.model.requires_grad_(False)        # inference only: no parameter graphs
    data = prepare_text_data(b.config.data, b.config.model.context, b.tokenizer)
    return b, data


def split_windows(b, data, windows: int, extra_ood: dict[str, str], full_ood: dict[str, str] | None = None
                  ) -> dict[str, torch.Tensor]:
    """val, pydoc, each ``extra_ood`` file's last 5 % (ebtkit's split) and each ``full_ood`` file whole."""
    ctx = b.config.model.context
    out = {"val": eval_windows(data.val, ctx + 1, windows)}
    if data.ood is not None:
        out["pydoc"] = eval_windows(data.ood, ctx + 1, windows)
    for name, path in extra_ood.items():
        ids = torch.tensor(b.tokenizer.encode(split_text(load_text_file(path), 0.05)[1]), dtype=torch.long)
        out[name] = eval_windows(ids, ctx + 1, windows)
    for name, path in (full_ood or {}).items():
        ids = torch.tensor(b.tokenizer.encode(load_text_file(path)), dtype=torch.long)
        out[name] = eval_windows(ids, ctx + 1, windows)
    return out


def calib_windows(b, data, windows: int) -> torch.Tensor:
    """Windows from the second half of the validation text: disjoint from the reported ones (the first)."""
    return eval_windows(data.val[len(data.val) // 2:], b.config.model.context + 1, windows)


def meta(b, run) -> dict:
    c = b.config
    return {"run": str(run), "model": c.model.model, "seed": c.train.seed, "train_steps": c.train.steps,
            "system": c.thinking.system if c.model.model == "ebt" else None, "data": c.data.path or c.data.corpus,
            "alpha": float(b.model.step_size().detach()) if is_energy_model(b.model) else None,
            "trained_steps": b.eval_steps if is_energy_model(b.model) else None}


def write(out_dir: Path, run, kind: str, rec: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    name = Path(run).name
    path = out_dir / f"{name}.{kind}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1))
    os.replace(tmp, path)
    return path


class Acc:
    """Summed NLL and tokens per (split, policy)."""

    def __init__(self):
        self.nll, self.tok, self.nfe = defaultdict(float), defaultdict(int), {}
        self.ssum, self.scnt = defaultdict(float), defaultdict(int)

    def stat(self, split, name, values: torch.Tensor):
        """A diagnostic averaged over all its values (e.g. mean energy at a step)."""
        v = values.double()
        v = v[~v.isnan()]
        self.ssum[split, name] += float(v.sum())
        self.scnt[split, name] += v.numel()

    def stats(self) -> dict:
        out = defaultdict(dict)
        for (s, n), c in self.scnt.items():
            out[s][n] = self.ssum[s, n] / max(c, 1)
        return dict(out)

    def add(self, split, name, nll: torch.Tensor, nfe: float):
        self.nll[split, name] += float(nll.double().sum())
        self.tok[split, name] += nll.numel()
        self.nfe[split, name] = nfe

    def ppl(self, split, name):
        return math.exp(self.nll[split, name] / self.tok[split, name])

    def table(self) -> dict:
        out = defaultdict(dict)
        for (s, n) in self.nll:
            out[s][n] = {"ppl": self.ppl(s, n), "nfe": self.nfe[s, n], "nll_sum": self.nll[s, n],
                         "tokens": self.tok[s, n]}
        return dict(out)


def batches(w: torch.Tensor, bs: int):
    for i in range(0, len(w), bs):
        yield i // bs, w[i:i + bs]


def gen(seed: int, i: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + i)


# ------------------------------------------------------------------------------------------ ppl
def cmd_ppl(args):
    ood = dict(kv.split("=", 1) for kv in args.ood)
    for run in args.runs:
        b, data = load_run(run)
        acc = Acc()
        splits = split_windows(b, data, args.windows, ood, dict(kv.split("=", 1) for kv in args.ood_full))
        if args.temps:
            splits = {"calib": calib_windows(b, data, args.calib_windows), **splits}
        for split, w in splits.items():
            for i, batch in batches(w, args.batch_size):
                x, y = batch[:, :-1], batch[:, 1:]
                if is_energy_model(b.model):
                    lg = think_text(b.model, x, steps=b.eval_steps, generator=gen(args.seed, i)).candidates
                else:
                    with torch.no_grad():
                        lg = b.model(x)
                lp = torch.log_softmax(lg.float(), -1)
                nfe = b.eval_steps if is_energy_model(b.model) else 0
                acc.add(split, "trained", px.nll(lp, y), nfe)
                for t in GLOBAL_TEMPS if args.temps else ():
                    acc.add(split, f"trained+T@{t}", px.nll(px.temperature(lp, t), y), nfe)
        rec = {**meta(b, run), "windows": args.windows, "splits": acc.table()}
        if args.temps:
            rec["calibrated"] = calibrate(rec["splits"])
            rec["calib_windows"] = args.calib_windows
        write(Path(args.out), run, "ppl", rec)
        log(Path(run).name, {s: round(v["trained"]["ppl"], 4) for s, v in rec["splits"].items()}, rec.get("calibrated"))


# ------------------------------------------------------------------------------------------ budget
def cmd_budget(args):
    for run in args.runs:
        b, data = load_run(run)
        m, K = b.model, b.eval_steps
        bon_init = "normal" if m.cfg.init == "zeros" else None
        acc = Acc()
        t0 = time.time()
        ood = dict(kv.split("=", 1) for kv in args.ood)
        full = dict(kv.split("=", 1) for kv in args.ood_full)
        for split, w in split_windows(b, data, args.windows, ood, full).items():
            for i, batch in batches(w, args.batch_size):
                x, y = batch[:, :-1], batch[:, 1:]
                a = px.sample_thoughts(m, x, steps=args.mult * K, snapshots=(K, args.mult * K), generator=gen(args.seed, i))
                acc.add(split, "trained", px.nll(torch.log_softmax(a.logits[K][0].float(), -1), y), K)
                acc.add(split, f"{args.mult}x", px.nll(torch.log_softmax(a.logits[args.mult * K][0].float(), -1), y),
                        args.mult * K)
                s = px.sample_thoughts(m, x, steps=K, samples=args.bon, init=bon_init, generator=gen(args.seed, i))
                if bon_init is None:   # sample 0 is the trained-steps candidate
                    assert torch.equal(s.logits[K][0], a.logits[K][0])
                acc.add(split, f"bon{args.bon}", px.nll(px.select(s.logits[K], s.energy[K], rule="min")[0], y),
                        args.bon * K)
                if args.maximal:   # the paper's maximal thinking: best-of-N of trajectories thought mult× longer
                    L = args.mult * K
                    s = px.sample_thoughts(m, x, steps=L, samples=args.bon, init=bon_init, generator=gen(args.seed, i))
                    acc.add(split, f"{args.mult}x bon{args.bon}",
                            px.nll(px.select(s.logits[L], s.energy[L], rule="min")[0], y), args.bon * L)
        rec = {**meta(b, run), "windows": args.windows, "bon_init": bon_init or m.cfg.init, "mult": args.mult,
               "bon": args.bon, "splits": acc.table(), "seconds": time.time() - t0}
        write(Path(args.out), run, "budget", rec)
        log(Path(run).name, {s: {k: round(v["ppl"], 3) for k, v in d.items()} for s, d in rec["splits"].items()})


# ------------------------------------------------------------------------------------------ mechanisms
PARTS = ("plain", "langevin", "annealed", "accept", "tol", "bon", "bon_sigma", "think", "alpha", "stepsel")
ALPHA_MULTS = (0.25, 0.5, 0.75)


def _rank(x: torch.Tensor) -> torch.Tensor:
    return x.argsort(0).argsort(0).double()


def rank_corr_over_samples(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation over the sample dim (dim 0) at every position (ties broken by order)."""
    ra, rb = _rank(a), _rank(b)
    ra, rb = ra - ra.mean(0), rb - rb.mean(0)
    return (ra * rb).sum(0) / ((ra.pow(2).sum(0) * rb.pow(2).sum(0)).sqrt().clamp_min(1e-12))


def mechanisms_on_batch(m, x, y, K, mult, bon, sigma0, tol, g_seed, add, parts=PARTS, stat=lambda *a: None):
    """Every mechanism in ``parts`` on one batch; ``add(name, nll, nfe)``. Grid-valued ones are added under
    ``name@value``. ``plain`` (trained steps and thinking longer) is always run."""
    L = mult * K
    zinit = m.cfg.init == "zeros"
    lsm = lambda t: torch.log_softmax(t.float(), -1)  # noqa: E731
    # A: plain thinking to L steps (every step kept)
    a = px.sample_thoughts(m, x, steps=L, snapshots=tuple(range(1, L + 1)), generator=g_seed())
    base, longer = lsm(a.logits[K][0]), lsm(a.logits[L][0])
    add("trained", px.nll(base, y), K)
    add(f"longer {L}", px.nll(longer, y), L)
    stat("E step 0", a.energy0[0])
    per_step = []
    for k in range(1, L + 1):
        nk = px.nll(lsm(a.logits[k][0]), y)
        per_step.append(nk)
        stat(f"E step {k}", a.energy[k][0])
        stat(f"NLL step {k}", nk)
        stat(f"H step {k}", px.entropy(lsm(a.logits[k][0])))
    add(f"oracle step ≤{L}", torch.stack(per_step).min(0).values, L)
    # noise-free iterate averaging: the mixture of the iterates K+1..L (thinking longer as an ensemble over steps)
    avg = torch.stack([torch.softmax(a.logits[k][0].float(), -1) for k in range(K + 1, L + 1)])
    add(f"longer {L}, iterate mean", px.nll(px.mixture_of_probs(avg), y), L)
    # does the energy fall while the prediction improves? per position, from the trained step to the last
    stat("P(E_L < E_K)", (a.energy[L][0] < a.energy[K][0]).double())
    stat("P(NLL_L < NLL_K)", (per_step[L - 1] < per_step[K - 1]).double())
    for t in GLOBAL_TEMPS:
        add(f"trained+T@{t}", px.nll(px.temperature(base, t), y), K)
        add(f"longer {L}+T@{t}", px.nll(px.temperature(longer, t), y), L)
    for beta in BETAS:
        add(f"trained+energyT@{beta}", px.nll(px.energy_temperature(base, a.energy[K][0], beta), y), K)
        add(f"longer {L}+energyT@{beta}", px.nll(px.energy_temperature(longer, a.energy[L][0], beta), y), L)
    # C: constant Langevin σ0 for L steps, iterates averaged from K+1 on; D: annealed σ0 → 0 (linear)
    for tag, sig in (("langevin", px.sigma_schedule(sigma0, L)),
                     ("annealed", px.sigma_schedule(sigma0, L, "linear", 0.0))):
        if tag not in parts:
            continue
        c = px.sample_thoughts(m, x, steps=L, sigmas=sig, average_from=K + 1, generator=g_seed())
        add(f"{tag} {L}", px.nll(lsm(c.logits[L][0]), y), L)
        add(f"{tag} {L}, iterate mean", px.nll(px.mixture_of_probs(c.mean_probs), y), L)
    # accept-lower and early stop over L steps (the shipped policies)
    if "accept" in parts:
        o = think_text(m, x, steps=L, accept_lower=True, generator=g_seed())
        add(f"accept-lower {L}", px.nll(lsm(o.candidates), y), L + 1)
    if tol is not None and "tol" in parts:
        o = think_text(m, x, steps=L, tol=tol, generator=g_seed())
        add(f"early stop ≤{L}", px.nll(lsm(o.candidates), y), float(o.nfe.double().mean()))
    # H: choosing the step count per position from the energy along one trajectory (no extra thinking beyond L)
    if "stepsel" in parts and K >= 2:
        logp = {k: lsm(a.logits[k][0]) for k in range(1, L + 1)}
        en = {k: a.energy[k][0] for k in range(1, L + 1)}
        add(f"{K - 1} steps (thinking less)", px.nll(logp[K - 1], y), K - 1)
        keep = (en[K] < en[K - 1]).unsqueeze(-1)                  # take step K only where it lowered the energy
        add(f"step {K} only if it lowers E", px.nll(torch.where(keep, logp[K], logp[K - 1]), y), K)
        stack_e = torch.stack([en[k] for k in range(2, L + 1)])    # steps 2..L, (L-1)×B×S
        pick = stack_e.argmin(0)
        stack_lp = torch.stack([logp[k] for k in range(2, L + 1)])
        chosen = torch.gather(stack_lp, 0, pick.unsqueeze(0).unsqueeze(-1).expand(1, *stack_lp.shape[1:]))[0]
        add(f"min-energy step in 2..{L}", px.nll(chosen, y), L)
        stat(f"P(E_{K} < E_{K - 1})", keep.squeeze(-1).double())
    # G: a smaller step size at inference (α × m): does thinking longer then converge instead of oscillating?
    if "alpha" in parts:
        for am in ALPHA_MULTS:
            g = px.sample_thoughts(m, x, steps=L, snapshots=tuple(range(1, L + 1)), alpha_mult=am, generator=g_seed())
            for k in sorted({K, 2 * K, L}):
                add(f"alpha×{am} {k} steps", px.nll(lsm(g.logits[k][0]), y), k)
            add(f"alpha×{am} {L} steps, iterate mean", px.nll(px.mixture_of_probs(
                torch.stack([torch.softmax(g.logits[k][0].float(), -1) for k in range(K + 1, L + 1)])), y), L)
    # F: the combination — N Langevin runs of L steps, each averaged over its iterates K+1..L, then pooled
    # (mixture of the N averages) or one picked by energy + λ·entropy of its last iterate
    if "think" in parts:
        t = px.sample_thoughts(m, x, steps=L, samples=bon, sigmas=[sigma0] * L, average_from=K + 1,
                               init="normal" if zinit else None, generator=g_seed())
        nfe = bon * L
        add(f"think{bon}x{L} mixture of iterate means", px.nll(px.mixture_of_probs(t.mean_probs), y), nfe)
        lg, e = t.logits[L], t.energy[L]
        for lam in ENTROPY_LAMBDAS:
            idx = px.select(lg, e, rule="entropy", lam=lam)[1]
            mp = torch.gather(t.mean_probs, 0, idx.unsqueeze(0).unsqueeze(-1).expand(1, *t.mean_probs.shape[1:]))[0]
            add(f"think{bon}x{L} entropy-picked iterate mean@{lam}", px.nll(torch.log(mp.clamp_min(1e-30)), y), nfe)
    # B: best-of-N at K steps, noise-free (System 1: random N(0,1) starts); E: with Langevin σ0
    for tag, kw in (("", dict(init="normal" if zinit else None)), (" σ", dict(sigmas=[sigma0] * K))):
        if ("bon_sigma" if tag else "bon") not in parts:
            continue
        s = px.sample_thoughts(m, x, steps=K, samples=bon, generator=g_seed(), **kw)
        lg, e = s.logits[K], s.energy[K]
        nfe = bon * K
        add(f"bon{bon}{tag} min", px.nll(px.select(lg, e, rule="min")[0], y), nfe)
        add(f"bon{bon}{tag} max_drop", px.nll(px.select(lg, e, rule="max_drop", energy0=s.energy0)[0], y), nfe)
        add(f"bon{bon}{tag} consensus", px.nll(px.select(lg, e, rule="consensus")[0], y), nfe)
        for lam in ENTROPY_LAMBDAS:
            add(f"bon{bon}{tag} entropy@{lam}", px.nll(px.select(lg, e, rule="entropy", lam=lam)[0], y), nfe)
        mix = px.pool(lg, rule="mixture")
        add(f"bon{bon}{tag} mixture", px.nll(mix, y), nfe)
        per = torch.stack([px.nll(lsm(lg[i]), y) for i in range(lg.shape[0])])        # N×B×S
        add(f"bon{bon}{tag} oracle", per.min(0).values, nfe)
        stat(f"bon{bon}{tag} rho(E, NLL) over samples", rank_corr_over_samples(e, per))
        stat(f"bon{bon}{tag} rho(-H, NLL) over samples", rank_corr_over_samples(-px.entropy(lsm(lg)), per))
        stat(f"bon{bon}{tag} rho(E, -H) over samples", rank_corr_over_samples(e, -px.entropy(lsm(lg))))
        stat(f"bon{bon}{tag} NLL spread over samples", per.std(0))
        scale = float(e.std(0).median().clamp_min(1e-8))
        for t in SOFTMIN_TEMPS:
            add(f"bon{bon}{tag} softmin@{t}", px.nll(px.pool(lg, e, rule="softmin", temp=t * scale), y), nfe)
        dis = px.disagreement(lg)
        for beta in BETAS:
            add(f"bon{bon}{tag} mixture+disagreeT@{beta}", px.nll(px.energy_temperature(mix, dis, beta), y), nfe)
        for t in GLOBAL_TEMPS:
            add(f"bon{bon}{tag} mixture+T@{t}", px.nll(px.temperature(mix, t), y), nfe)


def cmd_mechanisms(args):
    ood = dict(kv.split("=", 1) for kv in args.ood)
    for run in args.runs:
        b, data = load_run(run)
        m, K = b.model, args.at_steps or b.eval_steps
        sigma0 = args.sigma if args.sigma is not None else (b.config.thinking.langevin_sigma or 0.5)
        splits = {"calib": calib_windows(b, data, args.calib_windows), **split_windows(b, data, args.windows, ood, dict(kv.split("=", 1) for kv in args.ood_full))}
        parts = tuple(args.parts.split(","))
        if not set(parts) <= set(PARTS):
            raise SystemExit(f"--parts: choose from {', '.join(PARTS)}")
        tol = None
        if "tol" in parts:
            first = splits["calib"][: args.batch_size, :-1]
            tol = auto_tolerances(m, first, K, quantiles=(0.5,), steps=args.mult * K)[0]
        acc = Acc()
        t0 = time.time()
        for split, w in splits.items():
            for i, batch in batches(w, args.batch_size):
                x, y = batch[:, :-1], batch[:, 1:]
                mechanisms_on_batch(m, x, y, K, args.mult, args.bon, sigma0, tol,
                                    lambda: gen(args.seed, i),
                                    lambda name, nll, nfe: acc.add(split, name, nll, nfe), parts,
                                    lambda name, v: acc.stat(split, name, v))
            log(Path(run).name, split, f"trained {acc.ppl(split, 'trained'):.3f}", f"{time.time() - t0:.0f}s")
        rec = {**meta(b, run), "at_steps": K, "windows": args.windows, "calib_windows": args.calib_windows, "mult": args.mult,
               "bon": args.bon, "sigma0": sigma0, "tol": tol, "parts": list(parts), "ood_files": ood, "splits": acc.table(), "stats": acc.stats(),
               "seconds": time.time() - t0}
        rec["calibrated"] = calibrate(rec["splits"])
        write(Path(args.out), run, "mechanisms", rec)


# ------------------------------------------------------------------------------------------ gate
GATE_QUANTILES = (0.5, 0.9, 0.99)


def cmd_gate(args):
    """An energy-gated step count: a window whose mean energy (at step K, or at K−1) is above the q-quantile of
    the in-distribution calibration windows' is judged out of distribution and stops at K−1 steps; the others
    take the trained K. The threshold comes from the calibration windows only."""
    ood = dict(kv.split("=", 1) for kv in args.ood)
    full = dict(kv.split("=", 1) for kv in args.ood_full)
    for run in args.runs:
        b, data = load_run(run)
        m, K = b.model, b.eval_steps
        splits = {"calib": calib_windows(b, data, args.calib_windows), **split_windows(b, data, args.windows, ood, full)}
        got = {}
        for split, w in splits.items():
            cols = defaultdict(list)
            for i, batch in batches(w, args.batch_size):
                x, y = batch[:, :-1], batch[:, 1:]
                a = px.sample_thoughts(m, x, steps=K, snapshots=tuple(range(1, K + 1)), generator=gen(args.seed, i))
                cols["eK"].append(a.energy[K][0].double().mean(-1))
                cols["eK1"].append(a.energy[K - 1][0].double().mean(-1))
                cols["nK"].append(px.nll(torch.log_softmax(a.logits[K][0].float(), -1), y).double())
                cols["nK1"].append(px.nll(torch.log_softmax(a.logits[K - 1][0].float(), -1), y).double())
            got[split] = {k: torch.cat(v) for k, v in cols.items()}
        rec = {**meta(b, run), "windows": args.windows, "calib_windows": args.calib_windows, "splits": {},
               "thresholds": {}}
        for sig in ("eK", "eK1"):
            for q in GATE_QUANTILES:
                rec["thresholds"][f"{sig}@{q}"] = float(torch.quantile(got["calib"][sig], q))
        for split, g in got.items():
            tok = g["nK"].numel()
            out = {"trained": {"ppl": math.exp(float(g["nK"].sum()) / tok), "nfe": K},
                   f"{K - 1} steps": {"ppl": math.exp(float(g["nK1"].sum()) / tok), "nfe": K - 1}}
            for name, thr in rec["thresholds"].items():
                sig = name.split("@")[0]
                ood_w = (g[sig] > thr).unsqueeze(-1)
                nll = torch.where(ood_w, g["nK1"], g["nK"])
                out[f"gate {name}"] = {"ppl": math.exp(float(nll.sum()) / tok), "nfe": K,
                                       "fraction_gated": float(ood_w.double().mean())}
            rec["splits"][split] = out
        write(Path(args.out), run, "gate", rec)
        log(Path(run).name, {s: {k: round(v["ppl"], 3) for k, v in d.items()} for s, d in rec["splits"].items()})


def calibrate(splits: dict) -> dict:
    """For each grid family ``name@value``: the value with the lowest calibration perplexity."""
    fams = defaultdict(list)
    for name in splits["calib"]:
        if "@" in name:
            fam, v = name.rsplit("@", 1)
            fams[fam].append((splits["calib"][name]["ppl"], float(v), name))
    return {fam: min(vals)[2] for fam, vals in fams.items()}


# ------------------------------------------------------------------------------------------ tables
def _mr(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—"
    mean = sum(vals) / len(vals)
    half = (max(vals) - min(vals)) / 2
    return f"{mean:.3f} ± {half:.3f}" if len(vals) > 1 else f"{mean:.3f}"


def cmd_table(args):
    recs = [json.loads(Path(p).read_text()) for p in args.files]
    groups = defaultdict(list)
    for r in recs:
        key = (r["data"], r["model"], r["system"], r["train_steps"])
        groups[key].append(r)
    for key, rs in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        rs.sort(key=lambda r: r["seed"])
        print(f"\n### {key}  seeds {[r['seed'] for r in rs]}")
        splits = [s for s in rs[0]["splits"] if s != "calib"]
        names = list(rs[0]["splits"][splits[0]])
        if "calibrated" in rs[0]:
            names = [n for n in names if "@" not in n] + sorted(set(rs[0]["calibrated"].values()))
        print("| policy | NFE | " + " | ".join(f"{s} ppl | {s} Δ%" for s in splits) + " |")
        print("|---|---|" + "---|---|" * len(splits))
        for n in names:
            cells = []
            for s in splits:
                def pick(r, n=n):
                    if "@" in n and "calibrated" in r:   # each seed at its own calibrated value
                        fam = n.rsplit("@", 1)[0]
                        n = r["calibrated"].get(fam, n)
                    return r["splits"][s].get(n)
                ppl = [pick(r)["ppl"] for r in rs if pick(r)]
                gain = [100 * (r["splits"][s]["trained"]["ppl"] - pick(r)["ppl"]) / r["splits"][s]["trained"]["ppl"]
                        for r in rs if pick(r)]
                cells += [_mr(ppl), _mr(gain).replace(".000", "")]
            label = n.rsplit("@", 1)[0] + " (calibrated)" if "@" in n and "calibrated" in rs[0] else n
            nfe = rs[0]["splits"][splits[0]][n]["nfe"] if n in rs[0]["splits"][splits[0]] else ""
            print(f"| {label} | {nfe if isinstance(nfe, int) else (f'{nfe:.2f}' if nfe != '' else '')} | " +
                  " | ".join(cells) + " |")
        if "calibrated" in rs[0]:
            print("calibrated values: " + "; ".join(f"seed {r['seed']}: " + ", ".join(
                f"{k}={v.rsplit('@', 1)[1]}" for k, v in sorted(r["calibrated"].items())) for r in rs))


def cmd_budget_table(args):
    """Rows = training budget; per split: T++ ppl, and per system the trained-steps ppl and the % gains of
    thinking longer and best-of-N (mean ± half-range over seeds)."""
    recs = [json.loads(Path(p).read_text()) for p in args.files]
    by = defaultdict(list)
    for r in recs:
        by[(r["system"] or "tpp", r["train_steps"])].append(r)
    budgets = sorted({k[1] for k in by})
    systems = [s for s in ("s1", "s2") if any(k[0] == s for k in by)]
    for split in ("val", "pydoc"):
        head = f"| {split}: steps (tokens) | T++ |"
        for s in systems:
            head += f" {s.upper()} trained | {s.upper()} 4× Δ% | {s.upper()} BoN-8 Δ% | {s.upper()} ÷ T++ |"
        print("\n" + head)
        print("|" + "---|" * (2 + 4 * len(systems)))
        for n in budgets:
            tpp = [r["splits"][split]["trained"]["ppl"] for r in by.get(("tpp", n), [])]
            row = f"| {n} ({n * 16 * 64 / 1e6:.2f} M) | {_mr(tpp)} |"
            for s in systems:
                rs = by.get((s, n), [])
                tr = [r["splits"][split]["trained"]["ppl"] for r in rs]
                g4 = [100 * (1 - r["splits"][split][f"{r['mult']}x"]["ppl"] / r["splits"][split]["trained"]["ppl"]) for r in rs]
                gb = [100 * (1 - r["splits"][split][f"bon{r['bon']}"]["ppl"] / r["splits"][split]["trained"]["ppl"]) for r in rs]
                ratio = [t / (sum(tpp) / len(tpp)) for t in tr] if tpp else []
                row += f" {_mr(tr)} (n={len(rs)}) | {_mr(g4)} | {_mr(gb)} | {_mr(ratio)} |"
            print(row)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("ppl", "budget", "mechanisms", "gate"):
        p = sub.add_parser(name)
        p.add_argument("runs", nargs="+")
        p.add_argument("--out", required=True)
        p.add_argument("--windows", type=int, default=256)
        p.add_argument("--batch-size", type=int, default=16)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--mult", type=int, default=4, help="thinking longer = mult × trained steps")
        p.add_argument("--bon", type=int, default=8)
        p.add_argument("--ood", action="append", default=[], metavar="NAME=FILE")
        p.add_argument("--ood-full", action="append", default=[], metavar="NAME=FILE",
                       help="an OOD set scored from the whole file (windows from its start)")
        p.add_argument("--calib-windows", type=int, default=64)
        if name == "budget":
            p.add_argument("--maximal", action="store_true", help="also best-of-N at mult× steps (maximal thinking)")
        if name == "ppl":
            p.add_argument("--temps", action="store_true", help="also a global temperature calibrated on val")
        if name == "mechanisms":
            p.add_argument("--sigma", type=float, default=None, help="Langevin σ0 (default: trained σ, else 0.5)")
            p.add_argument("--at-steps", type=int, default=None, help="the 'trained' step count K (default: the run's)")
            p.add_argument("--parts", default=",".join(PARTS), help="mechanisms to run (default all): " + ",".join(PARTS))
    p = sub.add_parser("table")
    p.add_argument("files", nargs="+")
    p = sub.add_parser("budget-table")
    p.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(True)
    {"ppl": cmd_ppl, "budget": cmd_budget, "mechanisms": cmd_mechanisms, "gate": cmd_gate, "table": cmd_table,
     "budget-table": cmd_budget_table}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
