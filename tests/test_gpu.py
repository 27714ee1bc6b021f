"""Device parity on CUDA (skipped without a GPU; run by ``benchmarks/gpu_check.py``).

Each model's energies / outputs and parameter gradients of one training loss on CUDA in float32 are compared with
the same computation on the CPU in float64 (same weights, same inputs), at small sizes. A training step of every
task runs under ``torch.cuda.set_sync_debug_mode("error")``: any host synchronisation in the step raises.
"""
from __future__ import annotations

import copy

import pytest
import torch

from ebtkit.core.rng import step_generator
from ebtkit.tasks import get_task, preset
from ebtkit.tasks.denoise import dit_loss, ebt_denoise_loss
from ebtkit.tasks.sequence import ebt_sequence_loss, regressor_loss
from ebtkit.tasks.text import ebt_text_loss, transformer_loss
from ebtkit.training.optim import make_optimizer, optimizer_step
from tests.helpers import tol

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

CUDA = torch.device("cuda")


def _cases():
    text = preset("text", "tiny", "s1", **{"model.context": 16})
    text2 = preset("text", "tiny", "s2", **{"model.context": 16, "thinking.langevin_sigma": 0.0,
                                             "thinking.alpha_jitter": 1.0})   # no random numbers: devices agree
    tpp = preset("text", "tiny", **{"model.model": "transformer++", "model.context": 16})
    den = get_task("denoise").preset("tiny", "s1")
    dit = get_task("denoise").preset("tiny", None, **{"model.model": "dit"})
    seq = get_task("sequence").preset("tiny", "s1").replace(**{"model.features": 5})
    seqt = get_task("sequence").preset("tiny", None, **{"model.model": "transformer++"}).replace(**{"model.features": 5})
    tokens = torch.randint(0, 256, (2, 17), generator=torch.Generator().manual_seed(1))
    img = torch.rand(2, den.model.channels, den.model.image_size, den.model.image_size,
                     generator=torch.Generator().manual_seed(1)) * 2 - 1
    win = torch.randn(2, seq.model.context + 1, 5, generator=torch.Generator().manual_seed(1))
    return [
        ("text-ebt-s1", "text", text, lambda m, d: ebt_text_loss(m, tokens.to(d), text.thinking, None)[0]),
        ("text-ebt-s2", "text", text2, lambda m, d: ebt_text_loss(m, tokens.to(d), text2.thinking, None,
                                                                  steps=2, init=torch.zeros(2, 16, 256, device=d,
                                                                                            dtype=_dt(m)))[0]),
        ("text-tpp", "text", tpp, lambda m, d: transformer_loss(m, tokens.to(d))[0]),
        ("denoise-ebt", "denoise", den, lambda m, d: ebt_denoise_loss(m, img.to(d, _dt(m)), (img * 0.8).to(d, _dt(m)),
                                                                      den, None)[0]),
        ("denoise-dit", "denoise", dit, lambda m, d: _dit(m, d, dit, img)),
        ("sequence-ebt", "sequence", seq, lambda m, d: ebt_sequence_loss(m, win.to(d, _dt(m)), seq, None,
                                                                         training=True)[0]),
        ("sequence-tpp", "sequence", seqt, lambda m, d: regressor_loss(m, win.to(d, _dt(m)), seqt)[0]),
    ]


def _dt(model):
    return next(model.parameters()).dtype


def _dit(model, dev, cfg, img):
    diff = cfg.noise.diffusion()
    x0 = img.to(dev, _dt(model))
    t = torch.tensor([10, 40], device=dev)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(dev, _dt(model))
    return diff.training_loss(model, x0, t, noise)


@pytest.mark.parametrize("case", range(7))
def test_cuda_matches_cpu_float64(case):
    name, task, cfg, loss_fn = _cases()[case]
    torch.manual_seed(0)
    ref = get_task(task).build_model(cfg)
    if hasattr(ref, "head") and hasattr(ref.head, "weight"):
        with torch.no_grad():
            ref.head.weight.normal_(0, 0.3)            # a non-zero energy head: thinking moves the candidate
    cpu64 = copy.deepcopy(ref).double()
    gpu32 = copy.deepcopy(ref).to(CUDA)
    l64 = loss_fn(cpu64, torch.device("cpu"))
    l32 = loss_fn(gpu32, CUDA)
    l64.backward()
    l32.backward()
    # float32 vs (nearly exact) float64: float32's rounding (tests.helpers.tol) over the longest reduction (the
    # candidate's 256 bytes; the denoise losses average 2 × 784 pixels) and the chained reductions (every layer,
    # forward and backward, per thinking step and the loss's own pass; at most 2 steps here)
    n = 2 * 784 if task == "denoise" else 256
    t = tol(torch.float32, n, depth=2 * cfg.model.n_layers * (2 + 1), scale=float(l64.detach().abs()))
    torch.testing.assert_close(l32.detach().cpu().double(), l64.detach(), **t, msg=name)
    for (pn, a), b in zip(cpu64.named_parameters(), gpu32.parameters()):
        if a.grad is None:
            assert b.grad is None, f"{name}: {pn}"
            continue
        err = (b.grad.cpu().double() - a.grad).norm() / a.grad.norm().clamp_min(torch.finfo(torch.float64).tiny)
        assert err < t["rtol"], f"{name}: {pn}: relative gradient error {float(err):.2e} (tolerance {t['rtol']:.2e})"


@pytest.mark.parametrize("task,model,system", [("text", "ebt", "s1"), ("text", "ebt", "s2"), ("text", "transformer++", None),
                                               ("denoise", "ebt", "s1"), ("denoise", "dit", None),
                                               ("sequence", "ebt", "s1"), ("sequence", "transformer++", None)])
def test_training_step_has_no_host_sync(task, model, system, tmp_path):
    t = get_task(task)
    cfg = t.preset("tiny", system, **{"model.model": model})
    run = t(cfg)
    cfg = run.setup(None)
    torch.manual_seed(0)
    net = t.build_model(cfg).to(CUDA)
    opt, params = make_optimizer(net, cfg.train)
    for step in range(3):                      # warm-up steps: allocator, lazy init, cuBLAS handles
        loss, _ = run.loss(net, step_generator(0, step, 0, CUDA))
        optimizer_step(net, loss, opt, params, 1.0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(3, 5):
            loss, _ = run.loss(net, step_generator(0, step, 0, CUDA))
            optimizer_step(net, loss, opt, params, 1.0)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert torch.isfinite(loss).item()
