"""The report's sweep section: one row per developed unit, the bottleneck frontier (loss and the other
frontier metrics against connectome bits), data efficiency, the data multiplier and lineage spread
(analysis.sweep_multiplier) and the model shapes (analysis.sweep_shapes)."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np

from ..connectome import arms
from ..core import axes
from ..evals.registry import Metric, logged_metric
from ..pipeline import corpora
from ..pipeline.sweep import evolutions, headline_corpus, lineages, trained_at
from .figures import Embed, Figure, figure_lines, plt_module
from .results import RunResults, bits_record, headline_metrics
from .selection import selection_lines, unit_selection
from .sweep_multiplier import NAME, fig_data_efficiency, lineage_lines, multiplier_lines, pooled
from .sweep_shapes import shape_section

# the sweep's figures: each under its caption as a heading (which is also its alt text)
SWEEP = Embed(("### {caption}", "", "![{caption}]({path})", ""), ("### {caption}", "", "*(not drawn: too few points)*", ""))


def frontier_metrics(rd: RunResults) -> list[tuple[str, Metric]]:
    """The metrics drawn against connectome size besides the loss (``figures`` holds "frontier")."""
    logged = logged_metric()
    return [(t, m) for t, m in headline_metrics(rd.config) if "frontier" in m.figures and (t, m) != logged]


def sweep_rows(rd: RunResults) -> list[dict]:
    """One row per developed unit: its axes, tokens, connectome size in bits (its lineage's generation;
    None for dense), its final and best val loss and best step, steps trained, cap and whether it was still
    improving at the cap (selection.unit_selection: every unit by one rule, the report slice where units
    keep their best step), and each frontier metric (by label) when evaluated. A unit without the primary
    loss yet is left out (selection.selection_lines names the finished ones)."""
    cfg, key = rd.config, primary(rd)
    rows = []
    for u in rd.units:
        bits = None
        if arms.get(u.arm).needs_connectome:
            rec = bits_record(rd.layout.lineage(u.lineage, u.shape), rd.connectome_generation(u))
            bits = rec["total"] if rec is not None else None
        row = {"unit": u, "tokens": trained_at(cfg, u)["tokens"], "bits": bits,
               "generation": rd.connectome_generation(u), **unit_selection(rd, u)}
        # the other frontier metrics at the step the primary loss is read at (primary())
        step = row["best_step"] if key == "best" and row["best_step"] is not None else rd.final_step
        row.update({m.label: rd.unit_metric(u, step, t, m) for t, m in frontier_metrics(rd)})
        rows.append(row)
    return [r for r in rows if r["final"] is not None and r[key] is not None]


def home_rows(rd: RunResults, rows: list[dict]) -> list[dict]:
    """The rows of the headline slice's corpora (all rows without develop.corpora): developed on the headline corpus,
    from the lineages that evolved where the headline lineage did. The other pairs are the transfer section's."""
    cfg = rd.config
    if not cfg.develop.corpora:
        return rows
    develop, evolve = headline_corpus(cfg), corpora.lineage_corpus(cfg, lineages(cfg)[0])
    return [r for r in rows if r["unit"].corpus == develop
            and (not arms.get(r["unit"].arm).needs_lineage or corpora.lineage_corpus(cfg, r["unit"].lineage) == evolve)]


def _groups(rows: list[dict], key) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(-1 if x is None else x for x in kv[0][1:])))


def fig_frontier(rows: list[dict], others: list[Metric], key: str):
    """Val loss (``key``: final or early-stopped; and the other frontier metrics when evaluated) against the
    connectome's size in bits (structured file, log x), mean +- s.e. over seeds and lineages: one panel per
    data size a connectome was developed at (rows: metrics), one line per arm through its generations in
    order of size, each point labelled with its generation; dense (no connectome: 0 bits) is the
    horizontal reference in each panel, and an accuracy's guessing rate a dotted grey line."""
    if not any(r["bits"] for r in rows):
        return None
    plt = plt_module()
    metrics = [(key, f"{NAME[key]} (nats)", None)] + \
        [(m.label, m.label, m.chance) for m in others if any(r[m.label] is not None for r in rows)]
    sizes = sorted({r["tokens"] for r in rows if r["bits"]})
    fig, axes = plt.subplots(len(metrics), len(sizes), figsize=(3.6 * len(sizes) + 0.6, 3.4 * len(metrics)),
                             squeeze=False, sharey="row")
    for i, (key, ylabel, chance) in enumerate(metrics):
        for j, n in enumerate(sizes):
            ax = axes[i][j]
            if chance is not None:  # an accuracy near its guessing rate reads as what it is
                ax.axhline(chance, ls=":", color="gray", lw=1, label="chance")
            xs = set()
            for (arm,), rs in _groups([r for r in rows if r["tokens"] == n], lambda r: (r["unit"].arm,)).items():
                xs.update(_frontier_line(ax, arm, rs, key))
            ax.set_xscale("log")
            ax.minorticks_off()  # the sizes span well under a decade: label the connectomes' own sizes instead
            ax.set_xticks(sorted(xs), [f"{x / 1e6:.3g}M" for x in sorted(xs)], fontsize=7, rotation=45)
            ax.set_title(f"{n:,} developmental tokens", fontsize=9)
            ax.set_xlabel("connectome size (bits, structured code; log)" if i == len(metrics) - 1 else "")
            ax.set_ylabel(ylabel if j == 0 else "")
            if j == 0 and (i == 0 or chance is not None):
                ax.legend(fontsize=7)
    return fig


def _frontier_line(ax, arm: str, rs: list[dict], key: str) -> list[float]:
    """One arm's points on a frontier panel: mean +- s.e. per generation, or dense's reference line;
    returns the x positions (bits) drawn."""
    if not arms.get(arm).needs_connectome:
        m, _, k, _ = pooled(rs, key)
        if k:
            ax.axhline(m, ls="--", color=arms.color(arm), label=arms.label(arm))
        return []
    pts = []
    for (_, g), grp in _groups(rs, lambda r: (arm, r["generation"])).items():
        m, se, k, _ = pooled(grp, key)  # the mean of lineage means, as every pooled number
        if k:
            pts.append((np.mean([r["bits"]["structured_file"] for r in grp if r["bits"]]), m, 0 if math.isnan(se) else se, g))
    if not pts:
        return []
    pts.sort()
    x, y, e, gens = zip(*pts)
    ax.errorbar(x, y, yerr=e, marker="o", capsize=3, color=arms.color(arm), label=arms.label(arm))
    if arm == "connectome":
        for xi, yi, g in zip(x, y, gens):
            ax.annotate(f"g{g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    return list(x)


def primary(rd: RunResults) -> str:
    """The loss the multiplier and its figure read: early stopping's (chosen on the selection slice, read on the report slice) when units keep their best
    step (develop.train.keep_best), else the final step's."""
    return "best" if rd.config.develop.train.keep_best else "final"


def generation_size_lines(rd: RunResults) -> list[str]:
    """Each lineage's generations with their connectome size in bits (evolve/gen_XX/connectome_bits.json)."""
    swept = bool(rd.config.model.shapes)
    lines = ["| " + ("shape | " if swept else "") + "lineage | generation | density | i.i.d. bound | ANS file | "
             "structured file |", "|---|" + ("---|" if swept else "") + "---|---|---|---|---|"]
    for shape, lin in evolutions(rd.config):
        layout = rd.layout.lineage(lin, shape)
        for g in layout.generations_present():
            rec = bits_record(layout, g)
            if rec is not None:  # damaged or absent: left out
                t = rec["total"]
                lines.append("| " + (f"{shape} | " if swept else "") + f"{'—' if lin is None else lin} | {g} | "
                             f"{rec['density']:.4f} | {t['bound']:,.0f} | {t['ans_file']:,} | {t['structured_file']:,} |")
    return lines


def unit_lines(rd: RunResults, rows: list[dict]) -> list[str]:
    """The table of every developed unit: its axes, connectome size, final and best val loss (on the report
    slice where units keep their best step), the best step, steps trained of the cap, whether it was still
    improving at the cap, and the other frontier metrics at the primary step."""
    shaped, kept = bool(rd.config.model.shapes), rd.config.develop.train.keep_best
    others = [m for _, m in frontier_metrics(rd) if any(r[m.label] is not None for r in rows)]
    at, sliced = (" at the best step", " (report slice)") if kept else ("", "")
    swept = bool(rd.config.develop.corpora)
    head = (["arm", "seed"] + (["shape"] if shaped else []) + ["lineage"] + (["evolved on", "developed on"] if swept else [])
            + ["connectome of generation", "tokens",
            "connectome bits (bound / ANS file / structured file)", f"final val loss{sliced}", f"best val loss{sliced}",
            "best step", "steps trained / cap", "still improving at the cap"] + [f"{m.label}{at}" for m in others])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        b, u = r["bits"], r["unit"]
        cells = [arms.label(u.arm), str(u.seed)] + ([u.shape or "—"] if shaped else []) + [
            "—" if u.lineage is None else str(u.lineage)] + \
            ([corpora.evolved_on(rd.config, u) or "—", u.corpus or "—"] if swept else []) + [
            str(r["generation"]) if arms.get(u.arm).needs_connectome else "—",
            f"{r['tokens']:,}", f"{b['bound']:,.0f} / {b['ans_file']:,} / {b['structured_file']:,}" if b else "—",
            _loss(r["final"]), _loss(r["best"]), "—" if r["best_step"] is None else str(r["best_step"]),
            f"{r['steps_trained']} / {r['cap']}", "**yes**" if r["still_improving"] else "no"] + \
            ["—" if r[m.label] is None else f"{r[m.label]:.4f}" for m in others]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _loss(x) -> str:
    return "—" if x is None else f"{x:.4f}"


def sweep_section(rd: RunResults, out: Path) -> list[str]:
    """The report's sweep section (empty for a plain study): sizes, figures, multiplier, lineages, shapes."""
    if not axes.is_sweep(rd.config):
        return []
    rows = sweep_rows(rd)
    if not rows:
        return ["## Sweep", "", "*(no developed units yet)*", ""]
    key = primary(rd)
    lines = ["## Sweep", "", "Connectome sizes in bits per generation:", "", *generation_size_lines(rd), "",
             *selection_lines(rd, rows), "", *unit_lines(rd, rows)]
    if rd.config.develop.corpora:
        rows = home_rows(rd, rows)
        lines += ["", f"The figures, multiplier and lineage table below read the units developed on "
                      f"{headline_corpus(rd.config)} from lineages evolved on "
                      f"{corpora.evolve_corpus(rd.config, lineages(rd.config)[0])}; "
                      "the Transfer section reads the other pairs."]
    figs = [Figure("frontier", "frontier", partial(fig_frontier, rows, [m for _, m in frontier_metrics(rd)], key)),
            Figure("data_efficiency", "data efficiency", partial(fig_data_efficiency, rows, key))]
    lines += ["", *figure_lines(figs, out, SWEEP), "### Data multiplier", "", *multiplier_lines(rows, key)]
    lin = lineage_lines(rows, key)
    if lin:
        lines += ["", "### Lineages", "", *lin]
    if rd.config.model.shapes:
        lines += ["", "### Model shapes", "", *shape_section(rd, rows, key, out)]
    return lines + [""]
