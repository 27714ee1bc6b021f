"""Checked numbers for command-line flags: argparse ``type=`` functions.

Every number a user gives is checked where argparse parses it, before a run is loaded or a file is touched;
argparse reports a failure as one line naming the flag (``ebt: error: argument --top-p: must be in (0, 1],
got '1.5'``) and exit status 2. Floats must be finite (``nan``, ``inf`` are refused everywhere).

The bounds of the thinking and sampling flags, and why:

* ``--temperature`` in [0, 100]: 0 is greedy; at 100 a gap of 10 nats between two logits shrinks to 0.1, so
  sampling is close to uniform noise over the vocabulary: a larger value is a mistake, not a setting.
* ``--top-p`` in (0, 1]; ``--top-k`` an integer >= 0 (0 = off).
* ``--alpha`` in (0, 1e6]: the largest default step size is 0.3·V ≈ 15 000 (the logit update rule with a
  50k-token vocabulary; the simplex rules use 20). One step of a larger α saturates the softmax, so the
  candidate becomes one-hot and later steps do nothing; around 1e30 the logits overflow to inf/NaN.
  ``--alpha-mult`` in (0, 1e4] for the same reason.
* ``--sigma`` (Langevin noise on the logits) and ``--tol`` finite and >= 0.
* ``--steps``, ``--samples`` and window / batch counts integers >= 1; ``--max-new-tokens`` >= 1 (0 would
  generate nothing); ``--seed`` in [0, 2**63).
* Thinking-step counts (``--steps``, ``--steps-list``, ``--think-steps``, ``--task-steps``, ``--ebt-nfe``) at most
  :data:`STEPS_MAX` = 10 000 and best-of-N counts (``--samples``, ``--bon``) at most :data:`SAMPLES_MAX` = 1 024.
  The shipped recipes think 2–3 steps and the studies go to 16 (best-of-N to 8); every step and every sample is
  one more forward and input gradient per token, so 10 000 steps of the tiny model already take minutes per
  evaluation window. Larger counts are mistakes (a typo's extra zeros), not settings. Memory is checked
  separately, against the machine, before anything runs (:mod:`ebtkit.core.estimate_inference`).
* Langevin ``--sigma`` at most :data:`SIGMA_MAX` = 1e4: noise of σ on logits of a few units is already pure
  noise at σ = 100; beyond 1e4 the candidates' squares overflow fp32 in the softmax's neighbourhood.
* Comma-separated lists (``--steps-list 1,2,4``) are checked element by element as parsed, so the error names
  the flag and echoes the list (``argument --steps-list: ... got '1,x'``); the command receives the text.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

TEMPERATURE_MAX = 100.0
ALPHA_MAX = 1e6
ALPHA_MULT_MAX = 1e4
SEED_MAX = 2 ** 63 - 1
STEPS_MAX = 10_000
SAMPLES_MAX = 1_024
SIGMA_MAX = 1e4


def _num(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _interval(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {_num(hi)}"
    return "finite"


def finite_float(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                 hi_open: bool = False) -> Callable[[str], float]:
    """A float, finite, within ``[lo, hi]`` (``lo_open`` / ``hi_open`` exclude the ends)."""
    want = _interval(lo, hi, lo_open, hi_open)

    def parse(text: str) -> float:
        try:
            v = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(v)
        if ok and lo is not None:
            ok = v > lo if lo_open else v >= lo
        if ok and hi is not None:
            ok = v < hi if hi_open else v <= hi
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a finite number {want}, got {text!r}"
                                             if want != "finite" else f"must be a finite number, got {text!r}")
        return v

    parse.__name__ = "number"
    return parse


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An integer within ``[lo, hi]`` (written as an integer: ``1e3`` and ``2.0`` are refused)."""
    want = _interval(lo, hi, False, False)

    def parse(text: str) -> int:
        try:
            v = int(str(text).strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be an integer {want}, got {text!r}")
        return v

    parse.__name__ = "integer"
    return parse


def int_list(lo: int = 1, hi: int | None = None) -> Callable[[str], str]:
    """Comma-separated integers within ``[lo, hi]``; returns the text as typed (the command parses it)."""
    one = int_range(lo, hi)

    def parse(text: str) -> str:
        parts = [v.strip() for v in str(text).split(",")]
        if not any(parts):
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
        for v in parts:
            if not v:
                continue
            try:
                one(v)
            except argparse.ArgumentTypeError:
                raise argparse.ArgumentTypeError(f"expected comma-separated integers {_interval(lo, hi, False, False)},"
                                                 f" got {text!r}") from None
        return text

    parse.__name__ = "integer list"
    return parse


def float_list(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
               keywords: tuple[str, ...] = ()) -> Callable[[str], str]:
    """Comma-separated finite numbers within ``[lo, hi]`` (or one of ``keywords``, e.g. ``auto``); returns the
    text as typed."""
    one = finite_float(lo, hi, lo_open=lo_open)
    want = _interval(lo, hi, lo_open, False)
    also = "".join(f" or {k!r}" for k in keywords)

    def parse(text: str) -> str:
        if str(text).strip() in keywords:
            return str(text).strip()
        parts = [v.strip() for v in str(text).split(",")]
        if not any(parts):
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers{also}, got {text!r}")
        for v in parts:
            if v:
                try:
                    one(v)
                except argparse.ArgumentTypeError:
                    raise argparse.ArgumentTypeError(f"expected comma-separated finite numbers {want}{also}, "
                                                     f"got {text!r}") from None
        return text

    parse.__name__ = "number list"
    return parse


positive_int = int_range(1)
nonneg_int = int_range(0)
steps_int = int_range(1, STEPS_MAX)
samples_int = int_range(1, SAMPLES_MAX)
steps_list = int_list(1, STEPS_MAX)
samples_list = int_list(1, SAMPLES_MAX)
sigma = finite_float(0, SIGMA_MAX)
seed_int = int_range(0, SEED_MAX)
nonneg_float = finite_float(0)
positive_float = finite_float(0, lo_open=True)
temperature = finite_float(0, TEMPERATURE_MAX)
probability = finite_float(0, 1, lo_open=True)
step_size = finite_float(0, ALPHA_MAX, lo_open=True)
step_mult = finite_float(0, ALPHA_MULT_MAX, lo_open=True)


def nonempty_text(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


nonempty_text.__name__ = "text"
