"""Rank awareness for torch.distributed (``torchrun``), kept out of the way of single-process runs.

EBT training differentiates through ∇_ŷE; DDP's bucketed hooks give wrong gradients for such second-order
steps, so multi-process training averages gradients itself with ``all_reduce`` after ``backward``.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_from_env() -> bool:
    """Join the process group ``torchrun`` describes (``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` env vars).
    Returns True when running multi-process. gloo on CPU, nccl on CUDA."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed()
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def average_gradients(model: torch.nn.Module) -> None:
    """Average ``.grad`` over ranks (no-op in one process)."""
    n = world_size()
    if n == 1:
        return
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(n)
