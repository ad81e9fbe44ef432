"""The report's sweep section: one row per developed unit, the bottleneck frontier (loss and the other
frontier metrics against connectome bits), data efficiency, the data multiplier and lineage spread."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..connectome import arms
from ..core import axes
from ..evals.registry import Metric, logged_metric, tasks
from ..pipeline.sweep import lineages
from .figures import plt_module, save
from .results import RunData, bits_record, headline_metrics
from .sweep_math import all_out_of_range, data_multiplier, headline, headline_size
from .tables import mean_se


def frontier_metrics(rd: RunData) -> list[tuple[str, Metric]]:
    """The metrics drawn against connectome size besides the loss (``figures`` holds "frontier")."""
    logged = logged_metric()
    return [(t, m) for t, m in headline_metrics(rd.config) if "frontier" in m.figures and (t, m) != logged]


def sweep_rows(rd: RunData) -> list[dict]:
    """One row per developed unit: its axes, tokens, connectome size in bits (its lineage's generation;
    None for dense), final val loss (the final step's evaluation, else the last logged), the best logged
    val loss, and each frontier metric (by label) when evaluated."""
    cfg, logged = rd.config, logged_metric()
    field = tasks()[logged[0]].logged if logged else None
    rows = []
    for u in rd.units:
        curve = [r[field] for r in rd.unit_metrics[u] if isinstance(r.get(field), (int, float))]
        bits = None
        if arms.ARMS[u.arm].needs_connectome:
            rec = bits_record(rd.layout.lineage(u.lineage), rd.connectome_generation(u))
            bits = rec["total"] if rec is not None else None
        final = rd.unit_metric(u, rd.final_step, *logged) if logged else None
        row = {"unit": u, "tokens": u.tokens or cfg.data.small_tokens, "bits": bits,
               "generation": rd.connectome_generation(u), "final": final if final is not None else (curve[-1] if curve else None),
               "best": min(curve) if curve else None}
        row.update({m.label: rd.unit_metric(u, rd.final_step, t, m) for t, m in frontier_metrics(rd)})
        rows.append(row)
    return [r for r in rows if r["final"] is not None]


def _groups(rows: list[dict], key) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(-1 if x is None else x for x in kv[0][1:])))


def fig_frontier(rows: list[dict], others: list[Metric], out: Path) -> Path | None:
    """Final val loss (and reading-times r when evaluated) against the connectome's size in bits
    (structured file, log x), mean +- s.e. over seeds and lineages: one panel per data size (rows:
    metrics), one line per arm through its generations in order of size, each point labelled with
    its generation; dense (no connectome: 0 bits) is the horizontal reference in each panel."""
    if not any(r["bits"] for r in rows):
        return None
    plt = plt_module()
    metrics = [("final", "final val loss (nats)")] + [(m.label, m.label) for m in others
                                                      if any(r[m.label] is not None for r in rows)]
    sizes = sorted({r["tokens"] for r in rows})
    fig, axes = plt.subplots(len(metrics), len(sizes), figsize=(3.6 * len(sizes) + 0.6, 3.4 * len(metrics)),
                             squeeze=False, sharey="row")
    for i, (key, ylabel) in enumerate(metrics):
        for j, n in enumerate(sizes):
            ax = axes[i][j]
            xs = set()
            for (arm,), rs in _groups([r for r in rows if r["tokens"] == n], lambda r: (r["unit"].arm,)).items():
                xs.update(_frontier_line(ax, arm, rs, key))
            ax.set_xscale("log")
            ax.minorticks_off()  # the sizes span well under a decade: label the connectomes' own sizes instead
            ax.set_xticks(sorted(xs), [f"{x / 1e6:.3g}M" for x in sorted(xs)], fontsize=7, rotation=45)
            ax.set_title(f"{n:,} developmental tokens", fontsize=9)
            ax.set_xlabel("connectome size (bits, structured code; log)" if i == len(metrics) - 1 else "")
            ax.set_ylabel(ylabel if j == 0 else "")
    axes[0][0].legend(fontsize=7)
    return save(fig, out / "frontier.png")


def _frontier_line(ax, arm: str, rs: list[dict], key: str) -> list[float]:
    """One arm's points on a frontier panel: mean +- s.e. per generation, or dense's reference line;
    returns the x positions (bits) drawn."""
    if not arms.ARMS[arm].needs_connectome:
        m, _, k = mean_se([r[key] for r in rs])
        if k:
            ax.axhline(m, ls="--", color=arms.color(arm), label=arms.label(arm))
        return []
    pts = []
    for (_, g), grp in _groups(rs, lambda r: (arm, r["generation"])).items():
        m, se, k = mean_se([r[key] for r in grp])
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


def fig_data_efficiency(rows: list[dict], out: Path) -> Path | None:
    """Final val loss against developmental tokens (log x) per arm at the last generation, seed s.e. bars."""
    sizes = {r["tokens"] for r in rows}
    if len(sizes) < 2:
        return None
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    last = max(r["generation"] for r in rows)
    for (arm,), rs in _groups([r for r in rows if r["generation"] == last], lambda r: (r["unit"].arm,)).items():
        per = _groups(rs, lambda r: (arm, r["tokens"]))
        ms = [mean_se([r["final"] for r in g]) for g in per.values()]
        ax.errorbar([n for _, n in per], [m for m, _, _ in ms], yerr=[0 if math.isnan(s) else s for _, s, _ in ms],
                    marker="o", capsize=3, color=arms.color(arm), label=arms.label(arm))
    ax.set_xscale("log")
    ax.minorticks_off()  # label the sizes measured, not a decade grid
    ax.set_xticks(sorted(sizes), [f"{n:,}" for n in sorted(sizes)], fontsize=8)
    ax.set_xlabel("developmental tokens (log)")
    ax.set_ylabel("final val loss (nats)")
    ax.set_title(f"connectome arms from generation {last}", fontsize=9)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save(fig, out / "data_efficiency.png")


def multiplier_lines(rows: list[dict]) -> list[str]:
    """The data multiplier per size (sweep_math) of the last generation's connectome against dense,
    each seed's loss averaged over lineages, with its seed bootstrap CI, on the final val loss (the
    headline) and on the best logged one (small sets over-fit under equal steps; 'best' is the loss
    early stopping would keep), and the headline sentence."""
    last = max(r["generation"] for r in rows)
    sel = {arm: [r for r in rows if r["unit"].arm == arm and (arm == "dense" or r["generation"] == last)]
           for arm in ("dense", "connectome")}
    sizes = sorted({r["tokens"] for r in rows})
    seeds = sorted({r["unit"].seed for r in sel["dense"]} & {r["unit"].seed for r in sel["connectome"]})
    mults = {}
    for key in ("final", "best"):
        table = {arm: [[np.mean([r[key] for r in rs if r["tokens"] == n and r["unit"].seed == s] or [np.nan])
                        for s in seeds] for n in sizes] for arm, rs in sel.items()}
        if len(sizes) < 2 or not seeds or not all(np.isfinite(table[a]).all() for a in table):
            return ["*(no data multiplier: it needs the dense and connectome arms at two or more sizes with the same seeds)*"]
        mults[key] = data_multiplier(sizes, table["dense"], table["connectome"])
    bits = np.mean([r["bits"]["structured_file"] for r in sel["connectome"] if r["bits"]])
    cell = lambda m: f"{'' if m.relation == '=' else m.relation}{m.m:.3g} | {_ci_cell(m)}"  # noqa: E731
    lines = [f"Connectome of generation {last} against NoConnectome (dense), {len(seeds)} seeds per arm and size; "
             "'>' and '<' are bounds where the dense curve does not reach the loss within the sizes measured.", "",
             "| tokens | multiplier, final val loss | 95% CI | multiplier, best logged val loss | 95% CI |",
             "|---|---|---|---|---|"]
    lines += [f"| {f.tokens:,} | {cell(f)} | {cell(b)} |" for f, b in zip(mults["final"], mults["best"])]
    return lines + ["", f"**Headline:** {headline(bits, headline_size(mults['final']))}."]


def _ci_cell(m) -> str:
    """A multiplier's interval for the table: 'lo–hi', or where every resample is out of range, the side."""
    side = all_out_of_range(m)
    return f"all resamples {side}" if side else f"{m.ci[0]:.3g}–{m.ci[1]:.3g}"


def lineage_lines(rows: list[dict]) -> list[str]:
    """Between- vs within-lineage spread of the connectome arm's final val loss, per generation and size:
    per-lineage means +- s.e. over seeds and a nested (one-way) variance decomposition."""
    conn = [r for r in rows if r["unit"].arm == "connectome" and r["unit"].lineage is not None]
    if len({r["unit"].lineage for r in conn}) < 2:
        return []
    lines = ["| generation | tokens | per-lineage mean ± s.e. | between-lineage var | within-lineage var |", "|---|---|---|---|---|"]
    for (_, g, n), rs in _groups(conn, lambda r: ("c", r["generation"], r["tokens"])).items():
        per = _groups(rs, lambda r: ("l", r["unit"].lineage))
        stats = {lin: mean_se([r["final"] for r in v]) for (_, lin), v in per.items()}
        means = [m for m, _, _ in stats.values()]
        within = [np.var([r["final"] for r in v], ddof=1) for v in per.values() if len(v) > 1]
        cells = "; ".join(f"L{lin} {m:.4f} ± {se:.4f}" for lin, (m, se, _) in stats.items())
        lines.append(f"| {g} | {n:,} | {cells} | {np.var(means, ddof=1):.2e} | "
                     f"{np.mean(within) if within else float('nan'):.2e} |")
    return lines


def generation_size_lines(rd: RunData) -> list[str]:
    """Each lineage's generations with their connectome size in bits (evolve/gen_XX/connectome_bits.json)."""
    lines = ["| lineage | generation | density | i.i.d. bound | ANS file | structured file |", "|---|---|---|---|---|---|"]
    for lin in lineages(rd.config):
        layout = rd.layout.lineage(lin)
        for g in layout.generations_present():
            rec = bits_record(layout, g)
            if rec is not None:  # damaged or absent: left out
                t = rec["total"]
                lines.append(f"| {'—' if lin is None else lin} | {g} | {rec['density']:.4f} | {t['bound']:,.0f} | "
                             f"{t['ans_file']:,} | {t['structured_file']:,} |")
    return lines


def sweep_section(rd: RunData, out: Path) -> list[str]:
    """The report's sweep section (empty for a plain study): sizes, figures, multiplier, lineages."""
    if not axes.is_sweep(rd.config):
        return []
    rows = sweep_rows(rd)
    if not rows:
        return ["## Sweep", "", "*(no developed units yet)*", ""]
    lines = ["## Sweep", "", "Connectome sizes in bits per generation:", "", *generation_size_lines(rd), "",
             "Every size trains the same steps, so smaller sets are seen for more epochs; "
             "'best' is the lowest logged val loss, 'final' the final step's.", "",
             "| arm | seed | lineage | connectome of generation | tokens | connectome bits (bound / ANS file / structured file) "
             "| final val loss | best val loss |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b, u = r["bits"], r["unit"]
        size = f"{b['bound']:,.0f} / {b['ans_file']:,} / {b['structured_file']:,}" if b else "—"
        inherits = arms.ARMS[u.arm].needs_connectome
        lines.append(f"| {arms.label(u.arm)} | {u.seed} | {'—' if u.lineage is None else u.lineage} | "
                     f"{r['generation'] if inherits else '—'} | {r['tokens']:,} | {size} | {r['final']:.4f} | {r['best']:.4f} |")
    for name, fig in (("frontier", fig_frontier(rows, [m for _, m in frontier_metrics(rd)], out)),
                      ("data efficiency", fig_data_efficiency(rows, out))):
        lines += ["", f"### {name}", "", f"![{name}]({fig.name})" if fig else "*(not drawn: too few points)*"]
    lines += ["", "### Data multiplier", "", *multiplier_lines(rows)]
    lin = lineage_lines(rows)
    if lin:
        lines += ["", "### Lineages", "", *lin]
    return lines + [""]
