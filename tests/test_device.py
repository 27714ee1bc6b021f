"""Device placement and host synchronisation, proved on the CPU.

Every task's EBT and baseline run forward, thinking (System 1 and System 2 semantics), the training loss and
``backward()`` with the model and its inputs on ``torch.device("meta")``. Meta tensors have no values: any
``.item()``, ``int(t)``, ``float(t)`` or ``bool(t)`` on one raises, and an op mixing a meta tensor with a CPU
tensor created by mistake (a mask, a RoPE table, a step size, noise) raises too. So these tests fail if model
code reads a value back to the host or creates a tensor on the wrong device.
"""
from __future__ import annotations

import pytest
import torch

from ebtkit.core.device import DeviceError, autocast, resolve_device, resolve_precision
from ebtkit.core.replay import ReplayBuffer
from ebtkit.core.rng import host_generator, step_generator
from ebtkit.tasks import get_task, preset
from ebtkit.tasks.denoise import dit_loss, ebt_denoise_loss
from ebtkit.tasks.sequence import ebt_sequence_loss, regressor_loss
from ebtkit.tasks.text import ebt_text_loss, transformer_loss
from tests.helpers import close

META = torch.device("meta")


def _meta_model(task: str, cfg):
    torch.manual_seed(0)
    return get_task(task).build_model(cfg).to(META).train()


def _assert_meta_grads(model):
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.device.type == "meta" for g in grads), "backward did not reach every parameter on meta"


@pytest.mark.parametrize("system", ["s1", "s2"])
def test_text_ebt_on_meta(system):
    cfg = preset("text", "tiny", system)
    model = _meta_model("text", cfg)
    B, S = 3, cfg.model.context
    tokens = torch.zeros(B, S + 1, dtype=torch.long, device=META)
    replay = ReplayBuffer(8) if system == "s2" else None
    for _ in range(2):                    # the second call replays the first batch's candidates (S2)
        loss, metrics, traj = ebt_text_loss(model, tokens, cfg.thinking, None, replay=replay)
        assert loss.device == META and traj.final.device == META
        model.zero_grad(set_to_none=True)
        loss.backward()
        _assert_meta_grads(model)
    model.eval()
    best, energies = model.think(tokens[:, :-1], steps=3, samples=2)
    assert best.device == META and best.shape == (B, S, cfg.model.vocab_size)
    e = model(tokens[:, :-1], torch.zeros(B, S, cfg.model.vocab_size, device=META), reference=True)
    assert e.device == META and e.shape == (B, S)


def test_text_transformer_on_meta():
    cfg = preset("text", "tiny", **{"model.model": "transformer++"})
    model = _meta_model("text", cfg)
    tokens = torch.zeros(2, cfg.model.context + 1, dtype=torch.long, device=META)
    loss, _ = transformer_loss(model, tokens)
    loss.backward()
    _assert_meta_grads(model)
    cache: list = []
    logits = model(tokens[:, :4], cache=cache)                               # the generation path, cached
    logits = model(tokens[:, 4:5], cache=cache, start=4)
    logits = model(tokens[:, 5:6], cache=cache, start=torch.tensor([5, 3], device=META))   # ragged rows
    assert logits.device == META


@pytest.mark.parametrize("system", ["s1", "s2"])
def test_denoise_models_on_meta(system):
    task = get_task("denoise")
    for name in ("ebt", "dit"):
        cfg = task.preset("tiny", system, **{"model.model": name})
        model = _meta_model("denoise", cfg)
        m = cfg.model
        clean = torch.zeros(2, m.channels, m.image_size, m.image_size, device=META)
        if name == "ebt":
            loss, _ = ebt_denoise_loss(model, clean, clean + 0.1, cfg, None)
        else:
            loss, _ = dit_loss(model, cfg.noise.diffusion(), clean, 50, None)
        loss.backward()
        _assert_meta_grads(model)


@pytest.mark.parametrize("system", ["s1", "s2"])
def test_sequence_models_on_meta(system):
    task = get_task("sequence")
    for name in ("ebt", "transformer++"):
        cfg = task.preset("tiny", system, **{"model.model": name}).replace(**{"model.features": 6})
        model = _meta_model("sequence", cfg)
        window = torch.zeros(3, cfg.model.context + 1, 6, device=META)
        if name == "ebt":
            replay = ReplayBuffer(8) if cfg.thinking.replay_fraction > 0 else None
            for _ in range(2):
                model.zero_grad(set_to_none=True)
                loss, _, _ = ebt_sequence_loss(model, window, cfg, None, replay=replay)
                loss.backward()
        else:
            loss, _ = regressor_loss(model, window, cfg)
            loss.backward()
        _assert_meta_grads(model)


def test_meta_catches_a_host_sync():
    """The proof works: a value read on meta raises (so the tests above would catch one)."""
    t = torch.zeros(3, device=META)
    with pytest.raises(Exception):
        int(t.max())
    with pytest.raises(Exception):
        _ = t + torch.ones(3)[:, None].expand(3, 3).contiguous()[0] * torch.ones(3, device="cpu")  # meta + cpu


# ----------------------------------------------------------------------------------------- devices
def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available()
                                      else torch.device("cpu"))
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device"):
            resolve_device("cuda:1")


def test_precision_rules():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(DeviceError):
        resolve_precision("fp8", cpu)


def test_host_generator_is_the_generator_on_cpu():
    """CPU runs draw exactly the numbers they always drew: the host stream is the step generator itself."""
    g = step_generator(33, 5, 0)
    assert host_generator(g) is g
    assert torch.equal(torch.rand(4, generator=step_generator(33, 5, 0)),
                       torch.rand(4, generator=torch.Generator().manual_seed((33 * 1_000_003 + 5) * 64)))


def test_cuda_requested_without_cuda_is_one_line_and_writes_nothing(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from ebtkit.cli import main
    out = tmp_path / "run"
    rc = main(["train", "--preset", "tiny", "--device", "cuda", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("ebt: error: --device cuda: no CUDA device")
    assert not out.exists() and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------- precision
def test_second_order_step_under_bf16_autocast():
    """Thinking + the second-order loss + backward run under CPU bf16 autocast; the candidate and the energy
    stay fp32, parameters and their gradients stay fp32, and the loss is close to the fp32 loss."""
    cfg = preset("text", "tiny", "s1", **{"model.context": 8, "model.d_model": 32})
    torch.manual_seed(0)
    model = get_task("text").build_model(cfg)
    with torch.no_grad():                   # a non-zero energy head, so thinking moves the candidate
        model.head.weight.normal_(0, 0.5)
    tokens = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(1))
    ref, _, _ = ebt_text_loss(model, tokens, cfg.thinking, torch.Generator().manual_seed(2))
    ref.backward()
    g_ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    with autocast(torch.device("cpu"), "bf16"):
        loss, _, traj = ebt_text_loss(model, tokens, cfg.thinking, torch.Generator().manual_seed(2))
    assert all(c.dtype == torch.float32 for c in traj.candidates)
    assert all(e.dtype == torch.float32 for e in traj.energies)
    loss.backward()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    assert abs(float(loss.detach()) - float(ref.detach())) < 0.05 * abs(float(ref.detach()))
    # the second-order term reached the energy head (its gradient exists only through ∇_ŷE)
    assert float(model.head.weight.grad.abs().sum()) > 0 and float(g_ref[-1].abs().sum()) >= 0


# ----------------------------------------------------------------------------------------- GPU memory
def _longest_reduction(cfg, tokens) -> int:
    """The longest float sum of a text step on ``tokens``: the candidate's projection over the vocabulary, a
    matrix product over the width, or the positions (both streams of every window) a weight gradient sums over."""
    m = cfg.model
    return max(m.vocab_size, m.d_model, m.ffn_hidden, tokens.shape[0] * 2 * m.context)


def _s1_grads(model, tokens, cfg, **attrs):
    for k, v in attrs.items():
        setattr(model, k, v)
    model.zero_grad(set_to_none=True)
    loss, _, _ = ebt_text_loss(model, tokens, cfg.thinking, torch.Generator().manual_seed(3))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("system", ["s1", "s2"])
def test_activation_checkpointing_inside_thinking_is_exact(system):
    """Non-reentrant checkpointing of the prediction-stream blocks works with thinking's create_graph double
    backward and gives the same loss and gradients (recomputation repeats the same float ops)."""
    cfg = preset("text", "tiny", system, **{"model.context": 12})
    torch.manual_seed(0)
    model = get_task("text").build_model(cfg)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
    tokens = torch.randint(0, 256, (3, 13), generator=torch.Generator().manual_seed(1))
    l0, g0 = _s1_grads(model, tokens, cfg, checkpoint_blocks=False)
    l1, g1 = _s1_grads(model, tokens, cfg, checkpoint_blocks=True)
    assert torch.equal(l0, l1)
    # the forward is the same float ops; the gradients are accumulated in another order (recomputed blocks add
    # theirs later): float32 summation-order tolerance, longest reduction = the vocabulary, one per layer
    for a, b in zip(g1, g0):
        close(a, b, _longest_reduction(cfg, tokens), depth=cfg.model.n_layers)


def test_observed_stream_needs_only_first_order():
    """The observed stream is differentiated once: the fused CPU SDPA kernel (which has no double backward)
    trains there, and matches the explicit kernel. Forcing it into the prediction stream would fail."""
    cfg = preset("text", "tiny", "s1", **{"model.context": 12})
    torch.manual_seed(0)
    model = get_task("text").build_model(cfg)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)
    tokens = torch.randint(0, 256, (3, 13), generator=torch.Generator().manual_seed(1))
    assert model._context_backend(torch.device("cpu")) == "math"          # bit-identical CPU default
    l0, g0 = _s1_grads(model, tokens, cfg, context_attention="math")
    l1, g1 = _s1_grads(model, tokens, cfg, context_attention="sdpa")
    # two kernels computing the same sums in another order: float32 tolerance from eps, the longest reduction and
    # the layers (each gradient judged against its own largest element: one element of 8,192 is off by 1.7e-5
    # of a gradient whose largest element is ~50 on an AVX-512 Xeon — 3e-7 of it)
    close(l1, l0, _longest_reduction(cfg, tokens), depth=cfg.model.n_layers)
    for a, b in zip(g1, g0):
        close(a, b, _longest_reduction(cfg, tokens), depth=cfg.model.n_layers)


def test_bf16_run_keeps_fp32_checkpoints_and_the_best_one(tmp_path):
    """A bf16-autocast run (CPU) saves fp32 weights, keeps RUN/best/ at the best validation perplexity, and its
    checkpoint loads and evaluates in either precision."""
    import json

    from ebtkit import load
    from ebtkit.cli import main
    from ebtkit.core.checkpoint import read_state
    from ebtkit.eval.metrics import perplexity
    from safetensors.torch import load_file

    out = tmp_path / "run"
    rc = main(["train", "--preset", "tiny", "--steps", "12", "--precision", "bf16", "--keep-best", "--out", str(out),
               "--no-progress", "--no-eval", "--set", "train.eval_every=4", "--set", "train.eval_batches=1"])
    assert rc == 0
    weights = load_file(str(out / "checkpoint" / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
    vals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in vals if r.get("split") == "val"]
    assert len(vals) == 3
    best = min(vals, key=lambda r: r["val_ppl"])
    assert read_state(out / "best")["step"] == best["step"]
    assert json.loads((out / "checkpoint" / "config.json").read_text())["config"]["train"]["precision"] == "bf16"
    b = load(out / "best")
    data = torch.randint(0, 256, (200,), generator=torch.Generator().manual_seed(0))
    p32 = perplexity(b.model, data, 32, max_windows=4)["ppl"]
    with autocast(torch.device("cpu"), "bf16"):
        p16 = perplexity(b.model, data, 32, max_windows=4)["ppl"]
    assert abs(p16 - p32) / p32 < 0.03
