"""Learning curves per item over a unit's kept steps, and each item's age of acquisition (Chang & Bergen 2022),
for every task whose spec declares per-item values (``TaskSpec.curves``: a word's mean surprisal).

For one curve (an item's value at step 0, the kept steps and the final step):

- **Progress** at a step is the share of the item's drop made by then, (v_0 - v_s) / (v_0 - v_final): 0 at
  the untrained model, 1 at the final step.
- **Sigmoid over log steps**: progress(step) = 1 / (1 + exp(-k (log10 step - x0))) fitted by least squares on
  the kept steps after 0 (step 0 is log10 step = -inf, progress 0, which the sigmoid meets there), on a grid of
  x0 (0.005 decades) and k (60 log-spaced values, 0.5 to 50). The **age of acquisition** is 10^x0, the step
  where the fitted curve crosses halfway from the untrained value to the final one.
- **Status.** *never settles*: the final value is not below step 0's, or the last kept interval still holds
  more than :data:`STILL_MOVING` of the drop (the curve has not levelled off by the final step), or the fitted
  half-way step lies past the final step; *before the first kept step*: the fitted age is below the first
  kept step after 0, so the kept steps only bound it (an upper bound; the value is the sigmoid's extrapolation);
  *settled*: an age within the kept steps.

Per arm, an item's curve is the mean over seeds of its values at each step, fitted once. Dependence on the
covariates (log10 frequency, length): OLS of log10 age on them over the settled items (t intervals, n - 3
df), and of progress at the first kept step on them over every item that does not fail to settle (a measure
no censoring touches). Arms are compared seed-paired (paired t over seeds) on two per-unit numbers: the mean
progress at the first kept step over items, and the median log10 age over the items that settle in that unit.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np
from scipy import stats as st

from ..connectome import arms
from ..evals.registry import tasks
from . import stats
from .figures import Embed, Figure, figure_lines, plt_module
from .results import RunResults, headline_metrics

STILL_MOVING = 0.25  # share of the drop in the last kept interval beyond which a curve has not levelled off
NEVER, EARLY, SETTLED = "never settles", "before the first kept step", "settled"
X0_STEP = 0.005
K_GRID = np.geomspace(0.5, 50, 60)
FIGURES = Embed(("{caption}", "", "![{name}]({path})", ""), ("*({caption}: not drawn, no results for it)*", ""))


def curve_tasks(rd: RunResults) -> list[str]:
    return list(dict.fromkeys(t for t, _ in headline_metrics(rd.config) if tasks()[t].curves))


def unit_curves(rd: RunResults, task: str, arm: str, seed: int):
    """(steps, items, values [steps, items], covariates {name: [items]}) of one unit, on the items every step
    scored; None without step 0 and at least two later steps."""
    key = tasks()[task].curves
    by_step = {}
    for step in sorted(rd.evals.get((arm, seed), {})):
        r = rd.task_result(arm, seed, step, task)
        if r and isinstance(r.get(key), dict):
            by_step[step] = r[key]
    if 0 not in by_step or len(by_step) < 3:
        return None
    steps = sorted(by_step)
    items = sorted(set.intersection(*(set(c["items"]) for c in by_step.values())))
    values = np.array([[dict(zip(by_step[s]["items"], by_step[s]["values"]))[i] for i in items] for s in steps])
    last = by_step[steps[-1]]
    at = {i: k for k, i in enumerate(last["items"])}
    cov = {name: np.array([vals[at[i]] for i in items], dtype=float) for name, vals in last.get("covariates", {}).items()}
    return np.array(steps), items, values, cov


def fit(steps: np.ndarray, values: np.ndarray) -> dict:
    """Per item (columns of ``values``, rows = ``steps``, steps[0] = 0): progress, the fitted sigmoid (x0, k),
    the age of acquisition and the status (module docstring)."""
    top, bottom = values[0], values[-1]
    drop = top - bottom
    with np.errstate(divide="ignore", invalid="ignore"):
        progress = np.where(drop[None, :] > 0, (top[None, :] - values) / drop[None, :], np.nan)
    x = np.log10(steps[1:].astype(float))
    grid = np.arange(x[0] - 1.5, x[-1] + 0.5 + X0_STEP / 2, X0_STEP)
    pred = 1 / (1 + np.exp(-K_GRID[:, None, None] * (x[None, None, :] - grid[None, :, None])))  # [k, x0, steps]
    p = np.nan_to_num(progress[1:].T)  # [items, steps]
    sse = ((pred[None] - p[:, None, None, :]) ** 2).sum(-1)  # [items, k, x0]
    best = sse.reshape(len(p), -1).argmin(1)
    k_at, x_at = np.unravel_index(best, sse.shape[1:])
    x0, k = grid[x_at], K_GRID[k_at]
    moving = 1 - progress[-2] if len(steps) > 2 else np.zeros_like(drop)
    status = np.where(~(drop > 0) | (moving > STILL_MOVING) | (x0 > x[-1]), NEVER, np.where(x0 < x[0], EARLY, SETTLED))
    return {"progress": progress, "x0": x0, "k": k, "age": 10 ** x0, "status": status, "first": int(steps[1])}


def ols(y: np.ndarray, covariates: dict[str, np.ndarray]) -> dict:
    """Slopes of y on the covariates with 95% t intervals (n - p - 1 df); None when too few points."""
    names = list(covariates)
    X = np.column_stack([np.ones(len(y))] + [covariates[n] for n in names])
    df = len(y) - X.shape[1]
    if df < 2:
        return {"n": len(y), "slopes": None}
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    cov = (resid @ resid / df) * np.linalg.pinv(X.T @ X)
    half = st.t.ppf(0.975, df) * np.sqrt(np.diag(cov))
    return {"n": len(y), "df": df, "slopes": {n: {"slope": float(beta[j + 1]), "ci": [float(beta[j + 1] - half[j + 1]),
                                                                                   float(beta[j + 1] + half[j + 1])]}
                                               for j, n in enumerate(names)}}


def arm_summary(rd: RunResults, task: str) -> dict:
    """{arm: {"items", "fit", "covariates", "units": {seed: fit}}} over the arms with curves."""
    out = {}
    for arm in rd.arms:
        per = {s: c for s in rd.seeds if (c := unit_curves(rd, task, arm, s)) is not None}
        if not per:
            continue
        steps = next(iter(per.values()))[0]
        per = {s: c for s, c in per.items() if np.array_equal(c[0], steps)}
        items = sorted(set.intersection(*(set(c[1]) for c in per.values())))
        mean = np.mean([c[2][:, [c[1].index(i) for i in items]] for c in per.values()], axis=0)
        cov0 = next(iter(per.values()))
        cov = {n: v[[cov0[1].index(i) for i in items]] for n, v in cov0[3].items()}
        out[arm] = {"steps": steps, "items": items, "fit": fit(steps, mean), "covariates": cov,
                    "units": {s: fit(c[0], c[2]) for s, c in per.items()}}
    return out


def unit_numbers(f: dict) -> tuple[float, float]:
    """(mean progress at the first kept step over items that settle or come early, median log10 age over the
    items that settle in that unit, censored ones counted below the first step)."""
    ok = f["status"] != NEVER
    prog = float(np.nanmean(f["progress"][1][ok])) if ok.any() else math.nan
    return prog, float(np.median(f["x0"][ok])) if ok.any() else math.nan


def _fmt_ci(d: dict) -> str:
    return f"{d['slope']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"


def section(rd: RunResults, out: Path) -> list[str]:
    """The report's learning-curve section (empty without a task declaring curves, or without kept steps)."""
    lines = []
    for task in curve_tasks(rd):
        summ = arm_summary(rd, task)
        if not summ:
            continue
        title = tasks()[task].title or task
        any_arm = next(iter(summ.values()))
        steps = ", ".join(str(int(s)) for s in any_arm["steps"])
        lines += [f"## Learning curves: {title}", "",
                  f"Each item's value at the kept steps {steps} (per arm the mean over seeds), a sigmoid over log10 step "
                  "fitted to its progress (the share of its drop from step 0 to the final step); its age of acquisition "
                  "is the step where the fit crosses halfway (analysis/learning_curves.py). *Before the first kept "
                  f"step*: halfway before step {any_arm['fit']['first']}, which only bounds the age; *never settles*: no "
                  f"drop, more than {STILL_MOVING:.0%} of the drop in the last kept interval, or no halfway point by the "
                  "final step.", "",
                  "| arm | items | settled | before the first kept step | never settles | median age (settled) | "
                  f"mean progress at step {any_arm['fit']['first']} |", "|---|---|---|---|---|---|---|"]
        for arm, a in summ.items():
            f, n = a["fit"], len(a["items"])
            c = {s: int((f["status"] == s).sum()) for s in (SETTLED, EARLY, NEVER)}
            settled = f["age"][f["status"] == SETTLED]
            med = f"{np.median(settled):.0f} (IQR {np.percentile(settled, 25):.0f}–{np.percentile(settled, 75):.0f})" \
                if len(settled) else "—"
            prog = np.nanmean(f["progress"][1][f["status"] != NEVER])
            lines.append(f"| {arms.label(arm)} | {n} | {c[SETTLED]} | {c[EARLY]} | {c[NEVER]} | {med} | {prog:.3f} |")
        lines += ["", *_regression_lines(summ), "", *_comparison_lines(rd, summ), ""]
        never = {arm: [i for i, s in zip(a["items"], a["fit"]["status"]) if s == NEVER] for arm, a in summ.items()}
        if any(never.values()):
            lines += ["Items that never settle: " + "; ".join(
                f"{arms.label(arm)}: {', '.join(ws[:15])}{' …' if len(ws) > 15 else ''}" for arm, ws in never.items()
                if ws) + ".", ""]
        figs = [Figure(f"{task}_ages", f"{title}: age of acquisition (▼: before the first kept step) and progress at "
                       "the first kept step against frequency, per arm", partial(draw, summ))]
        lines += figure_lines(figs, out, FIGURES)
    return lines


def _regression_lines(summ: dict) -> list[str]:
    names = list(next(iter(summ.values()))["covariates"])
    if not names:
        return []
    rows = ["Dependence on the covariates (OLS slopes with 95% t intervals; n items):", "",
            "| arm | outcome | n | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for arm, a in summ.items():
        f = a["fit"]
        for what, mask, y in (("log10 age (settled items)", f["status"] == SETTLED, f["x0"]),
                              (f"progress at step {f['first']}", f["status"] != NEVER, f["progress"][1])):
            r = ols(y[mask], {n: v[mask] for n, v in a["covariates"].items()})
            cells = [_fmt_ci(r["slopes"][n]) for n in names] if r["slopes"] else ["—"] * len(names)
            rows.append(f"| {arms.label(arm)} | {what} | {r['n']} | " + " | ".join(cells) + " |")
    return rows


def _comparison_lines(rd: RunResults, summ: dict) -> list[str]:
    names = list(summ)
    first = next(iter(summ.values()))["fit"]["first"]
    rows = [f"Arms compared over seeds (paired t, 95% interval of the mean difference, row arm minus column arm): mean "
            f"progress at step {first} and median log10 age of acquisition per unit.", "",
            "| comparison | seeds | Δ progress | Δ median log10 age |", "|---|---|---|---|"]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            seeds = [s for s in rd.seeds if s in summ[a]["units"] and s in summ[b]["units"]]
            if len(seeds) < 2:
                continue
            xa = [unit_numbers(summ[a]["units"][s]) for s in seeds]
            xb = [unit_numbers(summ[b]["units"][s]) for s in seeds]
            cells = []
            for j in (0, 1):
                pa, pb = zip(*[(x[j], y[j]) for x, y in zip(xa, xb) if math.isfinite(x[j]) and math.isfinite(y[j])] or
                              [((), ())])
                if len(pa) < 2:
                    cells.append("—")
                    continue
                d = np.subtract(pa, pb)
                r = stats.t_interval(d) if d.std() > 0 else {"mean": float(d.mean()), "ci": [float(d.mean())] * 2}
                cells.append(f"{r['mean']:+.3f} [{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}]")
            rows.append(f"| {arms.label(a)} − {arms.label(b)} | {len(seeds)} | " + " | ".join(cells) + " |")
    return rows


def draw(summ: dict):
    plt = plt_module()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for arm, a in summ.items():
        f, cov = a["fit"], a["covariates"]
        freq = cov.get("log10 frequency")
        if freq is None:
            continue
        ok = f["status"] != NEVER
        early = f["status"] == EARLY
        color = arms.color(arm)
        axes[0].scatter(freq[ok & ~early], f["age"][ok & ~early], s=8, color=color, label=arms.label(arm), alpha=0.6)
        axes[0].scatter(freq[early], np.full(early.sum(), f["first"] * 0.9), s=8, marker="v", color=color, alpha=0.3)
        axes[1].scatter(freq[ok], f["progress"][1][ok], s=8, color=color, label=arms.label(arm), alpha=0.6)
    first = next(iter(summ.values()))["fit"]["first"]
    axes[0].set_yscale("log")
    axes[0].set_xlabel("log10 (count in the large split + 1)")
    axes[0].set_ylabel("age of acquisition (step)")
    axes[1].set_xlabel("log10 (count in the large split + 1)")
    axes[1].set_ylabel(f"progress at step {first} (share of the drop)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
