"""Log-log fits and bootstrap intervals on synthetic power laws whose slope is known exactly."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ebtkit.study.fit import compare, describe, fit_power_law

XS = [1e3, 2e3, 4e3, 8e3, 16e3, 32e3]


def power_law(a, b, xs=XS, seeds=(0, 1, 2), sigma=0.0, rng=None):
    rng = rng or np.random.default_rng(0)
    return [(x, s, a * x ** b * math.exp(rng.normal(0, sigma) if sigma else 0.0)) for x in xs for s in seeds]


def test_noiseless_power_law_gives_the_exact_slope_and_a_degenerate_interval():
    f = fit_power_law(power_law(5.0, -0.3), resamples=300)
    assert f.slope == pytest.approx(-0.3, abs=1e-12)
    assert math.exp(f.intercept) == pytest.approx(5.0, rel=1e-10)
    assert f.ci[0] == pytest.approx(-0.3, abs=1e-12) and f.ci[1] == pytest.approx(-0.3, abs=1e-12)
    assert f.r2 == pytest.approx(1.0)
    assert f.flags == []
    assert (f.n_points, f.n_runs, f.n_seeds) == (6, 18, 3)
    assert f.predict([1e4])[0] == pytest.approx(5.0 * 1e4 ** -0.3)


def test_noisy_power_law_interval_covers_the_truth():
    covered = 0
    widths = []
    for rep in range(20):
        rng = np.random.default_rng(100 + rep)
        f = fit_power_law(power_law(7.0, -0.25, sigma=0.03, rng=rng), resamples=400, seed=rep)
        covered += f.ci[0] <= -0.25 <= f.ci[1]
        widths.append(f.ci[1] - f.ci[0])
        assert f.ci[0] < f.slope < f.ci[1]
    assert covered >= 18                       # nominal 95 % (the two-level bootstrap is conservative here)
    assert 0 < np.median(widths) < 0.1         # and informative: 3 % noise does not swamp a slope of 0.25
    # more noise, wider interval
    wide = fit_power_law(power_law(7.0, -0.25, sigma=0.3, rng=np.random.default_rng(1)), resamples=400)
    assert wide.ci[1] - wide.ci[0] > 3 * np.median(widths)


def test_the_fit_is_deterministic_given_its_seed():
    data = power_law(3.0, -0.5, sigma=0.05)
    a, b = fit_power_law(data, resamples=200, seed=3), fit_power_law(data, resamples=200, seed=3)
    assert a.ci == b.ci and a.band == b.band


def test_slope_ratio_of_two_exact_power_laws():
    fits, comp = compare({"ebt": power_law(3.0, -0.4), "transformer++": power_law(2.0, -0.3)}, "ebt",
                         "transformer++", resamples=300)
    assert fits["ebt"].slope == pytest.approx(-0.4) and fits["transformer++"].slope == pytest.approx(-0.3)
    assert comp.ratio == pytest.approx(4 / 3)
    assert comp.faster_pct == pytest.approx(100 / 3)
    assert comp.ci[0] == pytest.approx(4 / 3) and comp.ci[1] == pytest.approx(4 / 3)
    assert comp.flags == []
    assert "1.333×" in describe(comp) and "+33.3 %" in describe(comp)


def test_noisy_ratio_interval_covers_the_truth_and_flags_equal_rates():
    rng = np.random.default_rng(7)
    fits, comp = compare({"ebt": power_law(3.0, -0.4, sigma=0.02, rng=rng),
                          "transformer++": power_law(2.0, -0.3, sigma=0.02, rng=rng)}, "ebt", "transformer++",
                         resamples=500)
    assert comp.ci[0] <= 4 / 3 <= comp.ci[1]
    assert "ratio_ci_includes_1" not in comp.flags
    rng = np.random.default_rng(8)
    _, same = compare({"ebt": power_law(3.0, -0.3, sigma=0.05, rng=rng),
                       "transformer++": power_law(2.0, -0.3, sigma=0.05, rng=rng)}, "ebt", "transformer++",
                      resamples=500)
    assert same.ci[0] <= 1 <= same.ci[1] and "ratio_ci_includes_1" in same.flags
    assert "do not distinguish" in describe(same)


def test_flags_too_few_points_non_monotone_single_seed():
    few = fit_power_law(power_law(2.0, -0.3, xs=[10, 100]), resamples=100)
    assert "too_few_points" in few.flags and few.slope == pytest.approx(-0.3)
    u_shape = [(x, 0, y) for x, y in zip([1, 2, 4, 8, 16], [5.0, 3.0, 2.0, 3.0, 5.0])]
    f = fit_power_law(u_shape, resamples=100)
    assert "non_monotone" in f.flags and "single_seed" in f.flags
    mono = fit_power_law(power_law(2.0, -0.3, seeds=(0,)), resamples=100)
    assert "non_monotone" not in mono.flags and "single_seed" in mono.flags


def test_models_with_different_x_are_paired_by_rank():
    # FLOPs differ per model at the same axis points: same exponents in each model's own x
    e = [(x * 5, s, y) for x, s, y in power_law(3.0, -0.4)]
    t = power_law(2.0, -0.3)
    fits, comp = compare({"ebt": e, "transformer++": t}, "ebt", "transformer++", resamples=200)
    assert fits["ebt"].slope == pytest.approx(-0.4)
    assert comp.ratio == pytest.approx(4 / 3) and "paired_by_rank" in comp.flags


def test_log_log_fit_rejects_non_positive_values():
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([(1, 0, 1.0), (2, 0, 0.0), (4, 0, 1.0)])
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([(0, 0, 1.0), (2, 0, 1.0), (4, 0, 1.0)])
