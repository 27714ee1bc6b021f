"""The thinking loop — the EBT algorithm, written once for every modality, training and inference.

Given an energy function ``E(ŷ, landscape)`` with the context already bound, thinking is
gradient descent on the candidate (Gladstone et al., 2025, Eq. 1–2)::

    ŷ_in    = ŷ_k + η_k,            η_k ~ N(0, σ²)   (Langevin noise, optional; added *before* ∇E as in the paper's code)
    ŷ_{k+1} = ŷ_in − α ∇_ŷ E(ŷ_in)

Training differentiates through the steps (second order, ``create_graph=True``):

* **System 1** (``detach=True, grad_steps="all"``): every step starts from a detached leaf, every step's
  ∇E is built with ``create_graph``, and the loss is put on every step's candidate.
* **System 2** (``detach=False, grad_steps="last"``): candidates stay in the graph, but only the last
  step's ∇E is built with ``create_graph`` (earlier ones are constants: truncation); loss on the last step.

Inference-only policies that need a per-position decision inside the loop live here too, so the loop
exists once: ``accept_lower`` (keep a step at a position only if it lowers that position's energy) and
``tol`` (adaptive compute: a position stops thinking once its energy changes by less than ``tol``).

Shapes: the candidate ``y`` has shape ``E.shape + F`` where ``E = energy_fn(y, l)`` has one scalar per
prediction (``(B, S)`` for text, ``(B,)`` for images) and ``F`` are the feature dims (``V`` logits,
``C×H×W`` pixels). Because each prediction's energy depends only on its own candidate, one
``autograd.grad(E.sum(), y)`` gives every prediction its own gradient.

One NFE = one energy evaluation with its input gradient (the paper's count: one per thinking step).

**The candidate update** (:class:`Update`) says where the energy and its gradient are taken and what the step
moves. For continuous candidates it is the plain step above. For a candidate that is a distribution over a
vocabulary (text logits) there are three rules, with ``p = softmax(ŷ_in)`` (after the Langevin noise):

* ``"code"`` (the official code's rule, the text default): ``ŷ_{k+1} = p − α ∇_p E(p)``, used as logits;
* ``"logits"`` (the paper's Eq. 1 taken literally): ``ŷ_{k+1} = ŷ_in − α ∇_ŷ E(softmax(ŷ))``; through the
  softmax Jacobian each token's step is scaled by its own ``p_v``;
* ``"mirror"`` (mirror descent on the simplex, unpublished): ``ŷ_{k+1} = ŷ_in − α ∇_p E(p)`` — the gradient
  of ``"code"``, applied to the accumulated logits instead of restarting from ``p``.

With a simplex rule ``energy_fn`` receives ``p`` (a distribution), never the logits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence, runtime_checkable

import torch
from torch import nn

EnergyFn = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class Update:
    """A candidate parametrisation: how one thinking step moves the candidate ``ŷ``.

    ``simplex``: the energy is evaluated at ``u = softmax(ŷ_in)`` over the last dim (else ``u = ŷ_in``).
    ``grad_at``: ``"candidate"`` → ``g = ∇_ŷ E(u(ŷ))``; ``"point"`` → ``g = ∇_u E(u)``.
    ``base``: ``"candidate"`` → ``ŷ' = ŷ_in − α g``; ``"point"`` → ``ŷ' = u − α g``.
    """

    name: str
    simplex: bool = False
    grad_at: str = "candidate"
    base: str = "candidate"

    def __post_init__(self):
        if self.grad_at not in ("candidate", "point") or self.base not in ("candidate", "point"):
            raise ValueError(f"bad update {self}")

    def point(self, y: torch.Tensor) -> torch.Tensor:
        return torch.softmax(y, dim=-1) if self.simplex else y


GRADIENT = Update("gradient")


@dataclass(frozen=True)
class BoundEnergy:
    """An energy function that carries the update rule it must be stepped with (e.g. a text EBT's energy over
    distributions, which needs a simplex rule). :func:`think` reads ``update`` from it, so the pairing cannot
    be forgotten by a caller."""

    fn: EnergyFn
    update: Update

    def __call__(self, y: torch.Tensor, landscape: int) -> torch.Tensor:
        return self.fn(y, landscape)
TEXT_UPDATES: dict[str, Update] = {
    "code": Update("code", simplex=True, grad_at="point", base="point"),
    "logits": Update("logits", simplex=True, grad_at="candidate", base="candidate"),
    "mirror": Update("mirror", simplex=True, grad_at="point", base="candidate"),
}


def text_update(name: str) -> Update:
    """The named update rule for vocabulary candidates; unknown names raise and list the valid ones."""
    if name not in TEXT_UPDATES:
        raise ValueError(f"unknown update {name!r}; choose from {', '.join(TEXT_UPDATES)}")
    return TEXT_UPDATES[name]


class StepSize(nn.Module):
    """The step size α as its own module, so optimizers can give it its own parameter group.

    ``forward()`` returns ``clamp(α, min=1e-4)``. ``learnable=False`` keeps α as a buffer (fixed).
    """

    MIN = 1e-4

    def __init__(self, alpha: float, learnable: bool = True):
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"step size alpha must be > 0, got {alpha}")
        t = torch.tensor(float(alpha))
        if learnable:
            self.alpha = nn.Parameter(t)
        else:
            self.register_buffer("alpha", t)
        self.learnable = learnable

    def forward(self) -> torch.Tensor:
        return self.alpha.clamp(min=self.MIN)

    def extra_repr(self) -> str:
        return f"alpha={float(self.alpha.detach()):.4g}, learnable={self.learnable}"


@runtime_checkable
class EnergyModel(Protocol):
    """What thinking needs from a model: its step size α (:class:`StepSize`, its own optimizer group) and
    ``energy_fn(context...) -> (candidate, landscape) -> energies``. EBTs satisfy it; baselines
    (Transformer++, DiT) do not."""

    step_size: StepSize

    def energy_fn(self, *args, **kwargs) -> EnergyFn: ...


def is_energy_model(model) -> bool:
    """True for a model that thinks (an EBT), False for a baseline."""
    return isinstance(model, EnergyModel)


@dataclass
class Trajectory:
    """What thinking produced.

    candidates: ``[ŷ_0, ŷ_1, …, ŷ_N]`` (N+1 tensors). In System 1 training, ``ŷ_{k+1}`` carries the
        graph of step k; in System 2 only ``ŷ_N`` carries the second-order graph.
    energies: ``[E(ŷ_0), …, E(ŷ_{N-1})]`` energies at each step's input (after Langevin noise), plus
        ``E(ŷ_N)`` when ``final_energy=True``; one scalar per prediction. Detached unless the step built
        a graph.
    nfe: per-prediction number of energy evaluations spent on steps (``E``-shaped, long).
    """

    candidates: list[torch.Tensor]
    energies: list[torch.Tensor]
    nfe: torch.Tensor
    alpha: torch.Tensor | None = field(default=None, repr=False)

    @property
    def final(self) -> torch.Tensor:
        return self.candidates[-1]

    @property
    def steps(self) -> int:
        return len(self.candidates) - 1


def _expand(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Append singleton dims so an ``E``-shaped tensor broadcasts against a candidate."""
    return t.reshape(t.shape + (1,) * (like.dim() - t.dim()))


def jittered_alpha(alpha: torch.Tensor, energy_shape: torch.Size, scale: float,
                   generator: torch.Generator | None) -> torch.Tensor:
    """α · U-random in ``[α/s, α·s]`` drawn independently per prediction (uniform, not log-uniform)."""
    if scale < 1:
        raise ValueError(f"alpha_jitter must be >= 1, got {scale}")
    u = torch.rand(energy_shape, generator=generator, device=alpha.device if generator is None else generator.device)
    u = u.to(device=alpha.device, dtype=alpha.dtype)
    lo, hi = alpha / scale, alpha * scale
    return lo + u * (hi - lo)


def think(
    energy_fn: EnergyFn,
    y0: torch.Tensor,
    *,
    steps: int,
    alpha: torch.Tensor | float,
    landscapes: Sequence[int] | None = None,
    detach: bool = True,
    grad_steps: str = "all",
    create_graph: bool = False,
    langevin_sigma: float = 0.0,
    alpha_jitter: float = 1.0,
    generator: torch.Generator | None = None,
    accept_lower: bool = False,
    tol: float | None = None,
    final_energy: bool = False,
    update: Update | None = None,
) -> Trajectory:
    """Run ``steps`` thinking steps from ``y0``.

    Args:
        energy_fn: ``(candidate, landscape) -> energies`` (one scalar per prediction).
        y0: initial candidate.
        steps: number of gradient steps (≥ 0).
        alpha: step size (float, 0-d tensor — possibly learnable — or a tensor broadcastable to ``y``).
        landscapes: step-conditioning index for each step (default: all 0).
        detach: detach the candidate between steps (System 1).
        grad_steps: ``"all"`` builds the second-order graph at every step, ``"last"`` only at the last (System 2).
        create_graph: build second-order graphs at all (training); ``False`` for inference.
        langevin_sigma: std of Gaussian noise added to the candidate before each gradient evaluation.
        alpha_jitter: ``s ≥ 1``; α is drawn uniformly in ``[α/s, α·s]`` per prediction (once per call).
        generator: the only source of randomness (Langevin noise, α jitter).
        accept_lower: inference only; a step is kept at a prediction only if it lowers that energy.
        tol: inference only; a prediction stops once ``|E_k − E_{k−1}| < tol``.
        final_energy: also evaluate ``E(ŷ_N)`` (one extra forward; not counted as an NFE).
        update: the candidate parametrisation (:class:`Update`); default: ``energy_fn.update`` for a
            :class:`BoundEnergy`, else the plain gradient step on ``ŷ``. A rule that contradicts the
            ``BoundEnergy``'s is an error.

    Works under a caller's ``torch.no_grad()``: the loop owns its grad mode.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    bound = getattr(energy_fn, "update", None) if isinstance(energy_fn, BoundEnergy) else None
    if update is not None and bound is not None and update != bound:
        raise ValueError(f"update {update.name!r} contradicts the energy function's rule {bound.name!r}")
    update = update or bound or GRADIENT
    if grad_steps not in ("all", "last"):
        raise ValueError(f"grad_steps must be 'all' or 'last', got {grad_steps!r}")
    if (accept_lower or tol is not None) and create_graph:
        raise ValueError("accept_lower and tol are inference policies; use them with create_graph=False")
    if tol is not None and tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if langevin_sigma < 0:
        raise ValueError(f"langevin_sigma must be >= 0, got {langevin_sigma}")
    landscapes = list(landscapes) if landscapes is not None else [0] * steps
    if len(landscapes) < steps:
        raise ValueError(f"{len(landscapes)} landscapes given for {steps} steps")
    evals = steps + (1 if (final_energy or accept_lower) and steps > 0 else 0)
    if steps == 0 and final_energy:
        evals = 1

    candidates, energies = [y0], []
    alpha_t: torch.Tensor | None = None
    nfe = None
    active = None                      # E-shaped bool: predictions still thinking (tol)
    prev_E = prev_g = prev_y = prev_u = None    # last accepted state (accept_lower)
    prev_land = None                   # ... and the landscape its energy was measured on
    y = y0
    with torch.enable_grad():
        for k in range(evals):
            is_step = k < steps
            landscape = landscapes[min(k, steps - 1)] if steps else 0
            build = create_graph and is_step and (grad_steps == "all" or k == steps - 1)
            y_in = y.detach() if (detach or not y.requires_grad) else y
            if not y_in.requires_grad:
                y_in = y_in.requires_grad_()
            if is_step and langevin_sigma > 0:
                noise = torch.randn(y_in.shape, generator=generator, device=y_in.device if generator is None else generator.device)
                noise = noise.to(device=y_in.device, dtype=y_in.dtype) * langevin_sigma
                if active is not None:
                    noise = noise * _expand(active, noise).to(noise.dtype)
                y_in = y_in + noise
            u = update.point(y_in)
            E = energy_fn(u, landscape)
            if E.dtype in (torch.float16, torch.bfloat16):
                # Mixed precision: the network runs in bf16/fp16 under autocast, but the candidate, its energy
                # and the update stay fp32. A step α∇E is small next to ŷ (bf16 keeps 8 mantissa bits: a 1 %
                # change of a logit of 4 is below its resolution and would round away), and best-of-N and
                # accept-lower compare energies that differ in the 3rd–4th digit.
                E = E.float()
            if E.shape != y_in.shape[: E.dim()]:
                raise ValueError(f"energy shape {tuple(E.shape)} is not a prefix of candidate shape {tuple(y_in.shape)}")
            if nfe is None:
                nfe = torch.zeros(E.shape, dtype=torch.long, device=E.device)
            if not is_step:
                # final read-out of E(ŷ_N); with accept_lower it also decides the last proposal
                E = E.detach() if not create_graph else E
                if accept_lower and prev_E is not None:
                    keep = E < prev_E
                    E = torch.where(keep, E, prev_E)
                    y_in = torch.where(_expand(keep, y_in), y_in.detach(), prev_y)
                    candidates[-1] = y_in
                energies.append(E)
                break
            wrt = u if update.grad_at == "point" else y_in
            g = torch.autograd.grad(E.sum(), wrt, create_graph=build)[0]
            if not torch.is_grad_enabled() or not build:
                g = g.detach()
            if not build:
                E = E.detach()
            if accept_lower and prev_E is not None and prev_land == landscape:
                # energies of different landscapes are different functions: a step onto a new landscape
                # is always taken, comparisons happen within a landscape
                keep = E < prev_E
                E, g = torch.where(keep, E, prev_E), torch.where(_expand(keep, g), g, prev_g)
                y_in = torch.where(_expand(keep, y_in), y_in.detach(), prev_y)
                u = torch.where(_expand(keep, u), u.detach(), prev_u)
                candidates[-1] = y_in
            was_active = active
            if tol is not None and k > 0 and landscapes[k - 1] == landscape:   # compare within a landscape
                changed = (E.detach() - energies[-1].detach()).abs() >= tol
                active = changed if active is None else active & changed
            if alpha_t is None:
                alpha_t = alpha if isinstance(alpha, torch.Tensor) else \
                    torch.full((), float(alpha), device=y_in.device, dtype=y_in.dtype)    # a fill, not a copy
                if alpha_jitter != 1.0:
                    alpha_t = jittered_alpha(alpha_t, E.shape, alpha_jitter, generator)
                if alpha_t.dim() > 0:
                    alpha_t = _expand(alpha_t, y_in)
            nfe += 1 if was_active is None else was_active.long()
            y = (u if update.base == "point" else y_in) - alpha_t * g
            if active is not None:   # settled predictions keep their candidate unchanged
                y = torch.where(_expand(active, y), y, y_in)
            if not create_graph:
                y = y.detach()
            energies.append(E)
            candidates.append(y)
            if accept_lower:
                prev_E, prev_g, prev_y, prev_u, prev_land = E.detach(), g.detach(), y_in.detach(), u.detach(), landscape
            if active is not None and not bool(active.any()):
                # every prediction has settled: the remaining steps would change nothing
                for _ in range(k + 1, steps):
                    candidates.append(y)
                    energies.append(E)
                if final_energy:
                    energies.append(E)   # ŷ_N == ŷ_in for every prediction, so E(ŷ_N) == E
                break
    if nfe is None:
        nfe = torch.zeros((), dtype=torch.long)
    return Trajectory(candidates=candidates, energies=energies, nfe=nfe, alpha=alpha_t)
