"""The report's breakdowns: a task's headline accuracy by group (``TaskSpec.breakdowns``), as a table per
group beside chance, the untrained model (step 0) and the published references the task reads from its
data folder (``TaskSpec.references``), or as one figure over every group. Which tasks, groups and
references appear comes from the task specs only, never from task names here.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np

from ..connectome import arms
from ..core.errors import UserError
from ..evals.registry import Breakdown, tasks
from .figures import Figure, plt_module
from .results import RunResults, dig, headline_metrics
from .tables import cell, mean_se, num


def breakdowns(rd: RunResults, view: str) -> list[tuple[str, Breakdown]]:
    """(task, breakdown) of the run's headline tasks drawn as ``view`` ("table" or "figure"), in config order."""
    names = dict.fromkeys(t for t, _ in headline_metrics(rd.config))
    return [(t, b) for t in names for b in tasks()[t].breakdowns if b.view == view]


def references(rd: RunResults, task: str) -> dict[str, dict]:
    """The task's published references, read from the data folder its final-step results were scored from;
    empty when the task declares none or the folder (or its reference file) cannot be read."""
    spec, result = tasks()[task], rd.first_result(task, rd.final_step)
    if spec.references is None or not isinstance(result, dict) or not isinstance(result.get("data_dir"), str):
        return {}
    try:
        return spec.references(Path(result["data_dir"]))
    except (UserError, OSError):
        return {}


def _values(rd: RunResults, arm: str, step: int, task: str, path: tuple[str, ...]) -> list:
    return [dig(rd.task_result(arm, s, step, task), path) for s in rd.seeds]


def breakdown_table(rd: RunResults, task: str, b: Breakdown) -> list[str]:
    """Markdown lines: one row per group (n, chance, each reference, each arm's step 0 → final as mean ± s.e.
    over seeds), and the headline metric as the overall row."""
    first = rd.first_result(task, rd.final_step)
    groups = first.get(b.key) if isinstance(first, dict) else None
    if not isinstance(groups, dict) or not groups:
        return []
    metric, refs = tasks()[task].metrics[0], references(rd, task)
    sources = [s for s, r in refs.items() if r.get(b.key) or "overall" in r]

    def arm_cells(path: tuple[str, ...], overall: bool) -> list[str]:
        vals = (lambda a, st: [rd.metric(a, s, st, task, metric) for s in rd.seeds]) if overall else \
            (lambda a, st: _values(rd, a, st, task, path))
        return [f"{cell(vals(a, 0))} → {cell(vals(a, rd.final_step))}" for a in rd.arms]

    chance = num(metric.chance, ".2f")
    lines = [f"| {b.label} | n | chance | " + " | ".join(sources + [f"{arms.label(a)} step 0 → final" for a in rd.arms])
             + " |", "|" + "---|" * (3 + len(sources) + len(rd.arms))]
    for g, entry in groups.items():
        n = entry.get("n") if isinstance(entry, dict) else None
        lines.append(f"| {g} | {num(n, ',')} | {chance} | " + " | ".join(
            [num(refs[s].get(b.key, {}).get(g), ".3f") for s in sources] + arm_cells((b.key, g), overall=False)) + " |")
    overall_n = dig(first, metric.path[:-1] + (metric.path[-1], "n"))
    lines.append(f"| **overall** ({metric.label}) | {num(overall_n and int(overall_n), ',')} | {chance} | " + " | ".join(
        [num(refs[s].get("overall"), ".3f") for s in sources] + arm_cells(metric.path, overall=True)) + " |")
    return lines


def breakdown_lines(rd: RunResults) -> list[str]:
    """The report's breakdown sections, one table per (task, breakdown) with results."""
    out = []
    for task, b in breakdowns(rd, "table"):
        table = breakdown_table(rd, task, b)
        if not table:
            continue
        spec = tasks()[task]
        result = rd.first_result(task, rd.final_step)
        note = (f" Published references as the task's data folder gives them (`{result['data_dir']}`)."
                if references(rd, task) else "")
        out += [f"## {spec.title or task} by {b.label}", "",
                f"{spec.metrics[0].label} per {b.label}{': ' + b.doc if b.doc else ''}; mean ± s.e. over seeds, the "
                f"untrained model (step 0) → the final step.{note}", "", *table, ""]
    return out


def draw_breakdown(rd: RunResults, task: str, b: Breakdown):
    """One row per group: each arm's final-step value (mean ± s.e. over seeds), the references as grey marks
    and chance as a dotted line."""
    first = rd.first_result(task, rd.final_step)
    groups = list(first.get(b.key, {})) if isinstance(first, dict) else []
    if not groups:
        return None
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(8, 1.8 + 0.17 * len(groups)))
    y = np.arange(len(groups))[::-1]
    for k, arm in enumerate(rd.arms):
        stats = [mean_se(_values(rd, arm, rd.final_step, task, (b.key, g))) for g in groups]
        m = [s[0] for s in stats]
        se = [0 if math.isnan(s[1]) else s[1] for s in stats]
        ax.errorbar(m, y + 0.25 * (k - (len(rd.arms) - 1) / 2), xerr=se, fmt="o", ms=3, capsize=2, lw=0.8,
                    color=arms.color(arm), label=arms.label(arm))
    for k, (source, ref) in enumerate(references(rd, task).items()):
        xs = [ref.get(b.key, {}).get(g) for g in groups]
        if any(x is not None for x in xs):
            ax.scatter([x if x is not None else np.nan for x in xs], y, marker="|x+1"[k % 4], s=40, lw=1,
                       color=str(0.15 * (k % 4)), label=source)
    chance = tasks()[task].metrics[0].chance
    if chance is not None:
        ax.axvline(chance, ls=":", color="gray", lw=1)
    ax.set_yticks(y, groups, fontsize=6)
    ax.set_ylabel(b.label)
    ax.set_ylim(-1, len(groups))
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel(f"accuracy (final step, mean ± s.e. over seeds; dotted: chance {num(chance, 'g')})")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False)
    return fig


def breakdown_figures(rd: RunResults) -> list[Figure]:
    """The breakdowns drawn as figures (``Breakdown.view == "figure"``), one per (task, breakdown), for
    the report's Figures section after the run's own."""
    return [Figure(f"{task}_{b.key}", f"{tasks()[task].title or task} per {b.label}: each arm at the final step beside "
                   "chance and the published references.", partial(draw_breakdown, rd, task, b))
            for task, b in breakdowns(rd, "figure")]
