"""Multi-process training: gradients averaged with all_reduce equal the single-process gradients exactly.

DDP's hooks give wrong gradients for EBT steps (second order); ebtkit averages gradients itself. This test
runs 2 gloo processes, each on half the batch, and compares to one process on the whole batch.
"""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ebtkit.core import dist as edist
from ebtkit.core.config import ThinkingConfig
from ebtkit.tasks.text import ebt_text_loss
from tests.helpers import tiny_model


def _data():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 13, (4, 9), generator=g)
    y0 = torch.randn(4, 8, 13, generator=g, dtype=torch.float64)
    return tokens, y0


def _grads(model, tokens, y0, system):
    loss, _, _ = ebt_text_loss(model, tokens, ThinkingConfig(system=system, steps=2), init=y0)
    model.zero_grad()
    loss.backward()


def _worker(rank, port, system, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    assert edist.init_from_env() and edist.world_size() == 2 and edist.rank() == rank
    model = tiny_model(n_landscapes=2 if system == "s1" else 1)
    tokens, y0 = _data()
    half = slice(2 * rank, 2 * rank + 2)
    _grads(model, tokens[half], y0[half], system)
    edist.average_gradients(model)
    if rank == 0:
        torch.save({n: p.grad.clone() for n, p in model.named_parameters()}, out)
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check(tmp_path, system):
    out = str(tmp_path / "grads.pt")
    mp.start_processes(_worker, args=(_free_port(), system, out), nprocs=2, join=True, start_method="spawn")
    multi = torch.load(out, weights_only=True)
    model = tiny_model(n_landscapes=2 if system == "s1" else 1)
    tokens, y0 = _data()
    _grads(model, tokens, y0, system)
    for n, p in model.named_parameters():
        torch.testing.assert_close(multi[n], p.grad, rtol=1e-9, atol=1e-12, msg=n)


def test_allreduce_gradients_equal_single_process_system1(tmp_path):
    _check(tmp_path, "s1")


def test_allreduce_gradients_equal_single_process_system2(tmp_path):
    _check(tmp_path, "s2")
