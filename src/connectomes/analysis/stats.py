"""Statistics for comparing arms: seed-paired tests, item-level paired bootstrap, effect sizes, Holm
adjustment and the design's minimum detectable difference.

Arms are compared pairwise on the same seeds (seed s of arm A and seed s of arm B share the data order
and the random draws), so every test here is paired. The functions take plain arrays and return
JSON-serialisable dicts; the report decides which comparisons to make and how they form Holm families.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize
from scipy import stats as st


def paired_seeds(a, b, confidence: float = 0.95) -> dict:
    """Arm a minus arm b over seeds paired by index: paired t (scipy.stats.ttest_rel), the mean
    difference with its t confidence interval, and Cohen's d_z (mean difference / s.d. of the
    differences) with its exact interval from the noncentral t."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two equal-length 1-d arrays of at least 2 seeds; got {a.shape} and {b.shape}")
    d = a - b
    n, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
    half = st.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    res = {"n": n, "mean_diff": mean, "sd_diff": sd, "ci": [mean - half, mean + half], "confidence": confidence}
    if sd == 0:  # every seed moved by the same amount: no spread, no t
        return {**res, "t": None, "p": None, "dz": None, "dz_ci": None}
    test = st.ttest_rel(a, b)
    dz = mean / sd
    return {**res, "t": float(test.statistic), "p": float(test.pvalue), "dz": dz,
            "dz_ci": dz_interval(dz, n, confidence)}


def t_interval(values, confidence: float = 0.95) -> dict:
    """The mean of independent ``values`` (e.g. one per lineage) with its s.e. and t interval, df = n - 1."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or len(v) < 2 or not np.isfinite(v).all():
        raise ValueError(f"need a 1-d array of at least 2 finite values; got {v.tolist()}")
    n, mean = len(v), float(v.mean())
    se = float(v.std(ddof=1)) / math.sqrt(n)
    half = float(st.t.ppf(0.5 + confidence / 2, n - 1)) * se
    return {"n": n, "df": n - 1, "mean": mean, "se": se, "ci": [mean - half, mean + half], "confidence": confidence}


def dz_interval(dz: float, n: int, confidence: float = 0.95) -> list[float]:
    """Confidence interval of Cohen's d_z by inverting the noncentral t (Steiger & Fouladi): the
    noncentrality delta at which t_obs = d_z sqrt(n) sits at the upper and lower tail quantile,
    divided by sqrt(n)."""
    t_obs, df, tail = dz * math.sqrt(n), n - 1, (1 - confidence) / 2

    def root(q: float) -> float:
        # P(T <= t_obs | delta), through sf: scipy 1.17's nct.cdf returns NaN at some tail points
        # (df 4, t 4.4907, delta -10) where nct.sf does not; it falls as delta rises
        f = lambda delta: 1.0 - st.nct.sf(t_obs, df, delta) - q  # noqa: E731
        # widen a bracket from t_obs one step at a time, never further out than needed
        lo, hi = t_obs - 1.0, t_obs + 1.0
        while f(lo) < 0:
            lo -= 1.0
        while f(hi) > 0:
            hi += 1.0
        return optimize.brentq(f, lo, hi, xtol=1e-12)

    return [root(1 - tail) / math.sqrt(n), root(tail) / math.sqrt(n)]


def paired_bootstrap(correct_a, correct_b, n_boot: int = 10000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Accuracy difference a - b from per-item 0/1 outcomes shaped [seeds, items] (both arms scored on
    the same items, seeds paired by row). Each replicate draws seeds with replacement, then items with
    replacement (numpy Generator seeded by ``seed``), the same draw for both arms, and takes the mean
    difference over the resampled grid. Returns the observed difference, the percentile interval and
    the two-sided bootstrap p: twice the smaller share of replicates on either side of 0, at most 1, each
    share counted with the observed sample as one more replicate ((k + 1) / (B + 1)), so a p never reads 0
    when all B replicates fall on one side: it is then 2 / (B + 1), the smallest p B replicates can show."""
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two [seeds, items] arrays of one shape; got {a.shape} and {b.shape}")
    d = a - b
    s, n = d.shape
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for k in range(n_boot):
        # the mean over the resampled grid is w' D v / (s n), w and v counting how often each seed and
        # item was drawn: no [seeds, items] copy per replicate
        w = np.bincount(rng.integers(0, s, size=s), minlength=s)
        v = np.bincount(rng.integers(0, n, size=n), minlength=n)
        boot[k] = w @ d @ v / (s * n)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [tail, 1 - tail])
    p = min(1.0, 2 * (min(np.sum(boot <= 0), np.sum(boot >= 0)) + 1) / (n_boot + 1))
    return {"mean_diff": float(d.mean()), "ci": [float(lo), float(hi)], "p": float(p), "n_boot": n_boot,
            "seeds": s, "items": n, "seed": seed, "confidence": confidence}


def holm(pvalues) -> list[float | None]:
    """Holm step-down adjusted p-values in the input order: sorted ascending, the i-th (from 0) of m is
    multiplied by m - i, capped at 1, and made non-decreasing. None entries (no test) stay None and do
    not count in m."""
    keep = [i for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    order = sorted(keep, key=lambda i: pvalues[i])
    m, running = len(order), 0.0
    out: list[float | None] = [None] * len(pvalues)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def holm_families(pvalues, families) -> list[float | None]:
    """Holm (:func:`holm`) within each family: ``families[i]`` names the family of ``pvalues[i]``; a p-value
    is adjusted over the tests of its own family only (m = that family's count), in the input order."""
    if len(pvalues) != len(families):
        raise ValueError(f"need one family per p-value; got {len(pvalues)} p-values and {len(families)} families")
    out: list[float | None] = [None] * len(pvalues)
    for fam in dict.fromkeys(families):
        idx = [i for i, f in enumerate(families) if f == fam]
        for i, adj in zip(idx, holm([pvalues[i] for i in idx])):
            out[i] = adj
    return out


def minimum_detectable_difference(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided paired t-test over n seeds detects with the given
    power, for differences with s.d. ``sd_diff``. Exact: solved on the noncentral t (df = n - 1,
    noncentrality delta sqrt(n) / sd), counting both rejection tails; not the normal approximation,
    which understates it badly at a handful of seeds."""
    if n < 2 or not sd_diff > 0:
        raise ValueError(f"need n >= 2 seeds and a positive s.d. of differences; got n={n}, sd={sd_diff}")
    df, crit = n - 1, st.t.ppf(1 - alpha / 2, n - 1)

    def shortfall(effect: float) -> float:  # effect in s.d. units (d_z)
        nc = effect * math.sqrt(n)
        # P(T > crit) + P(T < -crit); the lower tail as sf at -delta (nct.cdf is NaN at some tail points)
        return st.nct.sf(crit, df, nc) + st.nct.sf(crit, df, -nc) - power

    hi = 1.0  # power rises with the effect; double until it is reached
    while shortfall(hi) < 0:
        hi *= 2
    return optimize.brentq(shortfall, 0.0, hi, xtol=1e-12) * sd_diff
