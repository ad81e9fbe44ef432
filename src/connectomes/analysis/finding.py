"""The report's finding: what the run found, in sentences written from its statistics.

The primary comparison is the connectome arm against the dense arm (NoConnectome) on the primary metric
(eval.primary), at the step each unit kept where units keep their best step (early stopping), else at the
final step: its direction, size, 95% interval and Holm p, with both arms against their untrained floor
and, for the validation loss, against the upper-bound line (generation 0). The words follow the numbers:
"better" only where the interval excludes no difference and the Holm p is below 0.05, "not better here"
otherwise, and a dense arm past the upper-bound line is flagged. A run with one seed per arm says why it
has no tests instead of showing an empty table.
"""

from __future__ import annotations

import math

from ..connectome import arms
from ..pipeline.plan import plan_gpt_config
from ..pipeline.sweep import lineages, shapes
from ..training.validation import report_slice
from .results import BEST, RunResults
from .sweep_report import home_rows, primary, sweep_rows
from .sweep_shapes import as_lineages, paired_difference
from .tables import PRIMARY, comparisons, mean_se, primary_metric

ALPHA = 0.05
# the method's claim: the connectome arm against the arm without one
CLAIM = ("connectome", "dense")


def _mean(rd: RunResults, arm: str, step, task: str, metric) -> float | None:
    m, _, n = mean_se([rd.metric(arm, s, step, task, metric) for s in rd.seeds])
    return m if n else None


def _primary_row(rows: list[dict]) -> dict | None:
    """The primary family's test of the claim (connectome against dense), else its first test."""
    primary = [r for r in rows if r["family"] == PRIMARY]
    return next((r for r in primary if {r["a"], r["b"]} == set(CLAIM)), primary[0] if primary else None)


def one_seed_lines(rd: RunResults) -> list[str]:
    """Why a run with fewer than two seeds has no comparisons (instead of an empty table)."""
    return [f"No comparisons: this run has {len(rd.seeds)} seed per arm (develop.seeds = {rd.seeds}). A seed-paired "
            "test needs at least two seeds, since the spread between seeds is what it tests against, and an "
            "item-paired bootstrap over one seed would treat one data order as all of them; the headline numbers are "
            "single runs. Give develop.seeds two or more values (e.g. develop.seeds=0,1) for tests and intervals."]


def finding_lines(rd: RunResults, rows: list[dict] | None = None) -> list[str]:
    """The report's "Finding" section: one headline sentence from the primary comparison (``rows``:
    analysis.tables.comparisons, computed when not given), then the floor and upper-bound checks it rests on."""
    primary = primary_metric(rd)
    keep = rd.config.develop.train.keep_best
    # early stopping reports the step each unit kept; the final step is past it by the patience
    step, at = (BEST, "at the step each unit kept") if keep else (rd.final_step, "at the final step")
    rows = comparisons(rd, step=BEST, primary_only=True) if keep else comparisons(rd) if rows is None else rows
    out = ["## Finding", ""]
    if primary is None:
        return out + [f"The primary metric (eval.primary = `{rd.config.eval.primary}`) was not evaluated in this run, "
                      "so there is no headline comparison.", ""]
    task, metric = primary
    if len(rd.seeds) < 2:
        a, b = CLAIM if all(x in rd.arms for x in CLAIM) else (rd.arms + rd.arms)[:2]
        ma, mb = _mean(rd, a, step, task, metric), _mean(rd, b, step, task, metric)
        said = (f"{metric.label} {at}: {arms.label(a)} {ma:.4f}, {arms.label(b)} {mb:.4f}, one run each and untested, so "
                "this run shows no difference either way. " if ma is not None and mb is not None and a != b else "")
        return out + [said + one_seed_lines(rd)[0], ""]
    row = _primary_row(rows)
    if row is None:
        return out + [f"No primary comparison could be tested on {metric.label}: too few paired results.", ""]
    a, b, diff, (lo, hi) = row["a"], row["b"], row["diff"], row["ci"]
    ma, mb = _mean(rd, a, step, task, metric), _mean(rd, b, step, task, metric)
    sign = 1 if metric.higher_is_better else -1
    ahead = sign * diff > 0
    p = row["p_holm"]
    shown = p is not None and p < ALPHA and (lo > 0 or hi < 0)
    way = "higher" if metric.higher_is_better else "lower"
    if shown:
        verdict = f"**{arms.label(a)} is {'better' if ahead else 'worse'} than {arms.label(b)} here**"
    elif ahead:
        verdict = f"**{arms.label(a)} is not shown better than {arms.label(b)} here** (ahead, but short of the standard)"
    else:
        verdict = f"**{arms.label(a)} is not better than {arms.label(b)} here**"
    holm = "no p (every seed moved by the same amount)" if p is None else f"Holm p {p:.3g}"
    out.append(f"{verdict}: {metric.label} ({way} is better) {at}, {ma:.4f} against {mb:.4f}, a difference of {diff:+.4f} "
               f"[95% CI {lo:+.4f}, {hi:+.4f}] ({row['test']}, {holm}; the claim needs the interval clear of 0 and "
               f"Holm p < {ALPHA}).")
    out += _lineage_sentence(rd, task)
    out += _floor_sentence(rd, step, task, metric, (a, b))
    out += _upper_bound_sentence(rd, step, task, metric)
    return out + ["", scope_sentence(rd, row, metric), ""]


def _lineage_sentence(rd: RunResults, task: str) -> list[str]:
    """With several lineages the sentence above reads one of them (the headline slice); the design's own test of
    the claim pairs connectome and dense by lineage and seed, with a t interval over lineage means (the level that
    varies most), at the headline slice's size, generation and corpora. Validation loss only (the loss sweep rows
    carry)."""
    lins = lineages(rd.config)
    if task != "val_loss" or len(lins) < 2 or not all(a in rd.arms for a in CLAIM):
        return []
    shape = shapes(rd.config)[0]  # the headline slice's shape: lineages of two shapes are different evolutions
    rows, key = [r for r in home_rows(rd, sweep_rows(rd)) if r["unit"].shape == shape], primary(rd)
    mine = [r for r in rows if r["unit"].arm == CLAIM[0]]
    if not mine:
        return []
    # the headline slice's size and generation: the connectome's largest and latest
    top, last = max(r["tokens"] for r in mine), max(r["generation"] for r in mine)
    conn = [r for r in mine if r["tokens"] == top and r["generation"] == last]
    dense = as_lineages([r for r in rows if r["unit"].arm == CLAIM[1] and r["tokens"] == top], lins)
    d = paired_difference(conn, dense, key)
    if d is None or d["lineages"] < 2:
        return []
    lo, hi = d["ci"]
    verdict = ("better" if hi < 0 else "worse") if lo > 0 or hi < 0 else "not shown different"
    return [f"Across lineages (the design's level; the sentence above reads the headline slice's lineage only): "
            f"{arms.label(CLAIM[0])} − {arms.label(CLAIM[1])} {d['diff']:+.4f} [95% CI {lo:+.4f}, {hi:+.4f}], paired "
            f"by lineage and seed, {d['over']}, {d['pairs']} pairs: {arms.label(CLAIM[0])} is {verdict} across "
            f"lineages (one test, not in the Holm family)."]


def scope_sentence(rd: RunResults, row: dict, metric) -> str:
    """What a run of this size can show and what it cannot, from its design and the primary test's power."""
    c = rd.config
    tokens = max(c.develop.sizes) if c.develop.sizes else c.data.small_tokens
    weights = plan_gpt_config(c).num_weights
    power = (f"with {len(rd.seeds)} seeds per arm its primary test detects a true difference of {row['mdd']:.3f} "
             f"({metric.label}) with 80% power, and smaller ones go unseen"
             if row.get("mdd") is not None else f"with {len(rd.seeds)} seeds per arm its power is not known")
    return (f"**What this run can show:** whether, for a {weights / 1e6:.2f}M-weight model developing on "
            f"{tokens:,} tokens per unit, the arms order the way the method predicts; {power}. It cannot show "
            "that the order holds for other model sizes, data sizes or data, which only runs at those sizes can.")


def _floor_sentence(rd: RunResults, step, task: str, metric, pair: tuple[str, str]) -> list[str]:
    """Whether each arm of the comparison left its floor: the untrained model (step 0) and, for an accuracy,
    the guessing rate."""
    parts, sign = [], 1 if metric.higher_is_better else -1
    for arm in pair:
        final, start = _mean(rd, arm, step, task, metric), _mean(rd, arm, 0, task, metric)
        if final is None:
            continue
        floors = [(f"step 0 {start:.4f}", start)] if start is not None else []
        floors += [(f"chance {metric.chance:.2f}", metric.chance)] if metric.chance is not None else []
        if not floors:
            continue
        above = all(sign * (final - v) > 0 for _, v in floors)
        parts.append(f"{arms.label(arm)} {'is past' if above else 'has not left'} its floor "
                     f"({', '.join(t for t, _ in floors)})")
    return [f"Floors: {'; '.join(parts)}."] if parts else []


def _upper_bound_sentence(rd: RunResults, step, task: str, metric) -> list[str]:
    """The upper-bound line (generation 0, val loss) and every arm that beats it, flagged: then it bounds
    nothing at this size."""
    ub = rd.upper_bound
    if ub is None or task != "val_loss" or not math.isfinite(ub):
        return []
    past = [(arm, m) for arm in rd.arms if (m := _mean(rd, arm, step, task, metric)) is not None and m < ub]
    # generation 0 is scored on the curves' windows; with keep_best the arms' losses are on the report slice after them
    slices = " (generation 0 on the selection slice, the arms on the report slice)" if report_slice(rd.config.develop.train) else ""
    if not past:
        return [f"Every arm stays above the upper-bound line (generation 0, the dense model trained on the large "
                f"split: {ub:.4f}){slices}."]
    names = ", ".join(f"{arms.label(arm)} ({m:.4f})" for arm, m in past)
    return ["", f"**Flag:** {names} {'is' if len(past) == 1 else 'are'} below the upper-bound line (generation 0, the "
                f"dense model trained on the large split: {ub:.4f}){slices}, so at this size that line is no upper bound."]
