"""stats: every number against a hand computation or a published value."""

import math

import numpy as np
import pytest
from scipy import stats as st

from connectomes.analysis import stats

A = [0.31, 0.29, 0.33, 0.30, 0.32]
B = [0.28, 0.28, 0.30, 0.29, 0.29]  # differences .03 .01 .03 .01 .03


def t4_cdf(t):
    """Student t with 4 degrees of freedom in closed form (x = t / sqrt(4 + t^2))."""
    x = t / math.sqrt(4 + t * t)
    return 0.5 + 0.75 * x - 0.25 * x ** 3


def test_paired_seeds_by_hand():
    res = stats.paired_seeds(A, B)
    sd = math.sqrt((3 * 0.008 ** 2 + 2 * 0.012 ** 2) / 4)  # deviations from the mean 0.022
    t = 0.022 / (sd / math.sqrt(5))
    assert res["n"] == 5 and res["mean_diff"] == pytest.approx(0.022) and res["sd_diff"] == pytest.approx(sd)
    assert res["t"] == pytest.approx(t) and t == pytest.approx(4.4907, abs=1e-4)
    assert res["p"] == pytest.approx(2 * (1 - t4_cdf(t)))
    half = 2.776445105 * sd / math.sqrt(5)  # t(0.975, 4) from the tables
    assert res["ci"] == pytest.approx([0.022 - half, 0.022 + half])
    assert res["dz"] == pytest.approx(0.022 / sd)


def test_dz_interval_is_the_noncentral_t_inversion_and_near_the_large_sample_formula():
    res = stats.paired_seeds(A, B)
    lo, hi = res["dz_ci"]
    t_obs = res["dz"] * math.sqrt(5)
    assert lo < res["dz"] < hi
    assert st.nct.cdf(t_obs, 4, lo * math.sqrt(5)) == pytest.approx(0.975, abs=1e-9)
    assert st.nct.cdf(t_obs, 4, hi * math.sqrt(5)) == pytest.approx(0.025, abs=1e-9)
    # many seeds: d_z +- 1.96 sqrt(1/n + d_z^2 / (2n)) (Hedges & Olkin's normal approximation)
    lo, hi = stats.dz_interval(0.5, 200)
    half = 1.959964 * math.sqrt(1 / 200 + 0.25 / 400)
    assert lo == pytest.approx(0.5 - half, abs=0.01) and hi == pytest.approx(0.5 + half, abs=0.01)


def test_paired_seeds_without_spread_has_no_test():
    res = stats.paired_seeds([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert res["mean_diff"] == pytest.approx(0.5) and res["ci"] == pytest.approx([0.5, 0.5])
    assert res["t"] is res["p"] is res["dz"] is None


def test_bootstrap_identical_arms():
    x = np.random.default_rng(0).integers(0, 2, size=(3, 40))
    res = stats.paired_bootstrap(x, x, n_boot=200)
    assert res["mean_diff"] == 0 and res["ci"] == [0.0, 0.0] and res["p"] == 1.0


def test_bootstrap_matches_a_plain_resampling_loop():
    rng = np.random.default_rng(1)
    a = (rng.random((4, 60)) < 0.45).astype(int)
    b = (rng.random((4, 60)) < 0.35).astype(int)
    res = stats.paired_bootstrap(a, b, n_boot=500, seed=3)
    draw = np.random.default_rng(3)
    boot = []
    for _ in range(500):
        si = draw.integers(0, 4, size=4)
        ii = draw.integers(0, 60, size=60)
        boot.append((a[si][:, ii] - b[si][:, ii]).mean())
    assert res["mean_diff"] == pytest.approx((a - b).mean())
    assert res["ci"] == pytest.approx(np.quantile(boot, [0.025, 0.975]).tolist())
    k = min(np.sum(np.array(boot) <= 0), np.sum(np.array(boot) >= 0))
    assert res["p"] == pytest.approx(min(1, 2 * (k + 1) / 501))
    assert res == stats.paired_bootstrap(a, b, n_boot=500, seed=3)  # reproducible
    # the fixed-seed values, pinned (means over a 4 x 60 grid are multiples of 1/240)
    assert res["ci"] == pytest.approx([-20 / 240, 51 / 240], abs=1e-12) and res["p"] == pytest.approx(168 / 501)


def test_a_bootstrap_p_is_never_zero():
    """Every replicate on one side of 0: the p is the smallest B replicates can show, 2 / (B + 1), not 0."""
    res = stats.paired_bootstrap(np.ones((3, 50)), np.zeros((3, 50)), n_boot=1000)
    assert res["p"] == pytest.approx(2 / 1001) and res["ci"] == [1.0, 1.0]


def test_holm_textbook_example():
    # sorted 0.005 0.01 0.03 0.04 times 4 3 2 1 = 0.02 0.03 0.06 0.04 -> running max 0.02 0.03 0.06 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, None, 0.01]) == [pytest.approx(0.5), None, pytest.approx(0.02)]
    assert stats.holm([0.4, 0.3]) == pytest.approx([0.6, 0.6])  # 0.3*2 = 0.6; 0.4*1 raised to 0.6
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped


def test_minimum_detectable_difference_matches_power_tables():
    # G*Power / Cohen's tables: d_z = 0.5 needs 34 pairs for power 0.8 at alpha 0.05 two-sided
    assert stats.minimum_detectable_difference(1.0, 34) < 0.5 < stats.minimum_detectable_difference(1.0, 33)
    assert stats.minimum_detectable_difference(2.0, 34) == pytest.approx(2 * stats.minimum_detectable_difference(1.0, 34))
    # many seeds: the normal approximation (z_0.975 + z_0.8) sd / sqrt(n)
    assert stats.minimum_detectable_difference(1.0, 10000) == pytest.approx((1.959964 + 0.841621) / 100, rel=1e-3)
    # few seeds: far above the normal approximation
    assert stats.minimum_detectable_difference(1.0, 3) > 2 * 2.801585 / math.sqrt(3)


def test_chance_rates_are_the_task_specs():
    from connectomes.evals.registry import tasks

    chance = {t: {m.chance for m in s.metrics} for t, s in tasks().items()}
    assert chance["hellaswag"] == chance["mmlu"] == {0.25}
    assert chance["blimp"] == chance["blimp_supplement"] == {0.5}
    assert chance["fmri"] == chance["val_loss"] == {None}


def test_holm_within_families_by_hand():
    # primary: 0.01, 0.04 (m = 2): 0.01 x 2 = 0.02, 0.04 x 1 = 0.04. secondary: 0.001, 0.03, 0.02, None (m = 3):
    # 0.001 x 3 = 0.003, then 0.02 x 2 = 0.04, then 0.03 x 1 = 0.03 raised to 0.04 (step-down maximum)
    p = [0.04, 0.001, 0.01, 0.03, None, 0.02]
    fam = ["primary", "secondary", "primary", "secondary", "secondary", "secondary"]
    adjusted = stats.holm_families(p, fam)
    assert adjusted[4] is None
    assert [a for a in adjusted if a is not None] == pytest.approx([0.04, 0.003, 0.02, 0.04, 0.04], rel=1e-12)
    # one family is plain Holm; all six as one family would give 0.001 x 5 = 0.005, 0.01 x 4 = 0.04, ...
    assert stats.holm_families(p, ["all"] * 6) == stats.holm(p)
    assert stats.holm(p)[2] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="one family per p-value"):
        stats.holm_families([0.1], [])
