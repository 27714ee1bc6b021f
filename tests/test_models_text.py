"""The text EBT: no leakage, per-position gradients, second-order training, parameter parity."""
import pytest
import torch
import torch.nn.functional as F

from ebtkit.core.config import ThinkingConfig
from ebtkit.tasks.text import ebt_text_loss
from ebtkit.core.thinking import think
from tests.helpers import close, tiny_model

STEP_CONDS = ["stream", "token", "none"]


@pytest.mark.parametrize("step_cond", STEP_CONDS)
@pytest.mark.parametrize("reference", [True, False])
def test_no_leakage(step_cond, reference):
    """E_r is unchanged by observed tokens > r and by candidates at positions ≠ r (exact, via the Jacobian)."""
    m = tiny_model(step_cond=step_cond)
    B, S, V = 2, 8, 13
    x = torch.randint(0, V, (B, S), generator=torch.Generator().manual_seed(0))
    y = torch.randn(B, S, V, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    f = lambda yy: m.energy(x, yy, 1, reference=reference)  # noqa: E731
    J = torch.autograd.functional.jacobian(f, y)            # B,S (energies) × B,S,V (candidates)
    for r in range(S):
        for k in range(S):
            block = J[:, r][:, :, k]                        # B × B × V
            if k != r:
                assert block.abs().max() == 0, f"E_{r} depends on candidate {k}"
        assert J[0, r, 0, r].abs().max() > 0
    base = f(y)
    for r in range(S - 1):
        x2 = x.clone()
        x2[:, r + 1:] = (x2[:, r + 1:] + 1 + torch.arange(S - r - 1)) % V   # change every token after r
        e2 = m.energy(x2, y, 1, reference=reference)
        assert torch.equal(e2[:, : r + 1], base[:, : r + 1]), f"E_{r} sees observed tokens > {r}"
        assert (e2[:, r + 1] - base[:, r + 1]).abs().max() > 0          # ...while E_{r+1} does see x_{r+1}


@pytest.mark.parametrize("step_cond", STEP_CONDS)
def test_reference_equals_cached_energies(step_cond):
    m = tiny_model(step_cond=step_cond)
    x = torch.randint(0, 13, (3, 8))
    y = torch.randn(3, 8, 13, dtype=torch.float64)
    for land in (0, 1):
        # the same float64 sums in another layout and order (tests.helpers.tol): the longest reduction is the width
        # 16 (= the 2S keys a prediction attends to), chained through 2 layers of attention and MLP (measured ≤ 26 u)
        close(m.energy(x, y, land), m.energy(x, y, land, reference=True), 16, depth=2 * 2)


def test_gradient_of_sum_is_per_position_gradient():
    m = tiny_model()
    x = torch.randint(0, 13, (2, 8))
    y = torch.randn(2, 8, 13, dtype=torch.float64, requires_grad=True)
    E = m.energy(x, y)
    g_sum = torch.autograd.grad(E.sum(), y, retain_graph=True)[0]
    for r in range(8):
        g_r = torch.autograd.grad(E[:, r].sum(), y, retain_graph=True)[0]
        # other positions add exact zeros; any reordering is bounded by the backward's sums over the 2S = 16 keys
        # and the width 16, through 2 layers of attention and MLP (tests.helpers.tol; measured: bit-identical)
        close(g_sum[:, r], g_r[:, r], 16, depth=2 * 2)
        assert g_r[:, [k for k in range(8) if k != r]].abs().max() == 0


@pytest.mark.parametrize("update", ["code", "logits", "mirror"])
def test_zero_initialised_head_makes_the_first_step_the_identity(update):
    """At init E ≡ 0, so thinking leaves the distribution where it was (``logits``/``mirror``: the same logits;
    ``code``: each step restarts from ``p = softmax(ŷ)``) for any α; the energy head alone receives a
    (second-order) gradient on the first step."""
    m = tiny_model(random_head=False, alpha=500.0, update=update)
    x = torch.randint(0, 13, (2, 8))
    y0 = torch.randn(2, 8, 13, dtype=torch.float64)
    assert m.energy(x, y0).abs().max() == 0
    tr = think(m.energy_fn(x), y0, steps=3, alpha=m.step_size())
    want = y0 if update != "code" else torch.softmax(torch.softmax(torch.softmax(y0, -1), -1), -1)
    # ∇E ≡ 0, so the steps change nothing but the code rule's softmax over V = 13, three times (tests.helpers.tol)
    close(tr.final, want, 13, depth=3)
    loss, _, _ = ebt_text_loss(m, torch.randint(0, 13, (2, 9)), ThinkingConfig(steps=2), torch.Generator().manual_seed(0))
    loss.backward()
    assert m.head.weight.grad.abs().sum() > 0
    assert m.backbone.blocks[0].attn.wq.weight.grad.abs().sum() == 0


@pytest.mark.parametrize("system", ["s1", "s2"])
@pytest.mark.parametrize("step_cond", ["stream", "token"])
def test_training_step_gives_every_parameter_a_gradient(system, step_cond):
    """After one optimizer step (which moves the zero-initialised head), every parameter, α included, gets a
    non-zero gradient — all of them except token/step embeddings only through second-order terms."""
    # System 2 thinks on one landscape (the paper's recipe); System 1 on one landscape per step
    m = tiny_model(dtype=torch.float32, step_cond=step_cond, vocab_size=32, n_landscapes=2 if system == "s1" else 1,
                   random_head=False)
    tokens = torch.randint(0, 32, (4, 9))
    tcfg = ThinkingConfig(system=system, steps=2)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    loss, metrics, _ = ebt_text_loss(m, tokens, tcfg, torch.Generator().manual_seed(0))
    loss.backward()
    opt.step()
    opt.zero_grad()
    loss, metrics, _ = ebt_text_loss(m, tokens, tcfg, torch.Generator().manual_seed(1))
    loss.backward()
    for name, p in m.named_parameters():
        if name == "step_emb.weight":
            assert p.grad is not None and (p.grad.abs().sum(-1) > 0).all(), name
            continue
        # the energy head and α only reach the loss through ∇_ŷE: these are second-order gradients
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"
    assert m.step_size.alpha.grad is not None and m.step_size.alpha.grad != 0


@pytest.mark.slow
@pytest.mark.parametrize("step_cond", ["stream", "token"])
def test_unrolled_loss_gradcheck_float64(step_cond):
    """Finite differences agree with autograd's second-order gradient of the fully unrolled loss
    (Algorithm 1: no detach, graph through every step) w.r.t. weights, the energy head and α."""
    m = tiny_model(d_model=8, n_heads=2, vocab_size=7, context=4, step_cond=step_cond, alpha=2.0)
    x = torch.randint(0, 7, (2, 4), generator=torch.Generator().manual_seed(3))
    target = torch.randint(0, 7, (2, 4), generator=torch.Generator().manual_seed(5))
    y0 = torch.randn(2, 4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    keys = ["head.weight", "backbone.blocks.0.attn.wq.weight", "cand_proj.weight", "step_size.alpha"]

    def loss_of(*params):
        with torch.nn.utils.stateless._reparametrize_module(m, dict(zip(keys, params))):
            tr = think(m.energy_fn(x), y0, steps=2, alpha=m.step_size(), landscapes=[0, 1], detach=False,
                       grad_steps="all", create_graph=True)
            return F.cross_entropy(tr.final.reshape(-1, 7), target.reshape(-1))

    params = tuple(dict(m.named_parameters())[k].detach().clone().requires_grad_() for k in keys)
    assert torch.autograd.gradcheck(loss_of, params, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_non_embedding_parameters_match_transformer_pp():
    e, t = tiny_model("ebt"), tiny_model("transformer++")
    assert e.non_embedding_params() == t.non_embedding_params() > 0
    # the only EBT-specific parameters beyond the T++ layout: energy head (D), step table, α
    extra = sum(p.numel() for n, p in e.named_parameters() if n.startswith(("head", "step_emb", "step_size")))
    assert extra == 16 + 2 * 16 + 1


def test_tied_candidate_projection():
    m = tiny_model(candidate_proj="tied")
    assert m.cand_proj is None
    x = torch.randint(0, 13, (2, 8))
    y = torch.randn(2, 8, 13, dtype=torch.float64)
    # as test_reference_equals_cached_energies: width 16 through 2 layers (tests.helpers.tol; measured ≤ 11 u)
    close(m.energy(x, y), m.energy(x, y, reference=True), 16, depth=2 * 2)


def test_bad_shapes_raise():
    m = tiny_model()
    with pytest.raises(ValueError, match="candidates"):
        m.energy(torch.randint(0, 13, (2, 8)), torch.randn(2, 8, 12, dtype=torch.float64))
    with pytest.raises(ValueError, match="landscape"):
        m.energy(torch.randint(0, 13, (2, 8)), torch.randn(2, 8, 13, dtype=torch.float64), landscape=5)
