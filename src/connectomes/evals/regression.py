"""Nested linear regressions compared out of sample: the gain of a full model over a baseline model in
explained variance (ΔR²) and in log-likelihood per observation (docs/method.md §6, reading times).

Ordinary least squares (numpy.linalg.lstsq, an intercept column added here), cross-validated by group:
each group (a story) is predicted by the models fitted on all the other groups (leave-one-group-out).
The held-out predictions of all folds are pooled:

    R² = 1 - sum (y - ŷ)² / sum (y - mean y)²      (the sums and the mean over every observation)
    ΔR² = R²_full - R²_base = (SSE_base - SSE_full) / SST

and the held-out Gaussian log-likelihood of each observation uses the residual variance its fold's
training fit estimated (SSE_train / n_train, the maximum-likelihood estimate):

    ll = -1/2 ln(2π σ²) - (y - ŷ)² / (2 σ²);   ΔLL = mean over observations of (ll_full - ll_base), in nats.

Per fold the same quantities over that fold's observations (its SST around its own mean) show the
spread; the in-sample fit on all observations is given beside them, with the full model's coefficients.
"""

from __future__ import annotations

import math

import numpy as np


def design(columns: dict[str, np.ndarray], n: int) -> np.ndarray:
    """[n, 1 + k]: an intercept column, then the named columns in order."""
    return np.column_stack([np.ones(n), *[np.asarray(c, dtype=float) for c in columns.values()]])


def ols(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients (numpy.linalg.lstsq: the minimum-norm solution if X is rank deficient)."""
    return np.linalg.lstsq(X, y, rcond=None)[0]


def _loglik(resid: np.ndarray, var: float) -> np.ndarray:
    """Gaussian log-density of each residual; NaN when the fit left no variance (a perfect fit has no likelihood)."""
    if not var > 0:
        return np.full(resid.shape, math.nan)
    return -0.5 * math.log(2 * math.pi * var) - resid ** 2 / (2 * var)


def _held_out(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residuals on ``test`` of the fit on ``train``, and their log-likelihoods."""
    beta = ols(X[train], y[train])
    var = float(np.mean((y[train] - X[train] @ beta) ** 2))
    resid = y[test] - X[test] @ beta
    return resid, _loglik(resid, var)


def _r2(resid: np.ndarray, y: np.ndarray) -> float:
    sst = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum(resid ** 2)) / sst if sst > 0 else math.nan


def compare_nested(y: np.ndarray, base: dict[str, np.ndarray], extra: dict[str, np.ndarray],
                   groups: np.ndarray) -> dict:
    """ΔR² and ΔLL of (base + extra) over base, leave-one-group-out (module docstring). Needs at least two
    groups; every array holds one entry per observation, all finite; ``base`` may be empty (intercept only)."""
    y, groups = np.asarray(y, dtype=float), np.asarray(groups)
    Xb, Xf = design(base, len(y)), design({**base, **extra}, len(y))
    labels = sorted(set(groups.tolist()))
    if len(labels) < 2:
        raise ValueError(f"leave-one-group-out needs at least 2 groups; got {len(labels)}")
    rb, rf = np.empty_like(y), np.empty_like(y)
    lb, lf = np.empty_like(y), np.empty_like(y)
    folds = []
    for g in labels:
        test = groups == g
        train = ~test
        rb[test], lb[test] = _held_out(Xb, y, train, test)
        rf[test], lf[test] = _held_out(Xf, y, train, test)
        yt = y[test]
        folds.append({"group": g, "n": int(test.sum()), "delta_r2": _r2(rf[test], yt) - _r2(rb[test], yt),
                      "delta_loglik": float(np.mean(lf[test] - lb[test]))})
    r2b, r2f = _r2(rb, y), _r2(rf, y)
    beta_b, beta_f = ols(Xb, y), ols(Xf, y)
    in_b, in_f = _r2(y - Xb @ beta_b, y), _r2(y - Xf @ beta_f, y)
    per_fold = np.array([f["delta_r2"] for f in folds])
    return {
        "delta_r2": r2f - r2b, "delta_loglik": float(np.mean(lf - lb)), "r2_base": r2b, "r2_full": r2f,
        "delta_r2_folds_mean": float(per_fold.mean()),
        "delta_r2_folds_se": float(per_fold.std(ddof=1) / math.sqrt(len(per_fold))),
        "n": int(len(y)), "folds": folds,
        "in_sample": {"delta_r2": in_f - in_b, "r2_base": in_b, "r2_full": in_f},
        "coefficients": dict(zip(["intercept", *base, *extra], map(float, beta_f))),
    }
