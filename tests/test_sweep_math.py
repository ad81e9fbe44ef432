"""The data multiplier on synthetic curves with known answers, its out-of-range bounds, the bootstrap and the headline."""

import math

import numpy as np
import pytest

from connectomes.analysis.sweep_math import Multiplier, data_multiplier, headline, headline_size, matching_tokens

SIZES = [100_000 * 2 ** k for k in range(7)]  # 100k .. 6.4M
A, B = 5.0, 0.25
ZERO_MEAN = np.array([-0.02, 0.0, 0.02])  # per-seed offsets whose mean is exactly 0


def curve(shift: float, offsets=ZERO_MEAN) -> np.ndarray:
    """loss = A - B ln(shift * tokens) per size, plus a per-seed offset."""
    return np.array([[A - B * math.log(shift * n) + o for o in offsets] for n in SIZES])


def test_a_connectome_worth_four_times_the_data_gives_exactly_four_and_bounds_past_the_range():
    out = data_multiplier(SIZES, curve(1), curve(4), n_boot=200)
    # 4D is measured for D <= 1.6M; beyond it the dense arm's largest size (6.4M) bounds m from below
    assert [(o.relation, o.tokens) for o in out] == [("=", n) for n in SIZES[:5]] + [(">", 3_200_000), (">", 6_400_000)]
    assert [o.m for o in out[:5]] == pytest.approx([4.0] * 5, rel=1e-12)
    assert [o.m for o in out[5:]] == pytest.approx([2.0, 1.0])


def test_a_worse_connectome_gives_a_quarter_and_an_upper_bound_below_the_range():
    out = data_multiplier(SIZES, curve(1), curve(0.25), n_boot=200)
    assert [o.relation for o in out] == ["<", "<"] + ["="] * 5
    assert [o.m for o in out] == pytest.approx([1.0, 0.5] + [0.25] * 5, rel=1e-12)


def test_interpolation_is_linear_in_log_tokens():
    sizes, dense = np.array([100.0, 10_000.0]), np.array([3.0, 1.0])
    assert matching_tokens(sizes, dense, 2.0) == (pytest.approx(1000.0), "=")
    assert matching_tokens(sizes, dense, 3.0) == (100.0, "=")
    assert matching_tokens(sizes, dense, 1.0) == (10_000.0, "=")
    assert matching_tokens(sizes, dense, 0.5) == (10_000.0, ">")
    assert matching_tokens(sizes, dense, 3.5) == (100.0, "<")
    # not monotone: the first crossing counts
    assert matching_tokens(np.array([1.0, 10.0, 100.0]), np.array([3.0, 1.0, 2.0]), 1.5)[0] == pytest.approx(10 ** 0.75)


def test_the_bootstrap_is_seeded_and_collapses_without_seed_noise():
    exact = data_multiplier(SIZES, curve(1, [0.0, 0.0]), curve(4, [0.0, 0.0, 0.0]), n_boot=100)
    assert [o.ci for o in exact[:5]] == [pytest.approx((4.0, 4.0), rel=1e-12)] * 5
    assert exact[5].ci == (math.inf, math.inf) and exact[0].seeds == (2, 3) and exact[0].level == 0.95
    noisy_d = curve(1) + np.array([[0.03, -0.05, 0.02]] * 7)
    noisy_c = curve(4) + np.array([[-0.04, 0.01, 0.03]] * 7)
    a = data_multiplier(SIZES, noisy_d, noisy_c, n_boot=500, seed=7)
    assert a == data_multiplier(SIZES, noisy_d, noisy_c, n_boot=500, seed=7)
    assert a != data_multiplier(SIZES, noisy_d, noisy_c, n_boot=500, seed=8)
    lo, hi = a[2].ci
    assert a[2].m == pytest.approx(4.0) and lo < 4.0 < hi
    # m = 4 exp((dense offset - connectome offset) / B); resampled means of the offsets lie in
    # [-0.05, 0.03] (dense) and [-0.04, 0.03] (connectome), so m lies in 4 exp([-0.08, 0.07] / B)
    assert lo >= 4 * math.exp(-0.08 / B) - 1e-9 and hi <= 4 * math.exp(0.07 / B) + 1e-9


@pytest.mark.parametrize("sizes,dense,message", [
    ([100, 100], [[1.0], [0.5]], "increasing positive"),
    ([100, 200], [[1.0], [0.5], [0.2]], "one row per size"),
    ([100, 200], [[1.0], [math.nan]], "finite"),
])
def test_bad_curves_are_refused(sizes, dense, message):
    with pytest.raises(ValueError, match=message):
        data_multiplier(sizes, dense, dense)


def test_headline_sentences():
    m = Multiplier(1_000_000, 4.0, "=", (3.1, 5.25), 0.95, (5, 5))
    assert headline(0.8e6, m) == ("a 0.1 MB connectome is worth 4x developmental data at 1M tokens "
                                  "(95% CI 3.1x-5.25x, bootstrap over 5 dense and 5 connectome seeds)")
    up = Multiplier(3_200_000, 2.0, ">", (1.5, math.inf), 0.9, (2, 3))
    assert headline(22.1e6 * 8, up) == ("a 22.1 MB connectome is worth more than 2x developmental data at 3.2M tokens "
                                        "(90% CI 1.5x-inf, bootstrap over 2 dense and 3 connectome seeds; "
                                        "the dense arm's largest size does not reach its loss)")
    assert "worth less than 0.5x developmental data at 150k tokens" in headline(1e6, Multiplier(150_000, 0.5, "<", (0, 0.6), 0.95, (1, 1)))


def test_headline_speaks_for_the_largest_measured_size_else_the_strongest_bound():
    def m(tokens, rel):
        return Multiplier(tokens, 2.0, rel, (1.0, 3.0), 0.95, (2, 2))

    assert headline_size([m(50, "="), m(100, "="), m(200, ">")]).tokens == 100
    # dense never reaches the connectome: the smallest size has the largest lower bound (largest / D)
    assert headline_size([m(50, ">"), m(100, ">"), m(200, ">")]).tokens == 50
    # the connectome is worse than dense everywhere: the largest size has the smallest upper bound (smallest / D)
    assert headline_size([m(50, "<"), m(100, "<"), m(200, "<")]).tokens == 200
    assert headline_size([m(50, "<"), m(100, ">")]).tokens == 100


def test_an_interval_with_every_resample_out_of_range_is_said_in_words():
    above = Multiplier(50_000, 16.0, ">", (math.inf, math.inf), 0.95, (2, 2))
    assert headline(935_720, above) == (
        "a 0.117 MB connectome is worth more than 16x developmental data at 50k tokens (every bootstrap resample "
        "beyond the dense arm's largest size, bootstrap over 2 dense and 2 connectome seeds; the dense arm's "
        "largest size does not reach its loss)")
    below = Multiplier(800_000, 0.0625, "<", (0.0, 0.0), 0.95, (2, 2))
    assert "(every bootstrap resample below the dense arm's smallest size," in headline(1e6, below)
