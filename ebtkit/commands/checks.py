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
* ``--steps``, ``--samples`` and window / batch counts integers >= 1; ``--max-new-tokens`` >= 0;
  ``--seed`` in [0, 2**63).
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

TEMPERATURE_MAX = 100.0
ALPHA_MAX = 1e6
ALPHA_MULT_MAX = 1e4
SEED_MAX = 2 ** 63 - 1


def _interval(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}"
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


positive_int = int_range(1)
nonneg_int = int_range(0)
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
