"""Inference memory of ``ebt eval``, ``ebt generate`` and ``ebt think``, estimated before anything runs.

The training estimate (:mod:`ebtkit.core.estimate`) refuses a model that cannot train; this one refuses an
evaluation whose step counts, best-of-N samples, batch or context cannot fit, in one line and in milliseconds,
instead of letting it grow until the machine swaps (``ebt eval RUN --steps-list 100000000`` used to reach 7 GB
in a minute and keep growing). It is arithmetic on the run's config and the command's counts; no model is built.

What one batch of thinking holds, with ``B`` rows, ``R`` predictions per row thought about at once (``S``, the
context, when a table scores every position; 1 when generating the next token), ``W`` the candidate's width (the
vocabulary for text, features for sequences, pixels for images), ``N`` thinking steps and ``K`` best-of-N samples:

* weights: ``2 × 4 × params`` (fp32; loading holds the file's tensors and the model's at once);
* activations of one energy evaluation with its input gradient, per row: the training coefficients of
  :data:`ebtkit.core.estimate.COEFFICIENTS` with one first-order step (``G = N = 1``), the prediction-stream terms
  scaled by ``R / S``. Training keeps a second-order graph, so this is an upper bound for inference;
* the thinking trajectory: :func:`ebtkit.core.thinking.think` keeps every step's candidate and energy
  (``(N + 1) · B · R · (W + 1)`` fp32 values), and best-of-N keeps every sample's final candidate and energies
  (``K · B · R · (W + N + 1)``). Both grow linearly with the counts; this is the term the guard is for;
* ``extra_bytes``: what a command holds besides (denoising: the noisy test images).

The guard compares the sum with the memory the device has free (:func:`ebtkit.core.estimate.available_memory`,
the same figure the training guard uses; ``EBT_CHECK_MEMORY=0`` skips it). Counts that cost time but no memory
have upper bounds of their own (:mod:`ebtkit.commands.checks`: at most 10 000 thinking steps and 1 024 samples).
"""
from __future__ import annotations

from dataclasses import dataclass

from .device import resolve_device
from .estimate import (COEFFICIENTS, ENV_SWITCH, DoesNotFitError, available_memory, check_enabled, human_bytes,
                       model_kind, param_counts, terms)

FP32 = 4


@dataclass(frozen=True)
class InferenceEstimate:
    """Bytes one batch of inference holds (see the module docstring for each term)."""

    params: int
    weight_bytes: int
    activation_bytes: int
    thinking_bytes: int
    extra_bytes: int = 0
    overhead_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes + self.thinking_bytes + self.extra_bytes + self.overhead_bytes

    def describe(self) -> str:
        return (f"{human_bytes(self.total_bytes)} ({human_bytes(self.thinking_bytes)} of thinking trajectories, "
                f"{human_bytes(self.activation_bytes)} of activations, {human_bytes(self.weight_bytes)} for the "
                f"weights" + (f", {human_bytes(self.extra_bytes)} of data" if self.extra_bytes else "") + ")")


def _first_order_terms(cfg, fraction: float) -> dict[str, float]:
    """One sequence's element counts for one first-order energy evaluation, the prediction-stream terms scaled
    by ``fraction`` (the share of positions thought about)."""
    t = dict(terms(cfg))
    ebt = cfg.model.model == "ebt"
    if not ebt:
        return t
    thinking = getattr(cfg, "thinking", None)
    n = (thinking.max_steps or thinking.steps) if thinking is not None else 1
    g = n if thinking is not None and thinking.system == "s1" else 1
    for k in list(t):
        if k.startswith("step_") or k == "ckpt_in":
            t[k] = t[k] / max(1, g) * fraction
        elif k.startswith("free_"):
            t[k] = 0.0
    return t


def inference_estimate(cfg, *, rows: int, positions: int | None = None, steps: int = 0, samples: int = 1,
                       width: int | None = None, extra_bytes: int = 0) -> InferenceEstimate:
    """The memory of one batch of ``rows`` rows, thinking ``steps`` steps with ``samples`` best-of-N samples about
    ``positions`` predictions per row (default: every position of the context) of a model of run config
    ``cfg``. ``width``: the candidate's width (default: from the config)."""
    m = cfg.model
    kind = model_kind(m)
    total, _ = param_counts(m)
    if kind.startswith("image-"):
        full = m.num_patches
        W = width or m.channels * m.image_size ** 2
    else:
        full = m.context
        W = width or (m.vocab_size if kind.startswith("text-") else m.features)
    R = full if positions is None else max(1, min(positions, full))
    coef = COEFFICIENTS[kind]
    per_row = sum(coef[k] * v for k, v in _first_order_terms(cfg, R / full if full else 1.0).items() if k != "const")
    ebt = m.model == "ebt"
    think = 0
    if ebt and steps > 0:
        E = rows * (1 if kind.startswith("image-") else R)       # predictions: one per image, one per position
        think = FP32 * E * ((steps + 1) * (W + 1) + (samples * (W + steps + 1) if samples > 1 else 0)) + 8 * steps
    return InferenceEstimate(params=total, weight_bytes=2 * FP32 * total, activation_bytes=int(rows * per_row),
                             thinking_bytes=int(think), extra_bytes=int(extra_bytes),
                             overhead_bytes=int(coef.get("const", 0.0)))


def check_inference_fits(est: InferenceEstimate, what: str, device="cpu", hint: str = "") -> InferenceEstimate:
    """Raise :class:`~ebtkit.core.estimate.DoesNotFitError` (one line) when ``est`` exceeds the memory ``device``
    has free; ``what`` names the work (``"this evaluation"``), ``hint`` the flags that shrink it."""
    if not check_enabled():
        return est
    import torch

    device = device if isinstance(device, torch.device) else resolve_device(device)
    free, where = available_memory(device)
    if free is not None and est.total_bytes > free:
        raise DoesNotFitError(f"{what} needs about {est.describe()}, but {device} has {human_bytes(free)} {where}; "
                              f"{hint + ', or ' if hint else ''}set {ENV_SWITCH}=0 to try anyway")
    return est


__all__ = ["InferenceEstimate", "inference_estimate", "check_inference_fits"]
