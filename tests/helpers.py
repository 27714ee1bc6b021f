"""Shared test helpers (import as ``from tests.helpers import ...``)."""
import torch

from ebtkit.core.config import ModelConfig
from ebtkit.core.models import build_model


def tiny_model(model="ebt", dtype=torch.float64, seed=0, random_head=True, **kw):
    """A 2-layer, 16-wide model for exact tests; ``random_head`` replaces the zero-initialised energy head so
    that energies and their gradients are non-trivial."""
    base = dict(model=model, vocab_size=13, d_model=16, n_layers=2, n_heads=2, context=8, n_landscapes=2)
    base.update(kw)
    torch.manual_seed(seed)
    m = build_model(ModelConfig(**base)).to(dtype)
    if random_head and hasattr(m, "head"):
        torch.nn.init.normal_(m.head.weight, std=0.5)   # a trained-like energy head (init is zero)
    return m


def quiet(*a, **k):
    pass


def train(cfg, out, *, resume=False, steps=None, **kw):
    """Train through the one loop (no progress bar, no log lines); ``steps`` extends a resumed run."""
    from ebtkit.core.checkpoint import read_config
    from ebtkit.tasks import task_of
    from ebtkit.training import fit
    task = task_of(cfg) if cfg is not None else read_config(out)["task"]
    changes = {**kw.pop("changes", {}), **({"train.steps": steps} if steps is not None else {})} or None
    if steps is not None and not resume:
        cfg = cfg.replace(**{"train.steps": steps})
    kw.setdefault("progress", False)
    kw.setdefault("log", quiet)
    return fit(task, cfg, out, resume=resume, changes=changes, **kw)


# ------------------------------------------------------------------------------------------ float tolerances
def tol(dtype, n: int, *, depth: int = 1, scale: float = 1.0) -> dict:
    """``rtol``/``atol`` for two computations of one quantity that differ only in the order of their floating-point
    sums: another SIMD width (``ATEN_CPU_CAPABILITY`` default / avx2 / avx512), another kernel, thread count or
    batch split. Use as ``assert_close(a, b, **tol(torch.float32, n))`` (``np.testing.assert_allclose`` too).

    Why this size: whatever the order, a sum of ``n`` terms carries a rounding error of at most γ_n·Σ|terms|, with
    γ_n = n·u/(1 − n·u) and u = eps/2 the unit roundoff (Higham, *Accuracy and Stability of Numerical Algorithms*,
    §4.2); two orders therefore differ by at most 2·γ_n ≈ n·eps of the terms' magnitude. ``n`` is the longest
    reduction in the computation (a dot product's length, a softmax's width, the positions a weight gradient sums
    over); ``depth`` counts reductions applied one after another (layers, forward then backward), whose first-order
    errors add. ``scale`` is the terms' magnitude: ``atol = rtol · scale``, so that an element which cancels to
    about zero is judged against the size of what was summed, not its own (pass ``max|b|`` for a whole tensor,
    :func:`close` does). The bound is the worst case: any order an ISA picks passes, while a real change (a wrong
    mask, a missing term) is off by orders of magnitude more."""
    try:
        eps = torch.finfo(dtype).eps
    except TypeError:                                   # a numpy dtype
        import numpy as np
        eps = float(np.finfo(dtype).eps)
    u = eps / 2
    rtol = 2 * depth * n * u / (1 - n * u)
    return {"rtol": rtol, "atol": rtol * scale}


def close(a: torch.Tensor, b: torch.Tensor, n: int, *, depth: int = 1, msg=None) -> None:
    """``assert_close(a, b)`` within :func:`tol` of ``b``'s dtype, reduction length ``n`` and ``depth``, with the
    terms' magnitude taken as ``max|b|`` (1 for an all-zero or empty ``b``)."""
    scale = (float(b.detach().abs().max()) if b.numel() else 0.0) or 1.0
    torch.testing.assert_close(a, b, **tol(b.dtype, n, depth=depth, scale=scale), msg=msg)
