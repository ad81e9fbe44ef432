"""The report's controls section (issue 30): what in the connectome carries its benefit, and how many bits.

Each arm keeps one named statistic of its lineage (connectome.arms) at a description length in bits
(connectome.genome). The table gives each arm's loss (early-stopped where units keep their best step: chosen on
the selection slice, read on the report slice), its difference from the connectome and from the random
connectome paired by lineage and seed with a t interval over lineage means (the lineage is the level that
varies most: issue 28), and the share of the connectome's advantage over random that the arm keeps. The figure
draws loss against bits with random and dense as reference lines; the untrained view draws step-0 loss over the
re-initialisation constant c (pipeline.untrained).
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import numpy as np

from ..connectome import arms, genome
from ..core.integrity import seal_problem
from ..model.gpt import GPT
from ..pipeline.evolve import lineage_connectome
from ..pipeline.plan import plan_gpt_config
from ..pipeline.sweep import lineages, shapes
from ..pipeline.untrained import SCANNED
from .figures import Embed, Figure, figure_lines, plt_module
from .results import RunResults
from .stats import t_interval
from .sweep_multiplier import NAME, pooled
from .sweep_report import home_rows, primary, sweep_rows
from .sweep_shapes import as_lineages, paired_difference

REFERENCE = ("connectome", "random", "dense")  # the paper's arms; any other arm makes this section appear
CONTROLS = Embed(("![{caption}]({path})", ""), ("*(not drawn: {caption} has no results yet)*", ""))


def has_controls(rd: RunResults) -> bool:
    return any(a not in REFERENCE for a in rd.config.develop.arms)


def description_bits(rd: RunResults, rows: list[dict]) -> dict[str, float]:
    """Each arm's description length: the mean over the lineages its rows developed from (dense: 0)."""
    per_lineage, out = {}, {}
    for r in rows:
        u = r["unit"]
        spec = arms.get(u.arm)
        if not spec.needs_lineage:
            out[u.arm] = 0.0
            continue
        key = (u.lineage, u.shape, r["generation"] if spec.needs_connectome else rd.config.evolve.generations - 1)
        if key not in per_lineage:
            gcfg = rd.config.model.gpt_config(vocab_size=plan_gpt_config(rd.config).vocab_size, shape=u.shape)
            conn = lineage_connectome(rd.config, gcfg, rd.layout.lineage(u.lineage, u.shape), u.lineage, key[2])
            per_lineage[key] = (conn, genome.model_numel(GPT(gcfg)))
        conn, numel = per_lineage[key]
        out.setdefault(u.arm, {})[key] = spec.description_bits(conn, numel)
    return {a: (v if isinstance(v, float) else float(np.mean(list(v.values())))) for a, v in out.items()}


def _by_arm(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["unit"].arm, []).append(r)
    return out


def _against(mine: list[dict], ref: list[dict] | None, key: str, lins: list) -> dict | None:
    if not ref or mine is ref:
        return None
    if not arms.get(ref[0]["unit"].arm).needs_lineage:
        ref = as_lineages(ref, lins)
    if not arms.get(mine[0]["unit"].arm).needs_lineage:
        mine = as_lineages(mine, lins)
    d = paired_difference(mine, ref, key)
    if d is not None and d["lineages"] > 1 and _same_in_every_lineage(mine, ref, key):
        # neither arm varies with the lineage (dense; random, whose per-tensor counts every lineage shares): the
        # lineage means are copies, so the interval is over the seeds of one lineage
        first = min(lins)
        d = paired_difference([r for r in mine if r["unit"].lineage == first], [r for r in ref if r["unit"].lineage == first], key)
    return d


def _same_in_every_lineage(mine: list[dict], ref: list[dict], key: str) -> bool:
    def by_seed(rs):
        out: dict = {}
        for r in rs:
            out.setdefault(r["unit"].lineage, {})[r["unit"].seed] = r[key]
        return list(out.values())
    return all(len({tuple(sorted(v.items())) for v in by_seed(rs)}) == 1 for rs in (mine, ref))


def share_of_benefit(mine: list[dict], conn: list[dict], rand: list[dict], key: str) -> dict | None:
    """(random - arm) / (random - connectome) per lineage (means over seeds), with a t interval over lineages:
    1 = the arm keeps all of the connectome's advantage over random, 0 = none of it."""
    def means(rs):
        per: dict = {}
        for r in rs:
            if r[key] is not None and math.isfinite(r[key]):
                per.setdefault(r["unit"].lineage, []).append(r[key])
        return {k: float(np.mean(v)) for k, v in per.items()}

    m, c, r = means(mine), means(conn), means(rand)
    lins = [lin for lin in m if lin in c and lin in r and r[lin] != c[lin]]
    if not lins:
        return None
    shares = [(r[lin] - m[lin]) / (r[lin] - c[lin]) for lin in lins]
    ci = t_interval(shares)["ci"] if len(shares) > 1 else None
    return {"share": float(np.mean(shares)), "ci": ci, "lineages": len(lins)}


def _diff_cell(d: dict | None) -> str:
    if d is None:
        return "—"
    ci = "" if d["ci"] is None else f" [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
    return f"{d['diff']:+.3f}{ci}"


def _share_cell(s: dict | None) -> str:
    if s is None:
        return "—"
    ci = "" if s["ci"] is None else f" [{s['ci'][0]:.2f}, {s['ci'][1]:.2f}]"
    return f"{s['share']:.2f}{ci}"


def control_rows(rows: list[dict], bits: dict[str, float], key: str, order: list[str]) -> list[dict]:
    """One record per arm: bits, pooled loss, differences from the connectome and random, share of benefit."""
    by = _by_arm(rows)
    lins = sorted({r["unit"].lineage for r in rows if r["unit"].lineage is not None})
    out = []
    for arm in [a for a in order if a in by]:
        mine = by[arm]
        m, se, n_lin, n_units = pooled(mine, key)
        out.append({"arm": arm, "bits": bits.get(arm), "loss": m, "se": se, "lineages": n_lin, "units": n_units,
                    "vs_connectome": _against(mine, by.get("connectome"), key, lins),
                    "vs_random": _against(mine, by.get("random"), key, lins),
                    "share": share_of_benefit(as_lineages(mine, lins) if not arms.get(arm).needs_lineage else mine,
                                              by.get("connectome", []), by.get("random", []), key)})
    return out


def table_lines(recs: list[dict], key: str) -> list[str]:
    lines = [f"| arm | keeps | bits | {NAME[key]}: mean of lineage means (s.e.) | − connectome [95% CI] | "
             "− random [95% CI] | share of the connectome's advantage over random [95% CI] | units (lineages) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in recs:
        spec = arms.get(r["arm"])
        bits = "—" if r["bits"] is None else f"{r['bits']:,.0f}"
        se = "" if math.isnan(r["se"]) else f" ({r['se']:.3f})"
        lines.append(f"| {spec.label} | {spec.keeps} | {bits} | {r['loss']:.4f}{se} | {_diff_cell(r['vs_connectome'])} | "
                     f"{_diff_cell(r['vs_random'])} | {_share_cell(r['share'])} | {r['units']} ({r['lineages']}) |")
    return lines


def fig_benefit_vs_bits(recs: list[dict], key: str):
    pts = [r for r in recs if r["bits"] and not math.isnan(r["loss"])]
    if not pts:
        return None
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in recs:
        if r["arm"] in ("random", "dense") and not math.isnan(r["loss"]):
            ax.axhline(r["loss"], ls=arms.style(r["arm"]), color=arms.color(r["arm"]), lw=1,
                       label=f"{arms.label(r['arm'])} ({'floor' if r['arm'] == 'random' else 'dense reference'})")
    for r in pts:
        ax.errorbar([r["bits"]], [r["loss"]], yerr=[0 if math.isnan(r["se"]) else r["se"]], marker="o", capsize=3,
                    color=arms.color(r["arm"]), ls="none")
        ax.annotate(arms.label(r["arm"]), (r["bits"], r["loss"]), textcoords="offset points", xytext=(5, 3), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("description length of what the arm keeps (bits, log scale)")
    ax.set_ylabel(f"{NAME[key]} (nats/token)")
    ax.set_title("benefit against bits: mean of lineage means ± s.e.")
    ax.legend(fontsize=8, loc="best")
    return fig


def untrained_records(rd: RunResults) -> list[dict]:
    """Each lineage's untrained.json (pipeline.untrained) that is intact."""
    recs = []
    for shape in shapes(rd.config):
        for lin in lineages(rd.config):
            path = rd.layout.lineage(lin, shape).root / "untrained.json"
            if path.exists():
                try:
                    rec = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if isinstance(rec, dict) and seal_problem(rec) is None:
                    recs.append(rec)
    return recs


def untrained_means(recs: list[dict]) -> tuple[list[float], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(constants, arm -> (mean over lineages of the seed means, s.e. over lineages)) of the step-0 losses."""
    cs = recs[0]["constants"]
    recs = [r for r in recs if r["constants"] == cs]
    out = {}
    for arm in SCANNED:
        per = np.array([np.mean([v for v in r["losses"][arm].values()], axis=0) for r in recs if arm in r["losses"]])
        if len(per):
            se = per.std(axis=0, ddof=1) / math.sqrt(len(per)) if len(per) > 1 else np.full(per.shape[1], np.nan)
            out[arm] = (per.mean(axis=0), se)
    return cs, out


def fig_untrained(recs: list[dict]):
    if not recs:
        return None
    cs, means = untrained_means(recs)
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, (m, se) in means.items():
        ax.errorbar(cs, m, yerr=np.nan_to_num(se), marker="o", capsize=3, color=arms.color(arm), ls=arms.style(arm),
                    label=arms.label(arm))
    ax.set_xscale("log")
    ax.set_xlabel("re-initialisation constant c (weights = ternary × c; log scale)")
    ax.set_ylabel("step-0 val loss, no training (nats/token)")
    ax.set_title(f"untrained: mean over {len(recs)} lineage(s) ± s.e.")
    ax.legend(fontsize=8)
    return fig


def untrained_lines(recs: list[dict]) -> list[str]:
    if not recs:
        return ["*(no untrained scan: set develop.untrained_constants)*"]
    cs, means = untrained_means(recs)
    lines = [f"Step-0 validation loss with every prunable weight set to ternary × c, no training, on the selection "
             f"slice ({recs[0]['eval_tokens']:,} tokens); mean over {len(recs)} lineage(s) (controls: over their seeds "
             "first) ± s.e. over lineages.", "",
             "| arm | " + " | ".join(f"c = {c:g}" for c in cs) + " |", "|---|" + "---|" * len(cs)]
    for arm, (m, se) in means.items():
        cells = [f"{v:.3f}" + ("" if math.isnan(s) else f" ({s:.3f})") for v, s in zip(m, se)]
        lines.append(f"| {arms.label(arm)} | " + " | ".join(cells) + " |")
    return lines


def controls_section(rd: RunResults, out: Path) -> list[str]:
    """The section's lines (empty unless the study develops an arm besides the paper's three)."""
    if not has_controls(rd):
        return []
    rows, key = home_rows(rd, sweep_rows(rd)), primary(rd)  # with develop.corpora: the headline corpora's units
    if not rows:
        return []
    bits = description_bits(rd, rows)
    recs = control_rows(rows, bits, key, list(rd.config.develop.arms))
    unt = untrained_records(rd)
    figs = [Figure("controls_bits", "benefit against bits", partial(fig_benefit_vs_bits, recs, key)),
            Figure("controls_untrained", "untrained loss over c", partial(fig_untrained, unt))]
    drawn = figure_lines(figs, out, CONTROLS)
    return ["## Controls: what carries the benefit", "",
            "Each control keeps one statistic of its lineage's connectome and redraws the rest (`connectomes develop "
            "--help`); bits: the description length of what it keeps (connectome.genome: counts at fixed width, the "
            "wiring at the structured codec's size, real numbers at 16 bits), mean over lineages. Differences are "
            "paired by lineage and seed (dense, which has no lineage, by seed), with a t interval over lineage means "
            "(df = lineages − 1). Share: (random − arm) / (random − connectome) per lineage, t interval over "
            "lineages.", "", *table_lines(recs, key), "", drawn[0], *drawn[1:2],
            "### Untrained view", "", *untrained_lines(unt), "", *drawn[2:], ""]
