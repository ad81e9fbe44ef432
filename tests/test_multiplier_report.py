"""The report's multiplier rows, recomputed by this test's own short implementation (its own curve fit with
scipy, its own hierarchical resampling loop with the same seed), the coverage note, the lineage table's t
interval, and the shape section's pairs and paired differences against hand computations."""

import math

import numpy as np
import pytest
from scipy import stats as st
from scipy.optimize import curve_fit

from connectomes.analysis import sweep_multiplier as sm
from connectomes.analysis.sweep_shapes import paired_difference, shape_pairs
from connectomes.pipeline.sweep import Unit

# multiplier-cpu's units (docs/multiplier-cpu/report.md, 4 decimals): dense at 4 sizes x 3 seeds, generation 5's
# connectome of 2 lineages x 3 seeds at 3 sizes; best logged and final val loss
SIZES = [16384, 65536, 262144, 1048576]
DENSE = {"best": [[2.4833, 2.4894, 2.4947], [2.1283, 2.1053, 2.1096], [1.9997, 1.9901, 1.9924], [1.9665, 1.9546, 2.0048]],
         "final": [[7.2884, 7.2097, 7.0888], [2.1283, 2.1060, 2.1117], [1.9997, 1.9901, 1.9924], [1.9665, 1.9546, 2.0048]]}
CONN = {"best": [[[2.3119, 2.3068, 2.3064], [2.0115, 2.0165, 2.0177], [1.8838, 1.8916, 1.8858]],
                 [[2.2203, 2.2128, 2.2222], [1.9928, 1.9929, 1.9867], [1.8671, 1.8713, 1.8649]]],
        "final": [[[5.1371, 5.1380, 5.1318], [2.0411, 2.0309, 2.0302], [1.8838, 1.8916, 1.8858]],
                  [[5.0667, 5.0162, 4.9658], [1.9971, 2.0055, 2.0002], [1.8671, 1.8719, 1.8649]]]}
N_BOOT = 300


def sweep_rows(conn=CONN, dense=DENSE) -> list[dict]:
    """Rows as analysis.sweep_report.sweep_rows gives them (the keys the multiplier reads)."""
    rows = [{"unit": Unit("dense", s, tokens=n), "tokens": n, "generation": 5, "bits": None,
             **{k: dense[k][i][s] for k in dense}} for i, n in enumerate(SIZES) for s in range(3)]
    rows += [{"unit": Unit("connectome", s, lin, tokens=n), "tokens": n, "generation": 5,
              "bits": {"structured_file": 936_232}, **{k: conn[k][lin][i][s] for k in conn}}
             for lin in range(len(conn["best"])) for i, n in enumerate(SIZES[:3]) for s in range(3)]
    return rows


def own_fit(x, y, sigma, p0):
    """E + A x^-alpha by scipy's curve_fit, bounds 0 <= E <= min y, A >= 0, 0.01 <= alpha <= 5."""
    hi = [y.min(), np.inf, 5.0]
    p0 = np.minimum(np.maximum(p0, [0.0, 0.0, 0.01]), hi)
    p, _ = curve_fit(lambda x, e, a, al: e + a * x ** -al, x, y, p0=p0, sigma=sigma, absolute_sigma=True,
                     bounds=([0.0, 0.0, 0.01], hi), ftol=1e-12, xtol=1e-12, gtol=1e-12)
    return p


def own_multiplier(p, loss, n, lo=SIZES[0], top=SIZES[-1]):
    """D* / D on the fitted curve; inf beyond the largest dense size (or at the asymptote), 0 below the smallest."""
    e, a, al = p
    if loss <= e:
        return math.inf
    d_star = lo * (a / (loss - e)) ** (1 / al)
    return math.inf if d_star > top else 0.0 if d_star < lo else d_star / n


def own(key: str, n_boot: int, seed: int = 0):
    dense, conn = np.array(DENSE[key]), [np.array(c) for c in CONN[key]]
    x = np.array(SIZES, dtype=float) / SIZES[0]
    se = dense.std(1, ddof=1) / math.sqrt(3)
    sigma = np.maximum(se, 0.5 * np.median(se))
    ym = dense.mean(1)
    p = own_fit(x, ym, sigma, [0.9 * ym.min(), ym[0] - 0.9 * ym.min(), 0.5])
    chi2 = float(np.sum(((p[0] + p[1] * x ** -p[2] - ym) / sigma) ** 2))
    lin_means = np.array([c.mean(1) for c in conn])
    point = [own_multiplier(p, lin_means[:, j].mean(), n) for j, n in enumerate(SIZES[:3])]
    lineage = [[own_multiplier(p, lin_means[i, j], n) for j, n in enumerate(SIZES[:3])] for i in range(2)]
    rng = np.random.default_rng(seed)
    pooled, per = [], [[], []]
    for _ in range(n_boot):
        dm = dense[:, rng.integers(0, 3, 3)].mean(1)
        drawn = rng.integers(0, 2, 2)
        pool = np.mean([conn[i][:, rng.integers(0, 3, 3)].mean(1) for i in drawn], axis=0)
        mine = [c[:, rng.integers(0, 3, 3)].mean(1) for c in conn]
        q = own_fit(x, dm, sigma, p)
        pooled.append([own_multiplier(q, pool[j], n) for j, n in enumerate(SIZES[:3])])
        for i in range(2):
            per[i].append([own_multiplier(q, mine[i][j], n) for j, n in enumerate(SIZES[:3])])
    pct = lambda reps: np.quantile(np.array(reps), [0.025, 0.975], axis=0, method="inverted_cdf") if reps else None  # noqa: E731
    t = st.t.ppf(0.975, 1) * lin_means.std(0, ddof=1) / math.sqrt(2)
    t_ci = [(own_multiplier(p, lin_means[:, j].mean() + t[j], n), own_multiplier(p, lin_means[:, j].mean() - t[j], n))
            for j, n in enumerate(SIZES[:3])]
    line = [math.exp(np.interp(-lin_means[:, j].mean(), -ym, np.log(SIZES))) / n for j, n in enumerate(SIZES[:2])]
    return {"p": p, "chi2": chi2, "point": point, "line": line, "ci": pct(pooled), "lineage": lineage, "lineage_ci": [pct(r) for r in per],
            "t_ci": t_ci}


def close(a, b) -> bool:
    """Equal to 1e-7: E, A and alpha lie along a flat valley of the weighted residual, so two converged fits
    from different starts agree to about 1e-9 in the parameters and 1e-8 in a multiplier read off them; a
    different draw, weight or mapping moves a number by far more."""
    return (math.isinf(a) and math.isinf(b)) or a == pytest.approx(b, rel=1e-7, abs=1e-12)


def test_the_reports_multiplier_rows_equal_an_own_fit_and_hierarchical_bootstrap(monkeypatch):
    monkeypatch.setattr(sm, "N_BOOT", N_BOOT)
    found, lins = sm.multipliers(sweep_rows(), "best")
    want = own("best", N_BOOT)
    assert lins == [0, 1] and found.fit.params == pytest.approx(tuple(want["p"]), rel=1e-7)
    assert found.fit.chi2 == pytest.approx(want["chi2"], rel=1e-6)
    for j, m in enumerate(found.rows):
        assert close(m.value, want["point"][j])
        assert close(m.ci[0], want["ci"][0][j]) and close(m.ci[1], want["ci"][1][j])
        for i, r in enumerate(m.lineages):
            assert close(r.value, want["lineage"][i][j])
            assert close(r.ci[0], want["lineage_ci"][i][0][j]) and close(r.ci[1], want["lineage_ci"][i][1][j])
        assert close(m.t_ci[0], want["t_ci"][j][0]) and close(m.t_ci[1], want["t_ci"][j][1])
    # the straight line in log tokens (the dense means fall, so np.interp on the negated losses reads it)
    assert [m.line.m for m in found.rows[:2]] == pytest.approx(want["line"], rel=1e-12)
    # 16k is measured and its interval is finite: the numbers the reviewer's issue is about
    assert found.rows[0].relation == "=" and math.isfinite(found.rows[0].ci[1]) and found.rows[2].relation == ">"
    # the table row is written from those numbers
    lines = sm.multiplier_lines(sweep_rows(), "best")
    m = found.rows[0]
    f = lambda x: f"{x:.3g}"  # noqa: E731
    row = (f"| 16,384 | {f(m.m)} [{f(m.ci[0])}, {f(m.ci[1])}] | {f(m.line.m)} | "
           f"{f(m.lineages[0].m)} [{f(m.lineages[0].ci[0])}, {f(m.lineages[0].ci[1])}] | "
           f"{f(m.lineages[1].m)} [{f(m.lineages[1].ci[0])}, {f(m.lineages[1].ci[1])}] | [<1, >64] | ")
    assert any(line.startswith(row) for line in lines), row
    assert "| tokens | multiplier [95% CI] | straight line | lineage 0 [95% CI] | lineage 1 [95% CI] | " \
           "t over lineage means (1 df) | on the final val loss |" in lines


def test_the_final_loss_multiplier_is_a_dash_where_the_law_does_not_describe_the_dense_curve(monkeypatch):
    """Over-fitted final losses (7.2 nats at 16k against 2.1 at 65k) are not a scaling curve: its chi-square."""
    monkeypatch.setattr(sm, "N_BOOT", 20)
    want = own("final", 0)
    p = st.chi2.sf(want["chi2"], 1)
    assert p < 0.01
    lines = sm.multiplier_lines(sweep_rows(), "best")
    rows = [line for line in lines if line.startswith("| 16,384 |") or line.startswith("| 65,536 |")]
    assert rows and all(line.endswith(f"| — (the law does not describe this dense curve, chi-square p {p:.2g}) |")
                        for line in rows)
    assert "**Headline:** a 0.117 MB connectome is worth " in lines[-1]
    assert "hierarchical bootstrap over 2 lineages × 3 seeds and 3 dense seeds" in lines[-1]


def test_a_bracketed_final_loss_multiplier_is_given_with_its_interval(monkeypatch):
    """With the final losses equal to the best ones the final-loss column repeats the primary's numbers."""
    monkeypatch.setattr(sm, "N_BOOT", 40)
    same = sweep_rows(conn={"best": CONN["best"], "final": CONN["best"]}, dense={"best": DENSE["best"], "final": DENSE["best"]})
    found = sm.multipliers(same, "best")[0]
    lines = sm.multiplier_lines(same, "best")
    m = found.rows[0]
    assert any(line.startswith("| 16,384 |") and line.endswith(f"| {m.m:.3g} [{m.ci[0]:.3g}, {m.ci[1]:.3g}] |")
               for line in lines)
    assert any(line.startswith("| 262,144 |") and line.endswith("| — (not bracketed: fitted >4, straight line >4) |")
               for line in lines)


def test_the_report_says_when_the_pooled_interval_leaves_a_lineage_out(monkeypatch):
    monkeypatch.setattr(sm, "N_BOOT", 200)
    base = np.array(CONN["best"][1])
    four = {"best": [(base + off).tolist() for off in (-0.06, -0.01, 0.01, 0.06)]}
    rows = sweep_rows(conn={**four, "final": four["best"]}, dense=DENSE)
    found = sm.multipliers(rows, "best")[0]
    left = found.rows[1].uncovered()
    assert left  # the outer lineages lie outside an interval for the mean over four
    notes = [line for line in sm.multiplier_lines(rows, "best") if line.startswith("At 65,536 tokens the pooled interval")]
    assert len(notes) == 1 and "it is an interval for the mean over lineages, not for any one lineage" in notes[0]
    assert all(f"lineage {i}'s" in notes[0] for i in left)
    # four lineages: the t column stays (fewer than 5), with 3 df
    assert any("t over lineage means (3 df)" in line for line in sm.multiplier_lines(rows, "best"))


def test_lineage_table_pools_over_lineage_means_with_a_t_interval():
    lines = sm.lineage_lines(sweep_rows(), "best")
    means = [float(np.mean(CONN["best"][lin][0])) for lin in (0, 1)]
    m, half = np.mean(means), st.t.ppf(0.975, 1) * np.std(means, ddof=1) / math.sqrt(2)
    assert f"| {m:.4f} [{m - half:.4f}, {m + half:.4f}] (df 1) |" in lines[2]
    assert lines[2].startswith("| 5 | 16,384 | L0 ")
    # a size one lineage has not reached yet: its row has no interval over lineages (and no error)
    partial = [r for r in sweep_rows() if not (r["unit"].lineage == 1 and r["tokens"] == 262144)]
    assert sm.lineage_lines(partial, "best")[4].split(" | ")[3] == "—"


def test_pooled_mean_is_over_lineage_means_with_their_se():
    rows = [r for r in sweep_rows() if r["unit"].arm == "connectome" and r["tokens"] == 16384]
    rows = [r for r in rows if not (r["unit"].lineage == 1 and r["unit"].seed == 2)]  # unbalanced: 3 and 2 seeds
    means = [np.mean(CONN["best"][0][0]), np.mean(CONN["best"][1][0][:2])]
    assert sm.pooled(rows, "best") == (pytest.approx(np.mean(means), rel=1e-12),
                                       pytest.approx(np.std(means, ddof=1) / math.sqrt(2), rel=1e-12), 2, 5)


# shapes-cpu's best logged losses (docs/shapes-cpu/report.md), one lineage per shape, seeds 0-2
SHAPE = {("2x128", 2): [1.9881, 2.0437, 1.9852], ("2x128", 5): [1.9782, 2.0327, 1.9873],
         ("4x128", 2): [1.9776, 2.0329, 1.9851], ("4x128", 5): [1.9690, 2.0130, 1.9690],
         ("2x256", 2): [1.8840, 1.9324, 1.8807], ("2x256", 5): [1.8427, 1.8855, 1.8475]}
ALIVE = {("2x128", 2): 234_894, ("2x128", 5): 120_274, ("4x128", 2): 436_232, ("4x128", 5): 223_364,
         ("2x256", 2): 872_428, ("2x256", 5): 446_690}
WEIGHTS = {"2x128": 458_752, "4x128": 851_968, "2x256": 1_703_936}


def shape_rows(cell, lineages=(None,), shift=0.0):
    return [{"unit": Unit("connectome", s, lin, shape=cell[0]), "best": v + (shift if lin == 1 else 0.0)}
            for lin in lineages for s, v in enumerate(SHAPE[cell])]


def test_shape_pairs_match_each_larger_connectome_to_the_closest_smaller_one():
    cells = {c: (ALIVE[c], shape_rows(c)) for c in SHAPE}
    assert shape_pairs(cells, WEIGHTS) == [(("4x128", 5), ("2x128", 2)), (("2x256", 5), ("4x128", 2))]


def test_shape_paired_difference_equals_a_hand_computation():
    wide, deep = shape_rows(("2x256", 5)), shape_rows(("4x128", 2))
    r = paired_difference(wide, deep, "best")
    d = np.array(SHAPE[("2x256", 5)]) - np.array(SHAPE[("4x128", 2)])
    se = d.std(ddof=1) / math.sqrt(3)
    assert se == pytest.approx(0.0038, abs=1e-4)  # the paired s.e.: the same seed has the same data order
    half = st.t.ppf(0.975, 2) * se
    assert r["diff"] == pytest.approx(d.mean(), rel=1e-12)
    assert r["ci"] == pytest.approx([d.mean() - half, d.mean() + half], rel=1e-12)
    assert (r["lineages"], r["seeds"], r["pairs"]) == (1, 3, 3) and "no lineage variance" in r["over"]
    # two lineages (the second shifted by 0.03 in A only): d_l per lineage, then t over the 2 lineages
    r2 = paired_difference(shape_rows(("2x256", 5), (0, 1), 0.03), shape_rows(("4x128", 2), (0, 1)), "best")
    dl = np.array([d.mean(), d.mean() + 0.03])
    half2 = st.t.ppf(0.975, 1) * dl.std(ddof=1) / math.sqrt(2)
    assert r2["diff"] == pytest.approx(dl.mean(), rel=1e-12)
    assert r2["ci"] == pytest.approx([dl.mean() - half2, dl.mean() + half2], rel=1e-9)
    assert (r2["lineages"], r2["seeds"], r2["over"]) == (2, 3, "t over 2 lineages (df 1)")


def test_data_efficiency_draws_the_fitted_dense_curve_and_arrows_at_the_fitted_reading():
    ax = sm.fig_data_efficiency(sweep_rows(), "best").axes[0]
    found = sm.multipliers(sweep_rows(), "best", n_boot=0)[0]
    curve = next(ln for ln in ax.get_lines() if ln.get_label() == "dense, fitted E + A·D^-α")
    assert curve.get_xdata()[0] == SIZES[0] and curve.get_xdata()[-1] == pytest.approx(SIZES[-1])
    assert np.allclose(curve.get_ydata(), found.fit.loss(curve.get_xdata()), rtol=1e-12)
    arrows = [(a.xy, a.xyann) for a in ax.texts if a.arrow_patch is not None]
    measured = [m for m in found.rows if m.relation == "="]
    assert len(arrows) == len(measured) == 2  # 262k is a bound: no arrow
    for (head, tail), m in zip(arrows, measured):
        assert tail == (m.tokens, m.loss) and head == pytest.approx((m.tokens * m.m, m.loss), rel=1e-12)
        # the arrow ends on the fitted curve, at the loss the connectome reaches
        assert found.fit.loss(head[0]) == pytest.approx(m.loss, rel=1e-9)
