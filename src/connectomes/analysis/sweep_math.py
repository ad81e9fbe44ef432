"""Analysis math for developmental data sweeps: the data multiplier, read off a fitted dense curve.

The *data multiplier* at a developmental data size D is the factor m by which the dense arm
(NoConnectome) must grow its data to reach the loss the connectome arm reaches with D tokens: m = D* / D,
D* being where the dense arm's loss curve reaches the connectome's loss. Which loss is the caller's: the
report reads the primary one (the early-stopped val loss when units keep their best step,
develop.train.keep_best; else the final step's) and gives the other beside it only where the fitted curve
and the straight line both bracket the connectome's loss and the law describes that dense curve
(analysis.sweep_multiplier.other_cell).

**The dense curve** is fitted as L(D) = E + A (D / D0)^-alpha (D0 the smallest dense size, so A is the
loss above the asymptote E there) by weighted least squares (``scipy.optimize.curve_fit``): weights from
each size's standard error over the dense seeds, floored at half their median so a size whose few seeds
happened to agree does not pin the fit (one dense seed: unweighted); bounds 0 <= E <= the lowest mean loss,
A >= 0, 0.01 <= alpha <= 5; started from the best of a grid over alpha with E and A solved linearly. Data
curves flatten (a straight line in log tokens through a convex curve overstates how far the dense arm must
go), so the fit is the reading; the straight line between measured sizes in log tokens (the earlier
reading) is reported beside it as a sensitivity check. With fewer than 3 dense sizes, or when the fit
fails, the straight line is the only reading and the report says so. With more than 3 sizes the weighted
residual chi-square says whether the law describes the curve (an over-fitting arm's final losses need not).

**Bounds, never extrapolation.** D* outside the dense sizes measured gives a bound: m > (largest dense
size) / D (relation ">") when the dense curve does not reach the connectome's loss within them (a loss at
or below the fitted asymptote E included), m < (smallest dense size) / D ("<") when the smallest dense size
already beats it. On the straight line a non-monotone curve is read at its first crossing.

**Intervals follow the design's hierarchy.** Connectome units are lineages (independent evolutions) x
seeds; each seed's loss is not averaged over lineages first, since that hides the lineage-to-lineage
variance. The pooled point estimate is the multiplier of the mean over lineages of each lineage's mean over
seeds. Its percentile interval is a hierarchical bootstrap (``_bootstrap`` gives the draw order):
lineages drawn with replacement, then seeds within each drawn lineage; the dense seeds drawn separately,
each keeping its whole curve, and the curve fitted again per replicate (from the point fit, with the
data's weights). Each lineage also gets its own
multiplier with a seed bootstrap (sharing the pooled replicates' dense draws). A replicate whose
multiplier falls outside the range counts as +inf (">") or 0 ("<"), so an open interval end means
"beyond the dense range on that side". With 2 to 4 lineages a t interval over the lineage means (df L - 1)
of the connectome's loss, mapped through the fitted curve (monotone), is given too: with so few lineages
the bootstrap cannot show how far lineages spread, and the t interval is wide because that spread is
estimated from L values. The pooled interval is for the mean over lineages, so it need not contain every
lineage's own multiplier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .dense_fit import DenseFit, fit_dense, fitted_tokens, weights
from .stats import t_interval

T_LINEAGES = 5             # fewer lineages than this: a t interval over lineage means is given as well


def matching_tokens(sizes: np.ndarray, dense_loss: np.ndarray, target: float) -> tuple[float, str]:
    """(D*, relation): the tokens at which the dense curve (mean loss per size, interpolated linearly
    in log tokens: the straight-line reading) first reaches ``target``; outside the range the nearest end
    and ">" or "<"."""
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


def reader(sizes: np.ndarray, dense_mean: np.ndarray, fit: DenseFit | None):
    """target loss -> (D*, relation): on the fitted curve, or the straight line without a fit."""
    if fit is not None:
        return lambda target: fitted_tokens(fit, target)
    return lambda target: matching_tokens(sizes, dense_mean, target)


def value(d_star: float, relation: str, tokens: float) -> float:
    """A reading as a number for intervals: D* / D when measured, +inf beyond the range, 0 below it."""
    return d_star / tokens if relation == "=" else math.inf if relation == ">" else 0.0


@dataclass(frozen=True)
class Design:
    seeds: tuple[int, ...]   # connectome seeds in each lineage
    dense_seeds: int

    @property
    def lineages(self) -> int:
        return len(self.seeds)

    def text(self) -> str:
        """'2 lineages × 3 seeds and 3 dense seeds'."""
        lo, hi = min(self.seeds), max(self.seeds)
        per = f"{lo}" if lo == hi else f"{lo}–{hi}"
        return (f"{self.lineages} lineage{'s' if self.lineages > 1 else ''} × {per} seed{'s' if hi > 1 else ''} "
                f"and {self.dense_seeds} dense seed{'s' if self.dense_seeds > 1 else ''}")


@dataclass(frozen=True)
class Reading:
    m: float                                  # D* / D; where relation is ">" or "<", the bound
    relation: str                             # "=" (measured), ">" or "<" (outside the dense arm's sizes)
    ci: tuple[float, float] | None = None     # its bootstrap interval (inf / 0: open on that side)

    @property
    def value(self) -> float:
        return self.m if self.relation == "=" else math.inf if self.relation == ">" else 0.0


@dataclass(frozen=True)
class Multiplier:
    tokens: int                    # the developmental data size D of the connectome arm
    loss: float                    # the connectome's loss read: the mean over lineages of the lineage means
    m: float                       # the pooled multiplier: of the mean over lineages of the lineage means
    relation: str                  # "=", ">" or "<" (a bound: outside the dense arm's sizes)
    ci: tuple[float, float]        # hierarchical bootstrap percentile interval (inf / 0: open on that side)
    level: float                   # the intervals' coverage, e.g. 0.95
    line: Reading                  # the straight-line reading of the same loss (no interval)
    lineages: tuple[Reading, ...]  # each lineage's multiplier with its own seed-bootstrap interval
    t_ci: tuple[float, float] | None  # t interval over lineage means mapped to multipliers (2-4 lineages)
    span: tuple[float, float]      # (smallest, largest dense size) / D: the bounds an open end stands for
    design: Design
    fitted: bool                   # read off the fitted curve (False: the straight line only)

    @property
    def value(self) -> float:
        return Reading(self.m, self.relation).value

    def uncovered(self) -> list[int]:
        """The lineages whose own multiplier lies outside the pooled interval."""
        return [i for i, r in enumerate(self.lineages) if not self.ci[0] <= r.value <= self.ci[1]]


@dataclass(frozen=True)
class Multipliers:
    rows: tuple[Multiplier, ...]   # one per connectome size, in size order
    fit: DenseFit | None
    why_no_fit: str | None         # why the straight line is the only reading
    failed: int                    # bootstrap replicates whose refit failed (left out of the intervals)
    n_boot: int


def _curve(sizes, values, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(sizes as float, per-size x per-seed losses) after checking shapes and values."""
    d = np.asarray(sizes, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if d.ndim != 1 or d.size < 2 or not (d > 0).all() or not (np.diff(d) > 0).all():
        raise ValueError(f"sizes must be at least two increasing positive token counts, got {list(sizes)}")
    _check(v, d.size, what)
    return d, v


def _check(v: np.ndarray, n: int, what: str) -> None:
    if v.ndim != 2 or v.shape[0] != n or v.shape[1] < 1 or not np.isfinite(v).all():
        raise ValueError(f"{what} losses must be finite, one row per size ({n}) and one column per seed; "
                         f"got shape {v.shape}")


def _lineages(sizes, connectome) -> tuple[np.ndarray, list[np.ndarray]]:
    """The connectome's sizes and its lineages' losses ([sizes, seeds] each): ``connectome`` is one such
    array (one lineage) or a sequence of them (lineages may have different seed counts)."""
    c = np.asarray(sizes, dtype=np.float64)
    if c.ndim != 1 or c.size < 1 or not (c > 0).all() or not (np.diff(c) > 0).all():
        raise ValueError(f"connectome sizes must be increasing positive token counts, got {list(sizes)}")
    try:
        arr = np.asarray(connectome, dtype=np.float64)
    except ValueError:  # ragged: lineages with different seed counts
        arr = None
    parts = [arr] if arr is not None and arr.ndim == 2 else \
        [np.asarray(p, dtype=np.float64) for p in connectome]
    if not parts:
        raise ValueError("the connectome needs at least one lineage of losses")
    for i, p in enumerate(parts):
        _check(p, c.size, f"connectome (lineage {i})")
    return c, parts


def _draw(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, n, size=n)


def _values(read, targets, tokens) -> list[float]:
    return [value(*read(t), n) for t, n in zip(targets, tokens)]


def _bootstrap(d, dense_v, lins, c, fit, n_boot: int, rng) -> tuple[np.ndarray, np.ndarray, int]:
    """Replicates [B, sizes] of the pooled multiplier and [L, B, sizes] of each lineage's, and how many
    replicates' refits failed (NaN rows). Each replicate draws, in this order: the dense seeds; L lineages;
    the seeds of each drawn lineage, in draw order; then each lineage's own seeds, lineage by lineage (its
    per-lineage replicate). The refit starts from the point fit and keeps the data's weights."""
    sigma = weights(dense_v)
    pooled, own, failed = np.full((n_boot, c.size), np.nan), np.full((len(lins), n_boot, c.size), np.nan), 0
    for b in range(n_boot):
        dm = dense_v[:, _draw(rng, dense_v.shape[1])].mean(1)
        drawn = _draw(rng, len(lins))
        pool = np.mean([lins[i][:, _draw(rng, lins[i].shape[1])].mean(1) for i in drawn], axis=0)
        mine = [v[:, _draw(rng, v.shape[1])].mean(1) for v in lins]
        refit = None if fit is None else fit_dense(d, dm, sigma, start=fit.params)
        if fit is not None and refit is None:
            failed += 1
            continue
        read = reader(d, dm, refit)
        pooled[b] = _values(read, pool, c)
        for i, m in enumerate(mine):
            own[i, b] = _values(read, m, c)
    return pooled, own, failed


def _interval(reps: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval of one size's replicates, failed ones (NaN) left out."""
    r = reps[~np.isnan(reps)]
    if r.size == 0:
        return math.nan, math.nan
    tail = (1 - level) / 2
    # inverted_cdf picks observed values (no interpolation), which stays valid when some are inf
    lo, hi = np.quantile(r, [tail, 1 - tail], method="inverted_cdf")
    return float(lo), float(hi)


def lineage_t_interval(means, read, tokens: float, level: float) -> tuple[float, float] | None:
    """The t interval (df L - 1) of the mean connectome loss over lineage ``means``, each end mapped through
    ``read`` to a multiplier (the higher loss to the lower end); None unless there are 2 to 4 lineages."""
    if not 2 <= len(means) < T_LINEAGES:
        return None
    r = t_interval(means, level)
    ends = [value(*read(loss), tokens) for loss in (r["ci"][1], r["ci"][0])]
    return min(ends), max(ends)


def data_multiplier(sizes, dense, connectome, *, connectome_sizes=None, n_boot: int = 2000, seed: int = 0,
                    level: float = 0.95) -> Multipliers:
    """The data multiplier at every connectome size (module docstring) with its hierarchical interval.

    ``dense`` holds val losses, one row per size in ``sizes`` (increasing token counts) and one column per
    seed; ``connectome`` one such array per lineage (or one array: one lineage) at ``connectome_sizes``
    (default: the same sizes). The arms may have different seeds, and the dense curve may reach sizes the
    connectome was not developed at. Bootstrap draws come from ``numpy.random.default_rng(seed)``."""
    d, dense_v = _curve(sizes, dense, "dense")
    c, lins = _lineages(d if connectome_sizes is None else connectome_sizes, connectome)
    dense_mean = dense_v.mean(1)
    fit = fit_dense(d, dense_mean, weights(dense_v))
    why = None if fit is not None else (f"{d.size} dense sizes: a 3-parameter curve needs at least 3" if d.size < 3
                                        else "the saturating fit failed on this curve")
    read, line = reader(d, dense_mean, fit), reader(d, dense_mean, None)
    lin_means = np.stack([v.mean(1) for v in lins])
    pooled = lin_means.mean(0)
    reps, own, failed = _bootstrap(d, dense_v, lins, c, fit, n_boot, np.random.default_rng(seed))
    design = Design(tuple(v.shape[1] for v in lins), dense_v.shape[1])
    rows = []
    for j, n in enumerate(c):
        point = read(pooled[j])
        rows.append(Multiplier(
            int(n), float(pooled[j]), point[0] / n, point[1], _interval(reps[:, j], level), level,
            Reading(line(pooled[j])[0] / n, line(pooled[j])[1]),
            tuple(Reading(read(lin_means[i, j])[0] / n, read(lin_means[i, j])[1], _interval(own[i, :, j], level))
                  for i in range(len(lins))),
            lineage_t_interval(lin_means[:, j], read, n, level), (d[0] / n, d[-1] / n), design, fit is not None))
    return Multipliers(tuple(rows), fit, why, failed, n_boot)


def _si(n: float) -> str:
    """1500000 -> '1.5M', 150000 -> '150k', 2e9 -> '2B'."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.3g}"


def times(x: float, span: tuple[float, float] | None = None) -> str:
    """'2.31x'; with the dense span an open end reads as the bound it stands for ('>64x', '<1x')."""
    if span is not None and (math.isinf(x) or x == 0):
        return f">{span[1]:.3g}x" if math.isinf(x) else f"<{span[0]:.3g}x"
    return "inf" if math.isinf(x) else f"{x:.3g}x"


def reading_text(r) -> str:
    """A reading with its relation: '2.31x', '>4x', '<0.25x'."""
    return f"{'' if r.relation == '=' else r.relation}{r.m:.3g}x"


def headline_size(mults) -> Multiplier:
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


def all_out_of_range(ci: tuple[float, float]) -> str | None:
    """">" or "<" when every bootstrap resample lies beyond the dense arm's largest (smallest) size,
    i.e. both interval ends are inf (0); None when the interval has a finite end."""
    return ">" if math.isinf(ci[0]) else "<" if ci[1] == 0 else None


def ci_text(ci: tuple[float, float], span: tuple[float, float], level: float) -> str:
    """An interval in words: '95% CI 1.6x-2.9x', '95% CI 3.1x->16x', or where every resample is out of
    range, that fact instead."""
    side = all_out_of_range(ci)
    if side:
        return f"every bootstrap resample {'beyond' if side == '>' else 'below'} the dense arm's " \
               f"{'largest' if side == '>' else 'smallest'} size"
    if math.isnan(ci[0]):
        return "no interval: every bootstrap refit failed"
    return f"{round(100 * level)}% CI {times(ci[0], span)}-{times(ci[1], span)}"


def headline(connectome_bits: float, mult: Multiplier) -> str:
    """The sweep's one sentence, e.g. 'a 0.117 MB connectome is worth 1.9x developmental data at 16.4k
    tokens (95% CI 1.6x-2.9x, hierarchical bootstrap over 2 lineages × 3 seeds and 3 dense seeds; ...)'.
    ``connectome_bits``: its size under the codec the study reports (see ``connectome_file.codec_bits``)."""
    worth = {"=": "", ">": "more than ", "<": "less than "}[mult.relation]
    why = {"=": "", ">": "; the dense arm's largest size does not reach its loss",
           "<": "; the dense arm's smallest size already beats it"}[mult.relation]
    how = ("read off the fitted dense curve L(D) = E + A·D^-α; the straight line in log tokens reads "
           f"{reading_text(mult.line)}" if mult.fitted else "read off the straight line in log tokens between "
           "the dense sizes (no fitted curve)")
    t = "" if mult.t_ci is None else (
        f"; a t interval over the {mult.design.lineages} lineage means ({mult.design.lineages - 1} df) "
        + (f"lies wholly {'beyond' if side == '>' else 'below'} the dense sizes" if (side := all_out_of_range(mult.t_ci))
           else f"gives {times(mult.t_ci[0], mult.span)}-{times(mult.t_ci[1], mult.span)}, wide since lineage spread "
                f"rests on {mult.design.lineages} values"))
    return (f"a {connectome_bits / 8e6:.3g} MB connectome is worth {worth}{times(mult.m)} developmental data at "
            f"{_si(mult.tokens)} tokens ({ci_text(mult.ci, mult.span, mult.level)}, hierarchical bootstrap over "
            f"{mult.design.text()}{t}; {how}{why})")
