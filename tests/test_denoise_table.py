"""The denoising table names the EBT's inference policy and the NFEs it spent (issue 22, item 10)."""
from __future__ import annotations

from ebtkit.core.models.image import build_image_model
from ebtkit.data.images import ImageDataConfig, load_image_data
from ebtkit.eval.denoise import EvalSpec, describe_policy, evaluate, format_table
from ebtkit.eval.inference import Policy
from ebtkit.tasks.denoise import preset


def _eval(policy):
    data = load_image_data(ImageDataConfig(dataset="mini"))
    cfg = preset("tiny")
    ebt = build_image_model(cfg.model)
    spec = EvalSpec(sigmas=[0.02], ebt_nfe=[1, 2], dit_nfe=[1], dit_recurse=[2], recurse_steps=2, images=4)
    return evaluate({"EBT": ebt}, data.test, cfg.noise.diffusion(), spec, policy=policy)


def test_plain_policy_is_named_and_spent_equals_steps():
    res = _eval(None)
    table = format_table(res)
    assert "EBT inference policy: plain thinking (1 sample, every step kept)" in table
    assert "EBT spent" in table
    rows = [ln.split() for ln in table.splitlines() if ln.strip()[:1].isdigit()]
    assert [(r[0], r[-1]) for r in rows] == [("1", "1"), ("2", "2")]         # NFE column, spent column


def test_best_of_n_and_accept_lower_are_named_with_the_nfes_they_spent():
    res = _eval(Policy(samples=3, accept_lower=True))
    assert res["policy"]["samples"] == 3
    table = format_table(res)
    assert "best of 3 samples (lowest final energy; --samples)" in table and "--accept-lower" in table
    rows = [ln.split() for ln in table.splitlines() if ln.strip()[:1].isdigit()]
    assert [(r[0], float(r[-1])) for r in rows] == [("1", 3.0), ("2", 6.0)]   # 3 samples × steps


def test_describe_policy():
    assert describe_policy({"tol": 0.01}) == "early stop once |ΔE| < 0.01 (--tol)"
    assert "step size ×2" in describe_policy({"alpha_mult": 2.0})
