"""The report's figures, one way to make them: each :class:`Figure` has a name (its PNG), a caption and a
drawing function; :func:`figure_lines` draws figures, saves each through :func:`save` as ``<name>.png`` and
embeds it under its caption (or says why it is absent) as the section's :class:`Embed` lays it out. The
run's figures (:func:`report_figures`), the breakdowns, the sweep's and the anatomy's all go this way.

Which task results a figure draws comes from the task specs (``Metric.figures``, ``TaskSpec.layers``),
never from task names here: a task added as one module appears in the figures its metrics name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from ..connectome import arms
from ..connectome.codec import load_connectome
from ..core.atomic import atomic_write
from ..evals.registry import Metric, tasks
from ..pipeline.sweep import lineages, shapes
from ..training.validation import REPORT_LOSS, report_slice
from .results import RunResults, dig, headline_metrics
from .tables import mean_se


@dataclass(frozen=True)
class Figure:
    name: str  # the PNG's stem: drawn as <name>.png
    caption: str
    draw: Callable[[], object]  # the matplotlib figure, unsaved; None when there is nothing to draw


@dataclass(frozen=True)
class Embed:
    """How a section of report.md shows its figures: the lines of a drawn figure and of one not drawn, each a
    format string of {name}, {caption} and {path} (the PNG as report.md links it)."""

    drawn: tuple[str, ...]
    absent: tuple[str, ...] = ()


# the Figures section: each figure under its caption as a heading, one not drawn named in a list
REPORT = Embed(("### {caption}", "", "![{name}]({path})", ""), ("- {caption} *(not drawn: no results for it in this run)*",))


def plt_module():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def panel_grid(n: int, width: float, height: float, cols: int = 4):
    """(figure, n axes) laid out in rows of at most ``cols`` panels of ``width`` x ``height`` inches, so a figure
    of many panels stays readable when scaled to a page; the grid's unused cells are hidden."""
    plt = plt_module()
    ncols = max(1, min(n, cols))
    nrows = math.ceil(n / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    flat = list(grid.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


NEUTRAL = {"black", "gray", "grey", "k", "lightgray", "darkgray", "silver", "white"}


def _colours(ax) -> set[str]:
    """The distinct non-grey colours an axes draws its data in (lines, bars, markers)."""
    from matplotlib.colors import to_hex, to_rgba_array

    out = set()
    for artist in [*ax.lines, *ax.patches, *ax.collections]:
        getter = getattr(artist, "get_color", None) or getattr(artist, "get_facecolor", None)
        try:
            colours = to_rgba_array(getter()) if getter else []
        except (TypeError, ValueError):
            continue
        for c in colours[:8]:  # a scatter coloured per point (a colour map) is read through its colour bar
            if len(c) >= 3 and not (abs(c[0] - c[1]) < 0.02 and abs(c[1] - c[2]) < 0.02):  # greys: references
                out.add(to_hex(c[:3]))
    return out


def unreadable(fig) -> list[str]:
    """What a reader could not read in ``fig``: a panel without an x or a y label (a panel sharing its x axis
    with a labelled one needs none), or one whose several data colours no legend (its own or the figure's)
    or colour bar explains. tests/test_figures.py asserts this is empty for every figure the demo draws."""
    out = []
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    explained = bool(fig.legends) or len(fig.axes) > len(axes)
    for ax in axes:
        suptitle = getattr(fig, "_suptitle", None)
        name = ax.get_title() or (suptitle.get_text() if suptitle is not None else "")
        siblings = ax.get_shared_x_axes().get_siblings(ax)
        if not ax.get_xlabel() and not any(s.get_xlabel() for s in siblings):
            out.append(f"{name!r}: no x label")
        if not ax.get_ylabel():
            out.append(f"{name!r}: no y label")
        if len(_colours(ax)) > 1 and ax.get_legend() is None and not explained:
            out.append(f"{name!r}: {len(_colours(ax))} colours and no legend")
    return out


def save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    # through a temporary, like every output: never written through a link planted at the figure's name
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png"))
    plt.close(fig)
    return path


def _metrics_in(rd: RunResults, figure: str) -> list[tuple[str, Metric]]:
    return [(t, m) for t, m in headline_metrics(rd.config) if figure in m.figures]


def _titles(items: list[tuple[str, Metric]]) -> str:
    """'A', 'A and B', 'A, B and C': the tasks of a figure, for its caption."""
    names = list(dict.fromkeys(tasks()[t].title or t for t, _ in items))
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _arm_curve(rd: RunResults, arm: str, field: str):
    """(steps, mean, min, max) over seeds of one logged field of an arm's development curves; None when unlogged."""
    curves = {}
    for s in rd.seeds:
        for rec in rd.dev_metrics[(arm, s)]:
            if rec.get(field) is not None:
                curves.setdefault(rec["step"], []).append(rec[field])
    if not curves:
        return None
    steps = sorted(curves)
    return (steps, np.array([np.mean(curves[k]) for k in steps]), np.array([np.min(curves[k]) for k in steps]),
            np.array([np.max(curves[k]) for k in steps]))


def draw_loss(rd: RunResults):
    """Development curves per arm (mean over seeds, min..max band) and the evolution's generations. Where units
    select a step (keep_best), the report slice is drawn solid with the band and the selection slice (the
    windows the step was chosen on) dashed in the same colour: the gap between them is selection's optimism."""
    plt = plt_module()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    both = False
    for arm in rd.arms:
        sel, rep = _arm_curve(rd, arm, "val_loss"), _arm_curve(rd, arm, REPORT_LOSS)
        main = rep or sel
        if main is None:
            continue
        steps, m, lo, hi = main
        ax1.plot(steps, m, label=f"{arms.label(arm)} (n={len(rd.seeds)})", color=arms.color(arm))
        ax1.fill_between(steps, lo, hi, alpha=0.2, color=arms.color(arm))
        if rep is not None and sel is not None:
            both = True
            ax1.plot(sel[0], sel[1], ls="--", lw=1, color=arms.color(arm))
    if rd.upper_bound is not None:
        ax1.axhline(rd.upper_bound, ls="--", color="k", lw=1, label="dense on large (gen 0, selection slice)" if both
                    else "dense on large (gen 0)")
    ax1.set_xlabel("inner-loop step")
    ax1.set_ylabel("validation loss (nats/token)")
    if both:
        ax1.set_title("Development: mean over seeds, band = min..max\nsolid: report slice, dashed: selection slice "
                      "(the best step is chosen on it)", fontsize=10)
    else:
        ax1.set_title("Development: mean over seeds, band = min..max")
    if ax1.get_legend_handles_labels()[0]:  # no curves before the first development step is logged
        ax1.legend(fontsize=8)
    offset = 0
    for g, recs in enumerate(rd.gen_metrics):
        pts = [(r["step"], r["val_loss"]) for r in recs if r.get("val_loss") is not None]
        if pts:
            xs, ys = zip(*pts)
            ax2.plot([offset + x for x in xs], ys, marker=".", label=f"gen {g}")
            offset += max(xs)
    ax2.set_xlabel("outer-loop step (generations concatenated)")
    ax2.set_ylabel("validation loss (nats/token)")
    ax2.set_title("Evolution: each generation starts pruned and re-initialised")
    if rd.gen_metrics:
        ax2.legend(fontsize=7, ncol=2)
    return fig


def draw_accuracy(rd: RunResults):
    """Every accuracy at the final step, one panel each: bars per arm with the seeds' s.e., chance dotted."""
    items = [(t, m) for t, m in _metrics_in(rd, "accuracy")
             if any(rd.metric(a, s, rd.final_step, t, m) is not None for a in rd.arms for s in rd.seeds)]
    if not items:
        return None
    fig, axes = panel_grid(len(items), 3.2, 3.3)
    for ax, (task, metric) in zip(axes, items):
        for i, arm in enumerate(rd.arms):
            m, se, n = mean_se([rd.metric(arm, s, rd.final_step, task, metric) for s in rd.seeds])
            ax.bar(i, m, yerr=0 if math.isnan(se) else se, color=arms.color(arm), capsize=4, label=arms.label(arm))
        ax.set_xticks(range(len(rd.arms)), [arms.label(a) for a in rd.arms], rotation=20, fontsize=8)
        if metric.chance is not None:
            ax.axhline(metric.chance, ls=":", color="gray", lw=1, label="chance")
        ax.set_title(metric.label, fontsize=9)
        ax.set_xlabel("arm", fontsize=8)
        ax.set_ylabel("accuracy (fraction correct)", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8, ncol=len(labels))
    chances = {m.chance for _, m in items}
    chance = f"chance {chances.pop():g}" if len(chances) == 1 else "chance"
    fig.suptitle(f"Final step, mean ± s.e. over seeds (dotted: {chance})", fontsize=10, x=0.02, ha="left")
    return fig


def _steps_panel(rd: RunResults, ax, task: str, metric: Metric) -> bool:
    """One metric across the kept steps per arm, each arm's best step circled; whether any was drawn."""
    drew = False
    for arm in rd.arms:
        steps = sorted({st for s in rd.seeds for st in rd.evals.get((arm, s), {})})
        pts = []
        for st in steps:
            m, se, n = mean_se([rd.metric(arm, s, st, task, metric) for s in rd.seeds])
            if n:
                pts.append((st, m, se))
        if not pts:
            continue
        drew = True
        xs, ms, ses = zip(*pts)
        ses = [0 if math.isnan(e) else e for e in ses]
        ax.errorbar(xs, ms, yerr=ses, marker="o", capsize=3, label=arms.label(arm), color=arms.color(arm))
        if not any(math.isfinite(m) for m in ms):
            continue  # no step to circle: a NaN is never the best (np.argmin would pick it)
        k = int(np.nanargmax(ms) if metric.higher_is_better else np.nanargmin(ms))
        ax.scatter([xs[k]], [ms[k]], s=160, facecolors="none", edgecolors=arms.color(arm), linewidths=2)
    ax.set_xlabel("inner-loop step")
    ax.set_ylabel(metric.tick or metric.label)
    return drew


def draw_over_steps(rd: RunResults, task: str, metrics: list[Metric]):
    """A task's metrics across the kept steps per arm (mean ± s.e. over seeds), one panel each side by side,
    each arm's best step circled."""
    plt = plt_module()
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4), squeeze=False)
    drawn = [_steps_panel(rd, ax, task, metric) for ax, metric in zip(axes[0], metrics)]
    if not any(drawn):
        plt.close(fig)
        return None
    for ax, drew in zip(axes[0], drawn):
        if drew:
            ax.legend(fontsize=8)
    title = f"{tasks()[task].title or task} over development (circle = peak)"
    if len(metrics) == 1:
        axes[0][0].set_title(title)
    else:
        fig.suptitle(title)
    return fig


def _layer_curves(rd: RunResults, ax, task: str, path: tuple[str, ...]) -> bool:
    """Per-layer scores at the final step per arm (mean ± s.e. over seeds); whether any was drawn."""
    drew = False
    for arm in rd.arms:
        per_seed = []
        for s in rd.seeds:
            r = rd.task_result(arm, s, rd.final_step, task)
            layers = dig_list(r, path)
            if layers is not None:
                per_seed.append([dig(x, ()) if not isinstance(x, dict) else dig(x, ("r",)) for x in layers])
        if not per_seed:
            continue
        drew = True
        arr = np.array(per_seed, dtype=float)
        m = arr.mean(0)
        se = arr.std(0, ddof=1) / math.sqrt(len(arr)) if len(arr) > 1 else np.zeros_like(m)
        ax.errorbar(range(len(m)), m, yerr=se, marker="o", capsize=3, label=arms.label(arm), color=arms.color(arm))
    return drew


def dig_list(result, path: tuple[str, ...]) -> list | None:
    for key in path:
        if not isinstance(result, dict):
            return None
        result = result.get(key)
    return result if isinstance(result, list) else None


def _unit_bars(rd: RunResults, ax, items: list[tuple[str, Metric]]) -> bool:
    """Unit-selection scores at the final step: a group of bars per metric, one bar per arm."""
    drew = False
    width = 0.8 / max(1, len(rd.arms))
    for i, arm in enumerate(rd.arms):
        for j, (task, metric) in enumerate(items):
            m, se, n = mean_se([rd.metric(arm, s, rd.final_step, task, metric) for s in rd.seeds])
            if n:
                drew = True
                ax.bar(j + i * width, m, width, yerr=0 if math.isnan(se) else se, capsize=3, color=arms.color(arm),
                       label=arms.label(arm) if j == 0 else None)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(items))], [m.tick or m.label for _, m in items])
    return drew


def draw_layers(rd: RunResults, task: str, units: list[tuple[str, Metric]]):
    """A task's per-layer encoding scores beside the unit-selection scores (metrics drawn as "units")."""
    plt = plt_module()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    drew = _layer_curves(rd, ax1, task, tasks()[task].layers)
    ax1.set_xlabel("layer (0 = embedding)")
    ax1.xaxis.get_major_locator().set_params(integer=True)
    first = next((r for t in [task, *(t for t, _ in units)] if (r := rd.first_result(t, rd.final_step))), None) or {}
    cv = f"repeated {first.get('partitions', 5)}×{first.get('folds', 5)}-fold CV"
    ax1.set_ylabel(f"encoding r (Pearson; {cv})\nmean ± s.e. over seeds")
    ax1.set_title(f"{tasks()[task].title or task}, final step")
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(fontsize=8)
    drew = _unit_bars(rd, ax2, units) or drew
    ax2.set_title(f"via {_titles(units)}" if units else "")
    ax2.set_xlabel("units selected by their language contrast")
    ax2.set_ylabel(f"encoding r (Pearson; {cv})")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=8)
    if not drew:
        plt.close(fig)
        return None
    return fig


def report_figures(rd: RunResults) -> list[Figure]:
    """The report's figures for this run's tasks, in the order the report shows them."""
    where = report_slice(rd.config.develop.train)
    both = (f" Units keep their best step: dashed, the selection slice it is chosen on (the first {where[0]:,} "
            f"val tokens); solid, the report slice its loss is reported on (the next {where[1]:,})." if where else "")
    figs = [Figure("val_loss", "Validation loss over the inner loop per arm, and the outer loop's generations." + both,
                   partial(draw_loss, rd))]
    accuracy = _metrics_in(rd, "accuracy")
    if accuracy:
        figs.append(Figure("nlp", f"{_titles(accuracy)} per arm.", partial(draw_accuracy, rd)))
    steps: dict[str, list[Metric]] = {}
    for task, metric in _metrics_in(rd, "steps"):
        steps.setdefault(task, []).append(metric)
    for task, metrics in steps.items():
        title = tasks()[task].title or task
        what = "" if len(metrics) == 1 else f" ({', '.join(m.label for m in metrics)})"
        figs.append(Figure(task, f"{title}{what} across training steps (peak circled).",
                           partial(draw_over_steps, rd, task, metrics)))
    units = _metrics_in(rd, "units")
    for task in [t for t, _ in headline_metrics(rd.config) if tasks()[t].layers]:
        if task not in [f.name for f in figs]:
            caption = f"{tasks()[task].title or task}: encoding per layer" + (f" and through {_titles(units)}." if units else ".")
            figs.append(Figure(task, caption, partial(draw_layers, rd, task, units)))
    figs.append(Figure("connectome", "Per-tensor density and sign balance of the connectome.", partial(draw_connectome, rd)))
    return figs


def draw_figure(f: Figure, out: Path) -> Path | None:
    """Draw ``f`` into ``out/<name>.png``; None when it had nothing to draw."""
    fig = f.draw()
    return None if fig is None else save(fig, out / f"{f.name}.png")


def draw_figures(figs: list[Figure], out: Path) -> list[dict]:
    """Draw each figure into ``out``, in order; a record per figure: name, caption and file (None: not drawn),
    the form anatomy.json keeps them in."""
    records = []
    for f in figs:
        p = draw_figure(f, out)
        records.append({"name": f.name, "caption": f.caption, "file": p.name if p is not None else None})
    return records


def embed_lines(records: list[dict], embed: Embed = REPORT, folder: str = "") -> list[str]:
    """Markdown lines for drawn figures' records (``draw_figures``), laid out by ``embed``; ``folder``: where
    their files are, relative to report.md."""
    lines = []
    for r in records:
        file = r.get("file")
        path = f"{folder}/{file}" if folder and file else file
        lines += [s.format(name=r.get("name"), caption=r.get("caption"), path=path)
                  for s in (embed.drawn if file else embed.absent)]
    return lines


def figure_lines(figs: list[Figure], out: Path, embed: Embed = REPORT) -> list[str]:
    """Draw ``figs`` into ``out`` and embed them: each under its caption, or a note saying why it is absent."""
    return embed_lines(draw_figures(figs, out), embed)


def draw_connectome(rd: RunResults):
    path_c = rd.layout.lineage(lineages(rd.config)[0], shapes(rd.config)[0]).connectome
    if not path_c.exists():
        return None
    stats = load_connectome(path_c).stats()
    rows = stats["tensors"] if isinstance(stats, dict) and "tensors" in stats else stats
    names = [r["name"] for r in rows]
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names)), 4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [r["density"] for r in rows], 0.4, label="density (alive fraction)")
    ax.bar(x + 0.2, [r["sign_balance"] for r in rows], 0.4, label="fraction of alive weights positive")
    G = rd.config.evolve.generations
    keep = 1 - rd.config.evolve.prune_fraction
    ax.axhline(keep ** G, ls="--", color="k", lw=1, label=f"{keep:g}^{G} = {keep ** G:.3f}")
    ax.set_xticks(x, [n.replace("transformer.", "").replace(".weight", "") for n in names], rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_xlabel("weight tensor")
    ax.set_ylabel("fraction of the tensor's weights")
    ax.legend(fontsize=8)
    ax.set_title("The connectome, per tensor")
    return fig
