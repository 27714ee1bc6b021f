"""Shared test helpers (import as ``from tests.helpers import ...``)."""
import torch

from ebtkit.config import ModelConfig
from ebtkit.models import build_model


def tiny_model(model="ebt", dtype=torch.float64, seed=0, **kw):
    """A 2-layer, 16-wide model for exact tests."""
    base = dict(model=model, vocab_size=13, d_model=16, n_layers=2, n_heads=2, context=8, n_landscapes=2)
    base.update(kw)
    torch.manual_seed(seed)
    return build_model(ModelConfig(**base)).to(dtype)
