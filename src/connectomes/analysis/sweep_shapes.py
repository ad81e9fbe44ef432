"""The report's model-shape section: each shape's weights, connectomes and developed losses side by side,
the paired comparisons the shape axis exists for (a larger model pruned to about a smaller one's active
weights against that smaller model's connectome), and the frontier across shapes."""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from pathlib import Path

import numpy as np

from ..connectome import arms
from ..core.errors import UserError
from ..pipeline.evolve import read_generation_record
from ..pipeline.plan import plan_gpt_config
from ..pipeline.sweep import evolutions
from .figures import Embed, Figure, figure_lines, plt_module
from .results import RunResults, bits_record
from .stats import t_interval
from .sweep_multiplier import NAME, group, pooled

# the shapes figure closes the section: the image alone, its caption as alt text
SHAPES = Embed(("![{caption}]({path})",), ("*(not drawn: too few points)*",))
MATCH = 1.25  # a larger shape's connectome is set against a smaller one's whose active weights are within this factor


def _shape_bounds(rd: RunResults) -> dict:
    """{shape: dense-on-large val loss}: generation 0 of the shape's first lineage (a dense model trained on the
    large split, scored on the curves' selection slice: units with a report slice are read on other tokens)."""
    out = {}
    for shape, lin in evolutions(rd.config):
        try:
            rec = read_generation_record(rd.layout.lineage(lin, shape), 0)
        except UserError:  # damaged: no bound drawn for it (the report's evolution section names the file)
            continue
        if shape not in out and rec is not None and rec.get("val_loss") is not None:
            out[shape] = float(rec["val_loss"])
    return out


def _alive(rd: RunResults, unit) -> int | None:
    rec = bits_record(rd.layout.lineage(unit.lineage, unit.shape), rd.connectome_generation(unit))
    return rec.get("alive") if rec is not None else None


def _se(se: float, lineages: int) -> str:
    return "—" if math.isnan(se) else f"{se:.4f}" + ("" if lineages > 1 else " (seeds)")


def shape_section(rd: RunResults, rows: list[dict], key: str, out: Path) -> list[str]:
    """Model shapes side by side: each shape's weights, its connectomes' active weights and size, the
    developed loss of its connectome and control arms, its dense arm and its dense-on-large bound; then the
    paired comparisons of a larger shape pruned to about a smaller one's active weights against it."""
    bounds = _shape_bounds(rd)
    weights = {shape: rd.config.model.gpt_config(vocab_size=plan_gpt_config(rd.config).vocab_size, shape=shape).num_weights
               for shape in rd.config.model.shapes}
    lines = [f"Val loss: {NAME[key]}, the mean over lineages of each lineage's mean "
             "over seeds ± its s.e. (over lineage means; with one lineage over seeds, marked '(seeds)': then it holds no "
             "lineage variance); the dense-on-large bound is generation 0 of the shape's evolution (trained dense on "
             "the large split, scored on the curves' selection slice: where units report on a report slice, the bound and "
             "the arms' losses are read on different validation tokens).", "",
             "| shape | weights | arm | generation | active weights | connectome bits (structured) | lineages × units "
             "| val loss | dense at this shape | dense-on-large bound |", "|---|---|---|---|---|---|---|---|---|---|"]
    cells = {}
    for shape in rd.config.model.shapes:
        mine = [r for r in rows if r["unit"].shape == shape]
        dense = pooled([r for r in mine if r["unit"].arm == "dense"], key)
        for (arm, g), grp in group([r for r in mine if r["bits"]], lambda r: (r["unit"].arm, r["generation"])).items():
            m, se, n_lin, n = pooled(grp, key)
            bits = np.mean([r["bits"]["structured_file"] for r in grp])
            alive = _alive(rd, grp[0]["unit"])
            if arm == "connectome":
                cells[(shape, g)] = (alive, grp)
            lines.append(f"| {shape} | {weights[shape]:,} | {arms.label(arm)} | {g} | {alive if alive is None else f'{alive:,}'} | "
                         f"{bits:,.0f} | {n_lin} × {n} | {m:.4f} ± {_se(se, n_lin)} | {dense[0]:.4f} | "
                         f"{bounds.get(shape, float('nan')):.4f} |")
    fig = Figure("shapes", "model shapes", partial(fig_shapes, rows, key, bounds))
    return lines + ["", *pair_lines(cells, shape_pairs(cells, weights), key), "", *figure_lines([fig], out, SHAPES)]


def shape_pairs(cells: dict, weights: dict) -> list[tuple[tuple, tuple]]:
    """((shape A, generation), (shape B, generation)) for every connectome cell of a shape A and every shape B
    with fewer weights: B's generation whose active weight count is closest to A's (on a log scale), kept when
    within a factor MATCH of it. ``cells``: {(shape, generation): (active weights or None, rows)}."""
    out = []
    for (a, ga), (alive_a, _) in cells.items():
        for b in sorted({s for s, _ in cells if weights[s] < weights[a]}, key=lambda s: weights[s]):
            near = [(abs(math.log(alive_a / alive_b)), gb) for (s, gb), (alive_b, _) in cells.items()
                    if s == b and alive_a and alive_b]
            if near and min(near)[0] <= math.log(MATCH):
                out.append(((a, ga), (b, min(near)[1])))
    return out


def as_lineages(rows: list[dict], lins: list) -> list[dict]:
    """Rows of an arm without a lineage (dense) repeated for every lineage in ``lins``, so paired_difference pairs
    them by seed with each lineage's units."""
    return [{**r, "unit": dataclasses.replace(r["unit"], lineage=lin)} for r in rows for lin in lins]


def paired_difference(rows_a: list[dict], rows_b: list[dict], key: str, confidence: float = 0.95) -> dict | None:
    """A minus B paired by lineage and seed (seed s has the same data order at every shape; lineage l is the same
    evolution seed): d_l = the mean over seeds of A - B in lineage l, and a t interval over lineages (df L - 1);
    with one lineage the t interval is over its seeds' differences and holds no lineage variance. None without
    a pair."""
    a = {(r["unit"].lineage, r["unit"].seed): r[key] for r in rows_a if r[key] is not None}
    b = {(r["unit"].lineage, r["unit"].seed): r[key] for r in rows_b if r[key] is not None}
    both = [k for k in a if k in b]
    if not both:
        return None
    per: dict = {}
    for lin, seed in both:
        per.setdefault(lin, []).append(a[(lin, seed)] - b[(lin, seed)])
    means = [float(np.mean(v)) for v in per.values()]
    over = means if len(per) > 1 else next(iter(per.values()))
    r = t_interval(over, confidence) if len(over) > 1 else None
    return {"diff": float(np.mean(means)), "ci": r["ci"] if r else None, "lineages": len(per),
            "per_lineage": dict(sorted(zip(per, means), key=lambda x: -1 if x[0] is None else x[0])),
            "seeds": len({s for _, s in both}), "pairs": len(both),
            "over": (f"t over {len(per)} lineages (df {len(per) - 1})" if len(per) > 1 else
                     f"t over {len(over)} seeds of one lineage (df {len(over) - 1}): no lineage variance" if r else
                     "one pair: no interval")}


def pair_lines(cells: dict, pairs: list, key: str) -> list[str]:
    """The paired comparisons table (shape_pairs, paired_difference) of the connectome ``cells``."""
    if not pairs:
        return [f"*(no paired shape comparison: no larger shape's connectome has active weights within a factor "
                f"{MATCH} of a smaller shape's)*"]
    lines = [f"Paired comparisons: each larger shape's connectome against the smaller shape's generation whose active "
             f"weights are closest (within a factor {MATCH}), {NAME[key]}, "
             "A − B paired by lineage and seed (the same seed has the same data order at every shape); negative: the "
             "larger model pruned to about the smaller one's active weights does better.", "",
             "| A (shape, generation) | B (shape, generation) | active weights A / B | A − B [95% CI] | lineages | seeds | "
             "interval |", "|---|---|---|---|---|---|---|"]
    for (sa, ga), (sb, gb) in pairs:
        (alive_a, rows_a), (alive_b, rows_b) = cells[(sa, ga)], cells[(sb, gb)]
        r = paired_difference(rows_a, rows_b, key)
        if r is None:
            continue
        ci = "—" if r["ci"] is None else f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}]"
        lines.append(f"| {sa}, gen {ga} | {sb}, gen {gb} | {alive_a:,} / {alive_b:,} | {r['diff']:+.4f} {ci} | "
                     f"{r['lineages']} | {r['seeds']} | {r['over']} |")
    return lines


def fig_shapes(rows: list[dict], key: str, bounds: dict):
    """The frontier across shapes: developed val loss against connectome size in bits (log x), one curve per
    shape through its generations (each arm in its registered line style, connectome.arms; mean over lineage means ± s.e.),
    each shape's arms without a connectome as lines and its dense-on-large bound dash-dot-dotted, in the shape's colour."""
    if not any(r["bits"] for r in rows):
        return None
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    shapes = list(dict.fromkeys(r["unit"].shape for r in rows))
    colours = plt.get_cmap("tab10")
    for i, shape in enumerate(shapes):
        c = colours(i % 10)
        mine = [r for r in rows if r["unit"].shape == shape]
        # every arm with a connectome, in the config's order and its line style: a new arm is drawn too
        present = list(dict.fromkeys(r["unit"].arm for r in mine))  # the config's order
        for arm in [a for a in present if arms.known(a) and arms.get(a).needs_connectome]:
            pts = []
            for (_, g), grp in group([r for r in mine if r["unit"].arm == arm and r["bits"]],
                                     lambda r: (arm, r["generation"])).items():
                m, se, _, _ = pooled(grp, key)
                pts.append((np.mean([r["bits"]["structured_file"] for r in grp]), m, 0 if math.isnan(se) else se, g))
            if pts:
                pts.sort()
                x, y, e, gens = zip(*pts)
                ax.errorbar(x, y, yerr=e, ls=arms.style(arm), marker="o", capsize=3, color=c, label=f"{shape} {arms.label(arm)}")
                if arm == "connectome":
                    for xi, yi, g in zip(x, y, gens):
                        ax.annotate(f"g{g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7, color=c)
        for arm in [a for a in present if arms.known(a) and not arms.get(a).needs_connectome]:
            dense, _, k, _ = pooled([r for r in mine if r["unit"].arm == arm], key)
            if k:
                ax.axhline(dense, ls=arms.style(arm), color=c, lw=1, label=f"{shape} {arms.label(arm)}")
        if shape in bounds:
            ax.axhline(bounds[shape], ls=(0, (5, 1, 1, 1, 1, 1)), color=c, lw=1, label=f"{shape} dense on large (gen 0)")
    ax.set_xscale("log")
    ax.set_xlabel("connectome size (bits, structured code; log)")
    ax.set_ylabel(f"{NAME[key]} (nats)")
    ax.set_title("The frontier across model shapes", fontsize=9)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig
