"""Analysis math for developmental data sweeps: the data multiplier and its headline.

The *data multiplier* at a developmental data size D is the factor m by which the dense arm
(NoConnectome) must grow its data to reach the loss the connectome arm reaches with D tokens:
find D* on the dense arm's curve of final val loss vs tokens where the dense loss equals the
connectome's mean loss at D; then m = D* / D. The dense curve is the mean over seeds at each measured
size, interpolated linearly in log tokens between measured sizes (a power law in tokens is a straight
line there, so the interpolation is exact for loss = a - b * log tokens).

Outside the measured range we report a bound rather than extrapolate: if the connectome's loss is
below every dense loss, m > (largest dense size) / D (relation ">"); if it is above the dense loss
at the smallest size, m < (smallest dense size) / D (relation "<"). If the dense curve is not
monotone, the smallest D* that reaches the loss is used (the first crossing).

Confidence interval: a percentile bootstrap that resamples seeds with replacement, independently per
arm, keeping each resampled seed's whole curve (the runs of one seed share its initialisation), from
a seeded ``numpy.random.Generator``. A resample whose multiplier falls outside the range counts as
+inf (">") or 0 ("<"), so an interval end of inf or 0 means "unbounded on that side within the sweep".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Multiplier:
    tokens: int                    # the developmental data size D of the connectome arm
    m: float                       # D* / D; where relation is ">" or "<", the bound
    relation: str                  # "=" (measured), ">" or "<" (outside the dense arm's range)
    ci: tuple[float, float]        # bootstrap percentile interval of m (inf / 0: open on that side)
    level: float                   # the interval's coverage, e.g. 0.95
    seeds: tuple[int, int]         # (dense seeds, connectome seeds)


def _curve(sizes, values, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(sizes as float, per-size x per-seed losses) after checking shapes and values."""
    d = np.asarray(sizes, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if d.ndim != 1 or d.size < 2 or not (d > 0).all() or not (np.diff(d) > 0).all():
        raise ValueError(f"sizes must be at least two increasing positive token counts, got {list(sizes)}")
    if v.ndim != 2 or v.shape[0] != d.size or v.shape[1] < 1 or not np.isfinite(v).all():
        raise ValueError(f"{what} losses must be finite, one row per size ({d.size}) and one column per seed; "
                         f"got shape {v.shape}")
    return d, v


def matching_tokens(sizes: np.ndarray, dense_loss: np.ndarray, target: float) -> tuple[float, str]:
    """(D*, relation): the tokens at which the dense curve (mean loss per size, interpolated linearly
    in log tokens) first reaches ``target``; outside the range the nearest end and ">" or "<"."""
    if target > dense_loss[0]:
        return float(sizes[0]), "<"
    logs = np.log(sizes)
    for j in range(len(sizes)):
        if dense_loss[j] == target:
            return float(sizes[j]), "="
        if j + 1 < len(sizes) and (dense_loss[j] - target) * (dense_loss[j + 1] - target) < 0:
            frac = (target - dense_loss[j]) / (dense_loss[j + 1] - dense_loss[j])
            return float(math.exp(logs[j] + frac * (logs[j + 1] - logs[j]))), "="
    return float(sizes[-1]), ">"


def _points(sizes, values) -> tuple[np.ndarray, np.ndarray]:
    """The connectome's sizes (one or more, increasing) and losses (a row per size, a column per seed)."""
    c = np.asarray(sizes, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if c.ndim != 1 or c.size < 1 or not (c > 0).all() or not (np.diff(c) > 0).all():
        raise ValueError(f"connectome sizes must be increasing positive token counts, got {list(sizes)}")
    if v.ndim != 2 or v.shape[0] != c.size or v.shape[1] < 1 or not np.isfinite(v).all():
        raise ValueError(f"connectome losses must be finite, one row per size ({c.size}) and one column per seed; "
                         f"got shape {v.shape}")
    return c, v


def _multipliers(sizes: np.ndarray, dense_mean: np.ndarray, conn_sizes: np.ndarray,
                 conn_mean: np.ndarray) -> list[tuple[float, str]]:
    return [(d_star / d, rel) for d, (d_star, rel) in
            ((d, matching_tokens(sizes, dense_mean, c)) for d, c in zip(conn_sizes, conn_mean))]


def data_multiplier(sizes, dense, connectome, *, connectome_sizes=None, n_boot: int = 2000, seed: int = 0,
                    level: float = 0.95) -> list[Multiplier]:
    """The data multiplier at every connectome size (module docstring), with a seed-bootstrap interval.

    ``dense`` holds val losses, one row per size in ``sizes`` (increasing token counts) and one column per
    seed; ``connectome`` likewise at ``connectome_sizes`` (default: the same sizes). The arms may have
    different seeds, and the dense curve may reach sizes the connectome was not developed at."""
    d, dense_v = _curve(sizes, dense, "dense")
    c, conn_v = (d, _curve(sizes, connectome, "connectome")[1]) if connectome_sizes is None else \
        _points(connectome_sizes, connectome)
    point = _multipliers(d, dense_v.mean(1), c, conn_v.mean(1))
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, c.size))
    for b in range(n_boot):
        dm = dense_v[:, rng.integers(0, dense_v.shape[1], dense_v.shape[1])].mean(1)
        cm = conn_v[:, rng.integers(0, conn_v.shape[1], conn_v.shape[1])].mean(1)
        boot[b] = [m if rel == "=" else (math.inf if rel == ">" else 0.0) for m, rel in _multipliers(d, dm, c, cm)]
    tail = (1 - level) / 2
    # inverted_cdf picks observed values (no interpolation), which stays valid when some are inf
    lo, hi = np.quantile(boot, [tail, 1 - tail], axis=0, method="inverted_cdf")
    return [Multiplier(int(n), m, rel, (float(a), float(b)), level, (dense_v.shape[1], conn_v.shape[1]))
            for n, (m, rel), a, b in zip(c, point, lo, hi)]


def _si(n: float) -> str:
    """1500000 -> '1.5M', 150000 -> '150k', 2e9 -> '2B'."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.3g}"


def _times(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.3g}x"


def headline_size(mults: list[Multiplier]) -> Multiplier:
    """The size the headline sentence speaks for: the largest with a measured multiplier; when every
    size is out of the dense arm's range, the strongest bound (the smallest size for ">", whose lower
    bound largest dense / D is largest; the largest size for "<", whose upper bound is smallest)."""
    measured = [m for m in mults if m.relation == "="]
    if measured:
        return max(measured, key=lambda m: m.tokens)
    above = [m for m in mults if m.relation == ">"]
    if above:
        return min(above, key=lambda m: m.tokens)
    return max(mults, key=lambda m: m.tokens)


def all_out_of_range(mult: Multiplier) -> str | None:
    """">" or "<" when every bootstrap resample lies beyond the dense arm's largest (smallest) size,
    i.e. both interval ends are inf (0); None when the interval has a finite end."""
    return ">" if math.isinf(mult.ci[0]) else "<" if mult.ci[1] == 0 else None


def ci_text(mult: Multiplier) -> str:
    """The interval in words: 'CI 3.1x-5.2x', or where every resample is out of range, that fact instead of 'inf-inf'."""
    side = all_out_of_range(mult)
    if side:
        return f"every bootstrap resample {'beyond' if side == '>' else 'below'} the dense arm's " \
               f"{'largest' if side == '>' else 'smallest'} size"
    return f"{round(100 * mult.level)}% CI {_times(mult.ci[0])}-{_times(mult.ci[1])}"


def headline(connectome_bits: float, mult: Multiplier) -> str:
    """The sweep's one sentence, e.g. 'a 0.1 MB connectome is worth 4x developmental data at 1M tokens
    (95% CI 3.1x-5.2x, bootstrap over 5 and 5 seeds)'. ``connectome_bits``: its size under the codec
    the study reports (see ``connectome_file.codec_bits``)."""
    worth = {"=": "", ">": "more than ", "<": "less than "}[mult.relation]
    why = {"=": "", ">": "; the dense arm's largest size does not reach its loss",
           "<": "; the dense arm's smallest size already beats it"}[mult.relation]
    return (f"a {connectome_bits / 8e6:.3g} MB connectome is worth {worth}{_times(mult.m)} developmental data at "
            f"{_si(mult.tokens)} tokens ({ci_text(mult)}, bootstrap over {mult.seeds[0]} dense and "
            f"{mult.seeds[1]} connectome seeds{why})")
