"""Experimental System 2 mechanisms for text EBTs (issue 16, item 3): ways extra thinking compute might pay.

Everything here is inference-side and works on a trained text EBT as it is; nothing changes a default. The
study that measures these (``scripts/thinking_budget.py``) decides whether any of them should become a named
policy in :mod:`ebtkit.eval.inference`.

The building block is :func:`sample_thoughts`: ``N`` independent thinking runs over the same tokens (fresh
initial candidates and Langevin noise per run, drawn in order from one generator), each with a per-step noise
schedule, that returns the candidates at chosen step counts (``snapshots``), the running mean of the iterates'
probabilities from a given step on, and the energies needed to choose between runs. Every quantity is per
position; energies are compared only between runs at the same position (they carry a context-dependent offset).

Mechanisms (each a small function of a :class:`Thoughts`; all return log-probabilities ``B×S×V``):

* **noise schedules** (:func:`sigma_schedule`): constant (the paper's inference Langevin), none, or annealed
  linearly / geometrically from ``σ₀`` to ``σ_end`` — Langevin that explores early and settles late;
* **iterate averaging** (``Thoughts.mean_probs``): the mixture ``(1/m) Σ_k softmax(ŷ_k)`` over the last ``m``
  iterates of one run — thinking longer used as an ensemble rather than as a longer descent;
* **best-of-N selection** (:func:`select`), per position:
  ``"min"`` lowest final energy (the paper's Alg. 2); ``"max_drop"`` largest ``E(ŷ₀) − E(ŷ_N)``;
  ``"entropy"`` lowest ``E − λ·H(p)`` (an energy that no longer rewards overconfidence: a sharper candidate must
  beat a softer one by ``λ`` nats of entropy); ``"consensus"`` the run that agrees most with the others
  (largest mean Bhattacharyya overlap ``Σ_v √(p_i p_j)``), a medoid that ignores energies altogether;
* **pooling** (:func:`pool`): the uniform mixture of the ``N`` runs' distributions (agreement as an ensemble), or
  a softmin-weighted mixture ``Σ_i w_i p_i``, ``w = softmax(−E_final / T)`` (``T → 0``: min-energy selection;
  ``T → ∞``: the uniform mixture) — an energy temperature that can be calibrated;
* **temperatures** (:func:`temperature`, :func:`energy_temperature`): a global logit temperature (the control),
  and a per-position temperature ``T = exp(β·z)`` from an energy-derived signal ``z`` standardised within each
  window — the final energy, or the runs' disagreement (mixture entropy minus mean entropy, i.e. the
  Jensen–Shannon spread of the ``N`` thoughts) — so only positions the model is unsure about are softened.

Calibrated knobs (λ, T, β) must be fitted on windows disjoint from the ones reported (the script does this on
a separate part of the validation text).

Research code, not part of the installed package (issue 22): ``scripts/thinking_budget.py`` imports it from
this folder, ``tests/test_policies_extra.py`` by its path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ebtkit.core.recipe import landscape_schedule
from ebtkit.core.thinking import think
from ebtkit.eval.inference import resolve_alpha

SELECT_RULES = ("min", "max_drop", "entropy", "consensus")
POOL_RULES = ("mixture", "softmin")
SCHEDULES = ("constant", "linear", "geometric")


def sigma_schedule(sigma: float, steps: int, kind: str = "constant", sigma_end: float = 0.0) -> list[float]:
    """Per-step Langevin σ for ``steps`` steps: ``constant`` σ; ``linear`` from σ to ``sigma_end`` (both
    included); ``geometric`` from σ to ``sigma_end`` (> 0) with a constant ratio."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; choose from {', '.join(SCHEDULES)}")
    if sigma < 0 or sigma_end < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}, {sigma_end}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if kind == "constant" or steps == 1:
        return [float(sigma)] * steps
    if kind == "linear":
        return [sigma + (sigma_end - sigma) * k / (steps - 1) for k in range(steps)]
    if sigma == 0 or sigma_end == 0:
        raise ValueError("a geometric schedule needs sigma > 0 and sigma_end > 0")
    r = (sigma_end / sigma) ** (1.0 / (steps - 1))
    return [sigma * r ** k for k in range(steps)]


@dataclass
class Thoughts:
    """``N`` thinking runs over the same ``B×S`` positions.

    logits: ``{steps: N×B×S×V}`` the candidates (as logits) after each snapshot step count.
    energy: ``{steps: N×B×S}`` noise-free energy ``E(ŷ_steps)`` of each snapshot, on the last landscape used.
    energy0: ``N×B×S`` energy of the initial candidate (first step's input, after its noise).
    mean_probs: ``N×B×S×V`` mean of ``softmax(ŷ_k)`` over ``k = average_from .. steps`` (None if not asked).
    nfe: thinking steps taken per run (one NFE each per position).
    """

    logits: dict[int, torch.Tensor]
    energy: dict[int, torch.Tensor]
    energy0: torch.Tensor
    mean_probs: torch.Tensor | None = None
    nfe: int = 0
    sigmas: list[float] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return self.energy0.shape[0]


@torch.no_grad()
def _energy_at(fn, update, y: torch.Tensor, landscape: int) -> torch.Tensor:
    return fn(update.point(y), landscape).detach()


def sample_thoughts(model, tokens: torch.Tensor, *, steps: int, samples: int = 1, sigmas: list[float] | None = None,
                    snapshots: tuple[int, ...] | None = None, average_from: int | None = None,
                    alpha_mult: float | None = None, init: str | None = None, init_scale: float | None = None,
                    generator: torch.Generator | None = None) -> Thoughts:
    """Run ``samples`` independent thinking runs of ``steps`` steps on ``tokens`` (B×S observed ids).

    ``sigmas``: per-step Langevin σ (default none). ``snapshots``: step counts whose candidates are kept (default
    ``(steps,)``). ``average_from``: keep the mean of the iterates' probabilities from that step count to the
    last. ``init``: ``"normal"`` / ``"zeros"`` overrides the model's initial candidate (a System 1 model starts
    from zeros, so its runs differ only through noise unless ``init="normal"``). With constant ``sigmas`` and one
    sample this is exactly :func:`ebtkit.eval.inference.think_text` with the same generator.
    """
    if steps < 1 or samples < 1:
        raise ValueError(f"steps and samples must be >= 1, got {steps}, {samples}")
    sigmas = list(sigmas) if sigmas is not None else [0.0] * steps
    if len(sigmas) != steps:
        raise ValueError(f"{len(sigmas)} sigmas for {steps} steps")
    snapshots = tuple(sorted(set(snapshots or (steps,))))
    if snapshots[0] < 1 or snapshots[-1] > steps:
        raise ValueError(f"snapshots must lie in 1..{steps}, got {snapshots}")
    if average_from is not None and not 1 <= average_from <= steps:
        raise ValueError(f"average_from must lie in 1..{steps}, got {average_from}")
    model.check_observed(tokens)
    fn = model.energy_fn(tokens)
    update = model.update
    lands = landscape_schedule(model.cfg.n_landscapes, steps)
    alpha = resolve_alpha(model, alpha_mult=alpha_mult)
    B, S = tokens.shape
    kind = init or model.cfg.init
    scale = model.cfg.init_scale if init_scale is None else init_scale
    logits = {k: [] for k in snapshots}
    energy = {k: [] for k in snapshots}
    e0, means = [], []
    for _ in range(samples):
        if kind == "zeros":
            y = torch.zeros(B, S, model.cfg.vocab_size, dtype=alpha.dtype)
        else:
            y = torch.randn(B, S, model.cfg.vocab_size, generator=generator, dtype=alpha.dtype) * scale
        acc, n_acc = None, 0
        for k in range(steps):
            tr = think(fn, y, steps=1, alpha=alpha, landscapes=[lands[k]], langevin_sigma=sigmas[k],
                       generator=generator, update=update)
            if k == 0:
                e0.append(tr.energies[0].detach())
            y = tr.final.detach()
            if k + 1 in logits:
                logits[k + 1].append(y)
                energy[k + 1].append(_energy_at(fn, update, y, lands[k]))
            if average_from is not None and k + 1 >= average_from:
                p = torch.softmax(y, -1)
                acc = p if acc is None else acc + p
                n_acc += 1
        if average_from is not None:
            means.append(acc / n_acc)
    return Thoughts(logits={k: torch.stack(v) for k, v in logits.items()},
                    energy={k: torch.stack(v) for k, v in energy.items()}, energy0=torch.stack(e0),
                    mean_probs=torch.stack(means) if means else None, nfe=steps * samples, sigmas=sigmas)


# ------------------------------------------------------------------------------------------ combining runs
def entropy(logp: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of distributions given as log-probabilities over the last dim."""
    return -(logp.exp() * logp).sum(-1)


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x``: N×B×S×V, ``idx``: B×S → B×S×V (the chosen run at each position)."""
    return torch.gather(x, 0, idx[None, ..., None].expand((1,) + x.shape[1:])).squeeze(0)


def select(logits: torch.Tensor, energy: torch.Tensor, *, rule: str = "min", energy0: torch.Tensor | None = None,
           lam: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Best-of-N per position. ``logits``: N×B×S×V, ``energy``: N×B×S final energies. Returns (log-probs
    B×S×V of the chosen run, chosen index B×S). Rules: see the module docstring."""
    if rule not in SELECT_RULES:
        raise ValueError(f"unknown selection {rule!r}; choose from {', '.join(SELECT_RULES)}")
    logp = torch.log_softmax(logits.float(), -1)
    if rule == "min":
        score = energy
    elif rule == "max_drop":
        if energy0 is None:
            raise ValueError("max_drop needs energy0")
        score = energy - energy0
    elif rule == "entropy":
        score = energy - lam * entropy(logp)
    else:   # consensus: the run with the largest mean overlap with the others
        sq = (0.5 * logp).exp()                                   # √p, N×B×S×V
        overlap = torch.einsum("ibsv,jbsv->ijbs", sq, sq)         # Bhattacharyya coefficients, N×N×B×S
        score = -(overlap.sum(1) - 1.0)                           # minus the overlap with the others
    chosen = score.argmin(0)
    return _gather(logp, chosen), chosen


def pool(logits: torch.Tensor, energy: torch.Tensor | None = None, *, rule: str = "mixture",
         temp: float = 1.0) -> torch.Tensor:
    """The N runs pooled into one distribution per position (log-probs B×S×V): the uniform ``mixture`` or the
    ``softmin`` mixture with weights ``softmax(−E/temp)`` over runs."""
    if rule not in POOL_RULES:
        raise ValueError(f"unknown pooling {rule!r}; choose from {', '.join(POOL_RULES)}")
    logp = torch.log_softmax(logits.float(), -1)
    n = logp.shape[0]
    if rule == "mixture":
        logw = torch.full(logp.shape[:-1], -math.log(n), dtype=logp.dtype)
    else:
        if energy is None or not temp > 0:
            raise ValueError("softmin pooling needs energies and temp > 0")
        logw = torch.log_softmax(-energy.float() / temp, 0)
    return torch.logsumexp(logp + logw[..., None], 0)


def mixture_of_probs(probs: torch.Tensor) -> torch.Tensor:
    """Log of the uniform mixture of N probability tensors (N×B×S×V), e.g. iterate-averaged runs."""
    return probs.float().mean(0).clamp_min(1e-30).log()


def disagreement(logits: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon spread of the N runs per position (B×S): entropy of the mixture − mean entropy (≥ 0)."""
    logp = torch.log_softmax(logits.float(), -1)
    return entropy(pool(logits, rule="mixture")) - entropy(logp).mean(0)


# ------------------------------------------------------------------------------------------ temperatures
def temperature(logp: torch.Tensor, temp: float) -> torch.Tensor:
    """Global temperature: ``log_softmax(log p / temp)``."""
    if not temp > 0:
        raise ValueError(f"temp must be > 0, got {temp}")
    return torch.log_softmax(logp / temp, -1)


def window_z(signal: torch.Tensor) -> torch.Tensor:
    """``signal`` (B×S) standardised within each window (row): only within-context comparisons are meaningful."""
    s = signal.double()
    return ((s - s.mean(-1, keepdim=True)) / s.std(-1, keepdim=True).clamp_min(1e-12)).to(signal.dtype)


def energy_temperature(logp: torch.Tensor, signal: torch.Tensor, beta: float, base: float = 1.0) -> torch.Tensor:
    """Per-position temperature ``T = base · exp(β · z)``, ``z`` = ``signal`` standardised within its window:
    positions with a high final energy (or disagreement) are softened, confident ones sharpened (β > 0)."""
    t = base * torch.exp(beta * window_z(signal.float()))
    return torch.log_softmax(logp / t[..., None], -1)


def nll(logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token negative log-likelihood (B×S) of targets under log-probs B×S×V."""
    return -logp.gather(-1, targets[..., None]).squeeze(-1)
