"""Shared test helpers (import as ``from tests.helpers import ...``)."""
import torch

from ebtkit.config import ModelConfig
from ebtkit.models import build_model


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
