"""Early stopping as the report reads it, one rule for every unit: the step it kept, chosen on the selection
slice (the curves' val_loss, the first develop.train.eval_tokens of the val split), the loss reported at it
on the report slice (the tokens after those: the val_loss evaluation, equal to the logged report_loss),
where the unit stopped, and whether it reached its cap still improving (so more steps, not only more data,
would have lowered its loss).

A study without keep_best selects nothing: its 'best' is the lowest logged val loss, on the same tokens
as the curves, as the report always gave it.
"""

from __future__ import annotations

import math

from ..evals.registry import logged_metric, tasks
from ..pipeline.sweep import Unit
from ..training.validation import REPORT_LOSS, report_slice
from .results import RunResults


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def unit_selection(rd: RunResults, u: Unit) -> dict:
    """{"final", "best", "best_step", "steps_trained", "cap", "still_improving"} of unit ``u``.

    With keep_best: best_step is the kept step (best.json, the one the study evaluated), best and final the
    report slice's loss at it and at the final step (the val_loss evaluation, else the logged report_loss;
    None when neither exists yet). Without: the lowest finite logged val loss and its step, and the final
    step's evaluation, else the last logged val loss."""
    t, logged = rd.config.develop.train, logged_metric()
    field = tasks()[logged[0]].logged if logged else None
    recs = [r for r in rd.unit_metrics[u] if isinstance(r.get("step"), int)]
    evals = [(r["step"], r[field]) for r in recs if _number(r.get(field))]  # every validation, NaN too
    evaluated = (lambda step: rd.unit_metric(u, step, *logged)) if logged else (lambda step: None)
    finite = [(s, v) for s, v in evals if math.isfinite(v)]  # a NaN is never the best
    disagrees = None
    if t.keep_best:
        reports = [(r["step"], r[REPORT_LOSS]) for r in recs if _number(r.get(REPORT_LOSS))]
        logged_at = dict(reports)
        best_step = rd.best_steps[u]  # best.json: the one source of the best step (the step kept and evaluated)
        logged_best = min(finite, key=lambda p: p[1])[0] if finite else None
        if best_step is not None and logged_best is not None and logged_best != best_step:
            disagrees = f"{u.label} (best.json: step {best_step}; metrics.jsonl's lowest: step {logged_best})"
        best = None if best_step is None else _first(evaluated(best_step), logged_at.get(best_step))
        final = _first(evaluated(rd.final_step), reports[-1][1] if reports else None)
    else:
        best_step, best = min(finite, key=lambda p: p[1]) if finite else (None, None)
        final = _first(evaluated(rd.final_step), evals[-1][1] if evals else None)
    done = rd.finished[u]
    steps = done if done is not None else (recs[-1]["step"] if recs else 0)
    # evaluations after the best one: fewer than patience (at least 1) at the cap is a curve still falling
    since = sum(s > best_step for s, _ in evals) if best_step is not None else None
    return {"final": final, "best": best, "best_step": best_step, "steps_trained": steps, "cap": t.iters,
            "still_improving": done == t.iters and since is not None and since < max(t.patience, 1),
            "best_disagrees": disagrees}


def _first(*values):
    return next((v for v in values if v is not None), None)


def selection_lines(rd: RunResults, rows: list[dict]) -> list[str]:
    """What 'best' and 'final' mean in this run, how long units train, which units reached their cap still
    improving, and the units left out of the table for want of a report-slice loss."""
    t = rd.config.develop.train
    where, evals = report_slice(t), f"{t.patience} evaluation{'s' * (t.patience != 1)}"
    if where is None:
        text = (f"'best' is the lowest logged val loss, 'final' the final step's, both on the first {t.eval_tokens:,} "
                "val tokens (the curves' windows).")
    else:
        text = (f"'best' is the loss of the step each unit kept: chosen on the first {where[0]:,} val tokens (the "
                f"selection slice, the curves' val loss), reported on the next {where[1]:,} (the report slice); "
                "'final' is the final step's loss on the report slice.")
    steps = (f"Units train at most {t.iters} steps (the cap) and stop once their selection-slice loss has not improved "
             f"for {evals}" if t.patience else f"Every unit trains the same {t.iters} steps")
    flagged = [r["unit"].label for r in rows if r["still_improving"]]
    crit = f"their best selection loss in their last {evals}" if t.patience else \
        "their best selection loss at their last evaluation"
    lines = [f"{steps}, so smaller sets are seen for more epochs; {text}", "",
             f"**Still improving at the cap:** {len(flagged)} of {len(rows)} units ({crit}), so part of their "
             f"difference is the step budget, not the data{': ' + ', '.join(flagged) if flagged else ''}."]
    disagree = [r["best_disagrees"] for r in rows if r.get("best_disagrees")]
    if disagree:
        lines += ["", f"**Best step in dispute:** best.json and metrics.jsonl name different best steps for "
                      f"{'; '.join(disagree)}. The report uses best.json's (the step kept and evaluated); a metrics "
                      "record was removed or changed since."]
    shown = {r["unit"] for r in rows}
    missing = [u.label for u in rd.units if u not in shown and rd.finished[u] is not None]
    if missing:
        lines += ["", f"Finished units not in the table (no report-slice loss at their final or best step yet; re-run "
                      f"the study to evaluate them): {', '.join(missing)}."]
    return lines
