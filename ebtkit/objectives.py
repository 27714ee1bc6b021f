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
from .replay import ReplayBuffer, replay_count
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
                  reference: bool = False, replay: ReplayBuffer | None = None):
    """Loss of the text EBT on ``tokens`` (B×(S+1)).

    Args:
        init: initial candidates (B×S×V); default ``N(0, I)`` drawn with ``generator``.
        replay: System 2 replay buffer (training only, used when ``tcfg.replay_fraction > 0``):
            ``round(replay_fraction × B)`` stored sequences are appended to the batch and start from their
            stored candidates; afterwards the B fresh rows are pushed with their final candidates.
    Returns:
        ``(loss, metrics, trajectory)``; metrics has ``ce_step{k}`` for k = 0..N (CE of ŷ_k), ``energy_gap``
        (mean E(ŷ_0) − mean E at the last step), ``alpha``, ``replayed`` (rows), ``contrastive`` (if on).
        With ``tcfg.contrastive_coeff > 0`` (training) the loss adds ``coeff · softplus(E(onehot(y)) − E_last)``
        (the energy of the one-hot target distribution)
        — the paper's optional contrastive term, ``CE(−[E_real, E_fake], 0)`` per position.
    """
    steps = steps if steps is not None else sample_steps(tcfg, generator, training)
    fresh = tokens.shape[0]
    y0 = init if init is not None else model.init_candidates((fresh, tokens.shape[1] - 1), generator)
    n_replay = 0
    if replay is not None and training and tcfg.replay_fraction > 0:
        n_replay = min(replay_count(tcfg.replay_fraction, fresh), len(replay))
        if n_replay:
            r_tokens, r_cands = replay.sample(n_replay, generator)
            tokens = torch.cat([tokens, r_tokens.to(tokens.device)], 0)                 # (B+n)×(S+1)
            y0 = torch.cat([y0, r_cands.to(device=y0.device, dtype=y0.dtype)], 0)      # (B+n)×S×V
    x, y = tokens[:, :-1], tokens[:, 1:]
    fn = model.energy_fn(x, reference=reference)
    traj = think(
        fn, y0, steps=steps, alpha=model.step_size(),
        landscapes=landscape_schedule(model.cfg.n_landscapes, steps),
        detach=tcfg.detach, grad_steps=tcfg.grad_steps, create_graph=training,
        langevin_sigma=tcfg.langevin_sigma if training else 0.0,
        alpha_jitter=tcfg.alpha_jitter if training else 1.0, generator=generator, update=model.update)
    V = y0.shape[-1]
    ce = lambda c: F.cross_entropy(c.reshape(-1, V), y.reshape(-1))  # noqa: E731
    if tcfg.system == "s1":
        step_ce = [ce(c) for c in traj.candidates[1:]]
        loss = torch.stack(step_ce).mean()
    else:
        loss = ce(traj.final)
        step_ce = [ce(c.detach()) for c in traj.candidates[1:-1]] + [loss]
    if training and tcfg.contrastive_coeff > 0:
        real = fn(F.one_hot(y, V).to(y0.dtype), landscape_schedule(model.cfg.n_landscapes, steps)[-1])  # B×S
        contrastive = F.softplus(real - traj.energies[steps - 1]).mean()
        loss = loss + tcfg.contrastive_coeff * contrastive
    if replay is not None and training and tcfg.replay_fraction > 0:
        replay.push(tokens[:fresh], traj.final[:fresh].detach())
    metrics = {"loss": loss.detach(), "ce_step0": ce(y0.detach()).detach()}
    for k, c in enumerate(step_ce, start=1):
        metrics[f"ce_step{k}"] = c.detach()
    metrics["energy_gap"] = (traj.energies[0].mean() - traj.energies[-1].mean()).detach()
    metrics["alpha"] = model.step_size().detach()
    metrics["steps"] = torch.tensor(float(steps))
    if replay is not None:
        metrics["replayed"] = torch.tensor(float(n_replay))
    if training and tcfg.contrastive_coeff > 0:
        metrics["contrastive"] = contrastive.detach()
    return loss, metrics, traj


def transformer_loss(model, tokens: torch.Tensor):
    loss = model.loss(tokens)
    return loss, {"loss": loss.detach()}

