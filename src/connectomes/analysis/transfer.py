"""The report's transfer section (issue 31): connectomes evolved on one corpus, developed on another.

Each cell pairs an evolve corpus (the corpus its lineages evolved on: evolve.corpus_by_seed) with a develop corpus
(develop.corpora). The connectome's benefit over the random connectome is paired by lineage and seed (random of the
same lineage), over dense and over the pre-train-then-train reference (inherit_dense) by seed; every interval is a t
interval over lineage means (df = lineages − 1), or, where an evolve corpus has one lineage, over that lineage's
seeds, flagged as holding no lineage variance (analysis.sweep_shapes.paired_difference). Where a develop corpus is
also an evolve corpus, the in-domain connectome is the reference a foreign one is read against: the share of the
in-domain benefit over random that the foreign connectome keeps. The data multiplier is read per develop corpus
against that corpus's dense curve (develop.sizes_by_arm), at the connectome's size, where the dense sizes bracket it.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np

from ..connectome import arms
from ..pipeline import corpora
from .figures import Embed, Figure, figure_lines, plt_module
from .results import RunResults
from .sweep_multiplier import NAME, cell, multipliers, pooled, t_cell
from .sweep_report import primary, sweep_rows
from .sweep_shapes import as_lineages, paired_difference

TRANSFER = Embed(("![{caption}]({path})", ""), ("*(not drawn: {caption} has no results yet)*", ""))
REFERENCES = ("random", "dense", "inherit_dense")  # what a connectome's benefit is read against, where developed


def _top(rows: list[dict], arm: str) -> int | None:
    """The connectome arm's size: the one every arm is compared at (the largest of develop.sizes)."""
    sizes = [r["tokens"] for r in rows if r["unit"].arm == arm]
    return max(sizes) if sizes else None


def cell_rows(rd: RunResults, rows: list[dict], develop: str, evolve: str) -> dict[str, list[dict]]:
    """The rows of one (evolve corpus, develop corpus) cell by arm, at the connectome's size: the arms with a lineage
    from that evolve corpus's lineages; the dense arm (no lineage) paired with each of them by seed."""
    cfg = rd.config
    mine = [r for r in rows if r["unit"].corpus == develop]
    size = _top(mine, "connectome")
    lins = sorted({r["unit"].lineage for r in mine if corpora.evolved_on(cfg, r["unit"]) == evolve})
    out: dict[str, list[dict]] = {}
    for r in (r for r in mine if r["tokens"] == size):
        if arms.get(r["unit"].arm).needs_lineage:
            if r["unit"].lineage in lins:
                out.setdefault(r["unit"].arm, []).append(r)
        else:  # paired with every lineage of the cell by seed
            out.setdefault(r["unit"].arm, []).extend(as_lineages([r], lins))
    return out


def benefit(conn: list[dict], ref: list[dict] | None, key: str) -> dict | None:
    """ref − connectome, paired by lineage and seed (positive: the connectome is better), its interval over lineages
    and each lineage's own mean difference (``per_lineage``), which the interval is over."""
    return paired_difference(ref, conn, key) if conn and ref else None


def share(home: dict | None, away: dict | None) -> float | None:
    """The share of the in-domain connectome's benefit over random (``home``) that a foreign one keeps (``away``):
    (random − foreign) / (random − in-domain), each a mean over its lineages of the seed-paired differences."""
    return None if home is None or away is None or home["diff"] == 0 else away["diff"] / home["diff"]


def evolve_corpora(cfg) -> list[str]:
    """The corpora lineages evolved on, the run's own first."""
    seeds = list(cfg.evolve.seeds) or [None]
    return list(dict.fromkeys(corpora.evolve_corpus(cfg, s) for s in seeds))


def transfer_records(rd: RunResults, rows: list[dict], key: str) -> list[dict]:
    """One record per (develop corpus, evolve corpus): the connectome's loss and its benefits."""
    recs = []
    for develop in rd.config.develop.corpora:
        cells = {evolve: cell_rows(rd, rows, develop, evolve) for evolve in evolve_corpora(rd.config)}
        for evolve, by in cells.items():
            conn = by.get("connectome", [])
            if not conn:
                continue
            m, se, n_lin, n_units = pooled(conn, key)
            over = {f"over_{ref}": benefit(conn, by.get(ref), key) for ref in REFERENCES}
            home = cells.get(develop, {})  # the in-domain cell, where a lineage evolved on the develop corpus
            kept = None if evolve == develop else share(benefit(home.get("connectome"), home.get("random"), key),
                                                         over["over_random"])
            recs.append({"develop": develop, "evolve": evolve, "loss": m, "se": se, "lineages": n_lin, "units": n_units,
                         **over, "share": kept})
    return recs


def _diff(d: dict | None) -> str:
    if d is None:
        return "—"
    ci = "" if d["ci"] is None else f" [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
    flag = "" if d["lineages"] > 1 else "¹"
    return f"{d['diff']:+.3f}{ci}{flag}"


def _per_lineage(d: dict | None) -> str:
    if d is None or not d.get("per_lineage"):
        return "—"
    return ", ".join(f"{lin}: {v:+.3f}" for lin, v in d["per_lineage"].items())


def table_lines(recs: list[dict], key: str, present: list[str]) -> list[str]:
    refs = [r for r in REFERENCES if r in present]
    head = ["develop on", "evolved on", f"connectome {NAME[key]} (s.e.)",
            *[f"benefit over {arms.label(r)} [95% CI]" for r in refs], "over random, each lineage",
            "share of the in-domain benefit over random", "units (lineages)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in recs:
        se = "" if math.isnan(r["se"]) else f" ({r['se']:.3f})"
        kept = "in-domain" if r["evolve"] == r["develop"] else "—" if r["share"] is None else f"{r['share']:.2f}"
        lines.append(f"| {r['develop']} | {r['evolve']} | {r['loss']:.4f}{se} | "
                     + " | ".join(_diff(r[f"over_{ref}"]) for ref in refs) + f" | {_per_lineage(r['over_random'])} | "
                     f"{kept} | {r['units']} ({r['lineages']}) |")
    return lines


def fig_transfer(recs: list[dict], refs: list[str]):
    """Benefit over each reference per (develop, evolve) cell with its interval: bars grouped by develop corpus."""
    if not recs:
        return None
    plt = plt_module()
    fig, axs = plt.subplots(1, len(refs), figsize=(4.5 * len(refs), 4.5), squeeze=False)
    develop = list(dict.fromkeys(r["develop"] for r in recs))
    evolve = list(dict.fromkeys(r["evolve"] for r in recs))
    width = 0.8 / max(1, len(evolve))
    for ax, ref in zip(axs[0], refs):
        for j, ev in enumerate(evolve):
            xs, ys, lo, hi = [], [], [], []
            for i, dv in enumerate(develop):
                d = next((r[f"over_{ref}"] for r in recs if r["develop"] == dv and r["evolve"] == ev), None)
                if d is None:
                    continue
                xs.append(i + (j - (len(evolve) - 1) / 2) * width)
                ys.append(d["diff"])
                ci = d["ci"] or (d["diff"], d["diff"])
                lo.append(d["diff"] - ci[0])
                hi.append(ci[1] - d["diff"])
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=f"evolved on {ev}")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(develop)))
        ax.set_xticklabels(develop)
        ax.set_xlabel("develop corpus")
        ax.set_ylabel("reference − connectome (nats/token)")
        ax.set_title(f"benefit over {arms.label(ref)} (> 0: connectome better)", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("transfer: mean over lineages, 95% t interval (one lineage: over its seeds)")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def multiplier_lines(rd: RunResults, rows: list[dict], key: str) -> list[str]:
    """The data multiplier on each develop corpus, per evolve corpus: the connectome against that corpus's dense
    curve."""
    out = []
    for develop in rd.config.develop.corpora:
        dense = [r for r in rows if r["unit"].corpus == develop and r["unit"].arm == "dense"]
        for evolve in evolve_corpora(rd.config):
            conn = [r for r in rows if r["unit"].corpus == develop and r["unit"].arm == "connectome"
                    and corpora.evolved_on(rd.config, r["unit"]) == evolve]
            found = multipliers(dense + conn, key) if conn else None
            if found is None:
                continue
            m = found[0].rows[0]
            out.append(f"| {develop} | {evolve} | {m.tokens:,} | {cell(m, m.ci, m.span)} | "
                       f"{t_cell(m) if m.t_ci is not None else '—'} | {cell(m.line, None, m.span)} | {m.design.text()} |")
    if not out:
        return ["*(no data multiplier: it needs the dense arm at two or more sizes on a develop corpus)*"]
    return ["| develop on | evolved on | connectome tokens | data multiplier [95% CI] | t over lineage means | "
            "straight line | design |", "|---|---|---|---|---|---|---|", *out,
            "", "A multiplier m: the dense arm needs m times the connectome's developmental tokens on that corpus to "
            "reach its loss, read off that corpus's dense curve (fitted, with the straight line between measured sizes "
            "beside it); interval: hierarchical bootstrap over lineages, then seeds (with two lineages it cannot hold "
            "the lineage variance: the t interval over lineage means beside it can, and is wide by construction); "
            "'>' / '<': beyond the dense sizes."]


def cost_lines(rd: RunResults, rows: list[dict], key: str) -> list[str]:
    """Each arm's val loss on every corpus of data.val_corpora, per develop corpus (what development costs on the
    other corpora), at the step the primary loss is read at, mean over units."""
    names = list(rd.config.data.val_corpora)
    if not names:
        return []
    cells: dict = {}
    sizes = {c: _top([r for r in rows if r["unit"].corpus == c], "connectome") for c in {r["unit"].corpus for r in rows}}
    for r in rows:
        u = r["unit"]
        step = r["best_step"] if key == "best" and r["best_step"] is not None else rd.at(u, rd.final_step)
        res = rd.unit_evals.get(u, {}).get(step, {}).get("tasks", {}).get("val_loss")
        by = res.get("by_corpus") if isinstance(res, dict) else None
        if not isinstance(by, dict) or r["tokens"] != sizes[u.corpus]:
            continue
        group = (u.corpus, u.arm, corpora.evolved_on(rd.config, u))
        for n in names:
            if isinstance(by.get(n), dict) and isinstance(by[n].get("loss"), (int, float)):
                cells.setdefault(group, {}).setdefault(n, []).append(by[n]["loss"])
    if not cells:
        return []
    lines = ["| develop on | arm | evolved on | " + " | ".join(f"val loss on {n}" for n in names) + " | units |",
             "|---|---|---|" + "---|" * len(names) + "---|"]
    for (dv, arm, ev), per in cells.items():
        vals = [f"{np.mean(per[n]):.4f}" if n in per else "—" for n in names]
        lines.append(f"| {dv} | {arms.label(arm)} | {ev or '—'} | " + " | ".join(vals) + f" | {len(next(iter(per.values())))} |")
    return lines


def transfer_section(rd: RunResults, out: Path) -> list[str]:
    """The section's lines (empty unless the study develops on named corpora: develop.corpora)."""
    if not rd.config.develop.corpora:
        return []
    rows, key = sweep_rows(rd), primary(rd)
    if not rows:
        return ["## Transfer", "", "*(no developed units yet)*", ""]
    recs = transfer_records(rd, rows, key)
    present = sorted({r["unit"].arm for r in rows})
    refs = [r for r in REFERENCES if r in present]
    drawn = figure_lines([Figure("transfer", "transfer benefits", partial(fig_transfer, recs, refs))], out, TRANSFER)
    cost = cost_lines(rd, rows, key)
    return ["## Transfer: evolved on one corpus, developed on another", "",
            *(f"- {line}" for line in corpora.describe(rd.config)), "",
            f"Each row: the connectome of the lineages evolved on one corpus, developed on another, at "
            f"{_top(rows, 'connectome'):,} developmental tokens; {NAME[key]} on the develop corpus's val split. "
            "Benefits: reference − connectome (positive: the connectome is better), paired by lineage and seed (dense "
            "and the inherit reference by seed), t interval over lineage means (df = lineages − 1); ¹ one lineage: "
            "the interval is over its seeds and holds no lineage variance. Share: the foreign connectome's benefit "
            "over random divided by the in-domain connectome's on the same corpus (no interval: the in-domain "
            "reference is one evolve corpus's lineages).", "", *table_lines(recs, key, present), "", *drawn,
            "### Data multiplier on each develop corpus", "", *multiplier_lines(rd, rows, key), "",
            *(["### What development costs on the other corpora", "",
               "Val loss on each corpus of data.val_corpora at the step the primary loss is read at, mean over the "
               "units (seeds × lineages) of each group:", "", *cost, ""] if cost else [])]
