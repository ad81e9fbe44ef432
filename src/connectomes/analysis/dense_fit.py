"""The dense reference curve of a data sweep, fitted as L(D) = E + A (D / D0)^-alpha (analysis.sweep_math
says why and how it is read): weighted least squares by ``scipy.optimize.curve_fit``, its start, its
goodness of fit and its inverse."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as st

SE_FLOOR = 0.5             # the weights' s.e. floor, as a share of the median per-size s.e. of the dense means
ALPHA_RANGE = (0.01, 5.0)  # the exponent's bounds: flat to steep; data curves sit well inside
GOOD_FIT_P = 0.01          # below this chi-square p the saturating law does not describe the dense curve


def law(x, e, a, alpha):
    """The saturating dense curve at x = D / D0."""
    return e + a * np.power(x, -alpha)


def _jac(x, e, a, alpha):
    """d law / d (e, a, alpha): analytic, so the fit needs no finite differences (it runs once per bootstrap
    replicate)."""
    p = np.power(x, -alpha)
    return np.stack([np.ones_like(x), p, -a * p * np.log(x)], axis=1)


@dataclass(frozen=True)
class DenseFit:
    """L(D) = e + a (D / ref)^-alpha, fitted on dense sizes ref..top (tokens)."""
    e: float
    a: float
    alpha: float
    ref: float
    top: float
    chi2: float | None   # the weighted residual sum of squares; None when unweighted (one dense seed)
    dof: int             # sizes - 3

    @property
    def params(self) -> tuple[float, float, float]:
        return self.e, self.a, self.alpha

    def loss(self, tokens):
        return law(np.asarray(tokens, dtype=np.float64) / self.ref, *self.params)

    @property
    def p(self) -> float | None:
        """The chi-square p of the residuals (None: no residual degrees of freedom, or no weights)."""
        return None if self.chi2 is None or self.dof < 1 else float(st.chi2.sf(self.chi2, self.dof))

    @property
    def adequate(self) -> bool:
        return self.p is None or self.p >= GOOD_FIT_P

    def text(self) -> str:
        gof = ("it passes through its 3 sizes (no residual degrees of freedom)" if self.dof == 0 else
               f"weighted residual chi-square {self.chi2:.3g} on {self.dof} df (p {self.p:.2g})" if self.chi2 is not None
               else "unweighted (one dense seed: no s.e.)")
        return (f"L(D) = {self.e:.4f} + {self.a:.4f} (D / {self.ref:,.0f})^-{self.alpha:.3f}; {gof}"
                + ("" if self.adequate else "; **the law does not describe this curve**"))


def weights(dense_v: np.ndarray) -> np.ndarray | None:
    """Per-size sigma for the fit: each size's s.e. over dense seeds, floored (module docstring); None
    (unweighted) with one seed or no spread at all."""
    if dense_v.shape[1] < 2:
        return None
    se = dense_v.std(1, ddof=1) / math.sqrt(dense_v.shape[1])
    floor = SE_FLOOR * float(np.median(se))
    return np.maximum(se, floor) if floor > 0 else None


def _start(x: np.ndarray, y: np.ndarray, sigma) -> np.ndarray:
    """Initial (e, a, alpha): for each alpha on a grid, e and a by weighted linear least squares; the
    feasible one with the least residual (else a plain guess)."""
    w = np.ones_like(y) if sigma is None else 1 / np.asarray(sigma)
    best, guess = np.inf, np.array([0.9 * y.min(), max(y[0] - 0.9 * y.min(), 0.0), 0.5])
    for alpha in np.linspace(0.05, ALPHA_RANGE[1], 100):
        design = np.stack([np.ones_like(x), x ** -alpha], 1) * w[:, None]
        (e, a), *_ = np.linalg.lstsq(design, y * w, rcond=None)
        r = float(np.sum((design @ [e, a] - y * w) ** 2))
        if 0 <= e <= y.min() and a >= 0 and r < best:
            best, guess = r, np.array([e, a, alpha])
    return guess


def fit_dense(sizes, mean, sigma=None, start=None) -> DenseFit | None:
    """The saturating fit of the dense curve (mean loss per size; ``sigma`` its weights' s.e., None =
    unweighted), from ``start`` (e, a, alpha) or the grid start; None with fewer than 3 sizes or when
    the fit fails."""
    d, y = np.asarray(sizes, dtype=np.float64), np.asarray(mean, dtype=np.float64)
    if d.size < 3:
        return None
    x = d / d[0]
    lo, hi = [0.0, 0.0, ALPHA_RANGE[0]], [float(y.min()), np.inf, ALPHA_RANGE[1]]
    p0 = np.clip(_start(x, y, sigma) if start is None else np.asarray(start, dtype=np.float64), lo, hi)
    try:
        with warnings.catch_warnings():  # a covariance it cannot estimate is no failure: only the point is used
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            p, _ = optimize.curve_fit(law, x, y, p0=p0, sigma=sigma, jac=_jac, absolute_sigma=sigma is not None,
                                      bounds=(lo, hi), method="trf", ftol=1e-12, xtol=1e-12, gtol=1e-12)
    except (RuntimeError, ValueError):
        return None
    if not np.isfinite(p).all():
        return None
    chi2 = None if sigma is None else float(np.sum(((law(x, *p) - y) / sigma) ** 2))
    return DenseFit(float(p[0]), float(p[1]), float(p[2]), float(d[0]), float(d[-1]), chi2, d.size - 3)


def fitted_tokens(fit: DenseFit, target: float) -> tuple[float, str]:
    """(D*, relation) where the fitted curve reaches ``target``; outside the measured sizes (or at or below
    the asymptote) the nearest end and ">" or "<"."""
    if target <= fit.e:
        return fit.top, ">"
    d_star = fit.ref * (fit.a / (target - fit.e)) ** (1 / fit.alpha)
    if d_star > fit.top:
        return fit.top, ">"
    if d_star < fit.ref:
        return fit.ref, "<"
    return float(d_star), "="
