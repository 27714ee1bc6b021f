"""System 2 inference policies for the text EBT, all built on :func:`ebtkit.thinking.think`.

* think longer: any number of steps, α override (absolute or multiplier of the trained α);
* best-of-N (self-verification): N candidates from fresh initial noise, selected **per position** by the
  lowest final energy (``select="min"``) or the largest energy drop (``select="max_drop"``);
* accept-only-lower steps, Langevin noise with an explicit σ (0 = none), adaptive compute (``tol``);
* energy read-out: per-token final energies and energy trajectories.

Energies are only comparable between candidates for the same context: selection is always per position.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .thinking import think

SELECTIONS = ("min", "max_drop")


@dataclass
class ThinkResult:
    """Result of thinking over text.

    candidates: final logits ``B×R×V``.
    energy_trajectory: ``(steps+1)×B×R`` energies before each step and after the last (of the chosen sample).
    final_energy: ``B×R`` energies of the final candidates.
    nfe: ``B×R`` energy evaluations spent per prediction, summed over samples (one per thinking step).
    chosen: ``B×R`` index of the selected sample (zeros when ``samples == 1``).
    """

    candidates: torch.Tensor
    energy_trajectory: torch.Tensor
    final_energy: torch.Tensor
    nfe: torch.Tensor
    chosen: torch.Tensor


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


def landscape_schedule(n_landscapes: int, steps: int) -> list[int]:
    """Landscape (step-embedding index) per step: one step on each landscape, extra steps on the last."""
    return [min(k, n_landscapes - 1) for k in range(steps)]


def think_with_energy(energy_fn, init, *, steps: int, alpha: torch.Tensor, landscapes: list[int],
                      samples: int = 1, select: str = "min", accept_lower: bool = False, tol: float | None = None,
                      langevin_sigma: float = 0.0, generator: torch.Generator | None = None):
    """Best-of-N wrapper over :func:`think` for any modality.

    ``init(sample_index) -> y0`` gives a fresh initial candidate per sample. Returns
    ``(final, trajectory (steps+1)×E, final_energy, nfe, chosen)`` selected per prediction.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if select not in SELECTIONS:
        raise ValueError(f"unknown selection {select!r}; choose from {', '.join(SELECTIONS)}")
    finals, trajs, nfes = [], [], []
    for s in range(samples):
        tr = think(energy_fn, init(s), steps=steps, alpha=alpha, landscapes=landscapes, detach=True,
                   create_graph=False, langevin_sigma=langevin_sigma, generator=generator,
                   accept_lower=accept_lower, tol=tol, final_energy=True)
        finals.append(tr.final.detach())
        trajs.append(torch.stack([e.detach() for e in tr.energies]))          # (steps+1)×E
        nfes.append(tr.nfe)
    final = torch.stack(finals)                                               # N×E×F
    traj = torch.stack(trajs)                                                 # N×(steps+1)×E
    nfe = torch.stack(nfes).sum(0)
    score = traj[:, -1] if select == "min" else traj[:, -1] - traj[:, 0]      # lower is better for both
    chosen = score.argmin(0)                                                  # E
    idx = chosen.reshape((1,) + chosen.shape + (1,) * (final.dim() - 1 - chosen.dim()))
    best = torch.gather(final, 0, idx.expand((1,) + final.shape[1:])).squeeze(0)
    tidx = chosen.reshape((1, 1) + chosen.shape).expand((1,) + traj.shape[1:])
    best_traj = torch.gather(traj, 0, tidx).squeeze(0)
    return best, best_traj, best_traj[-1], nfe, chosen


def think_text(model, tokens: torch.Tensor, steps: int | None = None, *, alpha: float | None = None,
               alpha_mult: float | None = None, samples: int = 1, select: str = "min",
               accept_lower: bool = False, tol: float | None = None, langevin_sigma: float = 0.0,
               generator: torch.Generator | None = None, reference: bool = False,
               init_scale: float = 1.0) -> ThinkResult:
    """Think about the next token at every position of ``tokens`` (B×S) with the given policy.

    ``steps`` defaults to the model's trained evaluation steps (``model.eval_steps`` if set, else 2).
    """
    steps = steps if steps is not None else getattr(model, "eval_steps", 2)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    model._check(tokens)
    a = resolve_alpha(model, alpha, alpha_mult)
    fn = model.energy_fn(tokens, reference=reference)
    init = lambda s: model.init_candidates(tuple(tokens.shape), generator) * init_scale  # noqa: E731
    best, traj, final_e, nfe, chosen = think_with_energy(
        fn, init, steps=steps, alpha=a, landscapes=landscape_schedule(model.cfg.n_landscapes, steps),
        samples=samples, select=select, accept_lower=accept_lower, tol=tol,
        langevin_sigma=langevin_sigma, generator=generator)
    return ThinkResult(best, traj, final_e, nfe, chosen)
