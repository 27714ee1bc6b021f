"""The fast (cached-context) text EBT path equals the full [observed ; predictions] reference path.

Specification (issue 5): energies, every step's candidates, the loss and every parameter gradient agree within
1e-5 in float64 (in practice ~1e-13) for System 1 and System 2 and every step-conditioning option, with the
blocked attention kernel and with the dense one; the fast path is the default; the prediction-stream kernel
is twice differentiable and skips masked blocks.
"""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ebtkit.core.config import ThinkingConfig
from ebtkit.core.nn import attention
from ebtkit.core.nn.prediction_attention import (CausalPlan, causal_prediction_attention, prediction_attention,
                                            visible_to_bias)
from ebtkit.tasks.text import ebt_text_loss
from tests.helpers import close, tiny_model, tol

V, S = 13, 10
# The cached fast path and the reference layout compute the same float64 sums in another order: the tolerance comes
# from float64's eps, the longest reduction (a weight gradient over 3 windows × both streams' 2S positions, longer
# than V and the width 16) and the reductions chained: 2 layers, forward and backward, for each of up to 3 thinking
# steps and the loss's own pass (tests.helpers.tol)
TOL = tol(torch.float64, 3 * 2 * S, depth=2 * 2 * (3 + 1))["rtol"]
THINKING = {
    "s1": ThinkingConfig(system="s1", steps=2),
    "s2": ThinkingConfig(system="s2", steps=2, max_steps=3, alpha_jitter=2.0, langevin_sigma=0.5),
}


def assert_close(a, b, what, scale=None):
    """|a − b| ≤ TOL · ``scale`` elementwise (default max|b|, the terms' magnitude: tests.helpers.close), with the
    worst offender in the message."""
    err = ((a - b).abs() / (scale or float(b.abs().max()) or 1.0)).max().item()
    assert err <= TOL, f"{what}: error {err:.3g} of the largest element (tolerance {TOL:.3g})"


def run_step(m, tokens, tcfg, reference, steps):
    m.zero_grad(set_to_none=True)
    loss, metrics, traj = ebt_text_loss(m, tokens, tcfg, torch.Generator().manual_seed(7), steps=steps,
                                        reference=reference)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    return loss.detach(), metrics, traj, grads


@pytest.mark.parametrize("system", ["s1", "s2"])
@pytest.mark.parametrize("step_cond", ["stream", "token", "none"])
@pytest.mark.parametrize("block", [None, 3])
def test_training_step_fast_equals_reference(system, step_cond, block):
    """Loss, metrics, every step's energies and candidates, and every parameter gradient (second order)."""
    m = tiny_model(step_cond=step_cond, n_landscapes=2 if system == "s1" else 1, vocab_size=V, context=S)
    m.attn_block = block                      # 3 → blocks of rows 0-2, 3-5, 6-8, 9 (uneven last block)
    tokens = torch.randint(0, V, (3, S + 1), generator=torch.Generator().manual_seed(1))
    steps = 2 if system == "s1" else 3
    fast = run_step(m, tokens, THINKING[system], False, steps)
    ref = run_step(m, tokens, THINKING[system], True, steps)
    assert_close(fast[0], ref[0], "loss")
    energy = max(float(e.abs().max()) for e in ref[2].energies)
    for k in ref[1]:       # energy_gap: a difference of mean energies, judged against the energies' size
        assert_close(fast[1][k], ref[1][k], f"metric {k}", energy if k == "energy_gap" else None)
    tf, tr = fast[2], ref[2]
    assert len(tf.candidates) == len(tr.candidates) == steps + 1
    for k, (a, b) in enumerate(zip(tf.candidates, tr.candidates)):
        assert_close(a.detach(), b.detach(), f"candidate {k}")
    assert len(tf.energies) == len(tr.energies) == steps
    for k, (a, b) in enumerate(zip(tf.energies, tr.energies)):
        assert_close(a.detach(), b.detach(), f"energy {k}")
    assert set(fast[3]) == set(ref[3]) == {n for n, p in m.named_parameters() if p.requires_grad}
    for name in ref[3]:
        assert ref[3][name].abs().max() > 0, f"{name}: zero gradient makes the comparison vacuous"
        assert_close(fast[3][name], ref[3][name], f"grad {name}")


@pytest.mark.parametrize("step_cond", ["stream", "token"])
@pytest.mark.parametrize("block", [None, 4, 128])
def test_energy_gradient_and_hessian_vector_product_equal_reference(step_cond, block):
    """E, ∇_ŷE, and the second-order products (∇_ŷE·u)' w.r.t. ŷ and every parameter."""
    m = tiny_model(step_cond=step_cond, vocab_size=V, context=S)
    m.attn_block = block
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, V, (2, S), generator=g)
    y = torch.randn(2, S, V, dtype=torch.float64, generator=g)
    u = torch.randn(2, S, V, dtype=torch.float64, generator=g)
    params = [p for p in m.parameters() if p.requires_grad]
    out = {}
    for ref in (False, True):
        yy = y.clone().requires_grad_()
        E = m.energy(x, yy, 1, reference=ref)
        (gy,) = torch.autograd.grad(E.sum(), yy, create_graph=True)
        hv = torch.autograd.grad((gy * u).sum(), [yy] + params, allow_unused=True)
        out[ref] = (E.detach(), gy.detach(), hv)
    assert_close(out[False][0], out[True][0], "energy")
    assert_close(out[False][1], out[True][1], "dE/dy")
    for (name, _), a, b in zip([("y", None)] + list(m.named_parameters()), out[False][2], out[True][2]):
        assert (a is None) == (b is None), name
        if b is not None:
            assert_close(a, b, f"HVP {name}")


@pytest.mark.parametrize("step_cond", ["stream", "token"])
def test_energy_cached_rows_match_reference_positions(step_cond):
    """``rows`` (R,) and per-batch-row (B,R) score exactly the reference energies at those positions."""
    m = tiny_model(step_cond=step_cond, vocab_size=V, context=S)
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, V, (2, S), generator=g)
    y = torch.randn(2, S, V, dtype=torch.float64, generator=g)
    ref = m.energy_reference(x, y, 1)                                  # B,S
    cache = m.encode_context(x, 1)
    rows = torch.tensor([7, 0, 4])
    assert_close(m.energy_cached(cache, y[:, rows], 1, rows), ref[:, rows], "rows (R,)")
    rows2 = torch.tensor([[9, 2], [3, 3]])                             # different rows per batch row
    y2 = torch.stack([y[b, rows2[b]] for b in range(2)])
    want = torch.stack([ref[b, rows2[b]] for b in range(2)])
    assert_close(m.energy_cached(cache, y2, 1, rows2), want, "rows (B,R)")


@pytest.mark.parametrize("step_cond", ["stream", "token"])
def test_fast_path_is_the_default_and_encodes_context_once_per_landscape(step_cond, monkeypatch):
    m = tiny_model(step_cond=step_cond, vocab_size=V, context=S, n_landscapes=2)
    calls = {"encode": 0, "reference": 0}
    enc, ref = m.encode_context, m.energy_reference

    def count(key, fn):
        def wrapped(*a, **k):
            calls[key] += 1
            return fn(*a, **k)
        return wrapped
    monkeypatch.setattr(m, "encode_context", count("encode", enc))
    monkeypatch.setattr(m, "energy_reference", count("reference", ref))
    tokens = torch.randint(0, V, (2, S + 1))
    loss, _, _ = ebt_text_loss(m, tokens, ThinkingConfig(system="s1", steps=3), torch.Generator().manual_seed(0))
    loss.backward()
    # 3 steps on landscapes [0, 1, 1]: the context is encoded once, or once per landscape with the step token
    assert calls == {"encode": 1 if step_cond == "stream" else 2, "reference": 0}
    m.think(tokens[:, :-1], steps=2)
    assert calls["reference"] == 0


def test_fast_path_flops_are_well_below_the_reference_layout():
    """One S1 training step: the observed stream is not recomputed per step and there is no (2S)² score matrix."""
    m = tiny_model(dtype=torch.float32, vocab_size=16, d_model=64, n_heads=2, context=64)
    tokens = torch.randint(0, 16, (2, 65))
    flops = {}
    for ref in (False, True):
        with FlopCounterMode(display=False) as fc:
            loss, _, _ = ebt_text_loss(m, tokens, ThinkingConfig(system="s1", steps=2),
                                       torch.Generator().manual_seed(0), reference=ref)
            loss.backward()
        flops[ref] = fc.get_total_flops()
    assert flops[False] < 0.6 * flops[True], flops


def _naive(q, kc, vc, ks, vs, visible):
    """Prediction attention spelled out with the shared masked-attention op on a [context ; self] layout."""
    B, H, R, hd = q.shape
    Tc = kc.shape[2]
    k = torch.cat([kc[:, :, None].expand(B, H, R, Tc, hd), ks[:, :, :, None]], 3)   # B,H,R,Tc+1,hd
    v = torch.cat([vc[:, :, None].expand(B, H, R, Tc, hd), vs[:, :, :, None]], 3)
    mask = torch.cat([visible.expand(B, 1, R, Tc), torch.ones(B, 1, R, 1, dtype=torch.bool)], -1)
    o = attention(q[:, :, :, None], k, v, mask[:, :, :, None])                        # B,H,R,1,hd
    return o[:, :, :, 0]


@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("block", [None, 2, 5, 64])
def test_prediction_attention_kernels_match_naive_and_double_backward(offset, block):
    g = torch.Generator().manual_seed(4)
    B, H, R, hd = 2, 2, 7, 4
    Tc = R + offset
    mk = lambda *s: torch.randn(*s, dtype=torch.float64, generator=g, requires_grad=True)  # noqa: E731
    q, ks, vs, kc, vc = mk(B, H, R, hd), mk(B, H, R, hd), mk(B, H, R, hd), mk(B, H, Tc, hd), mk(B, H, Tc, hd)
    visible = torch.arange(Tc)[None, :] <= (torch.arange(R) + offset)[:, None]
    plan = CausalPlan(R, Tc, offset, torch.float64, "cpu", block)
    assert len(plan.blocks) == (1 if not block or block >= R else -(-R // block))
    blocked = lambda *a: causal_prediction_attention(*a, plan, hd ** -0.5)  # noqa: E731
    dense = lambda *a: prediction_attention(*a, visible_to_bias(visible, torch.float64), hd ** -0.5)  # noqa: E731
    naive = lambda *a: _naive(*a, visible[None, None])  # noqa: E731
    args = (q, kc, vc, ks, vs)
    w = torch.randn(B, H, R, hd, dtype=torch.float64, generator=g)
    results = []
    for f in (naive, dense, blocked):
        o = f(*args)
        gs = torch.autograd.grad((o * w).sum(), args, create_graph=True)
        second = torch.autograd.grad(sum((x * x).sum() for x in gs), args)
        results.append((o, gs, second))
    for res in results[1:]:
        for a, b in zip(res, results[0]):
            for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
                close(x, y, max(hd, Tc + 1, R), depth=3)    # q·k over hd, softmax over Tc + 1, grads over R
    small = tuple(t.detach()[:1, :1, :, :2].clone().requires_grad_() for t in args)
    torch.autograd.gradgradcheck(lambda *a: causal_prediction_attention(
        *a, CausalPlan(R, Tc, offset, torch.float64, "cpu", 3), 0.7), small)


def test_causal_plan_rejects_a_short_cache():
    with pytest.raises(ValueError, match="cached keys"):
        CausalPlan(8, 7, 0, torch.float32, "cpu")


def test_energy_fn_with_prebuilt_caches_per_landscape():
    """A dict {landscape: cache} serves the step-token model; one cache for the wrong landscape is refused."""
    m = tiny_model(step_cond="token", vocab_size=V, context=S)
    x = torch.randint(0, V, (2, S))
    y = torch.randn(2, S, V, dtype=torch.float64)
    caches = {l: m.encode_context(x, l) for l in (0, 1)}
    fn, want = m.energy_fn(x, cache=caches), m.energy_fn(x, reference=True)
    for land in (0, 1):
        assert_close(fn(y, land), want(y, land), f"landscape {land}")
    with pytest.raises(ValueError, match="landscape 0"):
        m.energy_fn(x, cache=caches[0])(y, 1)
