"""The sequence EBT and its Transformer++ regressor: no leakage, cached == reference (energies and second-order
parameter gradients, float64), parameter parity, rollouts (shapes, cache == recomputation), training gradients."""
import pytest
import torch

from ebtkit.core.config import ThinkingConfig
from ebtkit.core.models.sequence import SequenceEBT, SequenceModelConfig, SequenceTransformer, regression_loss
from ebtkit.core.recipe import ThinkingSpec
from ebtkit.eval.sequence import rollout

F_, S = 5, 8


def make(model="ebt", dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = SequenceModelConfig(**{"model": model, "features": F_, "d_model": 16, "n_layers": 2, "n_heads": 2,
                                 "context": S, "n_landscapes": 2, "alpha": 0.5, **kw})
    m = (SequenceEBT if model == "ebt" else SequenceTransformer)(cfg).to(dtype)
    if model == "ebt":   # a non-zero energy head, so energies and gradients are not trivially zero
        torch.nn.init.normal_(m.head.weight, std=0.5)
    return m


def data(B=2, T=S, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, F_, generator=g, dtype=torch.float64), torch.randn(B, T, F_, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("reference", [True, False])
@pytest.mark.parametrize("step_cond", ["stream", "none"])
def test_no_leakage(reference, step_cond):
    """E_r depends on candidate r only (Jacobian), and never on observations after r."""
    m = make(step_cond=step_cond)
    x, y = data()
    f = lambda yy: m.energy(x, yy, 1 if step_cond == "stream" else 0, reference=reference)  # noqa: E731
    J = torch.autograd.functional.jacobian(f, y)                 # B,S × B,S,F
    for r in range(S):
        for k in range(S):
            if k != r:
                assert J[:, r][:, :, k].abs().max() == 0, f"E_{r} depends on candidate {k}"
        assert J[0, r, 0, r].abs().max() > 0
    base = f(y)
    for r in range(S - 1):
        x2 = x.clone()
        x2[:, r + 1:] += 1.0                                      # change every observation after r
        e2 = m.energy(x2, y, 0, reference=reference)
        e1 = m.energy(x, y, 0, reference=reference)
        assert torch.equal(e2[:, : r + 1], e1[:, : r + 1]), f"E_{r} sees observations > {r}"
        assert (e2[:, r + 1] - e1[:, r + 1]).abs().max() > 0
    assert base.shape == (2, S)


@pytest.mark.parametrize("candidate_proj", ["shared", "separate"])
def test_cached_equals_reference_energies_and_second_order_gradients(candidate_proj):
    m = make(candidate_proj=candidate_proj)
    x, target = data()
    y0 = torch.randn(2, S, F_, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for land in (0, 1):
        torch.testing.assert_close(m.energy(x, y0, land), m.energy(x, y0, land, reference=True), rtol=0, atol=1e-12)
    spec = ThinkingSpec.training(ThinkingConfig(steps=2), 2, None)
    grads = []
    for reference in (False, True):
        m.zero_grad()
        traj = spec.run(m.energy_fn(x, reference=reference), y0, m.step_size())
        loss, _ = spec.step_losses(traj, lambda c: regression_loss(c, target, "smooth_l1"))
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-10, atol=1e-12, msg=n)
    assert grads[0]["head.weight"].abs().sum() > 0 and grads[0]["step_size.alpha"].abs() > 0


def test_non_embedding_parameters_match_the_regressor():
    ebt, tpp = make("ebt"), make("transformer++")
    assert ebt.non_embedding_params() == tpp.non_embedding_params() > 0
    D = 16
    # what differs is only the embeddings and heads: EBT Linear(F,D) + energy head D + 2 step embeddings + α;
    # Transformer++ Linear(F,D) + Linear(D,F)
    assert ebt.embedding_params() == (F_ * D + D) + D + 2 * D + 1
    assert tpp.embedding_params() == (F_ * D + D) + (D * F_ + F_)
    sep = make("ebt", candidate_proj="separate")
    assert sep.embedding_params() == ebt.embedding_params() + F_ * D + D


def test_initial_candidates():
    x, _ = data()
    assert torch.equal(make(init="last").initial_candidates(x), x)
    assert torch.equal(make(init="zeros").initial_candidates(x), torch.zeros_like(x))
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    a, b = make(init="normal", init_scale=2.0).initial_candidates(x, g()), make(init="normal").initial_candidates(x, g())
    torch.testing.assert_close(a, 2 * b)


def test_zero_head_makes_thinking_the_identity():
    torch.manual_seed(0)
    m = SequenceEBT(SequenceModelConfig(features=F_, d_model=16, n_layers=1, n_heads=2, context=S, alpha=3.0))
    x, _ = data()
    y, traj = m.think(x.float(), steps=3)
    assert torch.equal(y, x.float()) and traj.abs().max() == 0


@pytest.mark.parametrize("system", ["s1", "s2"])
def test_training_step_gives_every_parameter_a_gradient(system):
    m = make(n_landscapes=1 if system == "s2" else 2)
    x, target = data()
    tc = ThinkingConfig(system=system, steps=2)
    spec = ThinkingSpec.training(tc, m.cfg.n_landscapes, None)
    traj = spec.run(m.energy_fn(x), m.initial_candidates(x), m.step_size())
    loss, _ = spec.step_losses(traj, lambda c: regression_loss(c, target, "mse"))
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"


@pytest.mark.parametrize("init", ["last", "normal"])
def test_ebt_rollout_shapes_and_cache_equals_recomputation(init):
    m = make(init=init)
    obs, _ = data(B=3, T=4)
    kw = dict(steps=2, generator=None)
    a = rollout(m, obs, 4, **kw, cached=True) if init == "last" else \
        rollout(m, obs, 4, steps=2, generator=torch.Generator().manual_seed(0))
    b = rollout(m, obs, 4, **kw, cached=False) if init == "last" else \
        rollout(m, obs, 4, steps=2, generator=torch.Generator().manual_seed(0), cached=False)
    assert a["pred"].shape == (3, 4, F_) and a["energy"].shape == (3, 4) and a["nfe"] == 2
    torch.testing.assert_close(a["pred"], b["pred"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a["energy"], b["energy"], rtol=1e-10, atol=1e-12)
    # the first predicted vector equals teacher-forced thinking at the last observed position
    y, _ = m.think(obs, steps=2, generator=torch.Generator().manual_seed(0))
    if init == "last":
        torch.testing.assert_close(a["pred"][:, 0], y[:, -1], rtol=1e-10, atol=1e-12)
    # best-of-N: more NFEs, and its chosen final energy is never above the single start's
    c = rollout(m, obs, 1, steps=2, samples=4, samples_sigma=0.3, generator=torch.Generator().manual_seed(0))
    assert c["nfe"] == 8 and c["pred"].shape == (3, 1, F_)
    single = rollout(m, obs, 1, steps=2, generator=torch.Generator().manual_seed(0))
    assert (c["energy"] <= single["energy"] + 1e-12).all()


def test_regressor_rollout_cache_equals_full_recomputation():
    m = make("transformer++")
    obs, _ = data(B=2, T=4)
    out = rollout(m, obs, 4)
    assert out["pred"].shape == (2, 4, F_) and out["energy"] is None and out["nfe"] == 1
    seq = obs
    for k in range(4):
        nxt = m(seq)[:, -1:]
        torch.testing.assert_close(out["pred"][:, k: k + 1], nxt, rtol=1e-10, atol=1e-12)
        seq = torch.cat([seq, nxt], 1)


def test_bad_shapes_raise():
    m = make()
    x, y = data()
    with pytest.raises(ValueError, match="F=5"):
        m.energy(x[..., :4], y[..., :4])
    with pytest.raises(ValueError, match="match"):
        m.energy(x, y[:, :3])
    with pytest.raises(ValueError, match="F=5"):
        make("transformer++")(x[..., :2])


def test_thinking_moves_the_candidate_only_within_the_projections_row_space():
    """∇_ŷE = Wᵀ ∂E/∂z for the candidate embedding z = Wŷ + b, so every thinking step stays in the row space of W
    (rank ≤ D): with F > D, a component of the start orthogonal to it is never changed. This is why an N(0, I)
    start cannot be denoised when F > D (docs/sequences.md)."""
    m = make(d_model=4, n_heads=2)                    # F = 5 > D = 4
    x, _ = data()
    y0 = torch.randn(2, S, F_, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    from ebtkit.core.thinking import think
    tr = think(m.energy_fn(x), y0, steps=3, alpha=5.0, landscapes=[0, 1, 1])
    W = m.in_proj.weight                              # D × F
    Q, _ = torch.linalg.qr(W.T)                       # F × D, orthonormal basis of the row space
    ortho = torch.eye(F_, dtype=W.dtype) - Q @ Q.T
    moved = tr.final - y0
    assert moved.abs().max() > 1e-3
    torch.testing.assert_close(moved @ ortho, torch.zeros_like(moved), rtol=0, atol=1e-10)
