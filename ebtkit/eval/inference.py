"""System 2 inference policies for the EBT, all built on :func:`ebtkit.core.thinking.think`.

* **think longer**: any number of steps; α override, absolute (``alpha``) or a multiple of the trained α
  (``alpha_mult``);
* **best-of-N** (self-verification, the paper's Alg. 2): N candidates from fresh initial noise, selected
  **per position** by the lowest final energy (``select="min"``) or the largest energy drop
  (``select="max_drop"``, i.e. the largest ``E(ŷ_0) − E(ŷ_N)``);
* **accept-only-lower** steps (a step is kept at a position only if it lowers that position's energy);
* **Langevin noise at inference** with an explicit σ in logit space (``langevin_sigma=0`` means none — unlike
  the paper's code, where 0 means "use the trained σ");
* **adaptive compute** (``tol``): a position stops thinking once its energy changes by less than ``tol``;
  ``nfe`` reports the energy evaluations each position actually needed;
* **energy read-out**: per-token final energies and energy trajectories.

A :class:`Policy` bundles these knobs (``think_text(model, x, **policy.kwargs())``); generation and
evaluation take the same keyword arguments. Energies are only comparable between candidates for the same
context (training never anchors their offset), so selection is always per position.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..core.recipe import SELECTIONS, ThinkingSpec, think_with_energy


def steps_text(n: int) -> str:
    """``"1 step"``, ``"3 steps"``: every thinking-step label of the eval tables."""
    return f"{n} step" + ("" if n == 1 else "s")


DEFAULT_STEPS = 2     # thinking steps when none are given (ThinkingConfig's default)


@dataclass
class ThinkResult:
    """Result of thinking over text (``R`` = the positions thought about: all ``S``, or ``rows``).

    candidates: final logits ``B×R×V`` (of the chosen sample at each position).
    energy_trajectory: ``(steps+1)×B×R`` energies before each step and after the last (chosen sample).
    final_energy: ``B×R`` energies of the final candidates.
    nfe: ``B×R`` energy evaluations spent per prediction, summed over samples (one per thinking step).
    chosen: ``B×R`` index of the selected sample (zeros when ``samples == 1``).
    sample_final_energy: ``N×B×R`` final energy of every sample (what best-of-N chose from).
    """

    candidates: torch.Tensor
    energy_trajectory: torch.Tensor
    final_energy: torch.Tensor
    nfe: torch.Tensor
    chosen: torch.Tensor
    sample_final_energy: torch.Tensor | None = None


@dataclass(frozen=True)
class Policy:
    """One System 2 inference policy; ``None``/defaults mean "as trained" (no extra behaviour).

    ``kwargs()`` gives the keyword arguments of :func:`think_text`, :func:`ebtkit.eval.generate.generate` and
    :func:`ebtkit.eval.metrics.perplexity`.
    """

    steps: int | None = None           # thinking steps (None: the trained evaluation steps)
    alpha: float | None = None         # absolute step size override
    alpha_mult: float | None = None    # or a multiple of the trained α
    samples: int = 1                   # best-of-N candidates per position
    select: str = "min"                # "min" final energy | "max_drop" largest E(ŷ_0) − E(ŷ_N)
    accept_lower: bool = False         # keep a step only where it lowers the energy
    tol: float | None = None           # adaptive compute: stop a position once |ΔE| < tol
    langevin_sigma: float = 0.0        # inference noise on the logits (0 = none)

    def __post_init__(self):
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.alpha is not None and self.alpha_mult is not None:
            raise ValueError("give alpha or alpha_mult, not both")
        for name in ("alpha", "alpha_mult"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be > 0, got {v}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.select not in SELECTIONS:
            raise ValueError(f"unknown selection {self.select!r}; choose from {', '.join(SELECTIONS)}")
        if self.tol is not None and self.tol < 0:
            raise ValueError(f"tol must be >= 0, got {self.tol}")
        if self.langevin_sigma < 0:
            raise ValueError(f"langevin_sigma must be >= 0, got {self.langevin_sigma}")

    def kwargs(self) -> dict:
        return asdict(self)

    def spec(self, trained_steps: int, n_landscapes: int) -> ThinkingSpec:
        """The :class:`ThinkingSpec` of this policy (for any modality; best-of-N is :meth:`run`'s business)."""
        return ThinkingSpec.inference(self.steps if self.steps is not None else trained_steps, n_landscapes,
                                      accept_lower=self.accept_lower, tol=self.tol,
                                      langevin_sigma=self.langevin_sigma)

    def run(self, model, energy_fn, init, trained_steps: int, n_landscapes: int,
            generator: torch.Generator | None = None, update=None, return_samples: bool = False):
        """Think with this policy from ``init(sample) -> y0``: ``(final, trajectory (steps+1)×E, final_energy,
        nfe, chosen[, per-sample final energies])`` (best-of-N selected per prediction), the step size resolved
        against the model's. The one inference path of every modality."""
        spec = self.spec(trained_steps, n_landscapes)
        return think_with_energy(energy_fn, init, steps=spec.steps, alpha=resolve_alpha(model, self.alpha, self.alpha_mult),
                                 landscapes=list(spec.landscapes), samples=self.samples, select=self.select,
                                 accept_lower=spec.accept_lower, tol=spec.tol, langevin_sigma=spec.langevin_sigma,
                                 generator=generator, update=update, return_samples=return_samples)

    def label(self, trained_steps: int | None = None) -> str:
        """A short human-readable name, e.g. ``"8 steps"``, ``"BoN-4 (min)"``, ``"tol 0.01"``."""
        steps = self.steps if self.steps is not None else trained_steps
        parts = [steps_text(steps) if steps is not None else "trained steps"]
        if self.samples > 1:
            parts.append(f"BoN-{self.samples}" + (" max-drop" if self.select == "max_drop" else ""))
        if self.alpha is not None:
            parts.append(f"α={self.alpha:g}")
        if self.alpha_mult is not None:
            parts.append(f"α×{self.alpha_mult:g}")
        if self.accept_lower:
            parts.append("accept-lower")
        if self.tol is not None:
            parts.append(f"tol {self.tol:.3g}")
        if self.langevin_sigma > 0:
            parts.append(f"σ={self.langevin_sigma:g}")
        return ", ".join(parts)


def resolve_alpha(model, alpha: float | None = None, alpha_mult: float | None = None) -> torch.Tensor:
    """The step size used at inference: trained α, an absolute override, or a multiple of the trained α."""
    if alpha is not None and alpha_mult is not None:
        raise ValueError("give alpha or alpha_mult, not both")
    a = model.step_size().detach()
    if alpha is not None:
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        return torch.full_like(a, float(alpha))
    if alpha_mult is not None:
        if not alpha_mult > 0:
            raise ValueError(f"alpha_mult must be > 0, got {alpha_mult}")
        return a * alpha_mult
    return a


def think_text(model, tokens: torch.Tensor, steps: int | None = None, *, alpha: float | None = None,
               alpha_mult: float | None = None, samples: int = 1, select: str = "min",
               accept_lower: bool = False, tol: float | None = None, langevin_sigma: float = 0.0,
               generator: torch.Generator | None = None, reference: bool = False,
               init_scale: float = 1.0, rows: torch.Tensor | None = None, cache=None) -> ThinkResult:
    """Think about the next token at positions of ``tokens`` (B×S) with the given policy.

    ``steps`` defaults to :data:`DEFAULT_STEPS` (a loaded run's trained steps are ``bundle.eval_steps``).
    ``rows`` (R,) or (B, R) restricts thinking to the predictions after those observed positions (e.g. the last
    one when generating); ``cache`` is a :class:`~ebtkit.core.models.ContextCache` of ``tokens`` already encoded
    (generation with a KV cache): callers that pass neither think about every position.
    """
    policy = Policy(steps=steps if steps is not None else DEFAULT_STEPS, alpha=alpha, alpha_mult=alpha_mult,
                    samples=samples, select=select, accept_lower=accept_lower, tol=tol, langevin_sigma=langevin_sigma)
    model.check_observed(tokens)
    if reference and (rows is not None or cache is not None):
        raise ValueError("reference=True thinks about every position; it takes no rows or cache")
    if rows is None and cache is None:
        fn = model.energy_fn(tokens, reference=reference)
    else:
        fn = model.energy_fn(tokens, cache=cache, rows=rows)
    R = rows.shape[-1] if rows is not None else tokens.shape[1]
    init = lambda s: model.init_candidates((tokens.shape[0], R), generator) * init_scale  # noqa: E731
    best, traj, final_e, nfe, chosen, per_sample = policy.run(model, fn, init, DEFAULT_STEPS, model.cfg.n_landscapes,
                                                              generator, update=model.update, return_samples=True)
    return ThinkResult(best, traj, final_e, nfe, chosen, per_sample)
