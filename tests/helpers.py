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
