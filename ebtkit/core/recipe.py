"""The thinking recipe in one place: what :func:`~ebtkit.core.thinking.think` is asked to do, for every task.

:class:`ThinkingSpec` holds every keyword of ``think()`` except the energy, the start, α and the generator. It
is built from a :class:`~ebtkit.core.config.ThinkingConfig` for training (:meth:`ThinkingSpec.training`:
the step count is sampled, System 1 / System 2 semantics, Langevin noise, α jitter) or for inference
(:meth:`ThinkingSpec.inference`: the evaluation steps and the System 2 inference policies accept-lower and early
stop). Beside it:

* :func:`sample_steps` — ``U{steps..max_steps}`` per batch in training, ``eval_steps`` at evaluation;
* :func:`landscape_schedule` — one step per landscape (step embedding), extra steps on the last;
* :meth:`ThinkingSpec.step_losses` — System 1 averages the loss over every step, System 2 scores the last;
* :func:`think_with_energy` — best-of-N candidates selected per prediction, for any modality.

Text and image tasks, training and evaluation all go through these, so no caller copies ``ThinkingConfig``
into keyword arguments by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from .config import ThinkingConfig
from .rng import host_generator
from .thinking import EnergyFn, Trajectory, Update, think

SELECTIONS = ("min", "max_drop")


def sample_steps(tcfg: ThinkingConfig, generator: torch.Generator | None, training: bool) -> int:
    """Training: ``U{steps..max_steps}`` per batch when ``max_steps`` is set, else ``steps``.
    Evaluation: ``eval_steps`` (default ``max_steps`` or ``steps``)."""
    if not training:
        return tcfg.default_eval_steps
    if tcfg.max_steps is None or tcfg.max_steps == tcfg.steps:
        return tcfg.steps
    # a host-side draw (the count shapes the graph): from the generator's host stream, so no device sync
    return int(torch.randint(tcfg.steps, tcfg.max_steps + 1, (1,), generator=host_generator(generator)))


def landscape_schedule(n_landscapes: int, steps: int) -> list[int]:
    """Landscape (step-embedding index) per step: one step on each landscape, extra steps on the last."""
    return [min(k, n_landscapes - 1) for k in range(steps)]


@dataclass(frozen=True)
class ThinkingSpec:
    """One call's worth of thinking: the arguments of :func:`think` other than energy, start, α, generator."""

    steps: int
    landscapes: tuple[int, ...]
    system: str = "s1"                 # which steps the loss scores: "s1" every step, "s2" the last
    detach: bool = True
    grad_steps: str = "all"
    create_graph: bool = False
    langevin_sigma: float = 0.0
    alpha_jitter: float = 1.0
    accept_lower: bool = False
    tol: float | None = None

    @classmethod
    def training(cls, tcfg: ThinkingConfig, n_landscapes: int, generator: torch.Generator | None) -> "ThinkingSpec":
        """The training recipe of ``tcfg`` (draws the step count from ``generator`` when it is random)."""
        steps = sample_steps(tcfg, generator, training=True)
        return cls(steps=steps, landscapes=tuple(landscape_schedule(n_landscapes, steps)), system=tcfg.system,
                   detach=tcfg.detach, grad_steps=tcfg.grad_steps, create_graph=True,
                   langevin_sigma=tcfg.langevin_sigma, alpha_jitter=tcfg.alpha_jitter)

    @classmethod
    def inference(cls, steps: int, n_landscapes: int, *, accept_lower: bool = False, tol: float | None = None,
                  langevin_sigma: float = 0.0) -> "ThinkingSpec":
        """Thinking at evaluation: no second-order graph, no α jitter; optional inference policies."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return cls(steps=steps, landscapes=tuple(landscape_schedule(n_landscapes, steps)), create_graph=False,
                   langevin_sigma=langevin_sigma, accept_lower=accept_lower, tol=tol)

    def evaluation(self) -> "ThinkingSpec":
        """The same steps without training noise or graphs (validation of a training recipe)."""
        return replace(self, create_graph=False, langevin_sigma=0.0, alpha_jitter=1.0)

    def run(self, energy_fn: EnergyFn, y0: torch.Tensor, alpha, generator: torch.Generator | None = None, *,
            final_energy: bool = False, update: Update | None = None) -> Trajectory:
        return think(energy_fn, y0, steps=self.steps, alpha=alpha, landscapes=list(self.landscapes),
                     detach=self.detach, grad_steps=self.grad_steps, create_graph=self.create_graph,
                     langevin_sigma=self.langevin_sigma, alpha_jitter=self.alpha_jitter, generator=generator,
                     accept_lower=self.accept_lower, tol=self.tol, final_energy=final_energy, update=update)

    def step_losses(self, traj: Trajectory, loss_fn: Callable[[torch.Tensor], torch.Tensor]):
        """``(loss, per-step losses of ŷ_1..ŷ_N)``: System 1 averages every step's loss (each differentiated);
        System 2 differentiates the last step's only (earlier ones are reported, detached)."""
        if self.system == "s1":
            per = [loss_fn(c) for c in traj.candidates[1:]]
            return torch.stack(per).mean(), per
        loss = loss_fn(traj.final)
        return loss, [loss_fn(c.detach()) for c in traj.candidates[1:-1]] + [loss]


def think_with_energy(energy_fn, init, *, steps: int, alpha: torch.Tensor, landscapes: list[int],
                      samples: int = 1, select: str = "min", accept_lower: bool = False, tol: float | None = None,
                      langevin_sigma: float = 0.0, generator: torch.Generator | None = None,
                      return_samples: bool = False, update: Update | None = None):
    """Best-of-N over :func:`think` for any modality (the paper's self-verification, Alg. 2).

    ``init(sample_index) -> y0`` gives a fresh initial candidate per sample (drawn in sample order from the
    shared ``generator``, so ``samples=1`` is exactly one plain run). Returns
    ``(final, trajectory (steps+1)×E, final_energy, nfe, chosen)`` selected per prediction by the lowest final
    energy (``select="min"``) or the largest drop ``E(ŷ_0) − E(ŷ_N)`` (``"max_drop"``), plus the ``N×E`` final
    energies of every sample when ``return_samples``.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if select not in SELECTIONS:
        raise ValueError(f"unknown selection {select!r}; choose from {', '.join(SELECTIONS)}")
    finals, trajs, nfes = [], [], []
    for s in range(samples):
        tr = think(energy_fn, init(s), steps=steps, alpha=alpha, landscapes=landscapes, detach=True,
                   create_graph=False, langevin_sigma=langevin_sigma, generator=generator,
                   accept_lower=accept_lower, tol=tol, final_energy=True, update=update)
        finals.append(tr.final.detach())
        trajs.append(torch.stack([e.detach() for e in tr.energies]))          # (steps+1)×E
        nfes.append(tr.nfe)
    if samples == 1:
        out = (finals[0], trajs[0], trajs[0][-1], nfes[0], torch.zeros_like(nfes[0]))
        return out + (trajs[0][-1:],) if return_samples else out
    final = torch.stack(finals)                                               # N×E×F
    traj = torch.stack(trajs)                                                 # N×(steps+1)×E
    nfe = torch.stack(nfes).sum(0)
    score = traj[:, -1] if select == "min" else traj[:, -1] - traj[:, 0]      # lower is better for both
    chosen = score.argmin(0)                                                  # E
    idx = chosen.reshape((1,) + chosen.shape + (1,) * (final.dim() - 1 - chosen.dim()))
    best = torch.gather(final, 0, idx.expand((1,) + final.shape[1:])).squeeze(0)
    tidx = chosen.reshape((1, 1) + chosen.shape).expand((1,) + traj.shape[1:])
    best_traj = torch.gather(traj, 0, tidx).squeeze(0)
    out = (best, best_traj, best_traj[-1], nfe, chosen)
    return out + (traj[:, -1],) if return_samples else out
