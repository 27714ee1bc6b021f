"""System 2 inference policies (best-of-N, accept-only-lower, early stop, Langevin, α override), generation
with every policy, the thinking evaluation (ranks, uncertainty, tables, plots) and the think/eval CLIs."""
import json

import pytest
import torch

from ebtkit.core.config import preset
from ebtkit.eval.generate import generate
from ebtkit.core.recipe import landscape_schedule, think_with_energy
from ebtkit.eval.inference import Policy, ThinkResult, resolve_alpha, think_text
from ebtkit.core.thinking import think
from ebtkit.eval.thinking_study import average_ranks, default_policies, prob_greater, spearman
from tests.helpers import tiny_model


def quad(c, w=None):
    """E(y) = ½ w ‖y − c‖² per prediction (the last dim is the feature dim)."""
    w = torch.ones(c.shape[:-1], dtype=c.dtype) if w is None else w
    return lambda y, landscape: 0.5 * w * ((y - c) ** 2).sum(-1)


def _x(model, B=3, seed=0):
    return torch.randint(0, model.cfg.vocab_size, (B, model.cfg.context), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------- best-of-N
@pytest.mark.parametrize("select", ["min", "max_drop"])
def test_best_of_n_picks_the_per_position_best_sample(select):
    torch.manual_seed(0)
    c = torch.randn(3, 5, 4, dtype=torch.float64)
    w = torch.rand(3, 5, dtype=torch.float64) + 0.5                   # per-position curvature
    inits = [torch.randn(3, 5, 4, dtype=torch.float64) * 2 for _ in range(6)]
    best, traj, final_e, nfe, chosen, per_sample = think_with_energy(
        quad(c, w), lambda s: inits[s], steps=2, alpha=torch.tensor(0.3, dtype=torch.float64), landscapes=[0, 0],
        samples=6, select=select, return_samples=True)
    runs = [think(quad(c, w), y0, steps=2, alpha=0.3, final_energy=True) for y0 in inits]
    e_final = torch.stack([r.energies[-1] for r in runs])              # 6×3×5
    score = e_final if select == "min" else e_final - torch.stack([r.energies[0] for r in runs])
    expect = score.argmin(0)
    assert torch.equal(chosen, expect)
    assert len(torch.unique(chosen)) > 2                               # positions really choose differently
    torch.testing.assert_close(per_sample, e_final)
    for b in range(3):
        for r in range(5):
            k = int(expect[b, r])
            torch.testing.assert_close(best[b, r], runs[k].final[b, r])
            torch.testing.assert_close(traj[:, b, r], torch.stack([e[b, r] for e in runs[k].energies]))
    torch.testing.assert_close(final_e, e_final.gather(0, expect[None]).squeeze(0))
    assert torch.equal(nfe, torch.full((3, 5), 12))                    # 6 samples × 2 steps per position
    if select == "min":
        assert torch.all(final_e <= e_final.min(0).values)


def test_best_of_one_equals_a_single_run():
    m = tiny_model()
    x = _x(m)
    out = think_text(m, x, steps=3, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    y0 = m.init_candidates(tuple(x.shape), g)
    tr = think(m.energy_fn(x), y0, steps=3, alpha=m.step_size().detach(),
               landscapes=landscape_schedule(m.cfg.n_landscapes, 3), final_energy=True)
    torch.testing.assert_close(out.candidates, tr.final, rtol=0, atol=0)
    torch.testing.assert_close(out.energy_trajectory, torch.stack(tr.energies), rtol=0, atol=0)
    assert torch.equal(out.chosen, torch.zeros_like(out.chosen)) and torch.equal(out.nfe, torch.full_like(out.nfe, 3))
    # best-of-N with N candidates: the first candidate is exactly that single run
    bon = think_text(m, x, steps=3, samples=3, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(bon.sample_final_energy[0], out.final_energy, rtol=0, atol=0)
    assert torch.all(bon.final_energy <= out.final_energy)


# ----------------------------------------------------------------------------------- accept-only-lower
def test_accept_lower_never_raises_any_energy_analytic():
    """α = 2.5 on ½‖y−c‖² overshoots (energy ×2.25 per step): plain steps raise every energy, accept-lower
    keeps every position where it was."""
    c = torch.zeros(2, 3, 4, dtype=torch.float64)
    y0 = torch.randn(2, 3, 4, dtype=torch.float64)
    plain = think(quad(c), y0, steps=4, alpha=2.5, final_energy=True)
    assert torch.all(plain.energies[-1] > plain.energies[0])
    acc = think(quad(c), y0, steps=4, alpha=2.5, accept_lower=True, final_energy=True)
    e = torch.stack(acc.energies)
    assert torch.all(e[1:] <= e[:-1])
    torch.testing.assert_close(acc.final, y0)


@pytest.mark.parametrize("landscapes", [1, 2])
def test_accept_lower_never_raises_any_energy_on_a_model_with_noise(landscapes):
    """One landscape (S2): the energy trajectory never rises. Two landscapes (S1): the first step moves onto
    another energy function, so comparisons start there; either way the reported final energy is the energy
    of the returned candidate."""
    m = tiny_model(alpha=50.0, n_landscapes=landscapes)
    x = _x(m)
    first = landscapes - 1                                             # first step index on the last landscape
    for kw in ({}, {"langevin_sigma": 1.0}, {"samples": 2}):
        out = think_text(m, x, steps=6, accept_lower=True, generator=torch.Generator().manual_seed(1), **kw)
        e = out.energy_trajectory[first:]
        assert torch.all(e[1:] <= e[:-1]), kw
        torch.testing.assert_close(out.final_energy, m.energy(x, out.candidates, landscape=landscapes - 1).detach())
    free = think_text(m, x, steps=6, langevin_sigma=1.0, generator=torch.Generator().manual_seed(1))
    e = free.energy_trajectory[first:]
    assert torch.any(e[1:] > e[:-1])                                   # the policy does something


# ----------------------------------------------------------------------------------- early stop
def test_early_stop_with_tolerance_zero_equals_the_full_run():
    m = tiny_model()
    x = _x(m)
    full = think_text(m, x, steps=5, generator=torch.Generator().manual_seed(2))
    zero = think_text(m, x, steps=5, tol=0.0, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(zero.candidates, full.candidates, rtol=0, atol=0)
    torch.testing.assert_close(zero.energy_trajectory, full.energy_trajectory, rtol=0, atol=0)
    assert torch.equal(zero.nfe, full.nfe) and torch.equal(full.nfe, torch.full_like(full.nfe, 5))


def test_early_stop_spends_fewer_nfes_on_a_converging_energy():
    """½‖y−c‖² with α = ½: E_k = E_0/4^k, so |E_k − E_{k−1}| = ¾·E_0/4^{k−1}. A position stops at the first
    k ≥ 1 where that is < tol, having spent k + 1 evaluations, and keeps ŷ_k = c + (ŷ_0 − c)/2^k."""
    c = torch.zeros(1, 6, 3, dtype=torch.float64)
    scale = torch.tensor([0.01, 0.1, 1.0, 3.0, 10.0, 30.0], dtype=torch.float64)
    y0 = torch.ones(1, 6, 3, dtype=torch.float64) * scale[None, :, None]
    steps, tol = 8, 1e-2
    tr = think(quad(c), y0, steps=steps, alpha=0.5, tol=tol, final_energy=True)
    full = think(quad(c), y0, steps=steps, alpha=0.5, final_energy=True)
    E0 = 0.5 * 3 * scale ** 2
    expect_nfe, expect_final = [], []
    for e0, s in zip(E0.tolist(), scale.tolist()):
        k = next((k for k in range(1, steps) if 0.75 * e0 / 4 ** (k - 1) < tol), None)
        expect_nfe.append(steps if k is None else k + 1)
        expect_final.append(s / 2 ** (steps if k is None else k))
    assert tr.nfe[0].tolist() == expect_nfe
    assert tr.nfe.sum() < full.nfe.sum()
    torch.testing.assert_close(tr.final[0, :, 0], torch.tensor(expect_final, dtype=torch.float64))
    assert len(tr.candidates) == steps + 1 and len(tr.energies) == steps + 1
    # every position settled ⇒ the loop stops evaluating (real savings, not just accounting)
    calls = []
    fn = quad(c[:, :2])
    counting = lambda y, l: (calls.append(1), fn(y, l))[1]  # noqa: E731
    think(counting, y0[:, :2], steps=steps, alpha=0.5, tol=tol, final_energy=True)
    assert len(calls) < steps


def test_early_stop_through_think_text_reports_nfes_per_token():
    m = tiny_model()
    x = _x(m)
    full = think_text(m, x, steps=12, generator=torch.Generator().manual_seed(0))
    tol = float((full.energy_trajectory[3] - full.energy_trajectory[2]).abs().quantile(0.75))  # most stop by step 3
    out = think_text(m, x, steps=12, tol=tol, generator=torch.Generator().manual_seed(0))
    assert out.nfe.shape == x.shape and int(out.nfe.min()) >= 2 and int(out.nfe.max()) <= 12
    assert int((out.nfe <= 4).sum()) >= x.numel() // 2 and out.nfe.sum() < 12 * x.numel()


# ----------------------------------------------------------------------------------- Langevin, α, read-out
def test_langevin_at_inference_reproducible_through_the_generator():
    m = tiny_model()
    x = _x(m)
    run = lambda seed, s=0.5: think_text(m, x, steps=3, langevin_sigma=s,  # noqa: E731
                                         generator=torch.Generator().manual_seed(seed)).candidates
    torch.testing.assert_close(run(1), run(1), rtol=0, atol=0)
    assert not torch.allclose(run(1), run(2))
    assert not torch.allclose(run(1), run(1, s=0.0))                   # σ = 0 means no noise at all
    torch.testing.assert_close(run(1, s=0.0), think_text(m, x, steps=3, generator=torch.Generator().manual_seed(1)).candidates)


def test_alpha_override_absolute_and_multiplier():
    m = tiny_model(alpha=4.0)
    assert float(resolve_alpha(m)) == 4.0
    assert float(resolve_alpha(m, alpha=10.0)) == 10.0 and float(resolve_alpha(m, alpha_mult=0.5)) == 2.0
    with pytest.raises(ValueError):
        resolve_alpha(m, alpha=1.0, alpha_mult=2.0)
    x = _x(m)
    a = think_text(m, x, steps=2, alpha_mult=3.0, generator=torch.Generator().manual_seed(0))
    b = think_text(m, x, steps=2, alpha=12.0, generator=torch.Generator().manual_seed(0))
    c = think_text(m, x, steps=2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.candidates, b.candidates, rtol=0, atol=0)
    assert not torch.allclose(a.candidates, c.candidates)


def test_energy_readout_and_rows():
    m = tiny_model()
    x = _x(m)
    out = think_text(m, x, steps=4, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, ThinkResult)
    B, S = x.shape
    assert out.energy_trajectory.shape == (5, B, S) and out.final_energy.shape == (B, S)
    torch.testing.assert_close(out.final_energy, out.energy_trajectory[-1])
    torch.testing.assert_close(out.final_energy, m.energy(x, out.candidates, landscape=1).detach())
    # thinking about the last position only (generation) gives that position's full-run energies
    last = think_text(m, x, steps=4, rows=torch.tensor([S - 1]), generator=torch.Generator().manual_seed(0))
    assert last.candidates.shape == (B, 1, m.cfg.vocab_size)
    torch.testing.assert_close(last.final_energy[:, 0], m.energy(x, torch.cat(
        [out.candidates[:, :-1], last.candidates], 1), landscape=1).detach()[:, -1])


def test_policy_validates_and_feeds_think_text():
    with pytest.raises(ValueError):
        Policy(alpha=1.0, alpha_mult=2.0)
    for bad in (dict(samples=0), dict(select="max"), dict(tol=-1.0), dict(langevin_sigma=-0.1), dict(steps=0)):
        with pytest.raises(ValueError):
            Policy(**bad)
    p = Policy(steps=3, samples=2, select="max_drop", accept_lower=True, tol=1e-4, langevin_sigma=0.1)
    assert "BoN-2" in p.label() and "tol" in p.label()
    m = tiny_model()
    out = think_text(m, _x(m), generator=torch.Generator().manual_seed(0), **p.kwargs())
    assert out.energy_trajectory.shape[0] == 4


# ----------------------------------------------------------------------------------- generation
POLICIES = [{}, {"steps": 4}, {"alpha_mult": 2.0}, {"samples": 3}, {"samples": 3, "select": "max_drop"},
            {"accept_lower": True}, {"tol": 1e-3, "steps": 6}, {"langevin_sigma": 0.5}]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "trained")
@pytest.mark.parametrize("decode", [dict(temperature=0.0), dict(temperature=1.0, top_p=0.9)], ids=["greedy", "top-p"])
def test_generation_with_every_policy_runs_and_is_deterministic(policy, decode):
    m = tiny_model(dtype=torch.float32)
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    run = lambda seed: generate(m, prompt, 5, generator=torch.Generator().manual_seed(seed), **decode, **policy)  # noqa: E731
    a = run(0)
    assert a.shape == (2, 8) and torch.equal(a[:, :3], prompt)
    assert int(a.min()) >= 0 and int(a.max()) < m.cfg.vocab_size
    assert torch.equal(a, run(0))


# ----------------------------------------------------------------------------------- thinking evaluation
def test_spearman_matches_the_definition_with_ties():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    y = torch.tensor([[10.0, 20.0, 30.0, 40.0], [10.0, 20.0, 30.0, 40.0]])
    torch.testing.assert_close(spearman(x, y), torch.tensor([1.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0])),
                               torch.tensor([3.5, 1.0, 3.5, 2.0], dtype=torch.float64))
    # hand value: ranks a = [1, 2.5, 2.5, 4], b = [2, 1, 4, 3] → r = 0.6325 (Pearson of ranks)
    a, b = torch.tensor([1.0, 2.0, 2.0, 5.0]), torch.tensor([2.0, 1.0, 9.0, 3.0])
    ra, rb = torch.tensor([1, 2.5, 2.5, 4.0]), torch.tensor([2, 1, 4, 3.0])
    ra, rb = ra - ra.mean(), rb - rb.mean()
    assert float(spearman(a, b)) == pytest.approx(float((ra * rb).sum() / (ra.norm() * rb.norm())))
    assert prob_greater(torch.tensor([2.0, 3.0]), torch.tensor([1.0, 2.0])) == pytest.approx(0.875)


def test_within_context_correlation_ignores_per_context_offsets():
    """Energies with a large context-dependent offset: pooled correlation is ~0, within-context is 1."""
    g = torch.Generator().manual_seed(0)
    difficulty = torch.rand(50, 32, generator=g)
    energy = difficulty + 100 * torch.randn(50, 1, generator=g)       # offset per context
    assert float(spearman(energy, difficulty).mean()) == pytest.approx(1.0)
    assert abs(float(spearman(energy.flatten(), difficulty.flatten()))) < 0.2


def test_window_nll_is_the_exact_perplexity_and_gain_interval_is_paired():
    import math
    from ebtkit.eval.metrics import perplexity
    from ebtkit.eval.thinking_study import paired_gain_ci, window_nll
    m = tiny_model(dtype=torch.float32)
    data = torch.randint(0, m.cfg.vocab_size, (200,), generator=torch.Generator().manual_seed(0))
    for pol in ({"steps": 2}, {"steps": 2, "samples": 2}):
        nll, nfe = window_nll(m, data, 8, max_windows=20, batch_size=7, seed=3, **pol)
        ref = perplexity(m, data, 8, batch_size=7, max_windows=20, seed=3, **pol)
        assert len(nll) == 20 and math.exp(float(nll.sum()) / (20 * 8)) == pytest.approx(ref["ppl"], rel=1e-12)
        assert float(nfe.sum()) / 160 == pytest.approx(ref["nfe_per_token"])
    assert paired_gain_ci(nll, nll, 8) == (0.0, 0.0)
    lo, hi = paired_gain_ci(nll, nll - 0.8, 8)                         # 0.1 nats/token better everywhere
    assert lo == pytest.approx(hi) == pytest.approx(100 * (1 - math.exp(-0.1)))


def test_uncertainty_correlates_within_each_window_then_averages():
    from ebtkit.data.text import eval_windows
    from ebtkit.eval.thinking_study import random_vs_real, token_energies, uncertainty
    m = tiny_model(dtype=torch.float32)
    data = torch.randint(0, m.cfg.vocab_size, (120,), generator=torch.Generator().manual_seed(1))
    res = uncertainty(m, data, 8, max_windows=6, batch_size=4, seed=2)
    E, nll = token_energies(m, eval_windows(data, 9, 6), batch_size=4, seed=2)
    assert E.shape == nll.shape == (6, 8)
    per_window = torch.stack([spearman(E[i], nll[i]) for i in range(6)])
    assert res["spearman_within_mean"] == pytest.approx(float(per_window.mean()))
    assert res["spearman_pooled"] == pytest.approx(float(spearman(E.flatten(), nll.flatten())))
    assert res["frac_windows_positive"] == pytest.approx(float((per_window > 0).double().mean()))
    rv = random_vs_real(m, data, 8, windows=6, batch_size=4, seed=2)
    assert rv["real_mean"] == pytest.approx(float(E.mean())) and 0.0 <= rv["p_random_higher"] <= 1.0


def test_default_policy_rows():
    rows = default_policies(3, tols=[0.1, 0.01])
    fam = [r.family for r in rows]
    assert fam[0] == "trained" and rows[0].policy.steps == 3
    assert [r.policy.steps for r in rows if r.family == "longer"] == [2, 4, 8, 16]
    assert [r.policy.samples for r in rows if r.family == "best-of-N"] == [2, 4, 8]
    assert all(r.policy.steps == 3 for r in rows if r.family == "best-of-N")
    assert [r.policy.tol for r in rows if r.family == "early stop"] == [0.1, 0.01]


# ----------------------------------------------------------------------------------- CLIs
@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    from tests.helpers import train
    root = tmp_path_factory.mktemp("runs")
    text = root / "corpus.txt"
    text.write_text("".join(f"verse {i}: and the lord spake unto moses, saying.\n" for i in range(300)))
    kw = {"train.steps": 4, "train.eval_every": 4, "train.save_every": 4, "train.eval_batches": 1,
          "model.d_model": 16, "model.n_layers": 1, "model.context": 16, "train.batch_size": 4,
          "data.path": str(text), "data.ood": ""}
    train(preset("tiny", system="s2", **kw, **{"thinking.replay_size": 8}), root / "ebt")
    train(preset("tiny", **kw, **{"model.model": "transformer++"}), root / "tpp")
    return root


def test_eval_cli_prints_and_saves_the_thinking_table_and_plots(tiny_runs, capsys):
    from ebtkit.cli import main
    run = tiny_runs / "ebt"
    rc = main(["eval", str(run), "--baseline", str(tiny_runs / "tpp"), "--max-windows", "2",
               "--thinking-windows", "2", "--think-steps", "2,4", "--bon", "2", "--tols", "auto"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "Transformer++" in out.out and "best-of-2" in out.out and "early stop" in out.out
    assert "Spearman" in out.out and "random vs real" in out.out
    res = json.loads((run / "thinking.json").read_text())
    fams = [r["family"] for r in res["table"]]
    assert fams.count("transformer++") == 1 and fams.count("trained") == 1 and "best-of-N" in fams
    trained = next(r for r in res["table"] if r["family"] == "trained")
    assert trained["val_nfe"] == pytest.approx(3.0) and trained["val_gain_pct"] == 0.0
    assert next(r for r in res["table"] if r["family"] == "best-of-N")["val_nfe"] == pytest.approx(6.0)
    assert all(r["val_nfe"] <= 16 for r in res["table"] if r["family"] == "early stop")
    for name in ("thinking.png", "energy_heatmap.png", "eval.json"):
        assert (run / name).stat().st_size > 0
    assert "spearman_within_mean" in res["uncertainty"]["val"] and "p_random_higher" in res["random_vs_real"]
    rc = main(["eval", str(tiny_runs / "tpp"), "--max-windows", "2"])   # Transformer++: no thinking study
    assert rc == 0
    capsys.readouterr()
    (run / "thinking.json").unlink()
    for bad in (["--baseline", str(run)], ["--baseline", str(tiny_runs / "nope")], ["--bon", "0"], ["--tols", "x"],
                ["--baseline", str(tiny_runs / "tpp"), "--no-thinking"]):
        before = (run / "eval.json").stat().st_mtime_ns
        try:                        # --bon 0 is refused by the parser itself (range [1, 1024]): SystemExit(2)
            rc = main(["eval", str(run), *bad])
        except SystemExit as e:
            rc = e.code
        assert rc == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("ebt: error:") and err.count("\n") == 1, (bad, err)
        assert (run / "eval.json").stat().st_mtime_ns == before and not (run / "thinking.json").exists()


def test_think_cli_colours_tokens_and_saves_the_heatmap(tiny_runs, capsys, tmp_path):
    from ebtkit.cli import main
    png, js = tmp_path / "h.png", tmp_path / "e.json"
    rc = main(["think", str(tiny_runs / "ebt"), "--text", "and the lord sp", "--color", "always",
               "--steps", "4", "--samples", "2", "--out", str(png), "--json", str(js)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "\033[48;5;" in out.out and "highest energy" in out.out and png.stat().st_size > 0
    rec = json.loads(js.read_text())
    n = len("and the lord sp")                                        # bytes; fits the context (16 + 1)
    assert rec["final_energy"][0] is None and len(rec["final_energy"]) == n
    assert len(rec["trajectory"]) == 5 and len(rec["trajectory"][0]) == n - 1
    assert rec["nfe"] == [8] * (n - 1)
    # the heatmap goes exactly where the printed line says: a name without an image suffix gets .png, a folder
    # gets think_heatmap.png inside it
    rc = main(["think", str(tiny_runs / "ebt"), "--text", "and the", "--out", str(tmp_path / "adir")])
    assert rc == 0 and f"heatmap: {tmp_path / 'adir.png'}\n" in capsys.readouterr().out
    assert (tmp_path / "adir.png").is_file() and not (tmp_path / "adir").exists()
    (tmp_path / "folder").mkdir()
    rc = main(["think", str(tiny_runs / "ebt"), "--text", "and the", "--out", str(tmp_path / "folder")])
    assert rc == 0 and f"heatmap: {tmp_path / 'folder' / 'think_heatmap.png'}\n" in capsys.readouterr().out
    assert (tmp_path / "folder" / "think_heatmap.png").is_file()
    rc = main(["think", str(tiny_runs / "tpp"), "--text", "abc"])
    assert rc == 2 and "only EBTs" in capsys.readouterr().err
    rc = main(["think", str(tiny_runs / "ebt"), "--text", "abc", "--alpha", "1", "--alpha-mult", "2"])
    assert rc == 2
