"""Rank awareness for torch.distributed (``torchrun``, ``ebt train --nproc-per-node``), kept out of the way of
single-process runs.

EBT training differentiates through ∇_ŷE; DDP's bucketed hooks give wrong gradients for such second-order
steps, so multi-process training averages gradients itself after ``backward`` (:func:`average_gradients`: the
gradients are packed into flat buckets of about 25 MB, one ``all_reduce`` per bucket).

A process that fails leaves the process group at once (:func:`fail`), so its peers stop waiting in a collective
instead of hanging; under ``ebt train --nproc-per-node`` it also hands its one-line message to the launcher
(``EBTKIT_RANK_ERROR_FILE``), which prints it once.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable

import torch
import torch.distributed as dist

BUCKET_BYTES = 25 * 2**20                     # gradients per all_reduce (DDP's default bucket size)
ERROR_FILE_ENV = "EBTKIT_RANK_ERROR_FILE"     # set by ebtkit.commands.launch for each rank it starts


def init_from_env(device: torch.device | str | None = None) -> bool:
    """Join the process group ``torchrun`` describes (``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` env vars).
    Returns True when running multi-process. nccl when the run's ``device`` is CUDA, gloo otherwise (``device``
    None: nccl when CUDA is available)."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed()
    cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``, set by the launchers; 0 otherwise): the GPU a rank
    binds is ``cuda:LOCAL_RANK``."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def gradient_buckets(params: list[torch.Tensor], bucket_bytes: int = BUCKET_BYTES) -> list[list[torch.Tensor]]:
    """The parameters grouped by (device, dtype), in order, into buckets of at most ``bucket_bytes`` (a larger
    tensor is a bucket of its own). The layout depends only on the parameters — never on which of them have a
    gradient — so every rank of a model built the same way reduces the same buckets in the same order."""
    buckets: list[list[torch.Tensor]] = []
    open_: dict[tuple, tuple[list[torch.Tensor], int]] = {}
    for p in params:
        key = (p.device, p.dtype)
        size = p.numel() * p.element_size()
        bucket, used = open_.get(key, (None, 0))
        if bucket is None or (bucket and used + size > bucket_bytes):
            bucket, used = [], 0
            buckets.append(bucket)
        bucket.append(p)
        open_[key] = (bucket, used + size)
    return buckets


def average_gradients(params: torch.nn.Module | Iterable[torch.Tensor], bucket_bytes: int = BUCKET_BYTES) -> None:
    """Average ``.grad`` over ranks (no-op in one process): ``grad ← (Σ_r grad_r) / world_size`` for every
    parameter that requires a gradient.

    Bucketed: each bucket of :func:`gradient_buckets` is flattened into one tensor (``torch.cat``), summed with
    one asynchronous ``all_reduce`` (all buckets in flight at once: one flat copy of the gradients while they
    are reduced), divided by the world size and copied back — element for element the same additions and
    division as one ``all_reduce`` per parameter. With 2 ranks (a sum of two numbers does not depend on its
    order) the result is bit-identical to the per-parameter loop; with more, equal up to the order in which the
    backend adds the ranks' values. It equals one process's gradient on the concatenated batch up to that mean's
    own rounding (``tests/test_dist.py``).

    A parameter whose ``.grad`` is ``None`` on this rank (the loss did not reach it) counts as a zero gradient, so
    the bucket layout is the same on every rank. Each bucket also carries one presence count per parameter
    (exact small integers): a parameter that has no gradient on *any* rank keeps ``grad = None`` on every rank
    (the optimizer skips it, as it would in one process); one that has a gradient on some rank gets the average
    on every rank. Ranks therefore always agree, and the optimizer step is the same everywhere.
    """
    n = world_size()
    if n == 1:
        return
    plist = params.parameters() if isinstance(params, torch.nn.Module) else params
    plist = [p for p in plist if p.requires_grad]
    pending = []
    for bucket in gradient_buckets(plist, bucket_bytes):
        ref = bucket[0]
        parts = [p.grad.reshape(-1) if p.grad is not None else
                 torch.zeros(p.numel(), dtype=ref.dtype, device=ref.device) for p in bucket]
        present = torch.tensor([float(p.grad is not None) for p in bucket], dtype=ref.dtype).to(ref.device)
        flat = torch.cat(parts + [present])
        pending.append((bucket, flat, dist.all_reduce(flat, op=dist.ReduceOp.SUM, async_op=True)))
    for bucket, flat, work in pending:
        work.wait()
        sizes = [p.numel() for p in bucket]
        total = sum(sizes)
        grads = flat[:total].div_(n).split(sizes)
        counts = None
        for i, (p, g) in enumerate(zip(bucket, grads)):
            if p.grad is not None:
                p.grad.copy_(g.view_as(p.grad))
                continue
            if counts is None:
                counts = flat[total:].tolist()          # host sync only when some gradient was None here
            if counts[i] > 0:
                p.grad = g.view_as(p).clone()


def fail(message: str) -> bool:
    """The error path of a process (``ebtkit.cli.execute``): leave the process group if this process joined
    one, so peers waiting in a collective fail at once instead of hanging. Before that:

    * a rank started by ``ebt train --nproc-per-node`` (``EBTKIT_RANK_ERROR_FILE`` set) writes ``message`` (one
      line) with the time and its rank to that file, for the launcher to print once;
    * a rank started by plain ``torchrun`` (``TORCHELASTIC_ERROR_FILE`` set) writes it in torchelastic's error
      file format, so torchrun's failure summary shows the message instead of "To enable traceback see ...".

    Returns True when the launcher of ``--nproc-per-node`` will print the message (the rank then prints nothing
    itself), False otherwise."""
    now = time.time()
    who = rank() if is_distributed() else int(os.environ.get("RANK", "0"))
    handed = _write_json(os.environ.get(ERROR_FILE_ENV), {"time": now, "rank": who, "message": message})
    _write_json(os.environ.get("TORCHELASTIC_ERROR_FILE"),
                {"message": {"message": message, "extraInfo": {"timestamp": str(int(now))}}})
    teardown()
    return handed


def _write_json(path: str | None, data: dict) -> bool:
    if not path:
        return False
    try:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
        return True
    except OSError:
        return False


def teardown() -> None:
    """Leave the process group (no-op when not in one)."""
    if is_distributed():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 — leaving a broken group must not mask the error being reported
            pass
