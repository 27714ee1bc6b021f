"""Experimental System 2 mechanisms (scripts/policies_extra.py): exactness against the shipped policies and
the math of every combining rule."""
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

import ebtkit
from ebtkit.eval.inference import think_text
from tests.helpers import tol


def _load():
    """scripts/policies_extra.py by its path (research code outside the installed package)."""
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("policies_extra", root / "scripts" / "policies_extra.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # its dataclasses look their module up while being built
    spec.loader.exec_module(mod)
    return mod


px = _load()


def _model(init="normal"):
    torch.manual_seed(0)
    m = ebtkit.build("ebt", preset="tiny", vocab_size=32, init=init).eval()
    with torch.no_grad():   # a non-trivial energy (the head is zero-initialised)
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def test_one_sample_with_constant_noise_is_think_text():
    m = _model()
    x = torch.randint(0, 32, (2, 8))
    out = think_text(m, x, steps=3, langevin_sigma=0.3, generator=torch.Generator().manual_seed(5))
    th = px.sample_thoughts(m, x, steps=3, sigmas=[0.3] * 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(th.logits[3][0], out.candidates)
    assert torch.allclose(th.energy[3][0], out.final_energy)


def test_min_selection_is_the_shipped_best_of_n():
    m = _model()
    x = torch.randint(0, 32, (2, 8))
    out = think_text(m, x, steps=2, samples=4, generator=torch.Generator().manual_seed(1))
    th = px.sample_thoughts(m, x, steps=2, samples=4, generator=torch.Generator().manual_seed(1))
    logp, chosen = px.select(th.logits[2], th.energy[2], rule="min")
    assert torch.equal(chosen, out.chosen)
    assert torch.allclose(logp, torch.log_softmax(out.candidates, -1))


def test_snapshots_and_iterate_average():
    m = _model()
    x = torch.randint(0, 32, (1, 6))
    th = px.sample_thoughts(m, x, steps=4, snapshots=(2, 4), average_from=3, generator=torch.Generator().manual_seed(2))
    ref2 = think_text(m, x, steps=2, generator=torch.Generator().manual_seed(2)).candidates
    ref3 = think_text(m, x, steps=3, generator=torch.Generator().manual_seed(2)).candidates
    ref4 = think_text(m, x, steps=4, generator=torch.Generator().manual_seed(2)).candidates
    assert torch.allclose(th.logits[2][0], ref2) and torch.allclose(th.logits[4][0], ref4)
    want = (torch.softmax(ref3, -1) + torch.softmax(ref4, -1)) / 2
    # probabilities (≤ 1): float32 rounding of a softmax over the 32 bytes, then a mean of 2 (tests.helpers.tol)
    assert torch.allclose(th.mean_probs[0], want, **tol(torch.float32, 32, depth=2))
    assert th.nfe == 4


def test_sigma_schedules():
    assert px.sigma_schedule(0.5, 3) == [0.5, 0.5, 0.5]
    assert px.sigma_schedule(1.0, 3, "linear", 0.0) == [1.0, 0.5, 0.0]
    g = px.sigma_schedule(1.0, 3, "geometric", 0.25)
    assert g == pytest.approx([1.0, 0.5, 0.25])
    with pytest.raises(ValueError, match="unknown schedule"):
        px.sigma_schedule(1.0, 3, "cosine")


def test_selection_rules_on_a_hand_made_example():
    # two runs, one position: run 0 sharp with low energy, run 1 soft with slightly higher energy
    sharp = torch.tensor([8.0, 0.0, 0.0])
    soft = torch.tensor([1.0, 0.9, 0.0])
    logits = torch.stack([sharp, soft])[:, None, None, :]
    energy = torch.tensor([[[-1.0]], [[-0.9]]])
    assert px.select(logits, energy, rule="min")[1].item() == 0
    h = px.entropy(torch.log_softmax(logits, -1))[:, 0, 0]
    lam = 0.2 / float(h[1] - h[0])          # 0.1 of energy is worth less than the entropy gap
    assert px.select(logits, energy, rule="entropy", lam=lam)[1].item() == 1
    assert px.select(logits, energy, rule="max_drop", energy0=torch.tensor([[[0.0]], [[0.5]]]))[1].item() == 1
    # consensus: three runs, two of which agree
    three = torch.stack([sharp, sharp + 0.01, soft])[:, None, None, :]
    assert px.select(three, torch.zeros(3, 1, 1), rule="consensus")[1].item() in (0, 1)


def test_pooling_limits():
    logits = torch.randn(3, 2, 4, 5)
    energy = torch.randn(3, 2, 4)
    mix = px.pool(logits, rule="mixture")
    want = torch.log(torch.softmax(logits, -1).mean(0))
    # float32 rounding (tests.helpers.tol) of softmax over 5, a mean over 3 runs and a log, at the logits' size
    t = tol(torch.float32, 5 * 3, depth=3, scale=float(want.abs().max()))
    assert torch.allclose(mix, want, **t)
    cold = px.pool(logits, energy, rule="softmin", temp=1e-6)
    assert torch.allclose(cold, px.select(logits, energy, rule="min")[0], **t)
    hot = px.pool(logits, energy, rule="softmin", temp=1e6)
    # temp 1e6 is the uniform mixture up to the weights' relative deviation, ≤ 2·max|E|/temp, plus the rounding
    limit = 2 * float(energy.abs().max()) / 1e6
    assert torch.allclose(hot, mix, rtol=t["rtol"], atol=t["atol"] + limit * float(want.abs().max()))
    spread = tol(torch.float32, 5 * 3, depth=3, scale=math.log(5))["atol"]      # a divergence of 5-way distributions
    assert torch.all(px.disagreement(logits) >= -spread)
    same = logits[:1].expand(3, -1, -1, -1)
    assert torch.allclose(px.disagreement(same), torch.zeros(2, 4), rtol=0, atol=spread)


def test_temperatures():
    logp = torch.log_softmax(torch.randn(2, 4, 5), -1)
    t = tol(torch.float32, 5, depth=2, scale=float(logp.abs().max()))     # a log-softmax over 5 recomputed
    assert torch.allclose(px.temperature(logp, 1.0), logp, **t)
    assert torch.allclose(px.energy_temperature(logp, torch.randn(2, 4), beta=0.0), logp, **t)
    sig = torch.tensor([[0.0, 0.0, 0.0, 10.0]])
    lp = torch.log_softmax(torch.tensor([[[4.0, 0.0]] * 4]), -1)
    out = px.energy_temperature(lp, sig, beta=1.0)
    # the high-signal position is softened, the others sharpened
    assert out[0, 3, 0] < lp[0, 3, 0] and out[0, 0, 0] > lp[0, 0, 0]
    assert math.isclose(float(px.nll(lp, torch.tensor([[0, 0, 0, 1]]))[0, 3]), float(-lp[0, 3, 1]))
