"""The statistics of a connectome's anatomy (docs/method.md §8): counts in units of a tensor (the alive weights
of a row, the positive signs among a column's alive weights, ...) against the random arm's construction.

The null of a tensor is the random arm (docs/method.md §4): its alive count placed uniformly over its weights,
each alive weight's sign a fair coin. Conditioned on a tensor's totals, the counts of disjoint units are then
jointly multivariate hypergeometric, so

- one unit's count is exactly hypergeometric: its two-sided p is twice the smaller tail (capped at 1);
- the spread across units has no closed form: the index of dispersion is Pearson's chi^2 of the units x
  {success, failure} table over its degrees of freedom (1 under the null, > 1 when units differ more than
  chance), its p from chi^2 with units - 1 degrees of freedom on the units whose expected cells are at least
  5 (Cochran's rule), otherwise from seeded draws of the null itself; the same draws give the null's range;
- two masks of one shape overlap by a hypergeometric count (exact), and their shared survivors' signs agree by
  a binomial one, at the rate two independent signs with the lineages' own balances agree.

Functions take plain arrays and return JSON-serialisable dicts.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from scipy import special
from scipy import stats as st

ALPHA = 0.05  # the level of every flag, after Holm's correction over its family
DRAWS = 999  # null draws per dispersion test: p resolves to 1/1000
COCHRAN = 5.0  # smallest expected cell for chi^2's p
_BATCH = 32  # null draws at a time: a batch over GPT-2's 50,304 embedding rows is 13 MB


def seed_for(seed: int, *parts) -> int:
    """A generator seed per (seed, what is tested): a test's draws do not depend on the order of the others."""
    return int(hashlib.sha256(":".join(map(str, (seed, *parts))).encode()).hexdigest()[:15], 16)


def holm_array(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values of an array, in its order (as analysis.stats.holm, vectorised for the
    hundreds of thousands of units of a large model); NaN entries (no test) stay NaN and do not count."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    order = np.argsort(q, kind="stable")
    adjusted = np.empty(q.size)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((q.size - np.arange(q.size)) * q[order]))
    out[ok] = adjusted
    return out


def _chi2_g(x: np.ndarray, n: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Pearson's chi^2 and the likelihood-ratio G of units x {success, failure} tables (last axis = units)."""
    e1, e0 = n * p, n * (1 - p)
    chi2 = ((x - e1) ** 2 / (n * p * (1 - p))).sum(axis=-1)
    g = 2 * (special.xlogy(x, x / e1) + special.xlogy(n - x, (n - x) / e0)).sum(axis=-1)
    return chi2, g


def _null_chi2(n: np.ndarray, total: int, p: float, draws: int, seed: int) -> np.ndarray:
    """chi^2 of ``draws`` tables drawn from the null: ``total`` successes placed uniformly over the units' slots."""
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, draws, _BATCH):
        x = rng.multivariate_hypergeometric(n, total, size=min(_BATCH, draws - start), method="marginals")
        out.append(_chi2_g(x, n, p)[0])
    return np.concatenate(out) if out else np.zeros(0)


def _testable(x: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The units whose expected cells are all at least 5 at the pooled rate (Cochran's rule)."""
    p = x.sum() / n.sum()
    return n * min(p, 1 - p) >= COCHRAN


def dispersion(successes, sizes, *, draws: int = DRAWS, seed: int = 0) -> dict | None:
    """Whether units differ in their success rate more than the null allows: the index of dispersion with its
    test and the null's 95% range; None where nothing can vary (fewer than two non-empty units, or every slot
    a success or every one a failure).

    The chi^2 p is used on the units whose expected cells are all at least 5, when two or more are: the null
    conditions on every unit's size, so leaving out small units by size keeps the test exact in its
    assumptions (``units_left_out`` counts them). Otherwise every unit is tested and p comes from the null
    draws (at best 1 / (draws + 1)). ``g_statistic`` is the likelihood-ratio G: G / (2 ln 2) is exactly the
    bits a code with per-unit rates saves over one rate, before its side information."""
    if draws < 1:
        raise ValueError(f"a dispersion test needs at least one null draw, got {draws}")
    x, n = np.asarray(successes, dtype=np.int64), np.asarray(sizes, dtype=np.int64)
    x, n = x[n > 0], n[n > 0]
    if x.size < 2 or int(x.sum()) in (0, int(n.sum())):
        return None
    testable = _testable(x, n)
    asymptotic = int(testable.sum()) >= 2
    left_out = int((~testable).sum()) if asymptotic else 0
    if asymptotic:
        x, n = x[testable], n[testable]
    total, units = int(x.sum()), int(x.size)
    p, df = total / int(n.sum()), units - 1
    chi2, g = (float(v) for v in _chi2_g(x.astype(float), n.astype(float), p))
    null = _null_chi2(n, total, p, draws, seed) / df
    p_mc = float((1 + np.sum(null >= chi2 / df * (1 - 1e-12))) / (draws + 1))
    return {"units": units, "units_left_out": left_out, "rate": p, "index": chi2 / df, "chi2": chi2, "df": df,
            "g_statistic": g, "p": float(st.chi2.sf(chi2, df)) if asymptotic else p_mc,
            "method": "chi2" if asymptotic else f"Monte Carlo, {draws} null draws",
            "p_monte_carlo": p_mc, "draws": draws, "seed": seed,
            "null_index": {"mean": float(null.mean()), "lo": float(np.quantile(null, 0.025)),
                           "hi": float(np.quantile(null, 0.975))}}


def _tails(slots: int, total: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """P(X <= k) and P(X >= k) for k = 0..size, X hypergeometric (``size`` of ``slots`` drawn, ``total``
    successes): one table per unit size, summed from the pmf so that small tails keep their precision."""
    pmf = _hypergeom_pmf(np.arange(size + 1), slots, total, size)
    return np.cumsum(pmf), np.cumsum(pmf[::-1])[::-1]


def _log_choose(n, k):
    return special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)


def _hypergeom_pmf(k: np.ndarray, slots: int, total: int, size: int) -> np.ndarray:
    """The hypergeometric pmf from log binomial coefficients: scipy's evaluates each point separately, about
    10 us each, which a table per unit size of a large model cannot afford; agrees with it to 1e-6 relative
    (gpt2-124m's embedding: 38.6M slots) and keeps denormal tails that scipy flushes to 0."""
    k = np.asarray(k, dtype=float)
    inside = (k >= max(0, size - (slots - total))) & (k <= min(size, total))
    kk = np.where(inside, k, 0.0)
    log = _log_choose(total, kk) + _log_choose(slots - total, size - kk) - _log_choose(slots, size)
    return np.where(inside, np.exp(log), 0.0)


def _two_sided(lower: np.ndarray, upper: np.ndarray, x) -> np.ndarray:
    return np.minimum(1.0, 2 * np.minimum(lower[x], upper[x]))


def unit_pvalues(successes, sizes) -> np.ndarray:
    """Each unit's exact two-sided p under the null (hypergeometric: the unit's slots drawn from all the units'
    together): twice the smaller tail, at most 1; NaN for an empty unit."""
    x, n = np.asarray(successes, dtype=np.int64), np.asarray(sizes, dtype=np.int64)
    slots, total = int(n.sum()), int(x.sum())
    out = np.full(x.shape, np.nan)
    for size in np.unique(n[n > 0]):
        at = n == size
        out[at] = _two_sided(*_tails(slots, total, int(size)), x[at])
    return out


def block_pvalue(count: int, size: int, slots: int, total: int) -> float:
    """The exact two-sided p of ``count`` successes in a block of ``size`` of ``slots`` holding ``total``."""
    return float(_two_sided(*_tails(slots, total, size), count)) if size else float("nan")


def unit_range(slots: int, total: int, size: int, confidence: float = 0.95) -> list[int]:
    """The central ``confidence`` range of one unit's count under the null."""
    lower = _tails(slots, total, size)[0]
    tail = (1 - confidence) / 2
    return [int(np.argmax(lower >= tail)), int(np.argmax(lower >= 1 - tail - 1e-12))]  # the quantiles (scipy's ppf)


def sign_test(positive: int, alive: int) -> float | None:
    """Exact two-sided binomial p of ``positive`` of ``alive`` signs against a fair coin."""
    return float(st.binomtest(positive, alive, 0.5).pvalue) if alive else None


def rank_correlation(x, y, confidence: float = 0.95) -> dict | None:
    """Spearman's rho with its p (scipy) and a Fisher-z interval with the Bonett & Wright (2000) variance
    (1 + rho^2 / 2) / (n - 3); None when n < 4 or either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = int(x.size)
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    res = st.spearmanr(x, y)
    rho = float(res.statistic)
    half = st.norm.ppf(0.5 + confidence / 2) * math.sqrt((1 + rho * rho / 2) / (n - 3))
    z = math.atanh(min(max(rho, -1 + 1e-15), 1 - 1e-15))
    return {"rho": rho, "ci": [math.tanh(z - half), math.tanh(z + half)], "p": float(res.pvalue), "n": n,
            "confidence": confidence}


def overlap(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> dict:
    """Two boolean masks of one shape: the Jaccard index against chance (the intersection is hypergeometric
    when either mask is placed uniformly; chance Jaccard = d / (2 - d) at equal density d), with its null range
    and the exact one-sided p of at least this much overlap."""
    n, ka, kb, i = int(a.size), int(a.sum()), int(b.sum()), int((a & b).sum())
    union = ka + kb - i

    def jaccard(k: float) -> float:
        return k / (ka + kb - k) if ka + kb - k else 0.0

    expected = ka * kb / n if n else 0.0
    tail = (1 - confidence) / 2
    lo, hi = st.hypergeom.ppf([tail, 1 - tail], n, ka, kb)
    return {"numel": n, "alive_a": ka, "alive_b": kb, "shared": i, "union": union, "jaccard": i / union if union else 0.0,
            "chance_shared": expected, "chance_jaccard": jaccard(expected), "null_jaccard": [jaccard(lo), jaccard(hi)],
            "shared_over_chance": i / expected if expected else None,
            "p_more": float(st.hypergeom.sf(i - 1, n, ka, kb))}


def sign_agreement(sa: np.ndarray, sb: np.ndarray, pa: float, pb: float) -> dict:
    """Signs of two lineages' shared survivors (two int arrays of +-1) against independence at each lineage's
    own sign balance (``pa``, ``pb``: its positive fraction over all its survivors in the tensor): each shared
    position then agrees with chance pa pb + (1 - pa)(1 - pb), and the agreeing count is binomial (exact
    two-sided p). A fair coin would count two lineages leaning the same way as agreeing."""
    n, same = int(sa.size), int((sa == sb).sum())
    null = pa * pb + (1 - pa) * (1 - pb)
    return {"shared": n, "agree": same, "fraction": same / n if n else None, "null": null,
            "p": float(st.binomtest(same, n, null).pvalue) if n else None}


def pooled_agreement(rows: list[dict]) -> dict:
    """Sign agreement summed over tensors (``sign_agreement`` results) against the sum of their binomials:
    exact null mean and variance, p from the normal (hundreds of thousands of shared survivors)."""
    n = sum(r["shared"] for r in rows)
    agree = sum(r["agree"] for r in rows)
    mean = sum(r["shared"] * r["null"] for r in rows)
    var = sum(r["shared"] * r["null"] * (1 - r["null"]) for r in rows)
    z = (agree - mean) / math.sqrt(var) if var > 0 else None
    return {"shared": n, "agree": agree, "fraction": agree / n if n else None, "null": mean / n if n else None,
            "z": z, "p": float(2 * st.norm.sf(abs(z))) if z is not None else None}


def rank_position(ranks, pool: int) -> dict:
    """Where ``ranks`` (1 = smallest, of a pool of ``pool``) sit: their mean percentile against 0.5 for a
    uniform draw without replacement (exact mean and finite-population variance; p from the normal)."""
    r = np.asarray(ranks, dtype=float)
    k = int(r.size)
    if k == 0 or pool < 2:
        return {"n": k, "pool": pool, "mean_percentile": None, "z": None, "p": None}
    mean, null_mean = float(r.mean()), (pool + 1) / 2
    var = (pool * pool - 1) / 12 * (pool - k) / (k * (pool - 1))
    z = (mean - null_mean) / math.sqrt(var) if var > 0 else None
    return {"n": k, "pool": pool, "mean_percentile": (mean - 0.5) / pool, "z": z,
            "p": float(2 * st.norm.sf(abs(z))) if z is not None else None}


def top_overlap(chosen: np.ndarray, top: np.ndarray) -> dict:
    """How many of the ``chosen`` (boolean over a pool) are among the pool's ``top`` (boolean, as many as
    chosen): exact hypergeometric p of at least this many, against chance k / pool."""
    pool, k, t, i = int(chosen.size), int(chosen.sum()), int(top.sum()), int((chosen & top).sum())
    return {"pool": pool, "chosen": k, "in_top": i, "fraction": i / k if k else None,
            "chance": t / pool if pool else None, "p_more": float(st.hypergeom.sf(i - 1, pool, t, k))}
