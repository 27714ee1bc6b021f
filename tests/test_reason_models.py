"""The reasoning task's models and training: every problem × model trains at the tiny preset, the architectures are
equivariant where they claim to be, thinking is differentiated (second order), replay keeps shapes apart and
round-trips, and the evaluation's prefix property (a long run's step k == a k-step run) holds exactly."""
import dataclasses

import numpy as np
import pytest
import torch

from ebtkit.core.models.reason import ReasonEBT, ReasonFeedForward, ReasonLooped, build_reason_model
from ebtkit.core.thinking import think
from ebtkit.eval.reason import answer, auroc, instance_metrics
from ebtkit.tasks import load
from ebtkit.tasks.reason import (ReasonTask, ReplayBank, contrastive_loss, instances, near_misses, preset,
                                 reason_loss)
from tests.helpers import train

PROBLEMS = ("addition", "inverse", "connectivity", "parity", "sudoku")


def _batch(cfg, n=4, difficulty=None, seed=0):
    p = cfg.data.make()
    d = difficulty if difficulty is not None else cfg.data.id_difficulty
    x, y = p.sample(n, d, np.random.default_rng(seed))
    return torch.from_numpy(x), torch.from_numpy(y)


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("model", ["ebt", "feedforward", "looped"])
def test_every_problem_and_model_trains_at_tiny_and_reloads(tmp_path, problem, model):
    cfg = preset("tiny", problem, model, **{"train.steps": 6, "train.eval_every": 6, "train.save_every": 6,
                                            "train.log_every": 3, "data.val_instances": 8})
    res = train(cfg, tmp_path / "run")
    assert res["val_error"] is not None and np.isfinite(res["val_error"])
    b = load(tmp_path / "run")
    assert b.task == "reason" and type(b.model).__name__ == {"ebt": "ReasonEBT", "feedforward": "ReasonFeedForward",
                                                              "looped": "ReasonLooped"}[model]
    x, y = _batch(b.config)
    out = answer(b.model, x, 2, torch.Generator().manual_seed(0))
    assert out.candidates[-1].shape[:2] == (x.shape[0], *y.shape[1:2])


def test_training_improves_addition_and_thinking_is_second_order():
    torch.manual_seed(0)
    cfg = preset("tiny", "addition", "ebt", **{"thinking.replay_fraction": 0.0, "thinking.replay_size": 0})
    model = ReasonTask.build_model(cfg)
    x, y = _batch(cfg, 16)
    loss, m = reason_loss(model, x, y, cfg, torch.Generator().manual_seed(0))
    # the loss reaches the trunk only through ∇_y E: every trunk weight gets a gradient (second order)
    grads = torch.autograd.grad(loss, [p for p in model.trunk.parameters()], allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert m["loss_first"] >= 0 and "energy_gap" in m


def test_unroll_all_differs_from_truncated_only_in_the_gradient():
    torch.manual_seed(0)
    cfg = preset("tiny", "addition", "ebt", **{"thinking.replay_fraction": 0.0, "thinking.replay_size": 0,
                                               "thinking.steps": 3, "thinking.max_steps": 3})
    model = ReasonTask.build_model(cfg).double()
    x, y = (t.double() for t in _batch(cfg, 8))
    out = {}
    for unroll in ("last", "all"):
        c = dataclasses.replace(cfg, unroll=unroll)
        loss, _ = reason_loss(model, x, y, c, torch.Generator().manual_seed(1))
        out[unroll] = (loss.detach(), torch.autograd.grad(loss, model.trunk.net[0].weight)[0])
    assert torch.equal(out["last"][0], out["all"][0])
    assert not torch.allclose(out["last"][1], out["all"][1])


def test_pair_trunk_is_node_permutation_equivariant():
    torch.manual_seed(0)
    cfg = preset("tiny", "connectivity", "ebt")
    ebt = ReasonTask.build_model(cfg).double()
    ff = ReasonTask.build_model(cfg.replace(**{"model.model": "feedforward"})).double()
    x, _ = _batch(cfg, 3, difficulty=7)
    x = x.double()
    u = torch.softmax(torch.randn(3, 7, 7, 2, dtype=torch.float64), -1)
    perm = torch.randperm(7)
    px, pu = x[:, perm][:, :, perm], u[:, perm][:, :, perm]
    torch.testing.assert_close(ebt.energy(px, pu), ebt.energy(x, u), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ff(px), ff(x)[:, perm][:, :, perm], rtol=1e-10, atol=1e-10)


def test_row_transformer_is_row_permutation_equivariant_on_addition():
    torch.manual_seed(0)
    cfg = preset("tiny", "addition", "ebt", **{"model.arch": "transformer"})
    ebt = ReasonTask.build_model(cfg).double()
    ff = ReasonTask.build_model(cfg.replace(**{"model.model": "feedforward"})).double()
    x, _ = _batch(cfg, 3)
    x = x.double()
    u = torch.randn(3, 10, 10, dtype=torch.float64)
    perm = torch.randperm(10)
    torch.testing.assert_close(ebt.energy(x[:, :, perm], u[:, perm]), ebt.energy(x, u), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ff(x[:, :, perm]), ff(x)[:, perm], rtol=1e-10, atol=1e-10)


def test_models_of_other_sizes_run_where_the_architecture_allows():
    for problem, d in (("connectivity", 16), ("parity", 48)):
        cfg = preset("tiny", problem, "looped")
        m = ReasonTask.build_model(cfg)
        x, y = _batch(cfg, 2, difficulty=d)
        out = answer(m, x, 3, torch.Generator().manual_seed(0))
        assert out.candidates[-1].shape == (*y.shape, 2)


def test_arch_and_problem_mismatch_is_refused():
    with pytest.raises(ValueError, match="does not fit problem"):
        preset("tiny", "connectivity", "ebt", **{"model.arch": "mlp"})
    with pytest.raises(ValueError, match="unknown problem"):
        preset("tiny", "chess")


def test_replay_bank_keeps_shapes_apart_and_round_trips(tmp_path):
    bank = ReplayBank(8)
    for n in (4, 6):
        x = torch.rand(3, n, n)
        y = torch.randint(2, (3, n, n))
        bank.push(x, y, torch.randn(3, n, n, 2))
    assert set(bank.buffers) == {"4x4", "6x6"}
    x = torch.rand(4, 6, 6)
    y = torch.randint(2, (4, 6, 6))
    xs, ys, y0, n = bank.extend(0.5, x, y, torch.zeros(4, 6, 6, 2), torch.Generator().manual_seed(0))
    assert n == 2 and xs.shape == (6, 6, 6) and ys.dtype == y.dtype and y0.shape == (6, 6, 6, 2)
    # replayed rows are stored records: their answers are the stored answers of their stored problems
    rec = bank.buffers["6x6"].tokens[:3]
    stored = {tuple(r[:36].tolist()): r[36:].tolist() for r in rec}
    for xi, yi in zip(xs[4:], ys[4:]):
        assert stored[tuple(xi.flatten().tolist())] == yi.flatten().float().tolist()
    for name, data in bank.files().items():
        (tmp_path / name).write_bytes(data)
    other = ReplayBank(8)
    other.restore(tmp_path)
    assert set(other.buffers) == {"4x4", "6x6"} and torch.equal(other.buffers["6x6"].candidates,
                                                                 bank.buffers["6x6"].candidates)


def test_near_misses_are_near_and_contrastive_loss_prefers_the_answer():
    cfg = preset("tiny", "parity", "ebt", **{"thinking.contrastive_coeff": 1.0})
    x, y = _batch(cfg, 5)
    neg = near_misses(cfg.shape, y, 3, 0.1, torch.Generator().manual_seed(0))
    assert neg.shape == (15, *y.shape[1:], 2)
    changed = (neg.argmax(-1) != y.repeat(3, 1)).sum(1)
    assert (changed >= 1).all() and (changed <= 8).all()
    torch.manual_seed(0)
    model = ReasonTask.build_model(cfg)
    loss = contrastive_loss(model, x, y, cfg, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert model.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("accept_lower", [False, True])
def test_a_long_run_read_at_step_k_equals_a_k_step_run(accept_lower):
    torch.manual_seed(0)
    cfg = preset("tiny", "addition", "ebt")
    model = ReasonTask.build_model(cfg).double()
    torch.nn.init.normal_(model.head.weight, std=0.5)
    x, _ = _batch(cfg, 6)
    x = x.double()
    long = answer(model, x, 7, torch.Generator().manual_seed(3), accept_lower=accept_lower)
    for k in (1, 3, 6):
        short = answer(model, x, k, torch.Generator().manual_seed(3), accept_lower=accept_lower)
        assert torch.equal(long.candidates[k], short.candidates[-1])
        assert torch.equal(long.energies[k], short.energies[-1])
    if accept_lower:   # energies never rise along an accept-lower run
        e = torch.stack(long.energies)
        assert (e[1:] <= e[:-1]).all()


def test_looped_iterates_and_feedforward_answers_once():
    cfg = preset("tiny", "parity", "looped")
    m = ReasonTask.build_model(cfg)
    x, _ = _batch(cfg, 2)
    ys = m.iterate(x, m.initial_candidates(x, torch.Generator().manual_seed(0)), 4)
    assert len(ys) == 5 and not torch.equal(ys[1], ys[4])
    f = ReasonTask.build_model(cfg.replace(**{"model.model": "feedforward"}))
    assert len(answer(f, x, 9, None).candidates) == 1


def test_instance_metrics_and_auroc_are_exact():
    cfg = preset("tiny", "parity", "ebt")
    y = torch.tensor([[0, 1, 1], [1, 1, 0]])
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 1, 1], [1, 0, 0]]), 2).float()
    m = instance_metrics(cfg.shape, logits, y)
    assert m["cell_acc"].tolist() == pytest.approx([1.0, 2 / 3]) and m["exact_acc"].tolist() == [1.0, 0.0]
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auroc(np.array([1, 1, 1.0]), np.array([0, 1, 1])) == 0.5
    assert auroc(np.array([1.0, 2.0]), np.array([1, 1])) is None


def test_instances_are_fixed_by_seed_and_difficulty():
    p = preset("tiny", "connectivity").data.make()
    a, b = instances(p, 5, 12, 7), instances(p, 5, 12, 7)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(instances(p, 5, 12, 8)[0], a[0])


def test_ebt_energy_is_one_scalar_per_instance_and_thinks_through_the_shared_loop():
    for problem in PROBLEMS:
        cfg = preset("tiny", problem, "ebt")
        model = build_reason_model(cfg.shape, cfg.model)
        assert isinstance(model, ReasonEBT)
        x, _ = _batch(cfg, 2)
        y0 = model.initial_candidates(x, torch.Generator().manual_seed(0))
        tr = think(model.energy_fn(x), y0, steps=2, alpha=model.step_size().detach(), final_energy=True)
        assert tr.energies[-1].shape == (2,) and tr.final.shape == y0.shape
    assert not isinstance(build_reason_model(cfg.shape, cfg.model.replace(model="looped")), ReasonFeedForward)
    assert isinstance(build_reason_model(cfg.shape, cfg.model.replace(model="looped")), ReasonLooped)


def test_ood_auroc_compares_energy_per_answer_cell():
    """The energy sums over the answer's cells, so a 48-bit string's total is 3× a 16-bit one's for the same
    per-bit energy. An energy of −1 per cell, whatever the instance, says nothing about distribution shift: its
    ID-vs-OOD AUROC must be 0.5, not the 0.0 that totals (−16 vs −48) would give."""
    from ebtkit.eval.reason import curve_rows
    cfg = preset("tiny", "parity", "ebt")
    model = ReasonTask.build_model(cfg)
    model.energy = lambda x, u: (u * 0).flatten(1).sum(1) - u.shape[1]      # −1 per bit, a function of u
    data = {}
    for d in (16.0, 48.0):
        x, y = instances(cfg.data.make(), 8, d, 5)
        data[d] = (torch.from_numpy(x), torch.from_numpy(y))
    rows = curve_rows("EBT", model, cfg.shape, "parity", data, 16.0, [1, 2], 1, False, 0, 8)
    ood = [r["value"] for r in rows if r["metric"] == "auroc_ood"]
    assert ood == [0.5, 0.5]
    totals = np.r_[np.full(8, -16.0), np.full(8, -48.0)]
    assert auroc(totals, np.r_[np.zeros(8, bool), np.ones(8, bool)]) == 0.0       # what totals would have said
