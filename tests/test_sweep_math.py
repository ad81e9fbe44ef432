"""The data multiplier on synthetic curves with known answers: the saturating fit, its out-of-range bounds, the
straight-line reading beside it, the hierarchical bootstrap, the t interval over lineages and the headline."""

import math

import numpy as np
import pytest
from scipy import stats as st

from connectomes.analysis import dense_fit
from connectomes.analysis.dense_fit import fit_dense, fitted_tokens, law
from connectomes.analysis.sweep_math import (Design, Multiplier, Reading, data_multiplier, headline, headline_size,
                                             matching_tokens)

SIZES = [100_000 * 2 ** k for k in range(7)]  # 100k .. 6.4M
E, A, ALPHA = 2.0, 1.5, 0.6                    # loss = E + A (n / 100k)^-ALPHA
ZERO_MEAN = np.array([-0.02, 0.0, 0.02])       # per-seed offsets whose mean is 0


def loss(n: float) -> float:
    return E + A * (n / SIZES[0]) ** -ALPHA


def curve(shift: float, offsets=ZERO_MEAN, sizes=SIZES) -> np.ndarray:
    """The saturating curve at shift * tokens per size, plus a per-seed offset: a connectome worth ``shift``."""
    return np.array([[loss(shift * n) + o for o in offsets] for n in sizes])


def test_the_fit_recovers_the_law_from_noiseless_data():
    fit = fit_dense(SIZES, [loss(n) for n in SIZES], np.full(7, 0.01))
    assert (fit.e, fit.a, fit.alpha) == pytest.approx((E, A, ALPHA), rel=1e-7)
    assert (fit.ref, fit.top, fit.dof) == (SIZES[0], SIZES[-1], 4) and fit.chi2 == pytest.approx(0, abs=1e-9)
    assert fit.adequate and fit.loss(SIZES[3]) == pytest.approx(loss(SIZES[3]), rel=1e-9)
    # unweighted (one seed) and from a poor start, the same law
    assert fit_dense(SIZES, [loss(n) for n in SIZES], None, start=(0.1, 5.0, 2.0)).params == pytest.approx((E, A, ALPHA))
    assert fit_dense(SIZES[:2], [3.0, 2.5]) is None  # three parameters need three sizes


def test_a_connectome_worth_three_times_the_data_gives_three_and_bounds_past_the_range():
    out = data_multiplier(SIZES, curve(1), curve(3), n_boot=50)
    assert out.fit is not None and out.why_no_fit is None
    # 3D is measured for D <= 1.6M; beyond it the dense arm's largest size (6.4M) bounds m from below
    assert [(o.relation, o.tokens) for o in out.rows] == [("=", n) for n in SIZES[:5]] + [(">", 3_200_000), (">", 6_400_000)]
    assert [o.m for o in out.rows[:5]] == pytest.approx([3.0] * 5, rel=1e-6)
    assert [o.m for o in out.rows[5:]] == [2.0, 1.0]
    # on this convex curve the straight line between sizes overstates the multiplier
    assert all(o.line.relation == "=" and o.line.m > o.m for o in out.rows[:5])
    worse = data_multiplier(SIZES, curve(1), curve(1 / 3), n_boot=50)
    assert [o.relation for o in worse.rows] == ["<", "<"] + ["="] * 5
    assert [o.m for o in worse.rows] == pytest.approx([1.0, 0.5] + [1 / 3] * 5, rel=1e-6)


def test_a_loss_at_or_below_the_asymptote_or_past_the_largest_size_is_a_bound():
    fit = fit_dense(SIZES, [loss(n) for n in SIZES], None)
    assert fitted_tokens(fit, E - 0.01) == (SIZES[-1], ">")        # below the asymptote: never reached
    assert fitted_tokens(fit, fit.e) == (SIZES[-1], ">")
    assert fitted_tokens(fit, loss(2 * SIZES[-1])) == (SIZES[-1], ">")  # reached only past the largest size
    assert fitted_tokens(fit, loss(SIZES[0] / 2)) == (SIZES[0], "<")
    d_star, rel = fitted_tokens(fit, loss(300_000))
    assert rel == "=" and d_star == pytest.approx(300_000, rel=1e-6)


def test_interpolation_is_linear_in_log_tokens():
    sizes, dense = np.array([100.0, 10_000.0]), np.array([3.0, 1.0])
    assert matching_tokens(sizes, dense, 2.0) == (pytest.approx(1000.0), "=")
    assert matching_tokens(sizes, dense, 3.0) == (100.0, "=")
    assert matching_tokens(sizes, dense, 1.0) == (10_000.0, "=")
    assert matching_tokens(sizes, dense, 0.5) == (10_000.0, ">")
    assert matching_tokens(sizes, dense, 3.5) == (100.0, "<")
    # not monotone: the first crossing counts
    assert matching_tokens(np.array([1.0, 10.0, 100.0]), np.array([3.0, 1.0, 2.0]), 1.5)[0] == pytest.approx(10 ** 0.75)


def test_two_dense_sizes_or_a_failed_fit_leave_the_straight_line_said_so(monkeypatch):
    two = data_multiplier([100, 10_000], [[3.0], [1.0]], [[2.0]], connectome_sizes=[100], n_boot=20)
    assert two.fit is None and two.why_no_fit == "2 dense sizes: a 3-parameter curve needs at least 3"
    assert (two.rows[0].m, two.rows[0].relation, two.rows[0].fitted) == (pytest.approx(10.0), "=", False)
    assert two.rows[0].line == Reading(two.rows[0].m, "=")

    def fail(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found")
    monkeypatch.setattr(dense_fit.optimize, "curve_fit", fail)
    out = data_multiplier(SIZES, curve(1), curve(4), n_boot=20)
    assert out.fit is None and out.why_no_fit == "the saturating fit failed on this curve"
    assert [o.m for o in out.rows] == [o.line.m for o in out.rows] and not out.rows[0].fitted


def test_the_bootstrap_is_seeded_and_collapses_without_seed_noise():
    exact = data_multiplier(SIZES, curve(1, [0.0, 0.0]), curve(3, [0.0, 0.0, 0.0]), n_boot=30)
    assert [o.ci for o in exact.rows[:5]] == [pytest.approx((3.0, 3.0), rel=1e-6)] * 5
    assert exact.rows[5].ci == (math.inf, math.inf) and exact.rows[0].design == Design((3,), 2)
    assert exact.rows[0].level == 0.95 and exact.rows[0].t_ci is None  # one lineage: no t over lineages
    noisy_d = curve(1) + np.array([[0.03, -0.05, 0.02]] * 7)
    noisy_c = curve(3) + np.array([[-0.04, 0.01, 0.03]] * 7)
    a = data_multiplier(SIZES, noisy_d, noisy_c, n_boot=60, seed=7)
    assert a == data_multiplier(SIZES, noisy_d, noisy_c, n_boot=60, seed=7)
    assert a != data_multiplier(SIZES, noisy_d, noisy_c, n_boot=60, seed=8)
    lo, hi = a.rows[2].ci
    assert lo < a.rows[2].m < hi


def _lineages(offsets) -> list[np.ndarray]:
    """Lineages worth 3x the data with these loss offsets, the same seed noise in each."""
    return [curve(3, np.array([-0.004, 0.001, 0.003]))[:4] + off for off in offsets]


def test_the_pooled_interval_widens_with_between_lineage_variance_and_then_holds_each_lineage():
    dense = curve(1, [-0.003, 0.0, 0.003])
    near, far = (data_multiplier(SIZES, dense, _lineages([-s, s]), connectome_sizes=SIZES[:4], n_boot=300)
                 for s in (0.002, 0.05))
    for j in range(4):
        wn, wf = (np.log(x.rows[j].ci[1] / x.rows[j].ci[0]) for x in (near, far))
        assert wf > 3 * wn
    # far apart, two lineages: a quarter of the replicates draw one lineage twice, so each lineage's own
    # multiplier lies inside the pooled interval
    for m in far.rows:
        assert m.relation == "=" and all(r.relation == "=" for r in m.lineages) and m.uncovered() == []
        assert m.lineages[1].m < m.m < m.lineages[0].m  # the higher loss is worth less data
        assert m.design == Design((3, 3), 3) and m.t_ci is not None
    # four lineages far apart: the mean over four draws rarely reaches an outer lineage, so the interval
    # (for the mean over lineages) leaves the outer two out
    four = data_multiplier(SIZES, dense, _lineages([-0.05, -0.01, 0.01, 0.05]), connectome_sizes=SIZES[:4], n_boot=300)
    assert four.rows[2].uncovered() == [0, 3]


def test_the_t_interval_over_lineage_means_maps_through_the_fitted_curve():
    dense = curve(1, [-0.003, 0.0, 0.003])
    lins = _lineages([-0.02, 0.0, 0.03])
    out = data_multiplier(SIZES, dense, lins, connectome_sizes=SIZES[:4], n_boot=10)
    means = np.array([v[1].mean() for v in lins])
    half = st.t.ppf(0.975, 2) * means.std(ddof=1) / math.sqrt(3)
    ends = [fitted_tokens(out.fit, means.mean() + h) for h in (half, -half)]
    assert all(rel == "=" for _, rel in ends)
    assert out.rows[1].t_ci == pytest.approx(tuple(d / SIZES[1] for d, _ in ends), rel=1e-12)
    assert out.rows[1].m == pytest.approx(fitted_tokens(out.fit, means.mean())[0] / SIZES[1], rel=1e-12)
    five = data_multiplier(SIZES, dense, _lineages([-0.02, -0.01, 0.0, 0.01, 0.02]), connectome_sizes=SIZES[:4], n_boot=10)
    assert five.rows[1].t_ci is None  # five lineages: the bootstrap carries the lineage spread


@pytest.mark.parametrize("sizes,dense,message", [
    ([100, 100], [[1.0], [0.5]], "increasing positive"),
    ([100, 200], [[1.0], [0.5], [0.2]], "one row per size"),
    ([100, 200], [[1.0], [math.nan]], "finite"),
])
def test_bad_curves_are_refused(sizes, dense, message):
    with pytest.raises(ValueError, match=message):
        data_multiplier(sizes, dense, dense)


def mult(tokens, m, rel="=", ci=(1.0, 3.0), level=0.95, lineages=((1.9, "="),), t_ci=None, span=(0.25, 4.0),
         design=Design((3,), 3), fitted=True, line=(2.5, "=")):
    return Multiplier(tokens, 2.0, m, rel, ci, level, Reading(*line), tuple(Reading(*r) for r in lineages), t_ci, span,
                      design, fitted)


def test_headline_sentences():
    m = mult(1_000_000, 4.0, ci=(3.1, 5.25), design=Design((3, 3), 5), t_ci=(0.0, math.inf), line=(4.6, "="))
    assert headline(0.8e6, m) == (
        "a 0.1 MB connectome is worth 4x developmental data at 1M tokens (95% CI 3.1x-5.25x, hierarchical bootstrap "
        "over 2 lineages × 3 seeds and 5 dense seeds; a t interval over the 2 lineage means (1 df) gives <0.25x->4x, "
        "wide since lineage spread rests on 2 values; read off the fitted dense curve L(D) = E + A·D^-α; the straight "
        "line in log tokens reads 4.6x)")
    up = mult(3_200_000, 2.0, ">", (1.5, math.inf), 0.9, design=Design((3,), 2), fitted=False, span=(0.5, 2.0))
    assert headline(22.1e6 * 8, up) == (
        "a 22.1 MB connectome is worth more than 2x developmental data at 3.2M tokens (90% CI 1.5x->2x, hierarchical "
        "bootstrap over 1 lineage × 3 seeds and 2 dense seeds; read off the straight line in log tokens between the "
        "dense sizes (no fitted curve); the dense arm's largest size does not reach its loss)")
    assert "worth less than 0.5x developmental data at 150k tokens" in headline(1e6, mult(150_000, 0.5, "<", (0, 0.6)))


def test_headline_speaks_for_the_largest_measured_size_else_the_strongest_bound():
    assert headline_size([mult(50, 2.0), mult(100, 2.0), mult(200, 2.0, ">")]).tokens == 100
    # dense never reaches the connectome: the smallest size has the largest lower bound (largest / D)
    assert headline_size([mult(50, 2.0, ">"), mult(100, 2.0, ">"), mult(200, 2.0, ">")]).tokens == 50
    # the connectome is worse than dense everywhere: the largest size has the smallest upper bound (smallest / D)
    assert headline_size([mult(50, 2.0, "<"), mult(100, 2.0, "<"), mult(200, 2.0, "<")]).tokens == 200
    assert headline_size([mult(50, 2.0, "<"), mult(100, 2.0, ">")]).tokens == 100


def test_an_interval_with_every_resample_out_of_range_is_said_in_words():
    above = mult(50_000, 16.0, ">", (math.inf, math.inf), design=Design((2,), 2), line=(16.0, ">"))
    assert headline(935_720, above).startswith(
        "a 0.117 MB connectome is worth more than 16x developmental data at 50k tokens (every bootstrap resample "
        "beyond the dense arm's largest size, hierarchical bootstrap over 1 lineage × 2 seeds and 2 dense seeds;")
    below = mult(800_000, 0.0625, "<", (0.0, 0.0))
    assert "(every bootstrap resample below the dense arm's smallest size," in headline(1e6, below)
    both = mult(50_000, 16.0, ">", (math.inf, math.inf), design=Design((2, 2), 2), t_ci=(math.inf, math.inf))
    assert "; a t interval over the 2 lineage means (1 df) lies wholly beyond the dense sizes;" in headline(1e6, both)


def test_uncovered_names_the_lineages_outside_the_pooled_interval():
    m = mult(1000, 2.0, ci=(1.8, 2.2), lineages=((1.9, "="), (2.5, "="), (4.0, ">")), span=(0.5, 4.0))
    assert m.uncovered() == [1, 2]
    assert mult(1000, 2.0, ci=(1.8, math.inf), lineages=((1.9, "="), (4.0, ">"))).uncovered() == []


def test_law_is_the_curve_the_fit_reads():
    assert law(np.array([1.0, 4.0]), 2.0, 1.0, 0.5).tolist() == [3.0, 2.5]
