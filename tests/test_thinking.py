"""think(): the update rule on analytic energies, System 1 / System 2 graph semantics, contracts."""
import pytest
import torch

from ebtkit.core.thinking import StepSize, think
from tests.helpers import tol


def near(a, b, *terms, n=1, ops=2):
    """``a`` = ``b`` up to the float64 rounding of ``ops`` operations chained, each with a reduction of length ``n``
    (1: elementwise; a softmax or ⟨p, c⟩ over the row), judged against the largest of ``b`` and ``terms``: a step
    y − α∇E rounds against |y| and |c|, not against its (possibly small) result (tests.helpers.tol)."""
    scale = max(float(t.detach().abs().max()) for t in (b, *terms))
    torch.testing.assert_close(a, b, **tol(torch.float64, n, depth=ops, scale=scale))


def quad(c):
    """E(y) = ½‖y − c‖² per row: ∇E = y − c."""
    return lambda y, l: 0.5 * ((y - c) ** 2).sum(-1)


def test_alpha_one_lands_on_minimum():
    c = torch.randn(3, 5, dtype=torch.float64)
    y0 = torch.randn(3, 5, dtype=torch.float64)
    tr = think(quad(c), y0, steps=1, alpha=1.0)
    near(tr.final, c, y0)                                       # y0 − c, then y0 − (y0 − c): two roundings


def test_alpha_half_halves_distance_and_energy_falls():
    c = torch.randn(4, 6, dtype=torch.float64)
    y0 = torch.randn(4, 6, dtype=torch.float64)
    tr = think(quad(c), y0, steps=5, alpha=0.5, final_energy=True)
    for k in range(6):
        near(tr.candidates[k] - c, (y0 - c) * 0.5 ** k, y0, c, ops=3 * k + 2)    # 3 roundings a step, ± c
    E = torch.stack(tr.energies)                      # 6 × 4
    assert torch.all(E[1:] <= E[:-1])
    torch.testing.assert_close(E[1:] / E[:-1], torch.full_like(E[1:], 0.25))
    assert tr.nfe.tolist() == [5] * 4


def test_per_position_alpha_tensor():
    c = torch.zeros(2, 3, dtype=torch.float64)
    y0 = torch.ones(2, 3, dtype=torch.float64)
    alpha = torch.tensor([[1.0], [0.5]], dtype=torch.float64)
    tr = think(quad(c), y0, steps=1, alpha=alpha)
    torch.testing.assert_close(tr.final, torch.tensor([[0.0] * 3, [0.5] * 3], dtype=torch.float64))


def test_works_under_no_grad_and_zero_steps():
    c = torch.randn(2, 3)
    with torch.no_grad():
        tr = think(quad(c), torch.zeros(2, 3), steps=2, alpha=1.0)
        torch.testing.assert_close(tr.final, c)
        tr0 = think(quad(c), torch.zeros(2, 3), steps=0, alpha=1.0, final_energy=True)
    assert tr0.steps == 0 and len(tr0.energies) == 1


def test_energy_shape_contract_is_checked():
    with pytest.raises(ValueError, match="prefix"):
        think(lambda y, l: y.sum(0), torch.zeros(2, 3), steps=1, alpha=1.0)
    with pytest.raises(ValueError):
        think(quad(torch.zeros(3)), torch.zeros(3), steps=-1, alpha=1.0)
    with pytest.raises(ValueError):
        think(quad(torch.zeros(3)), torch.zeros(3), steps=1, alpha=1.0, accept_lower=True, create_graph=True)


class Learnable(torch.nn.Module):
    """E(y) = ½ w ‖y − c‖²: ∇E = w (y − c); gives a parameter for graph-semantics tests."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.7, dtype=torch.float64))
        self.c = torch.nn.Parameter(torch.tensor([0.3, -0.2], dtype=torch.float64))
        self.seen = []

    def forward(self, y, l):
        self.seen.append(y)
        return 0.5 * self.w * ((y - self.c) ** 2).sum(-1)


def _step_grads(system):
    """Gradient of the loss on each candidate separately w.r.t. w, to see which steps carry θ-gradients."""
    m = Learnable()
    y0 = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    tr = think(m, y0, steps=3, alpha=0.5, detach=system == "s1", grad_steps="all" if system == "s1" else "last",
               create_graph=True)
    out = []
    for y in tr.candidates[1:]:
        if not y.requires_grad:
            out.append(None)
            continue
        g = torch.autograd.grad(y.sum(), m.w, retain_graph=True, allow_unused=True)[0]
        out.append(None if g is None else float(g))
    return out, tr, m


def test_system1_every_step_differentiated_and_detached():
    grads, tr, m = _step_grads("s1")
    assert all(g is not None and g != 0 for g in grads)
    # detached between steps: the step-k candidate's θ-gradient is only its own one-step term
    expect = -0.5 * float(((tr.candidates[0] - m.c.detach()).sum()))   # ∂(y0 − α w (y0 − c))/∂w summed
    assert grads[0] == pytest.approx(expect)
    assert all(s.is_leaf for s in m.seen)


def test_system2_truncation_only_last_step_has_second_order_term():
    grads, tr, m = _step_grads("s2")
    # only the last step builds a graph through ∇E, earlier steps are constants for θ
    assert grads[0] is None and grads[1] is None
    assert grads[2] is not None and grads[2] != 0
    # no detach: the last candidate still depends on ŷ_0 (chain of identities with constant steps)
    y0 = torch.tensor([[1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    m2 = Learnable()
    tr2 = think(m2, y0, steps=3, alpha=0.5, detach=False, grad_steps="last", create_graph=True)
    g = torch.autograd.grad(tr2.final.sum(), y0)[0]
    # d ŷ_3 / d ŷ_0: steps 1,2 treat ∇E as constant (identity), step 3 is (1 − α w)
    torch.testing.assert_close(g, torch.full_like(y0, 1 - 0.5 * 0.7))


def test_learnable_step_size_gets_gradient_and_is_clamped():
    s = StepSize(0.5)
    c = torch.tensor([1.0, -1.0])
    tr = think(quad(c), torch.zeros(1, 2), steps=1, alpha=s(), create_graph=True)
    loss = (tr.final ** 2).sum()
    loss.backward()
    assert s.alpha.grad is not None and s.alpha.grad != 0
    with torch.no_grad():
        s.alpha.fill_(-3.0)
    assert float(s().detach()) == pytest.approx(1e-4)
    fixed = StepSize(2.0, learnable=False)
    assert not any(True for _ in fixed.parameters()) and float(fixed()) == 2.0
    with pytest.raises(ValueError):
        StepSize(0.0)


def test_langevin_noise_reproducible_through_generator():
    c = torch.zeros(2, 4)
    run = lambda seed: think(quad(c), torch.ones(2, 4), steps=3, alpha=0.5, langevin_sigma=0.3,  # noqa: E731
                             generator=torch.Generator().manual_seed(seed)).final
    torch.testing.assert_close(run(1), run(1), rtol=0, atol=0)
    assert not torch.allclose(run(1), run(2))
    plain = think(quad(c), torch.ones(2, 4), steps=3, alpha=0.5).final
    assert not torch.allclose(run(1), plain)


# ----------------------------------------------------------------------------------- candidate update rules
def _linear(c):
    """E(u) = ⟨c, u⟩ per row: ∇_u E = c, whatever u is."""
    return lambda u, l: (u * c).sum(-1)


@pytest.mark.parametrize("rule", ["code", "logits", "mirror"])
def test_text_update_rules_exactly(rule):
    """code: ŷ' = p − α c;  mirror: ŷ' = ŷ − α c;  logits: ŷ' = ŷ − α p⊙(c − ⟨p, c⟩) (the softmax Jacobian)."""
    from ebtkit.core.thinking import text_update
    c = torch.randn(3, 7, dtype=torch.float64)
    y0 = torch.randn(3, 7, dtype=torch.float64)
    tr = think(_linear(c), y0, steps=1, alpha=0.7, update=text_update(rule))
    p = torch.softmax(y0, -1)
    want = {"code": p - 0.7 * c, "mirror": y0 - 0.7 * c,
            "logits": y0 - 0.7 * p * (c - (p * c).sum(-1, keepdim=True))}[rule]
    near(tr.final, want, y0, c, n=7, ops=4)              # softmax and ⟨p, c⟩ over the row of 7, then the step


def test_code_rule_takes_the_softmax_after_the_langevin_noise():
    from ebtkit.core.thinking import text_update
    c = torch.randn(2, 5, dtype=torch.float64)
    y0 = torch.randn(2, 5, dtype=torch.float64)
    tr = think(_linear(c), y0, steps=1, alpha=0.3, langevin_sigma=0.8, generator=torch.Generator().manual_seed(3),
               update=text_update("code"))
    noise = torch.randn(y0.shape, generator=torch.Generator().manual_seed(3)).to(torch.float64) * 0.8
    near(tr.final, torch.softmax(y0 + noise, -1) - 0.3 * c, c, n=5, ops=3)   # y + noise, softmax over 5, step


def test_bound_energy_carries_its_rule_and_refuses_a_contradiction():
    from ebtkit.core.thinking import BoundEnergy, text_update
    c = torch.randn(2, 5, dtype=torch.float64)
    y0 = torch.randn(2, 5, dtype=torch.float64)
    fn = BoundEnergy(_linear(c), text_update("mirror"))
    near(think(fn, y0, steps=1, alpha=1.0).final, y0 - c, y0, c)                 # ŷ − α c: two roundings
    with pytest.raises(ValueError, match="contradicts"):
        think(fn, y0, steps=1, alpha=1.0, update=text_update("code"))
    with pytest.raises(ValueError, match="unknown update"):
        text_update("sgd")


def test_early_stop_keeps_a_settled_candidate_under_the_code_rule():
    """A settled prediction keeps its candidate logits; under the restart-at-p rule it must not be replaced by
    its softmax (which would flatten it a little more at every idle step)."""
    from ebtkit.core.thinking import text_update
    y0 = torch.randn(2, 5, dtype=torch.float64)
    const = lambda u, l: (u * 0).sum(-1) + 1.0      # noqa: E731  ∇E = 0 and ΔE = 0: settles after one step
    tr = think(const, y0, steps=4, alpha=1.0, tol=0.5, update=text_update("code"))
    near(tr.final, torch.softmax(y0, -1), n=5, ops=1)                       # one softmax over the row of 5
    assert tr.nfe.tolist() == [2, 2]
