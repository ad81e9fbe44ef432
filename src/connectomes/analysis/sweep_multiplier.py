"""The report's data multiplier, data-efficiency figure and lineage table for a sweep: sweep rows
(analysis.sweep_report.sweep_rows) arranged as the design is (dense seeds; connectome lineages x seeds),
handed to analysis.sweep_math, and written out. Every number that pools lineages is the mean over
lineages of each lineage's mean over seeds, with a spread between lineages where there are several."""

from __future__ import annotations

import math

import numpy as np

from ..connectome import arms
from .figures import plt_module
from .stats import t_interval
from .sweep_math import (T_LINEAGES, Multiplier, Multipliers, all_out_of_range, data_multiplier, headline,
                         headline_size)
from .tables import mean_se

# "best": the loss at the step early stopping keeps, chosen on the selection slice and, where units have one,
# read on the report slice (analysis.selection)
NAME = {"final": "final val loss", "best": "early-stopped val loss"}
N_BOOT = 2000  # bootstrap replicates of the report's multiplier intervals


def group(rows: list[dict], key) -> dict:
    """Rows by ``key(row)`` (a tuple), in key order (None first)."""
    out: dict = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(-1 if x is None else x for x in kv[0])))


def pooled(rs: list[dict], key: str) -> tuple[float, float, int, int]:
    """(mean over lineages of the lineage means, its s.e., lineages, units) of ``key`` over rows ``rs``: the
    s.e. is that of the lineage means with two or more lineages, else over the one lineage's seeds (which
    holds no lineage variance)."""
    per: dict = {}
    for r in rs:
        if r[key] is not None and math.isfinite(r[key]):
            per.setdefault(r["unit"].lineage, []).append(r[key])
    if not per:
        return math.nan, math.nan, 0, 0
    means = [float(np.mean(v)) for v in per.values()]
    se = float(np.std(means, ddof=1) / math.sqrt(len(means))) if len(means) > 1 else mean_se(next(iter(per.values())))[1]
    return float(np.mean(means)), se, len(per), sum(len(v) for v in per.values())


def _table(rs: list[dict], key: str, sizes: list[int]) -> np.ndarray:
    """losses[size][seed] of one arm's (one lineage's) rows, NaN where a unit is missing."""
    seeds = sorted({r["unit"].seed for r in rs})
    return np.array([[np.mean([r[key] for r in rs if r["tokens"] == n and r["unit"].seed == s and r[key] is not None]
                              or [np.nan]) for s in seeds] for n in sizes], dtype=np.float64)


def _last(rows: list[dict]) -> int:
    return max(r["generation"] for r in rows)


def multipliers(rows: list[dict], key: str, n_boot: int | None = None) -> tuple[Multipliers, list] | None:
    """sweep_math's multiplier of the last generation's connectome (its lineages x seeds) against the dense
    curve, at every connectome size, with the lineage ids in order; None without two dense sizes and one
    connectome size, all units present."""
    last = _last(rows)
    dense = [r for r in rows if r["unit"].arm == "dense"]
    conn = [r for r in rows if r["unit"].arm == "connectome" and r["generation"] == last]
    d_sizes, c_sizes = sorted({r["tokens"] for r in dense}), sorted({r["tokens"] for r in conn})
    if len(d_sizes) < 2 or not c_sizes:
        return None
    lins = list(dict.fromkeys(lin for (lin,) in group(conn, lambda r: (r["unit"].lineage,))))
    d_table = _table(dense, key, d_sizes)
    per = [_table([r for r in conn if r["unit"].lineage == lin], key, c_sizes) for lin in lins]
    if not np.isfinite(d_table).all() or not all(np.isfinite(p).all() for p in per):
        return None
    return data_multiplier(d_sizes, d_table, per, connectome_sizes=c_sizes, n_boot=N_BOOT if n_boot is None else n_boot), lins


def _num(x: float, span: tuple[float, float]) -> str:
    """An interval end: '2.31', or an open end as the bound it stands for ('>16', '<0.25')."""
    if math.isnan(x):
        return "—"
    return f">{span[1]:.3g}" if math.isinf(x) else f"<{span[0]:.3g}" if x == 0 else f"{x:.3g}"


def cell(r, ci: tuple[float, float] | None, span: tuple[float, float]) -> str:
    """A multiplier with its interval: '1.88 [1.58, 2.32]', '>4 [all resamples >]'."""
    head = f"{'' if r.relation == '=' else r.relation}{r.m:.3g}"
    if ci is None:
        return head
    side = all_out_of_range(ci)
    return f"{head} [all resamples {side}]" if side else f"{head} [{_num(ci[0], span)}, {_num(ci[1], span)}]"


def t_cell(m: Multiplier) -> str:
    side = all_out_of_range(m.t_ci)
    if side:
        return f"all {_num(math.inf if side == '>' else 0.0, m.span)}"
    return f"[{_num(m.t_ci[0], m.span)}, {_num(m.t_ci[1], m.span)}]"


def other_cell(m: Multiplier, found: Multipliers) -> str:
    """The secondary loss's multiplier, only where it means something: where the fitted curve and the
    straight line both bracket the connectome's loss within the dense sizes and the law describes the dense
    curve; else a dash with the reason."""
    if found.fit is None:
        return f"— (no fitted curve; straight line {cell(m.line, None, m.span)})"
    if not found.fit.adequate:
        return f"— (the law does not describe this dense curve, chi-square p {found.fit.p:.2g})"
    if m.relation != "=" or m.line.relation != "=":
        return f"— (not bracketed: fitted {cell(m, None, m.span)}, straight line {cell(m.line, None, m.span)})"
    return cell(m, m.ci, m.span)


def _intro(found: Multipliers, other: Multipliers | None, key: str, last: int) -> list[str]:
    design, fit = found.rows[0].design, found.fit
    reading = (f"read off the dense curve fitted as L(D) = E + A (D / D0)^-α (weighted least squares, "
               f"analysis.sweep_math): {fit.text()}; the straight line in log tokens between measured dense sizes "
               "is given beside it as a sensitivity check" if fit is not None else
               f"read off the straight line in log tokens between measured dense sizes (no fitted curve: {found.why_no_fit})")
    lines = [f"Connectome of generation {last} against NoConnectome (dense), {design.text()} per size, on the "
             f"{NAME[key]}, {reading}. Intervals: for the pooled multiplier (that of the mean over lineages of the "
             f"lineage means) a hierarchical bootstrap ({found.n_boot} replicates: lineages with replacement, then "
             "seeds within each drawn lineage, the dense seeds separately, the curve refitted each time); for each "
             "lineage a seed bootstrap. '>' and '<' are bounds where the dense curve does not reach the loss within "
             "the sizes measured; an interval end '>X' ('<X') is open on that side."]
    if 2 <= design.lineages < T_LINEAGES:
        lines += ["", f"With {design.lineages} lineages the bootstrap cannot show how far lineages spread; 't over "
                  f"lineage means' is the t interval (df {design.lineages - 1}) of the connectome's mean loss over the "
                  "lineage means, mapped through the dense curve: it holds that spread and is wide for the same reason."]
    if other is not None:
        curve = other.fit.text() if other.fit is not None else f"no fitted curve ({other.why_no_fit})"
        lines += ["", f"On the {NAME['final' if key == 'best' else 'best']} (dense curve {curve}): the fitted multiplier "
                  "only where the fitted curve and the straight line both bracket the connectome's loss within the dense "
                  "sizes and the law describes the dense curve; else a dash with the reason."]
    return lines


def multiplier_lines(rows: list[dict], key: str) -> list[str]:
    """The data multiplier per connectome size on ``key`` (the primary loss: early-stopped when units keep their
    best step, else final): fitted, with its hierarchical interval, the straight-line reading, each lineage's,
    the t interval over lineages (2-4 lineages) and the other loss's where it brackets; notes where the pooled
    interval leaves a lineage out; and the headline sentence (on the primary loss)."""
    other = "final" if key == "best" else "best"
    found = multipliers(rows, key)
    if found is None:
        return ["*(no data multiplier: it needs the dense arm at two or more sizes and the connectome at one or more)*"]
    (mine, lins), theirs = found, multipliers(rows, other, n_boot=0)
    if theirs and any(not other_cell(m, theirs[0]).startswith("—") for m in theirs[0].rows):
        theirs = multipliers(rows, other)  # intervals only where a cell will show one
    last = _last(rows)
    conn = [r for r in rows if r["unit"].arm == "connectome" and r["generation"] == last]
    bits = np.mean([r["bits"]["structured_file"] for r in conn if r["bits"]])
    several, t = len(lins) > 1, mine.rows[0].t_ci is not None
    head = (["tokens", "multiplier [95% CI]", "straight line"] + [f"lineage {lin} [95% CI]" for lin in lins if several]
            + ([f"t over lineage means ({len(lins) - 1} df)"] if t else []) + ([f"on the {NAME[other]}"] if theirs else []))
    lines = _intro(mine, theirs[0] if theirs else None, key, last) + \
        ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for j, m in enumerate(mine.rows):
        cells = [f"{m.tokens:,}", cell(m, m.ci, m.span), cell(m.line, None, m.span)]
        cells += [cell(r, r.ci, m.span) for r in m.lineages] if several else []
        cells += [t_cell(m)] if t else []
        cells += [other_cell(theirs[0].rows[j], theirs[0])] if theirs else []
        lines.append("| " + " | ".join(cells) + " |")
    lines += _coverage_notes(mine, lins)
    return lines + ["", f"**Headline:** {headline(bits, headline_size(mine.rows))}."]


def _coverage_notes(found: Multipliers, lins: list) -> list[str]:
    """Where the pooled interval leaves out a lineage's own multiplier, say so and why; and failed refits."""
    out = []
    for m in found.rows:
        left = m.uncovered()
        if left:
            who = ", ".join(f"lineage {lins[i]}'s {cell(m.lineages[i], None, m.span)}" for i in left)
            out.append(f"At {m.tokens:,} tokens the pooled interval [{_num(m.ci[0], m.span)}, {_num(m.ci[1], m.span)}] "
                       f"does not contain {who}: it is an interval for the mean over lineages, not for any one "
                       "lineage, whose own multiplier can lie outside it.")
    if found.failed:
        out.append(f"{found.failed} of {found.n_boot} bootstrap refits failed and are left out of the intervals.")
    return [""] + out if out else []


def fig_data_efficiency(rows: list[dict], key: str):
    """Val loss (``key``: final or early-stopped) against developmental tokens (log x) per arm at the last
    generation (mean over lineages of lineage means; bars: s.e. over lineage means, or over seeds with one
    lineage), the fitted dense curve as a thin line, and the multiplier drawn where it is read: an arrow from
    the connectome's point across to the fitted curve at the same loss, labelled with the factor."""
    sizes = {r["tokens"] for r in rows}
    if len(sizes) < 2:
        return None
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    last = _last(rows)
    for (arm,), rs in group([r for r in rows if r["generation"] == last], lambda r: (r["unit"].arm,)).items():
        per = group(rs, lambda r: (r["tokens"],))
        ms = [pooled(g, key) for g in per.values()]
        ax.errorbar([n for (n,) in per], [m for m, *_ in ms], yerr=[0 if math.isnan(s) else s for _, s, *_ in ms],
                    marker="o", capsize=3, color=arms.color(arm), label=arms.label(arm))
    found = multipliers(rows, key, n_boot=0)  # the points and the fit only: no intervals drawn
    if found is not None and found[0].fit is not None:
        fit = found[0].fit
        xs = np.geomspace(fit.ref, fit.top, 200)
        ax.plot(xs, fit.loss(xs), lw=0.8, color=arms.color("dense"), alpha=0.7, label="dense, fitted E + A·D^-α")
    for m in found[0].rows if found is not None else []:
        if m.relation == "=":
            ax.annotate("", xy=(m.tokens * m.m, m.loss), xytext=(m.tokens, m.loss),
                        arrowprops={"arrowstyle": "->", "color": "gray", "lw": 1})
            ax.annotate(f"{m.m:.2g}x", (np.sqrt(m.tokens * m.tokens * m.m), m.loss), textcoords="offset points",
                        xytext=(0, 4), ha="center", fontsize=7, color="dimgray")
    ax.set_xscale("log")
    ax.minorticks_off()  # label the sizes measured, not a decade grid
    ax.set_xticks(sorted(sizes), [f"{n:,}" for n in sorted(sizes)], fontsize=8, rotation=30)
    ax.set_xlabel("developmental tokens (log)")
    ax.set_ylabel(f"{NAME[key]} (nats)")
    ax.set_title(f"connectome arms from generation {last}; arrows: the data multiplier", fontsize=9)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def lineage_lines(rows: list[dict], key: str = "final") -> list[str]:
    """Between- vs within-lineage spread of the connectome arm's val loss (``key``), per generation and size:
    per-lineage means +- s.e. over seeds, their mean with its t interval over lineages (df L - 1: the
    lineage, not the seed, is the unit that pools) and a nested (one-way) variance decomposition."""
    conn = [r for r in rows if r["unit"].arm == "connectome" and r["unit"].lineage is not None]
    if len({r["unit"].lineage for r in conn}) < 2:
        return []
    lines = ["| generation | tokens | per-lineage mean ± s.e. (seeds) | mean over lineages [95% CI, t over lineage means] "
             "| between-lineage var | within-lineage var |", "|---|---|---|---|---|---|"]
    for (g, n), rs in group(conn, lambda r: (r["generation"], r["tokens"])).items():
        per = group(rs, lambda r: (r["unit"].lineage,))
        stats = {lin: mean_se([r[key] for r in v]) for (lin,), v in per.items()}
        means = [m for m, _, _ in stats.values()]
        within = [np.var([r[key] for r in v], ddof=1) for v in per.values() if len(v) > 1]
        cells = "; ".join(f"L{lin} {m:.4f} ± {se:.4f}" for lin, (m, se, _) in stats.items())
        ok = [m for m in means if math.isfinite(m)]
        t = t_interval(ok) if len(ok) > 1 else None  # a size some lineage has not reached yet: no interval
        pooled_cell = "—" if t is None else f"{t['mean']:.4f} [{t['ci'][0]:.4f}, {t['ci'][1]:.4f}] (df {t['df']})"
        lines.append(f"| {g} | {n:,} | {cells} | {pooled_cell} | "
                     f"{np.var(means, ddof=1) if len(means) > 1 else float('nan'):.2e} | "
                     f"{np.mean(within) if within else float('nan'):.2e} |")
    return lines
