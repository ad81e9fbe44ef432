"""The report's sweep section: one row per developed unit, the bottleneck frontier (loss and the other
frontier metrics against connectome bits), data efficiency, the data multiplier and lineage spread."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..connectome import arms
from ..core import axes
from ..core.errors import UserError
from ..evals.registry import Metric, logged_metric
from ..pipeline.evolve import read_generation_record
from ..pipeline.plan import plan_gpt_config
from ..pipeline.sweep import evolutions
from .figures import plt_module, save
from .results import RunData, bits_record, headline_metrics
from .selection import selection_lines, unit_selection
from .sweep_math import all_out_of_range, data_multiplier, headline, headline_size
from .tables import mean_se


def frontier_metrics(rd: RunData) -> list[tuple[str, Metric]]:
    """The metrics drawn against connectome size besides the loss (``figures`` holds "frontier")."""
    logged = logged_metric()
    return [(t, m) for t, m in headline_metrics(rd.config) if "frontier" in m.figures and (t, m) != logged]


def sweep_rows(rd: RunData) -> list[dict]:
    """One row per developed unit: its axes, tokens, connectome size in bits (its lineage's generation;
    None for dense), its final and best val loss and best step, steps trained, cap and whether it was still
    improving at the cap (selection.unit_selection: every unit by one rule, the report slice where units
    keep their best step), and each frontier metric (by label) when evaluated. A unit without the primary
    loss yet is left out (selection.selection_lines names the finished ones)."""
    cfg, key = rd.config, primary(rd)
    rows = []
    for u in rd.units:
        bits = None
        if arms.ARMS[u.arm].needs_connectome:
            rec = bits_record(rd.layout.lineage(u.lineage, u.shape), rd.connectome_generation(u))
            bits = rec["total"] if rec is not None else None
        row = {"unit": u, "tokens": u.tokens or cfg.data.small_tokens, "bits": bits,
               "generation": rd.connectome_generation(u), **unit_selection(rd, u)}
        # the other frontier metrics at the step the primary loss is read at (primary())
        step = row["best_step"] if key == "best" and row["best_step"] is not None else rd.final_step
        row.update({m.label: rd.unit_metric(u, step, t, m) for t, m in frontier_metrics(rd)})
        rows.append(row)
    return [r for r in rows if r["final"] is not None and r[key] is not None]


def _groups(rows: list[dict], key) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(-1 if x is None else x for x in kv[0][1:])))


def fig_frontier(rows: list[dict], others: list[Metric], key: str, out: Path) -> Path | None:
    """Val loss (``key``: final or best logged; and the other frontier metrics when evaluated) against the
    connectome's size in bits (structured file, log x), mean +- s.e. over seeds and lineages: one panel per
    data size a connectome was developed at (rows: metrics), one line per arm through its generations in
    order of size, each point labelled with its generation; dense (no connectome: 0 bits) is the
    horizontal reference in each panel, and an accuracy's guessing rate a dotted grey line."""
    if not any(r["bits"] for r in rows):
        return None
    plt = plt_module()
    metrics = [(key, f"{'best logged' if key == 'best' else 'final'} val loss (nats)", None)] + \
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


def primary(rd: RunData) -> str:
    """The loss the multiplier and its figure read: early stopping's (best logged) when units keep their best
    step (develop.train.keep_best), else the final step's."""
    return "best" if rd.config.develop.train.keep_best else "final"


def _arm_table(rs: list[dict], key: str) -> tuple[list[int], list[int], list[list[float]]]:
    """(sizes, seeds, losses[size][seed]) of one arm's rows, each seed's loss averaged over lineages."""
    sizes = sorted({r["tokens"] for r in rs})
    seeds = sorted({r["unit"].seed for r in rs})
    table = [[np.mean([r[key] for r in rs if r["tokens"] == n and r["unit"].seed == s] or [np.nan]) for s in seeds]
             for n in sizes]
    return sizes, seeds, table


def multipliers(rows: list[dict], key: str, lineage=None) -> list | None:
    """sweep_math's multiplier of the last generation's connectome (one lineage's, or all pooled: each seed's
    loss averaged over lineages) against the dense curve, at every connectome size; None without two dense sizes."""
    last = max(r["generation"] for r in rows)
    dense = [r for r in rows if r["unit"].arm == "dense"]
    conn = [r for r in rows if r["unit"].arm == "connectome" and r["generation"] == last
            and (lineage is None or r["unit"].lineage == lineage)]
    (d_sizes, _, d_table), (c_sizes, _, c_table) = _arm_table(dense, key), _arm_table(conn, key)
    if len(d_sizes) < 2 or not c_sizes or not np.isfinite(d_table).all() or not np.isfinite(c_table).all():
        return None
    return data_multiplier(d_sizes, d_table, c_table, connectome_sizes=c_sizes)


def fig_data_efficiency(rows: list[dict], key: str, out: Path) -> Path | None:
    """Val loss (``key``: final or best logged) against developmental tokens (log x) per arm at the last
    generation, seed s.e. bars; the multiplier drawn where it is read, an arrow from the connectome's point
    across to the dense curve at the same loss, labelled with the factor."""
    sizes = {r["tokens"] for r in rows}
    if len(sizes) < 2:
        return None
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    last = max(r["generation"] for r in rows)
    for (arm,), rs in _groups([r for r in rows if r["generation"] == last], lambda r: (r["unit"].arm,)).items():
        per = _groups(rs, lambda r: (arm, r["tokens"]))
        ms = [mean_se([r[key] for r in g]) for g in per.values()]
        ax.errorbar([n for _, n in per], [m for m, _, _ in ms], yerr=[0 if math.isnan(s) else s for _, s, _ in ms],
                    marker="o", capsize=3, color=arms.color(arm), label=arms.label(arm))
    for m, (_, loss) in zip(multipliers(rows, key) or [], _conn_means(rows, key, last)):
        if m.relation == "=":
            ax.annotate("", xy=(m.tokens * m.m, loss), xytext=(m.tokens, loss),
                        arrowprops={"arrowstyle": "->", "color": "gray", "lw": 1})
            ax.annotate(f"{m.m:.2g}x", (np.sqrt(m.tokens * m.tokens * m.m), loss), textcoords="offset points",
                        xytext=(0, 4), ha="center", fontsize=7, color="dimgray")
    ax.set_xscale("log")
    ax.minorticks_off()  # label the sizes measured, not a decade grid
    ax.set_xticks(sorted(sizes), [f"{n:,}" for n in sorted(sizes)], fontsize=8, rotation=30)
    ax.set_xlabel("developmental tokens (log)")
    ax.set_ylabel(f"{'best logged' if key == 'best' else 'final'} val loss (nats)")
    ax.set_title(f"connectome arms from generation {last}" + ("; arrows: the data multiplier" if key else ""), fontsize=9)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save(fig, out / "data_efficiency.png")


def _conn_means(rows: list[dict], key: str, generation: int) -> list[tuple[int, float]]:
    """(tokens, mean loss) of the connectome arm at each size, in size order."""
    conn = _groups([r for r in rows if r["unit"].arm == "connectome" and r["generation"] == generation],
                   lambda r: ("c", r["tokens"]))
    return [(n, float(np.mean([r[key] for r in g]))) for (_, n), g in conn.items()]


def multiplier_lines(rows: list[dict], key: str) -> list[str]:
    """The data multiplier per connectome size on ``key`` (the primary loss: best logged when units keep their
    best step, else final) with its seed bootstrap CI, the other loss beside it, per lineage and pooled when
    there are several, and the headline sentence (on the primary loss)."""
    other = "final" if key == "best" else "best"
    found = {k: multipliers(rows, k) for k in (key, other)}
    if found[key] is None or found[other] is None:
        return ["*(no data multiplier: it needs the dense arm at two or more sizes and the connectome at one or more)*"]
    last = max(r["generation"] for r in rows)
    conn = [r for r in rows if r["unit"].arm == "connectome" and r["generation"] == last]
    bits = np.mean([r["bits"]["structured_file"] for r in conn if r["bits"]])
    name = {"final": "final val loss", "best": "best logged val loss"}
    cell = lambda m: f"{'' if m.relation == '=' else m.relation}{m.m:.3g} | {_ci_cell(m)}"  # noqa: E731
    d = found[key][0].seeds[0]
    lines = [f"Connectome of generation {last} against NoConnectome (dense), {d} dense seeds per size and "
             f"{found[key][0].seeds[1]} connectome seeds per size (each seed's loss averaged over lineages); "
             "'>' and '<' are bounds where the dense curve does not reach the loss within the sizes measured.", "",
             f"| tokens | multiplier, {name[key]} | 95% CI | multiplier, {name[other]} | 95% CI |", "|---|---|---|---|---|"]
    lines += [f"| {a.tokens:,} | {cell(a)} | {cell(b)} |" for a, b in zip(found[key], found[other])]
    lines += _lineage_multiplier_lines(rows, key, cell)
    return lines + ["", f"**Headline:** {headline(bits, headline_size(found[key]))}."]


def _lineage_multiplier_lines(rows: list[dict], key: str, cell) -> list[str]:
    """The multiplier per lineage beside the pooled one (the same dense curve for every lineage)."""
    lins = sorted({r["unit"].lineage for r in rows if r["unit"].lineage is not None})
    if len(lins) < 2:
        return []
    per = {lin: multipliers(rows, key, lineage=lin) for lin in lins}
    pooled = multipliers(rows, key)
    lines = ["", f"Per lineage ({'best logged' if key == 'best' else 'final'} val loss):", "",
             "| tokens | " + " | ".join(f"lineage {lin} | 95% CI" for lin in lins) + " | pooled | 95% CI |",
             "|---|" + "---|---|" * (len(lins) + 1)]
    for i, m in enumerate(pooled):
        lines.append(f"| {m.tokens:,} | " + " | ".join(cell(per[lin][i]) for lin in lins) + f" | {cell(m)} |")
    return lines


def _ci_cell(m) -> str:
    """A multiplier's interval for the table: 'lo–hi', or where every resample is out of range, the side."""
    side = all_out_of_range(m)
    return f"all resamples {side}" if side else f"{m.ci[0]:.3g}–{m.ci[1]:.3g}"


def lineage_lines(rows: list[dict], key: str = "final") -> list[str]:
    """Between- vs within-lineage spread of the connectome arm's val loss (``key``), per generation and size:
    per-lineage means +- s.e. over seeds and a nested (one-way) variance decomposition."""
    conn = [r for r in rows if r["unit"].arm == "connectome" and r["unit"].lineage is not None]
    if len({r["unit"].lineage for r in conn}) < 2:
        return []
    lines = ["| generation | tokens | per-lineage mean ± s.e. | between-lineage var | within-lineage var |", "|---|---|---|---|---|"]
    for (_, g, n), rs in _groups(conn, lambda r: ("c", r["generation"], r["tokens"])).items():
        per = _groups(rs, lambda r: ("l", r["unit"].lineage))
        stats = {lin: mean_se([r[key] for r in v]) for (_, lin), v in per.items()}
        means = [m for m, _, _ in stats.values()]
        within = [np.var([r[key] for r in v], ddof=1) for v in per.values() if len(v) > 1]
        cells = "; ".join(f"L{lin} {m:.4f} ± {se:.4f}" for lin, (m, se, _) in stats.items())
        lines.append(f"| {g} | {n:,} | {cells} | {np.var(means, ddof=1):.2e} | "
                     f"{np.mean(within) if within else float('nan'):.2e} |")
    return lines


def generation_size_lines(rd: RunData) -> list[str]:
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


def unit_lines(rd: RunData, rows: list[dict]) -> list[str]:
    """The table of every developed unit: its axes, connectome size, final and best val loss (on the report
    slice where units keep their best step), the best step, steps trained of the cap, whether it was still
    improving at the cap, and the other frontier metrics at the primary step."""
    shaped, kept = bool(rd.config.model.shapes), rd.config.develop.train.keep_best
    others = [m for _, m in frontier_metrics(rd) if any(r[m.label] is not None for r in rows)]
    at, sliced = (" at the best step", " (report slice)") if kept else ("", "")
    head = (["arm", "seed"] + (["shape"] if shaped else []) + ["lineage", "connectome of generation", "tokens",
            "connectome bits (bound / ANS file / structured file)", f"final val loss{sliced}", f"best val loss{sliced}",
            "best step", "steps trained / cap", "still improving at the cap"] + [f"{m.label}{at}" for m in others])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        b, u = r["bits"], r["unit"]
        cells = [arms.label(u.arm), str(u.seed)] + ([u.shape or "—"] if shaped else []) + [
            "—" if u.lineage is None else str(u.lineage), str(r["generation"]) if arms.ARMS[u.arm].needs_connectome else "—",
            f"{r['tokens']:,}", f"{b['bound']:,.0f} / {b['ans_file']:,} / {b['structured_file']:,}" if b else "—",
            _loss(r["final"]), _loss(r["best"]), "—" if r["best_step"] is None else str(r["best_step"]),
            f"{r['steps_trained']} / {r['cap']}", "**yes**" if r["still_improving"] else "no"] + \
            ["—" if r[m.label] is None else f"{r[m.label]:.4f}" for m in others]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _loss(x) -> str:
    return "—" if x is None else f"{x:.4f}"


def sweep_section(rd: RunData, out: Path) -> list[str]:
    """The report's sweep section (empty for a plain study): sizes, figures, multiplier, lineages, shapes."""
    if not axes.is_sweep(rd.config):
        return []
    rows = sweep_rows(rd)
    if not rows:
        return ["## Sweep", "", "*(no developed units yet)*", ""]
    key = primary(rd)
    lines = ["## Sweep", "", "Connectome sizes in bits per generation:", "", *generation_size_lines(rd), "",
             *selection_lines(rd, rows), "", *unit_lines(rd, rows)]
    for name, fig in (("frontier", fig_frontier(rows, [m for _, m in frontier_metrics(rd)], key, out)),
                      ("data efficiency", fig_data_efficiency(rows, key, out))):
        lines += ["", f"### {name}", "", f"![{name}]({fig.name})" if fig else "*(not drawn: too few points)*"]
    lines += ["", "### Data multiplier", "", *multiplier_lines(rows, key)]
    lin = lineage_lines(rows, key)
    if lin:
        lines += ["", "### Lineages", "", *lin]
    if rd.config.model.shapes:
        lines += ["", "### Model shapes", "", *shape_section(rd, rows, key, out)]
    return lines + [""]


def _shape_bounds(rd: RunData) -> dict:
    """{shape: dense-on-large val loss}: generation 0 of the shape's first lineage (a dense model trained on the
    large split, scored on the same validation windows as every unit)."""
    out = {}
    for shape, lin in evolutions(rd.config):
        try:
            rec = read_generation_record(rd.layout.lineage(lin, shape), 0)
        except UserError:  # damaged: no bound drawn for it (the report's evolution section names the file)
            continue
        if shape not in out and rec is not None and rec.get("val_loss") is not None:
            out[shape] = float(rec["val_loss"])
    return out


def shape_section(rd: RunData, rows: list[dict], key: str, out: Path) -> list[str]:
    """Model shapes side by side: each shape's weights, its connectomes' active weights and size, the
    developed loss of its connectome and control arms, its dense arm and its dense-on-large bound, so a
    wider or deeper model pruned to a smaller one's active weights can be set against that smaller model."""
    bounds = _shape_bounds(rd)
    lines = [f"Val loss: {'best logged' if key == 'best' else 'final'}, mean ± s.e. over seeds and lineages; the "
             "dense-on-large bound is generation 0 of the shape's evolution (trained dense on the large split).", "",
             "| shape | weights | arm | generation | active weights | connectome bits (structured) | val loss | "
             "dense at this shape | dense-on-large bound |", "|---|---|---|---|---|---|---|---|---|"]
    for shape in rd.config.model.shapes:
        weights = rd.config.model.gpt_config(vocab_size=plan_gpt_config(rd.config).vocab_size, shape=shape).num_weights
        mine = [r for r in rows if r["unit"].shape == shape]
        dense = mean_se([r[key] for r in mine if not arms.ARMS[r["unit"].arm].needs_connectome])
        for (arm, g), grp in _groups([r for r in mine if r["bits"]], lambda r: (r["unit"].arm, r["generation"])).items():
            m, se, _ = mean_se([r[key] for r in grp])
            bits = np.mean([r["bits"]["structured_file"] for r in grp])
            alive = _alive(rd, grp[0]["unit"])
            lines.append(f"| {shape} | {weights:,} | {arms.label(arm)} | {g} | {alive if alive is None else f'{alive:,}'} | "
                         f"{bits:,.0f} | {m:.4f} ± {0 if math.isnan(se) else se:.4f} | {dense[0]:.4f} | "
                         f"{bounds.get(shape, float('nan')):.4f} |")
    fig = fig_shapes(rows, key, bounds, out)
    return lines + ["", f"![model shapes]({fig.name})" if fig else "*(not drawn: too few points)*"]


def _alive(rd: RunData, unit) -> int | None:
    rec = bits_record(rd.layout.lineage(unit.lineage, unit.shape), rd.connectome_generation(unit))
    return rec.get("alive") if rec is not None else None


def fig_shapes(rows: list[dict], key: str, bounds: dict, out: Path) -> Path | None:
    """The frontier across shapes: developed val loss against connectome size in bits (log x), one curve per
    shape through its generations (the connectome arm solid, random dashed), each shape's dense arm dotted and
    its dense-on-large bound dash-dotted, in the shape's colour."""
    conn = [r for r in rows if r["bits"]]
    if not conn:
        return None
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    shapes = list(dict.fromkeys(r["unit"].shape for r in rows))
    colours = plt.get_cmap("tab10")
    for i, shape in enumerate(shapes):
        c = colours(i % 10)
        mine = [r for r in rows if r["unit"].shape == shape]
        for arm, style in (("connectome", "-"), ("random", "--"), ("mask_only", ":")):
            pts = []
            for (_, g), grp in _groups([r for r in mine if r["unit"].arm == arm and r["bits"]],
                                        lambda r: (arm, r["generation"])).items():
                m, se, _ = mean_se([r[key] for r in grp])
                pts.append((np.mean([r["bits"]["structured_file"] for r in grp]), m, 0 if math.isnan(se) else se, g))
            if pts:
                pts.sort()
                x, y, e, gens = zip(*pts)
                ax.errorbar(x, y, yerr=e, ls=style, marker="o", capsize=3, color=c, label=f"{shape} {arms.label(arm)}")
                if arm == "connectome":
                    for xi, yi, g in zip(x, y, gens):
                        ax.annotate(f"g{g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7, color=c)
        dense, _, k = mean_se([r[key] for r in mine if r["unit"].arm == "dense"])
        if k:
            ax.axhline(dense, ls=":", color=c, lw=1, label=f"{shape} NoConnectome")
        if shape in bounds:
            ax.axhline(bounds[shape], ls="-.", color=c, lw=1, label=f"{shape} dense on large (gen 0)")
    ax.set_xscale("log")
    ax.set_xlabel("connectome size (bits, structured code; log)")
    ax.set_ylabel(f"{'best logged' if key == 'best' else 'final'} val loss (nats)")
    ax.set_title("The frontier across model shapes", fontsize=9)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save(fig, out / "shapes.png")
