"""The report's tables: headline numbers, floors, comparisons between arms, encoding robustness.

Across seeds every number is a mean with its standard error (ddof=1). Arms are compared pairwise, one
test per comparison: accuracies with per-item outcomes by a bootstrap paired over seeds and items, every
other metric by a seed-paired t (the same seed shares the data order); effect sizes carry 95% intervals
and p-values are Holm-adjusted within two families (analysis.stats.holm_families): the primary metric's
comparisons (eval.primary) and every other comparison. Each metric is shown beside its floors (chance, step 0).
"""

from __future__ import annotations

import math

import numpy as np

from ..connectome import arms
from ..evals.registry import Metric, tasks
from . import stats
from .results import RunResults, headline_metrics


def mean_se(values: list[float]) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se, len(v)


def cell(values: list) -> str:
    m, se, n = mean_se(values)
    return "—" if n == 0 else f"{m:.4f} ± {se:.4f}" if not math.isnan(se) else f"{m:.4f} (one seed)"


def num(x, fmt: str = ".4f") -> str:
    return "—" if x is None else format(x, fmt)


def sample_note(rd: RunResults, task: str, metric: Metric, step: int) -> str:
    """n and how the items were chosen, from one evaluation result (the same for every arm and seed)."""
    result = rd.first_result(task, step)
    return tasks()[task].describe(result, metric) if result else "—"


def headline_table(rd: RunResults) -> list[str]:
    """Markdown rows: per metric, its n and selection, and the arms' mean ± s.e. over seeds."""
    step = rd.final_step
    rows = ["| metric | n, selection | " + " | ".join(arms.label(a) for a in rd.arms) + " |",
            "|" + "---|" * (len(rd.arms) + 2)]
    for task, metric in headline_metrics(rd.config):
        vals = {a: [rd.metric(a, s, step, task, metric) for s in rd.seeds] for a in rd.arms}
        if not any(v is not None for vs in vals.values() for v in vs):
            continue
        rows.append(f"| {metric.label} | {sample_note(rd, task, metric, step)} | "
                    + " | ".join(cell(vals[a]) for a in rd.arms) + " |")
    return rows


# ---------------------------------------------------------------------------------------------
# comparisons: seed-paired and item-paired, Holm, minimum detectable differences


def item_outcomes(result: dict | None, metric: Metric) -> dict | None:
    """{item id: 0/1} for an accuracy metric: the task's ``correct`` lists sit beside the metric (e.g.
    ``correct[rule]``, ``<form>.correct[rule]``) in ``item_ids`` order."""
    if not result or "item_ids" not in result:
        return None
    parent = result
    for key in metric.path[:-1]:
        parent = parent.get(key, {})
    correct = parent.get("correct", {}).get(metric.path[-1])
    return None if correct is None else dict(zip(result["item_ids"], correct))


def paired_items(rd: RunResults, a: str, b: str, task: str, metric: Metric, step: int):
    """Two [seeds, items] 0/1 arrays for arms a and b: seeds both arms have, items all of them scored,
    columns matched by item id (never by position: a different sample order must not mis-pair)."""
    per = {(arm, s): item_outcomes(rd.task_result(arm, s, step, task), metric) for arm in (a, b) for s in rd.seeds}
    seeds = [s for s in rd.seeds if per[(a, s)] is not None and per[(b, s)] is not None]
    if len(seeds) < 1:
        return None
    ids = sorted(set.intersection(*(set(per[(arm, s)]) for arm in (a, b) for s in seeds)), key=str)
    if not ids:
        return None
    grid = lambda arm: np.array([[per[(arm, s)][i] for i in ids] for s in seeds], dtype=float)  # noqa: E731
    return grid(a), grid(b)


def _seed_pairs(rd: RunResults, a: str, b: str, task: str, metric: Metric, step: int) -> tuple[list, list]:
    pairs = [(rd.metric(a, s, step, task, metric), rd.metric(b, s, step, task, metric)) for s in rd.seeds]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    return [x for x, _ in pairs], [y for _, y in pairs]


def _seed_test(label: str, a: str, b: str, xa: list, xb: list) -> dict:
    r = stats.paired_seeds(xa, xb)
    mdd = stats.minimum_detectable_difference(r["sd_diff"], r["n"]) if r["sd_diff"] > 0 else None
    return {"metric": label, "a": a, "b": b, "test": f"paired t over {r['n']} seeds", "diff": r["mean_diff"],
            "ci": r["ci"], "dz": r["dz"], "dz_ci": r["dz_ci"], "p": r["p"], "mdd": mdd}


PRIMARY, SECONDARY = "primary", "secondary"


def primary_metric(rd: RunResults) -> tuple[str, Metric] | None:
    """(task, metric) of the run's primary metric (eval.primary) when the run evaluates it, else None."""
    return next(((t, m) for t, m in headline_metrics(rd.config) if tasks()[t].metric_id(m) == rd.config.eval.primary),
                None)


def comparisons(rd: RunResults, n_boot: int = 10000, boot_seed: int = 0, *, step=None,
                primary_only: bool = False) -> list[dict]:
    """Every pair of arms on every headline metric at the final step, one test per comparison: for an
    accuracy whose per-item outcomes the results hold, a paired bootstrap over seeds and items; for every
    other metric (and an accuracy without item outcomes) a seed-paired t, with d_z and the design's minimum
    detectable difference. Each row's ``family`` is primary for the primary metric's tests (eval.primary),
    secondary for every other; p-values are Holm-adjusted within each family (``p_holm``), so each family
    holds one p-value per comparison. ``step``: another step than the final one (results.BEST: the kept one);
    ``primary_only``: the primary family alone (its Holm adjustment is the same)."""
    out = []
    primary = primary_metric(rd)
    step = rd.final_step if step is None else step
    for task, metric in headline_metrics(rd.config):
        family = PRIMARY if (task, metric) == primary else SECONDARY
        if primary_only and family != PRIMARY:
            continue
        for i, a in enumerate(rd.arms):
            for b in rd.arms[i + 1:]:
                grids = paired_items(rd, a, b, task, metric, step) if metric.outcomes else None
                if grids is not None:
                    r = stats.paired_bootstrap(*grids, n_boot=n_boot, seed=boot_seed)
                    out.append({"metric": metric.label, "a": a, "b": b,
                                "test": f"paired bootstrap, {r['items']} items × {r['seeds']} seeds",
                                "diff": r["mean_diff"], "ci": r["ci"], "dz": None, "dz_ci": None, "p": r["p"],
                                "mdd": None, "family": family})
                    continue
                xa, xb = _seed_pairs(rd, a, b, task, metric, step)
                if len(xa) >= 2:
                    out.append({**_seed_test(metric.label, a, b, xa, xb), "family": family})
    for row, adj in zip(out, stats.holm_families([r["p"] for r in out], [r["family"] for r in out])):
        row["p_holm"] = adj
    return out


ONE_TEST = ("One test per comparison: accuracies with per-item outcomes by the paired bootstrap over seeds and "
            "items, every other metric by the seed-paired t.")


def families_note(rd: RunResults, rows: list[dict]) -> str:
    """The sentence that names the primary metric and the two Holm families of the comparisons table."""
    primary = primary_metric(rd)
    tests = {f: sum(r["family"] == f and r["p"] is not None for r in rows) for f in (PRIMARY, SECONDARY)}
    if primary is None:
        return (f"Primary metric (eval.primary = `{rd.config.eval.primary}`): not evaluated in this run, so there is no "
                f"primary family; p (Holm) adjusts all {tests[SECONDARY]} p-values as one secondary family. {ONE_TEST}")
    return (f"Primary metric (eval.primary = `{rd.config.eval.primary}`): **{primary[1].label}**. Its arm comparisons "
            f"are one Holm family ({tests[PRIMARY]} p-values), every other comparison a second, secondary family "
            f"({tests[SECONDARY]} p-values); the family column says which family each p-value was adjusted in. {ONE_TEST}")


def comparison_table(rows: list[dict]) -> list[str]:
    lines = ["| metric | A − B | test | difference [95% CI] | d_z [95% CI] | p | family | p (Holm, within family) "
             "| min. detectable |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        dz = "—" if r["dz"] is None else f"{r['dz']:+.2f} [{r['dz_ci'][0]:+.2f}, {r['dz_ci'][1]:+.2f}]"
        lines.append(f"| {r['metric']} | {arms.label(r['a'])} − {arms.label(r['b'])} | {r['test']} | "
                     f"{r['diff']:+.4f} [{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}] | {dz} | {num(r['p'], '.3g')} | "
                     f"{r['family']} | {num(r['p_holm'], '.3g')} | {num(r['mdd'])} |")
    return lines


def floor_table(rd: RunResults) -> list[str]:
    """Per metric its floors: the guessing rate (accuracies) and the untrained model's value (step 0,
    mean ± s.e. over seeds per arm), beside the final step's, so a metric at its floor reads as such."""
    lines = ["| metric | chance | " + " | ".join(f"{arms.label(a)} step 0 → final" for a in rd.arms) + " |",
             "|" + "---|" * (len(rd.arms) + 2)]
    for task, metric in headline_metrics(rd.config):
        cells = [f"{cell([rd.metric(a, s, 0, task, metric) for s in rd.seeds])} → "
                 f"{cell([rd.metric(a, s, rd.final_step, task, metric) for s in rd.seeds])}" for a in rd.arms]
        if all(c == "— → —" for c in cells):
            continue
        lines.append(f"| {metric.label} | {num(metric.chance, '.2f')} | " + " | ".join(cells) + " |")
    return lines


def encoding_table(rd: RunResults) -> list[str]:
    """Encoding scores per arm at the final step: r (mean over partitions, then mean ± s.e. over seeds),
    the mean s.e. over partitions (the cross-validation's own spread), and how many folds chose the
    alpha grid's lowest / highest value (there the grid, not the data, decided)."""
    lines = ["| score | arm | r, mean ± s.e. over seeds | s.e. over CV partitions (mean) | folds at lowest / highest alpha |",
             "|---|---|---|---|---|"]
    for task, spec in tasks().items():  # any result that holds encoding scores, configured now or not
        entries_of = spec.encoding
        if entries_of is None:
            continue
        for a in rd.arms:
            per_seed = [entries_of(r) if (r := rd.task_result(a, s, rd.final_step, task)) else [] for s in rd.seeds]
            per_seed = [e for e in per_seed if e]
            for k, (name, _) in enumerate(per_seed[0] if per_seed else []):
                entries = [e[k][1] for e in per_seed]
                ses = [e["se"] for e in entries if e.get("se") is not None]
                edges = [e["alpha_edge"] for e in entries]
                low, high, folds = (sum(x[f] for x in edges) for f in ("lowest", "highest", "folds"))
                lines.append(f"| {name} | {arms.label(a)} | {cell([e['r'] for e in entries])} | "
                             f"{num(float(np.mean(ses)) if ses else None)} | {low} / {high} of {folds} |")
    return lines if len(lines) > 2 else []
