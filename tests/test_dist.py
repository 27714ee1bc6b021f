"""Multi-process training (core/dist.py and the loop under ``torchrun``): gradients averaged with all_reduce
equal the single-process gradients exactly, for the text, image and sequence tasks; ``fit`` with 2 processes keeps
the ranks' weights identical and writes from rank 0 only.

DDP's hooks give wrong gradients for EBT steps (second order); ebtkit averages gradients itself. The gradient
tests run 2 gloo processes, each on half the batch, and compare to one process on the whole batch.
"""
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ebtkit.core import dist as edist
from ebtkit.core.config import ThinkingConfig, preset
from ebtkit.core.models.image import build_image_model
from ebtkit.tasks.denoise import ebt_denoise_loss
from ebtkit.tasks.denoise import preset as denoise_preset
from ebtkit.tasks.sequence import ebt_sequence_loss, regressor_loss
from ebtkit.tasks.sequence import preset as sequence_preset
from ebtkit.tasks.text import ebt_text_loss
from tests.helpers import tiny_model

pytestmark = pytest.mark.slow


def _data():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 13, (4, 9), generator=g)
    y0 = torch.randn(4, 8, 13, generator=g, dtype=torch.float64)
    return tokens, y0


def _image_data():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(4, 1, 28, 28, generator=g, dtype=torch.float64) * 2 - 1
    noisy = clean + 0.3 * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    return clean, noisy


def _image_model(kind):
    torch.manual_seed(0)
    cfg = denoise_preset("tiny", model=kind)
    m = build_image_model(cfg.model)
    m = m.double() if kind == "ebt" else m      # the DiT's timestep features are float32
    for p in m.parameters():                     # adaLN-Zero starts at zero: make every path non-trivial
        torch.nn.init.normal_(p, std=0.05)
    return m, cfg


def _sequence_model(kind, system):
    from ebtkit.core.models.sequence import build_sequence_model
    torch.manual_seed(0)
    cfg = sequence_preset("tiny", model="ebt" if kind == "seq" else "transformer++", system=system or "s1",
                          **{"thinking.replay_fraction": 0.0, "thinking.replay_size": 0, "thinking.max_steps": "none",
                             "thinking.alpha_jitter": 1.0}).replace(
                              **{"model.features": 6})
    m = build_sequence_model(cfg.model).double()
    if kind == "seq":
        torch.nn.init.normal_(m.head.weight, std=0.5)          # a non-trivial energy from the start
    return m, cfg


def _grads(kind, system, rows):
    """Gradients of one loss on batch ``rows`` (a slice): text EBT (system s1/s2), image EBT or DiT, sequence
    EBT (s1/s2) or its Transformer++ regressor."""
    if kind in ("seq", "seqtpp"):
        model, cfg = _sequence_model(kind, system)
        window = torch.randn(4, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        if kind == "seq":
            loss, _, _ = ebt_sequence_loss(model, window[rows], cfg, None)
        else:
            loss, _ = regressor_loss(model, window[rows], cfg)
    elif kind == "text":
        model = tiny_model(n_landscapes=2 if system == "s1" else 1)
        tokens, y0 = _data()
        loss, _, _ = ebt_text_loss(model, tokens[rows], ThinkingConfig(system=system, steps=2), init=y0[rows])
    else:
        model, cfg = _image_model(kind)
        clean, noisy = _image_data()
        if kind == "ebt":
            cfg = cfg.replace(**{"thinking.system": system, "thinking.steps": 2, "thinking.max_steps": None})
            loss, _ = ebt_denoise_loss(model, clean[rows], noisy[rows], cfg, None)
        else:
            t = torch.tensor([3, 50, 7, 90])[rows]
            noise = (noisy - clean)[rows].float()
            loss = cfg.noise.diffusion().training_loss(model, clean[rows].float(), t, noise)
    model.zero_grad()
    loss.backward()
    return model


def _worker(rank, port, kind, system, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    assert edist.init_from_env() and edist.world_size() == 2 and edist.rank() == rank
    model = _grads(kind, system, slice(2 * rank, 2 * rank + 2))
    edist.average_gradients(model)
    if rank == 0:
        torch.save({n: p.grad.clone() for n, p in model.named_parameters()}, out)
    dist.barrier()
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind,system", [("text", "s1"), ("text", "s2"), ("ebt", "s1"), ("ebt", "s2"), ("dit", None),
                                         ("seq", "s1"), ("seq", "s2"), ("seqtpp", None)])
def test_allreduce_gradients_equal_single_process(tmp_path, kind, system):
    out = str(tmp_path / "grads.pt")
    mp.start_processes(_worker, args=(_free_port(), kind, system, out), nprocs=2, join=True, start_method="spawn")
    multi = torch.load(out, weights_only=True)
    model = _grads(kind, system, slice(0, 4))
    tol = dict(rtol=1e-9, atol=1e-12) if kind != "dit" else dict(rtol=1e-5, atol=1e-7)   # float32 for the DiT
    for n, p in model.named_parameters():
        torch.testing.assert_close(multi[n], p.grad, msg=n, **tol)


def test_fit_under_two_processes_writes_once_and_keeps_ranks_in_sync(tmp_path):
    """``fit`` joins the process group itself, seeds each rank's batches apart, averages gradients (so the
    ranks' weights stay identical) and writes the run directory from rank 0 only, for every task."""
    mp.start_processes(_fit_sync_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    from safetensors.torch import load_file
    for name in ("text", "denoise", "sequence"):
        run = tmp_path / name
        saved = load_file(str(run / "checkpoint" / "model.safetensors"))
        other = torch.load(tmp_path / f"{name}.rank1.pt", weights_only=True)
        assert saved.keys() == other.keys()
        for k in saved:
            torch.testing.assert_close(saved[k], other[k], rtol=0, atol=0, msg=(name, k))
        steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()
                 if json.loads(ln)["split"] == "train"]
        assert steps == [1, 2, 3]                                 # one writer: each record once
        assert not (run / ".lock").exists()
        losses = json.loads((tmp_path / f"{name}.losses.json").read_text())
        assert losses["0"] != losses["1"]                          # the ranks drew different batches


def _fit_sync_worker(rank, port, root):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    from ebtkit.tasks import TASKS
    from tests.helpers import train
    runs = {"text": preset("tiny", **{"train.steps": 3, "train.save_every": 3, "train.eval_every": 3,
                                      "train.log_every": 1, "train.eval_batches": 1}),
            "denoise": denoise_preset("tiny", **{"train.steps": 3, "train.save_every": 3, "train.eval_every": 3,
                                                 "train.log_every": 1, "train.batch_size": 4, "data.dataset": "mini"}),
            "sequence": sequence_preset("tiny", **{"train.steps": 3, "train.save_every": 3, "train.eval_every": 3,
                                                   "train.log_every": 1, "train.batch_size": 4})}
    for name, cfg in runs.items():
        task = TASKS[name]
        seen = {}
        real_build, real_loss = task.build_model, task.loss

        def build(c, seen=seen, real_build=real_build):
            seen["model"] = real_build(c)
            return seen["model"]

        def loss(self, model, gen, seen=seen, real_loss=real_loss):
            out = real_loss(self, model, gen)
            seen.setdefault("losses", []).append(float(out[0].detach()))
            return out

        task.build_model, task.loss = staticmethod(build), loss
        try:
            train(cfg, f"{root}/{name}")
        finally:
            task.build_model, task.loss = real_build, real_loss
        if rank == 1:
            torch.save({k: v.detach().clone() for k, v in seen["model"].state_dict().items()},
                       f"{root}/{name}.rank1.pt")
        gathered = [None, None]
        dist.all_gather_object(gathered, seen["losses"])
        if rank == 0:
            with open(f"{root}/{name}.losses.json", "w") as f:
                json.dump({"0": gathered[0], "1": gathered[1]}, f)
    dist.barrier()                                   # both ranks done before the group goes away
    dist.destroy_process_group()
