"""Training objectives for the text models.

``ebt_text_loss`` runs :func:`ebtkit.think` on a batch and puts cross-entropy on the candidates it reaches:
System 1 averages the CE over every step (each step differentiated, candidates detached between steps);
System 2 scores only the last step (no detach, truncated: only the last step's ∇E is differentiated).
``transformer_loss`` is the baseline's next-token CE. Both return ``(loss, metrics)`` with metrics as
0-d tensors (no host sync in the step).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import ThinkingConfig
from .inference import landscape_schedule
from .thinking import think


def sample_steps(tcfg: ThinkingConfig, generator: torch.Generator | None, training: bool) -> int:
    """Training: ``U{steps..max_steps}`` per batch when ``max_steps`` is set, else ``steps``.
    Evaluation: ``eval_steps`` (default ``max_steps`` or ``steps``)."""
    if not training:
        return tcfg.default_eval_steps
    if tcfg.max_steps is None or tcfg.max_steps == tcfg.steps:
        return tcfg.steps
    return int(torch.randint(tcfg.steps, tcfg.max_steps + 1, (1,), generator=generator))


def ebt_text_loss(model, tokens: torch.Tensor, tcfg: ThinkingConfig, generator: torch.Generator | None = None,
                  training: bool = True, steps: int | None = None, init: torch.Tensor | None = None,
                  reference: bool = False):
    """Loss of the text EBT on ``tokens`` (B×(S+1)).

    Args:
        init: initial candidates (B×S×V); default ``N(0, I)`` drawn with ``generator`` (the replay buffer
            passes stored candidates for replayed rows).
    Returns:
        ``(loss, metrics, trajectory)``; metrics has ``ce_step{k}`` for k = 0..N (CE of ŷ_k), ``energy_gap``
        (mean E(ŷ_0) − mean E at the last step), ``alpha``.
    """
    x, y = tokens[:, :-1], tokens[:, 1:]
    steps = steps if steps is not None else sample_steps(tcfg, generator, training)
    y0 = init if init is not None else model.init_candidates(tuple(x.shape), generator)
    traj = think(
        model.energy_fn(x, reference=reference), y0, steps=steps, alpha=model.step_size(),
        landscapes=landscape_schedule(model.cfg.n_landscapes, steps),
        detach=tcfg.detach, grad_steps=tcfg.grad_steps, create_graph=training,
        langevin_sigma=tcfg.langevin_sigma if training else 0.0,
        alpha_jitter=tcfg.alpha_jitter if training else 1.0, generator=generator)
    V = y0.shape[-1]
    ce = lambda c: F.cross_entropy(c.reshape(-1, V), y.reshape(-1))  # noqa: E731
    if tcfg.system == "s1":
        step_ce = [ce(c) for c in traj.candidates[1:]]
        loss = torch.stack(step_ce).mean()
    else:
        loss = ce(traj.final)
        step_ce = [ce(c.detach()) for c in traj.candidates[1:-1]] + [loss]
    metrics = {"loss": loss.detach(), "ce_step0": ce(y0.detach()).detach()}
    for k, c in enumerate(step_ce, start=1):
        metrics[f"ce_step{k}"] = c.detach()
    metrics["energy_gap"] = (traj.energies[0].mean() - traj.energies[-1].mean()).detach()
    metrics["alpha"] = model.step_size().detach()
    metrics["steps"] = torch.tensor(float(steps))
    return loss, metrics, traj


def transformer_loss(model, tokens: torch.Tensor):
    loss = model.loss(tokens)
    return loss, {"loss": loss.detach()}

