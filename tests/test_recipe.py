"""The thinking recipe (core/recipe.py, core/replay.py) and System 2 training: the spec built from a
ThinkingConfig, step losses, truncation, Langevin noise, random α, random step counts, the replay buffer, the
contrastive term, and the ebt-s1 / ebt-s2 presets."""
import pytest
import torch
import torch.nn.functional as F

from ebtkit.core.config import PRESETS, RECIPES, ThinkingConfig, preset
from ebtkit.core.recipe import ThinkingSpec, landscape_schedule, sample_steps
from ebtkit.core.replay import REPLAY_FILE, ReplayBuffer, replay_count
from ebtkit.core.thinking import jittered_alpha, think
from ebtkit.tasks.text import ebt_text_loss
from tests.helpers import close, tiny_model, train


def _tokens(model, B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.cfg.vocab_size, (B, model.cfg.context + 1), generator=g)


def _s2(**kw):
    base = dict(system="s2", steps=3, langevin_sigma=0.0, alpha_jitter=1.0)
    base.update(kw)
    return ThinkingConfig(**base)


def _param_grads(model, loss):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params, allow_unused=True), params


# ----------------------------------------------------------------------------------- truncation
def test_s2_truncation_gradients_only_through_the_last_step():
    """The S2 loss's θ-gradient equals that of ONE differentiated step taken from ŷ_{N-1}, where ŷ_{N-1} was
    reached by plain (graph-free) steps; the fully unrolled loss gives a different gradient. (α is fixed, as in
    the S2 recipe: a learnable α would also get gradient from the earlier steps' α·∇E terms, ∇E constant.)"""
    m = tiny_model(alpha=3.0, alpha_learnable=False)
    tok = _tokens(m)
    x, y = tok[:, :-1], tok[:, 1:]
    loss, _, traj = ebt_text_loss(m, tok, _s2(), torch.Generator().manual_seed(5))
    got, params = _param_grads(m, loss)

    y0 = m.init_candidates(tuple(x.shape), torch.Generator().manual_seed(5)).to(torch.float64)
    fn, alpha, lands = m.energy_fn(x), m.step_size(), landscape_schedule(m.cfg.n_landscapes, 3)
    prefix = think(fn, y0, steps=2, alpha=alpha.detach(), landscapes=lands[:2]).final.detach()
    last = think(fn, prefix, steps=1, alpha=alpha, landscapes=lands[2:], create_graph=True).final
    expect, _ = _param_grads(m, F.cross_entropy(last.reshape(-1, last.shape[-1]), y.reshape(-1)))
    for p, a, b in zip(params, got, expect):
        if a is None or b is None:
            assert a is None and b is None
            continue
        # the same float64 sums in another graph (tests.helpers.tol): a weight gradient sums over the B·S = 32
        # positions, chained through 2 layers forward, backward (∇E) and double backward, for 3 thinking steps
        close(a, b, 4 * 8, depth=2 * 3 * 3)
    close(traj.final.detach(), last.detach(), 16, depth=2 * 2 * 3)   # width 16, 2 layers fwd + bwd, 3 steps

    full = think(m.energy_fn(x), y0, steps=3, alpha=alpha, landscapes=lands, detach=False, grad_steps="all", create_graph=True).final
    unrolled, _ = _param_grads(m, F.cross_entropy(full.reshape(-1, full.shape[-1]), y.reshape(-1)))
    assert any(a is not None and not torch.allclose(a, b) for a, b in zip(got, unrolled))


def test_s2_scores_only_the_last_step_and_s1_averages_all():
    m = tiny_model()
    tok = _tokens(m)
    _, met2, tr2 = ebt_text_loss(m, tok, _s2(), torch.Generator().manual_seed(1))
    assert met2["loss"] == met2["ce_step3"]
    _, met1, _ = ebt_text_loss(m, tok, ThinkingConfig(system="s1", steps=3), torch.Generator().manual_seed(1))
    assert met1["loss"] == pytest.approx(float((met1["ce_step1"] + met1["ce_step2"] + met1["ce_step3"]) / 3))


# ----------------------------------------------------------------------------------- Langevin noise
def test_langevin_training_noise_is_reproducible_through_the_generator():
    m = tiny_model()
    tok = _tokens(m)
    run = lambda seed, sigma=0.7: ebt_text_loss(m, tok, _s2(langevin_sigma=sigma),  # noqa: E731
                                                torch.Generator().manual_seed(seed))[2].final.detach()
    torch.testing.assert_close(run(3), run(3), rtol=0, atol=0)
    assert not torch.allclose(run(3), run(4))
    assert not torch.allclose(run(3), run(3, sigma=0.0))
    # the same generator state gives the same noise: a global-RNG draw in between changes nothing
    a = run(3)
    torch.randn(100)
    torch.testing.assert_close(a, run(3), rtol=0, atol=0)
    # noise is off at evaluation
    e = lambda seed: ebt_text_loss(m, tok, _s2(langevin_sigma=0.7), torch.Generator().manual_seed(seed),  # noqa: E731
                                   training=False)[2].final
    torch.testing.assert_close(e(3), ebt_text_loss(m, tok, _s2(), torch.Generator().manual_seed(3),
                                                   training=False)[2].final)


# ----------------------------------------------------------------------------------- random α
def test_alpha_jitter_stays_in_range_is_uniform_and_differs_across_positions():
    g = torch.Generator().manual_seed(0)
    a = jittered_alpha(torch.tensor(10.0), torch.Size([64, 512]), 2.0, g)
    assert a.shape == (64, 512)
    assert float(a.min()) >= 5.0 and float(a.max()) <= 20.0
    assert float(a.min()) < 5.2 and float(a.max()) > 19.8             # covers the range
    assert abs(float(a.mean()) - 12.5) < 0.05                          # uniform on [α/2, 2α] (not log-uniform)
    assert abs(float((a < 12.5).double().mean()) - 0.5) < 0.01
    assert len(torch.unique(a[0])) == 512 and len(torch.unique(a[:, 0])) == 64   # per (batch, position)


def test_training_draws_alpha_per_position_and_evaluation_does_not():
    m = tiny_model(alpha=4.0)
    tok = _tokens(m)
    tr = ebt_text_loss(m, tok, _s2(alpha_jitter=2.0), torch.Generator().manual_seed(0))[2]
    a = tr.alpha.detach().squeeze(-1)                                  # B×S×1 → B×S
    assert a.shape == tok[:, :-1].shape
    assert float(a.min()) >= 2.0 and float(a.max()) <= 8.0 and a.std() > 0
    te = ebt_text_loss(m, tok, _s2(alpha_jitter=2.0), torch.Generator().manual_seed(0), training=False)[2]
    assert te.alpha.dim() == 0 and float(te.alpha.detach()) == 4.0


# ----------------------------------------------------------------------------------- random step counts
def test_step_count_distribution():
    t = ThinkingConfig(system="s2", steps=2, max_steps=4)
    g = torch.Generator().manual_seed(0)
    draws = torch.tensor([sample_steps(t, g, training=True) for _ in range(3000)])
    assert set(draws.tolist()) == {2, 3, 4}
    for k in (2, 3, 4):
        assert abs(float((draws == k).double().mean()) - 1 / 3) < 0.04
    assert sample_steps(t, g, training=False) == 4                     # evaluation: the maximum
    fixed = ThinkingConfig(system="s2", steps=3)
    assert {sample_steps(fixed, g, training=True) for _ in range(50)} == {3}
    # the loss really runs the drawn number of steps
    m = tiny_model()
    for seed in range(4):
        _, met, tr = ebt_text_loss(m, _tokens(m), t, torch.Generator().manual_seed(seed))
        assert tr.steps == int(met["steps"]) == sample_steps(t, torch.Generator().manual_seed(seed), True)


# ----------------------------------------------------------------------------------- replay buffer
def _records(values, S=3, V=2):
    tok = torch.tensor(values)[:, None].expand(len(values), S + 1).clone()
    cand = torch.tensor(values, dtype=torch.float32)[:, None, None].expand(len(values), S, V).clone()
    return tok, cand


def test_replay_buffer_fifo_order_and_capacity():
    buf = ReplayBuffer(5)
    assert len(buf) == 0
    buf.push(*_records([1, 2, 3]))
    assert len(buf) == 3 and buf.records()[0][:, 0].tolist() == [1, 2, 3]
    buf.push(*_records([4, 5, 6, 7]))                                  # evicts the two oldest
    tok, cand = buf.records()
    assert len(buf) == 5 and tok[:, 0].tolist() == [3, 4, 5, 6, 7]
    assert cand[:, 0, 0].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]
    buf.push(*_records(list(range(10, 18))))                           # more than capacity at once
    assert buf.records()[0][:, 0].tolist() == [13, 14, 15, 16, 17]
    with pytest.raises(ValueError, match="same shape"):
        buf.push(*_records([1], S=4))
    with pytest.raises(ValueError):
        ReplayBuffer(0)


def test_replay_buffer_samples_distinct_stored_pairs_and_round_trips():
    buf = ReplayBuffer(8)
    buf.push(*_records([1, 2, 3]))
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(30):
        tok, cand = buf.sample(2, g)
        vals = tok[:, 0].tolist()
        assert len(set(vals)) == 2 and set(vals) <= {1, 2, 3}          # without replacement, stored only
        assert cand[:, 0, 0].tolist() == [float(v) for v in vals]      # tokens and candidates stay paired
        seen |= set(vals)
    assert seen == {1, 2, 3}
    with pytest.raises(ValueError):
        buf.sample(4, g)
    clone = ReplayBuffer.from_bytes(buf.to_bytes())
    assert len(clone) == 3 and clone.capacity == 8
    for a, b in zip(clone.records(), buf.records()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    clone.push(*_records([9]))
    buf.push(*_records([9]))
    torch.testing.assert_close(clone.records()[0], buf.records()[0])
    assert replay_count(0.5, 16) == 8 and replay_count(0.0, 16) == 0 and replay_count(0.01, 4) == 1


def test_replayed_rows_start_from_stored_candidates_and_fresh_rows_are_pushed():
    m = tiny_model()
    V, S, B = m.cfg.vocab_size, m.cfg.context, 4
    buf = ReplayBuffer(6)
    stored = [1, 2, 3]
    buf.push(torch.tensor(stored)[:, None].expand(3, S + 1).clone(),
             torch.tensor(stored, dtype=torch.float64)[:, None, None].expand(3, S, V).clone())
    tcfg = _s2(replay_fraction=0.5, replay_size=6)
    tok = _tokens(m, B)
    loss, met, tr = ebt_text_loss(m, tok, tcfg, torch.Generator().manual_seed(7), replay=buf)
    start = tr.candidates[0]
    assert start.shape[0] == B + 2 and int(met["replayed"]) == 2       # round(0.5 × 4) rows appended
    fresh = m.init_candidates((B, S), torch.Generator().manual_seed(7))
    torch.testing.assert_close(start[:B], fresh)                       # fresh rows: new noise, first
    for row in start[B:]:                                              # replayed rows: a stored candidate
        v = float(row.flatten()[0])
        assert v in stored and torch.equal(row, torch.full_like(row, v))
    assert len({float(r.flatten()[0]) for r in start[B:]}) == 2
    # afterwards the fresh rows (only) are the newest records, with their final candidates
    tokens, cands = buf.records()
    assert len(buf) == 6
    torch.testing.assert_close(tokens[-B:], tok, rtol=0, atol=0)
    torch.testing.assert_close(cands[-B:], tr.final[:B].detach(), rtol=0, atol=0)
    # replay is a training-time device only
    n = len(buf)
    _, met_e, tr_e = ebt_text_loss(m, tok, tcfg, torch.Generator().manual_seed(7), replay=buf, training=False)
    assert tr_e.candidates[0].shape[0] == B and len(buf) == n


def test_replay_buffer_travels_with_the_checkpoint_and_resume_is_exact(tmp_path):
    from safetensors.torch import load_file
    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(400)))
    kw = {"train.log_every": 1, "train.eval_batches": 1, "thinking.replay_size": 12, "data.path": str(text),
          "data.ood": "", "model.d_model": 16, "model.n_layers": 1, "model.context": 16, "train.batch_size": 4}
    full, part = tmp_path / "full", tmp_path / "part"
    # schedule_steps is what --resume records (``--set`` refuses it): the reference run sets it with replace()
    train(preset("tiny", system="s2", **kw, **{"train.steps": 6, "train.save_every": 3, "train.eval_every": 6})
          .replace(**{"train.schedule_steps": 3}), full)
    train(preset("tiny", system="s2", **kw, **{"train.steps": 3, "train.save_every": 3, "train.eval_every": 6}),
          part)
    assert len(ReplayBuffer.from_bytes((part / "checkpoint" / REPLAY_FILE).read_bytes())) == 12
    train(None, part, resume=True, steps=6)
    a = load_file(str(full / "checkpoint" / "model.safetensors"))
    b = load_file(str(part / "checkpoint" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    ra = ReplayBuffer.from_bytes((full / "checkpoint" / REPLAY_FILE).read_bytes()).records()
    rb = ReplayBuffer.from_bytes((part / "checkpoint" / REPLAY_FILE).read_bytes()).records()
    for x, y in zip(ra, rb):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


# ----------------------------------------------------------------------------------- contrastive term
def test_contrastive_term_is_softplus_of_real_minus_predicted_energy():
    m = tiny_model()
    tok = _tokens(m)
    V = m.cfg.vocab_size
    base, _, _ = ebt_text_loss(m, tok, _s2(), torch.Generator().manual_seed(2))
    loss, met, tr = ebt_text_loss(m, tok, _s2(contrastive_coeff=0.3), torch.Generator().manual_seed(2))
    onehot = F.one_hot(tok[:, 1:], V).to(torch.float64)                  # the target distribution itself
    real = m.energy_fn(tok[:, :-1])(onehot, 1)
    expect = F.softplus(real - tr.energies[-1]).mean()
    torch.testing.assert_close(met["contrastive"], expect.detach())
    torch.testing.assert_close(loss, base + 0.3 * expect)
    # the term pushes E(real) down and E(predicted) up: its gradient reaches the energy head
    g = torch.autograd.grad(0.3 * expect, m.head.weight)[0]
    assert g.abs().sum() > 0


# ----------------------------------------------------------------------------------- presets
def test_ebt_presets_follow_the_paper_recipes():
    s1, s2 = preset("ebt-s1"), preset("ebt-s2")
    assert {"ebt-s1", "ebt-s2"} <= set(PRESETS) and set(RECIPES) == {"s1", "s2"}
    t = s1.thinking
    assert (t.system, t.steps, t.max_steps, t.langevin_sigma, t.alpha_jitter, t.replay_fraction) == ("s1", 2, None, 0.0, 1.0, 0.0)
    assert s1.model.n_landscapes == 2 and s1.model.alpha_learnable
    t = s2.thinking
    assert (t.system, t.steps, t.max_steps, t.alpha_jitter) == ("s2", 2, 3, 2.0)
    assert t.langevin_sigma > 0 and 0 < t.replay_fraction < 1 and t.replay_size > 0 and t.default_eval_steps == 3
    assert s2.model.n_landscapes == 1 and not s2.model.alpha_learnable
    assert t.detach is False and t.grad_steps == "last"
    # same size as 'cpu'; recipes are complete, so an explicit system gives exactly that recipe
    assert s2.model.d_model == preset("cpu").model.d_model
    assert preset("ebt-s2", system="s1").thinking == s1.thinking
    assert preset("cpu", system="s2").thinking == s2.thinking


def test_spec_from_thinking_config_carries_the_whole_recipe():
    s1 = ThinkingSpec.training(ThinkingConfig(system="s1", steps=2), n_landscapes=2, generator=None)
    assert (s1.steps, s1.landscapes, s1.detach, s1.grad_steps, s1.create_graph) == (2, (0, 1), True, "all", True)
    t2 = ThinkingConfig(system="s2", steps=2, max_steps=3, langevin_sigma=0.5, alpha_jitter=2.0)
    g = torch.Generator().manual_seed(0)
    seen = {ThinkingSpec.training(t2, 1, g).steps for _ in range(40)}
    s2 = ThinkingSpec.training(t2, 1, g)
    assert seen == {2, 3} and (s2.detach, s2.grad_steps, s2.langevin_sigma, s2.alpha_jitter) == (False, "last", 0.5, 2.0)
    ev = ThinkingSpec.inference(t2.default_eval_steps, 1, accept_lower=True)
    assert (ev.steps, ev.create_graph, ev.langevin_sigma, ev.alpha_jitter, ev.accept_lower) == (3, False, 0.0, 1.0, True)
    assert s2.evaluation().langevin_sigma == 0 and not s2.evaluation().create_graph


def test_step_losses_average_every_step_in_s1_and_score_the_last_in_s2():
    y0 = torch.zeros(3, requires_grad=True)
    fn = lambda y, l: 0.5 * ((y - 1.0) ** 2).sum(-1, keepdim=True).squeeze(-1)  # noqa: E731
    for system in ("s1", "s2"):
        tc = ThinkingConfig(system=system, steps=2)
        spec = ThinkingSpec.training(tc, 1, None)
        tr = spec.run(fn, y0[None], 0.5)
        loss, per = spec.step_losses(tr, lambda c: (c - 1.0).abs().sum())
        assert len(per) == 2
        if system == "s1":
            torch.testing.assert_close(loss, (per[0] + per[1]) / 2)
        else:
            torch.testing.assert_close(loss, per[1])
            assert loss.requires_grad and not per[0].requires_grad
