"""Downstream tasks (the paper's Table 3 protocol): teacher-forced perplexity and multiple-choice accuracy.

For every example (:class:`ebtkit.data.bigbench.Example`) and every model — an EBT under each inference
policy (:class:`ebtkit.eval.inference.Policy`: the trained steps, thinking longer, best-of-N), or a
Transformer++ (one forward) — this computes:

* **Perplexity** ``exp(Σ NLL / Σ tokens)`` of the teacher-forced text ``"Question: {q}\\nAnswer: {a}"``
  over **all** its tokens (every token that has a predecessor in the window), as the paper's code scores its
  downstream sets (PAPER_NOTES §4.4: all non-pad tokens). ``answer_ppl`` is the same over the answer's tokens
  only. Sums run over tokens, never an average of per-example perplexities.
* **Multiple-choice accuracy by likelihood** (examples with choices): the choice with the lowest **mean**
  NLL over its own tokens (length-normalised) after the prompt, thought about with the policy.
* **Multiple-choice accuracy by energy** (EBTs; "energy as a verifier"): the choice with the lowest **mean**
  energy ``E(context, onehot(token))`` over its tokens, on the final landscape. The verifier scores the
  choice's tokens themselves, so it takes no thinking and is the same for every policy. (The final energy
  *after* thinking is the energy of the model's own prediction ``ŷ``: it never sees the token it predicts, so
  for a one-token choice it is the same for every choice — it measures confidence, not the choice.)

Ties (equal scores) go to the choice listed first; ``ties`` counts the examples where the best score is
shared. An example counts as right when the picked choice is one of its right ones (the maximum score).

**Tokens.** The prompt ``"Question: {q}\\nAnswer: "`` and the answer (or choice) are encoded separately and
concatenated, so the answer's tokens are the same whatever precedes them (for the byte tokenizer this is the
encoding of the whole text). **Context.** A window holds at most ``context + 1`` tokens (``context``
observed). Longer texts are **left-truncated**: the question loses its start, the answer is kept. For multiple
choice, the prompt is cut once per example to ``context + 1 − (longest choice)`` tokens, so that every
choice of an example is scored after the same context (a choice longer than the context is itself
left-truncated). ``truncated`` counts the examples whose text was cut.

**Shared predictions.** Within an example, every distinct prediction context (the observed tokens before a
scored token) is thought about once: all choices share the prediction of their first token, ``") )"`` and
``") ]"`` share that of their second, and so on (Dyck's 84 choices need 41 predictions instead of 372). Choices
are therefore compared on the same thought candidates, and only the token each one puts there differs.

**Exact and deterministic.** Windows are batched in the examples' order (``batch_size`` text windows, or
``MC_BATCH × batch_size`` choice windows; right-padded, which causal attention and the EBT's per-position
predictions make invisible to earlier positions); every (model, policy, measurement) draws its initial
candidates from its own generator seeded with ``seed``, so the numbers depend only on the examples, the batch
size and the seed, and all policies see the same noise where they draw the same amount of it. A
Transformer++ (and an EBT from a zero start without noise) gives the same numbers for any batch size, up to
the order of floating-point sums.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.thinking import is_energy_model
from .inference import Policy, think_text
from .metrics import safe_exp

BON = 4             # default best-of-N candidates
LONGER = 4          # default "think longer" factor over the trained steps


@dataclass(frozen=True)
class Scorer:
    """One column of the results: a model under one policy (``policy`` None: a Transformer++ forward)."""

    model_label: str
    model: object
    policy: Policy | None = None
    policy_label: str = "forward"
    verifier: bool = False          # also score the choices by energy (the EBT's trained-policy row)

    @property
    def label(self) -> str:
        return f"{self.model_label}, {self.policy_label}" if self.policy is not None else self.model_label


def default_policies(trained_steps: int, random_start: bool, steps: list[int] | None = None,
                     bon: int = BON) -> list[tuple[str, Policy]]:
    """Policies at each step count (default: the trained steps and :data:`LONGER`× them), then, when the start
    is random (else every sample would be the same), best-of-``bon`` at each step count."""
    steps = steps or [trained_steps, LONGER * trained_steps]
    out = []
    for n in ([1, bon] if random_start and bon > 1 else [1]):
        for s in steps:
            p = Policy(steps=s, samples=n)
            out.append((p.label() + (" (trained)" if s == trained_steps and n == 1 else ""), p))
    return out


def random_start(model) -> bool:
    """Whether thinking starts from random candidates (else best-of-N repeats one identical sample)."""
    return getattr(model.cfg, "init", "normal") != "zeros"


# ------------------------------------------------------------------------------------------ windows
@dataclass
class Window:
    """Observed tokens ``x`` (≤ context), the scored targets (the tokens after ``rows``), answer span."""

    tokens: list[int]               # the window (x + the last target)
    rows: list[int]                 # observed positions whose next token is scored
    answer: int                     # how many of the scored targets (the last ones) belong to the answer
    truncated: bool


def text_window(prompt: list[int], answer: list[int], context: int) -> Window:
    """Prompt + answer, left-truncated to ``context + 1`` tokens; every token with a predecessor is scored."""
    ids = prompt + answer
    cut = max(0, len(ids) - (context + 1))
    w = ids[cut:]
    return Window(w, list(range(len(w) - 1)), min(len(answer), len(w) - 1), cut > 0)


def choice_windows(prompt: list[int], choices: list[list[int]], context: int) -> tuple[list[Window], bool]:
    """One window per choice after the same (left-truncated) prompt; only the choice's tokens are scored."""
    keep = max(1, context + 1 - max(len(c) for c in choices))
    p = prompt[-keep:]
    out = []
    for c in choices:
        ids = p + c
        w = ids[max(0, len(ids) - (context + 1)):]
        n = min(len(c), len(w) - 1)
        out.append(Window(w, list(range(len(w) - 1 - n, len(w) - 1)), n, False))
    truncated = len(p) < len(prompt) or any(len(p) + len(c) > context + 1 for c in choices)
    return out, truncated


def collate(windows: list[Window], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` (B×S, right-padded with 0), ``rows`` (B×R, padded by repeating the last row), ``targets`` (B×R)
    and ``mask`` (B×R) of the real rows."""
    S = max(len(w.tokens) - 1 for w in windows)
    R = max(len(w.rows) for w in windows)
    x = torch.zeros(len(windows), S, dtype=torch.long)
    rows = torch.zeros(len(windows), R, dtype=torch.long)
    mask = torch.zeros(len(windows), R, dtype=torch.bool)
    for b, w in enumerate(windows):
        x[b, :len(w.tokens) - 1] = torch.tensor(w.tokens[:-1])
        r = w.rows + [w.rows[-1]] * (R - len(w.rows))
        rows[b] = torch.tensor(r)
        mask[b, :len(w.rows)] = True
    full = torch.cat([x, torch.zeros(len(windows), 1, dtype=torch.long)], 1)
    for b, w in enumerate(windows):
        full[b, len(w.tokens) - 1] = w.tokens[-1]
    targets = torch.gather(full, 1, rows + 1)
    return x.to(device), rows.to(device), targets.to(device), mask.to(device)


# ------------------------------------------------------------------------------------------ scoring
MC_CHUNK = 64       # multiple-choice examples per pass (bounds the kept log-probabilities)
MC_BATCH = 4        # choice windows per batch = MC_BATCH × batch_size (each scores only a few rows)


def _contiguous(windows: list[Window]) -> bool:
    return all(w.rows == list(range(len(w.tokens) - 1)) for w in windows)


def score_windows(scorer: Scorer, windows: list[Window], *, batch_size: int, generator: torch.Generator,
                  logp: bool = False) -> dict[str, torch.Tensor]:
    """Per scored row (flattened over windows, in order): ``nll`` of the window's own next token and ``nfe``
    (float64, CPU); with ``logp`` also the row's log-probabilities (N×V), for scoring other next tokens."""
    model = scorer.model
    dev = next(model.parameters()).device
    out = {"nll": [], "nfe": [], **({"logp": []} if logp else {})}
    for i in range(0, len(windows), batch_size):
        chunk = windows[i:i + batch_size]
        x, rows, targets, mask = collate(chunk, dev)
        if is_energy_model(model):
            r = None if _contiguous(chunk) and rows.shape[1] == x.shape[1] else rows
            res = think_text(model, x, generator=generator, rows=r, **scorer.policy.kwargs())
            logits, nfe = res.candidates, res.nfe
        else:
            with torch.no_grad():
                logits = model(x)
            logits = torch.gather(logits, 1, rows[..., None].expand(-1, -1, logits.shape[-1]))
            nfe = torch.zeros_like(targets)
        logits = logits.detach()
        lp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)   # fp64 kept
        out["nll"].append(-torch.gather(lp, -1, targets[..., None])[..., 0].double()[mask].cpu())
        out["nfe"].append(nfe.double()[mask].cpu())
        if logp:
            out["logp"].append(lp[mask].cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def verifier_energies(model, windows: list[Window], *, batch_size: int) -> torch.Tensor:
    """Per scored row (flattened, in order): ``E(context, onehot(next token))`` on the final landscape."""
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(windows), batch_size):
        chunk = windows[i:i + batch_size]
        x, rows, targets, mask = collate(chunk, dev)
        r = None if _contiguous(chunk) and rows.shape[1] == x.shape[1] else rows
        dtype = next(model.parameters()).dtype
        with torch.no_grad():
            fn = model.energy_fn(x, rows=r)
            e = fn(F.one_hot(targets, model.cfg.vocab_size).to(dtype), model.cfg.n_landscapes - 1)
        out.append(e.double()[mask].cpu())
    return torch.cat(out)


def pick(scores: list[float]) -> tuple[int, bool]:
    """Index of the lowest score (the first one listed on a tie) and whether the minimum is shared."""
    best = min(range(len(scores)), key=lambda i: (scores[i], i))
    return best, sum(1 for s in scores if s == scores[best]) > 1


def evaluate_examples(scorer: Scorer, examples: list, tokenizer, context: int, *, batch_size: int = 16,
                      seed: int = 0) -> dict:
    """Teacher-forced perplexity and (when examples have choices) multiple-choice accuracy of one scorer.

    Returns ``ppl``, ``nll_sum``, ``tokens``, ``answer_ppl``, ``answer_tokens``, ``nfe_per_token``,
    ``truncated``; with choices also ``mc_examples``, ``mc_acc`` (lowest mean NLL), ``mc_ties``,
    ``mc_truncated`` and, for a verifier row, ``mc_acc_energy`` and ``mc_ties_energy`` (lowest mean energy)."""
    if context < 1 or batch_size < 1:
        raise ValueError("context and batch_size must be >= 1")
    enc = lambda s: list(tokenizer.encode(s))  # noqa: E731
    was = scorer.model.training
    scorer.model.eval()
    try:
        prompts = [enc(e.prompt) for e in examples]
        wins = [text_window(p, enc(e.answer), context) for p, e in zip(prompts, examples)]
        r = score_windows(scorer, wins, batch_size=batch_size, generator=torch.Generator().manual_seed(seed))
        nll, n = r["nll"], len(r["nll"])
        ans = torch.cat([torch.arange(len(w.rows)) >= len(w.rows) - w.answer for w in wins]) if wins else nll.bool()
        res = {"ppl": safe_exp(float(nll.sum()) / max(n, 1)), "nll_sum": float(nll.sum()), "tokens": n,
               "answer_ppl": safe_exp(float(nll[ans].sum()) / max(int(ans.sum()), 1)),
               "answer_tokens": int(ans.sum()), "nfe_per_token": float(r["nfe"].sum()) / max(n, 1),
               "truncated": sum(w.truncated for w in wins)}
        mc = [(prompts[k], [enc(c) for c in e.choices], e.correct) for k, e in enumerate(examples) if e.choices]
        if mc:
            res.update(multiple_choice(scorer, mc, context, batch_size=batch_size, seed=seed))
    finally:
        scorer.model.train(was)
    return res


def choice_plan(prompt: list[int], choices: list[list[int]], context: int):
    """The windows of one example's choices, and the thinking work they need: every distinct prediction
    context (the observed tokens before a scored token) once. Choices sharing a prefix (``") )"`` and
    ``") ]"``; every choice's first token) share its prediction, so they are compared on the same thought
    candidate. Returns ``(windows, think_windows, refs, truncated)``: ``refs[c]`` lists, per token of choice
    ``c``, ``(slot, token)`` — the slot numbers the rows of ``think_windows`` in order."""
    wins, cut = choice_windows(prompt, choices, context)
    slots: dict[tuple, int] = {}
    think, refs = [], []
    for w in wins:
        new, ref = [], []
        for r in w.rows:
            key = tuple(w.tokens[:r + 1])
            if key not in slots:
                slots[key] = len(slots)
                new.append(r)
            ref.append((slots[key], w.tokens[r + 1]))
        if new:
            think.append(Window(w.tokens, new, len(new), False))
        refs.append(ref)
    return wins, think, refs, cut


def choice_scores(scorer: Scorer, items: list, context: int, *, batch_size: int, generator: torch.Generator):
    """Mean NLL (and, for a verifier row, mean energy) of every choice of every item ``(prompt, choices)``:
    ``(nll, energy, truncated)`` with ``nll[i][c]`` a float (``energy`` None unless a verifier row)."""
    plans = [choice_plan(p, cs, context) for p, cs in items]
    think = [w for _, t, _, _ in plans for w in t]
    logp = score_windows(scorer, think, batch_size=MC_BATCH * batch_size, generator=generator, logp=True)["logp"]
    verify = scorer.verifier and is_energy_model(scorer.model)
    energies = verifier_energies(scorer.model, [w for ws, _, _, _ in plans for w in ws],
                                 batch_size=MC_BATCH * batch_size) if verify else None
    nll, energy, base, pos = [], [], 0, 0
    for wins, t, refs, _ in plans:
        nll.append([float(sum(-logp[base + s, tok] for s, tok in ref)) / len(ref) for ref in refs])
        base += sum(len(w.rows) for w in t)
        if verify:
            means = []
            for w in wins:
                means.append(float(energies[pos:pos + len(w.rows)].mean()))
                pos += len(w.rows)
            energy.append(means)
    return nll, energy if verify else None, sum(cut for *_, cut in plans)


def multiple_choice(scorer: Scorer, items: list, context: int, *, batch_size: int = 16, seed: int = 0) -> dict:
    """Accuracy over items ``(prompt tokens, choice tokens, right indices)``: the lowest mean NLL, and for a
    verifier row the lowest mean energy; ties to the first choice listed."""
    gen = torch.Generator().manual_seed(seed)
    keys = ["nll"] + (["energy"] if scorer.verifier and is_energy_model(scorer.model) else [])
    right, ties, truncated = dict.fromkeys(keys, 0), dict.fromkeys(keys, 0), 0
    for i in range(0, len(items), MC_CHUNK):
        chunk = items[i:i + MC_CHUNK]
        nll, energy, cut = choice_scores(scorer, [(p, cs) for p, cs, _ in chunk], context, batch_size=batch_size,
                                         generator=gen)
        truncated += cut
        for key, scores in (("nll", nll), ("energy", energy)):
            if key not in keys:
                continue
            for (_, _, correct), sc in zip(chunk, scores):
                best, tie = pick(sc)
                right[key] += best in correct
                ties[key] += tie
    out = {"mc_examples": len(items), "mc_acc": right["nll"] / len(items), "mc_ties": ties["nll"],
           "mc_truncated": truncated}
    if "energy" in keys:
        out.update(mc_acc_energy=right["energy"] / len(items), mc_ties_energy=ties["energy"])
    return out


def chance(examples: list) -> float | None:
    """Expected accuracy of a uniform random pick (mean over examples of right choices / choices)."""
    mc = [e for e in examples if e.choices]
    return sum(len(e.correct) / len(e.choices) for e in mc) / len(mc) if mc else None


def evaluate_task(scorers: list[Scorer], task, tokenizer, context: int, *, batch_size: int = 16, seed: int = 0,
                  log=None) -> dict:
    """Every scorer on one task's examples: ``{"task", "source", "examples", "mc_examples", "chance",
    "rows": [{"model", "policy", **metrics}]}``."""
    rows = []
    for s in scorers:
        m = evaluate_examples(s, task.examples, tokenizer, context, batch_size=batch_size, seed=seed)
        rows.append({"model": s.model_label, "policy": s.policy_label,
                     "policy_kwargs": s.policy.kwargs() if s.policy is not None else None, **m})
        if log is not None:
            acc = f", acc {m['mc_acc']:.3f}" if "mc_acc" in m else ""
            log(f"{task.name}: {s.label}: ppl {_num(m['ppl'])}{acc}")
    return {"task": task.name, "source": task.source, "examples": len(task.examples),
            "mc_examples": task.multiple_choice, "chance": chance(task.examples), "rows": rows}


def format_table(tasks: list[dict]) -> str:
    """One table: task, examples, model/policy, perplexity (all tokens, answer only), MC accuracy by NLL and
    by energy, NFEs per token."""
    head = (f"{'task':<34}{'examples':>9}  {'model / policy':<30}{'ppl':>10}{'ans ppl':>10}{'acc':>7}"
            f"{'acc(E)':>8}{'NFE/tok':>9}")
    lines = [head, "-" * len(head)]
    for t in tasks:
        for i, r in enumerate(t["rows"]):
            name = t["task"] if i == 0 else ""
            n = f"{t['examples']}" if i == 0 else ""
            label = r["model"] if r["policy_kwargs"] is None else f"{r['model']}, {r['policy']}"
            acc = f"{r['mc_acc']:.3f}" if "mc_acc" in r else "-"
            acce = f"{r['mc_acc_energy']:.3f}" if "mc_acc_energy" in r else "-"
            lines.append(f"{name[:33]:<34}{n:>9}  {label[:29]:<30}{_num(r['ppl']):>10}{_num(r['answer_ppl']):>10}"
                         f"{acc:>7}{acce:>8}{r['nfe_per_token']:>9.1f}")
        if t.get("chance") is not None:
            lines.append(f"{'':<34}{'':>9}  {'(chance)':<30}{'':>10}{'':>10}{t['chance']:>7.3f}")
    return "\n".join(lines)


def _num(v: float) -> str:
    """At most 9 characters: 3 decimals below 1000, 1 below 10⁶, else 3 significant digits."""
    if not math.isfinite(v) or v >= 1e6:
        return f"{v:.3g}"
    return f"{v:.3f}" if v < 1000 else f"{v:.1f}"


__all__ = ["Scorer", "default_policies", "random_start", "evaluate_examples", "evaluate_task", "format_table",
           "text_window", "choice_windows", "choice_plan", "choice_scores", "multiple_choice", "pick", "chance"]
