"""Run evaluation tasks on an in-memory model, a checkpoint, or a list of saved steps of one run."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from pathlib import Path

from ..core.atomic import atomic_write_json, make_dirs
from ..core.errors import UserError
from ..core.integrity import seal_problem, sealed
from ..core.progress import stage, where
from ..core.provenance import versions
from ..core.readers import read_json
from ..io.load import load_model, load_tokenizer_for, verified_weights_sha256
from .context import EvalContext, changed
from .registry import REVISION_KEY, data_changed, dig, get_task, outdated, parse_tasks
from .scoring import ScoringLM


def evaluate(model, tokenizer, tasks: list[str], ctx: EvalContext, device="cpu") -> dict:
    """{"tasks": {task: result}, "timing_s": {task: seconds}} for the tasks in the order given."""
    tasks = parse_tasks(tasks)
    lm = ScoringLM(model, tokenizer, device=device, batch_size=ctx.batch_size)
    results, timing = {}, {}
    for name in tasks:
        t0 = time.perf_counter()
        spec = get_task(name)
        results[name] = {**spec.run(lm, ctx), REVISION_KEY: spec.revision}
        timing[name] = round(time.perf_counter() - t0, 3)
    return {"tasks": results, "timing_s": timing, "tokenizer": getattr(tokenizer, "name", None),
            "max_length": lm.max_length, "device": str(device), "batch_size": ctx.batch_size}


def _json_sha256(obj) -> str | None:
    if obj is None:
        return None
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _own_corpus(ctx, info: dict):
    """A checkpoint trained on another corpus than its run's own (a transfer unit, a lineage evolved elsewhere:
    pipeline.corpora) is validated on that corpus's val split, as its study scores it, unless the context names
    val splits already."""
    corpus, known = info.get("corpus"), info.get("corpora")
    if ctx.val_dirs or not isinstance(known, dict) or not isinstance(known.get(corpus), dict):
        return ctx
    return dataclasses.replace(ctx, val_dirs={corpus: Path(known[corpus]["data_dir"])})


def evaluate_checkpoint(path: Path, tasks: list[str], ctx: EvalContext, device="cpu", out: Path | None = None,
                        weights_sha256: str | None = None) -> dict:
    """Evaluate one step folder or reference-format weights file; with ``out``, also write the
    result JSON atomically (a crash never leaves a half-written file). A checkpoint that records
    its prepared data folder supplies ``ctx.prepared_dir`` when the context has none.
    ``weights_sha256`` saves hashing the weights again when the caller already has (from
    :func:`connectomes.io.load.verified_weights_sha256`, which also checked the step folder)."""
    path = Path(path)
    tasks = parse_tasks(tasks)
    t0 = time.perf_counter()
    weights_sha256 = weights_sha256 or verified_weights_sha256(path)  # checks a step folder before it is loaded
    model, info = load_model(path, device, verify=False)
    tokenizer = load_tokenizer_for(info)
    if ctx.prepared_dir is None and info.get("data_dir"):
        ctx = dataclasses.replace(ctx, prepared_dir=Path(info["data_dir"]))
    ctx = _own_corpus(ctx, info)
    step = info.get("step")
    with where(f"step {step}") if step is not None else contextlib.nullcontext(), \
            stage("eval", f"{len(tasks)} task{'s' * (len(tasks) != 1)}") as end:
        res = evaluate(model, tokenizer, tasks, ctx, device)
        end["detail"] = ", ".join(f"{t} {s:.1f} s" for t, s in res["timing_s"].items())
    res.update({
        "checkpoint": str(path),
        "step": info.get("step"),
        "model_sha256": weights_sha256,
        "model_config": info.get("model_config"),
        "config_sha256": _json_sha256(info.get("config")),
        "prepared_dir": str(ctx.prepared_dir) if ctx.prepared_dir else None,
        **ctx.request(),
        "versions": versions(),
        "wall_s": round(time.perf_counter() - t0, 3),
    })
    if out is not None:
        make_dirs(Path(out).parent)
        res = sealed(res)
        atomic_write_json(Path(out), res)
    return res


def _previous(out: Path, weights_sha256: str, ctx: EvalContext) -> dict | None:
    """The step's earlier result if it was made from these weights with this limit, sample seed and options,
    and is as it was written (its digest holds); anything else, damaged or edited, is evaluated again."""
    try:
        prev = read_json(out, remedy="", missing=None)
    except UserError:
        return None
    same = (prev is not None and isinstance(prev.get("tasks"), dict) and seal_problem(prev) is None
            and not changed(prev, ctx.request()) and prev.get("model_sha256") == weights_sha256)
    return prev if same else None


def evaluate_steps(paths: list[Path], tasks: list[str], ctx: EvalContext, out_dir: Path, device="cpu") -> dict:
    """One JSON per step folder in ``out_dir``, named after the folder ({name: result}).

    Resumable: a step whose JSON already holds every task, made from the same weights with the
    same limit, sample seed and options, is not evaluated again; one that holds some of them gets only the
    missing tasks, and the tasks made by an older revision of the task (registry.outdated), merged into its JSON. Task side files (word tables, unit masks) go to
    ``out_dir/<step folder name>/``.
    """
    out_dir = Path(out_dir)
    make_dirs(out_dir)
    tasks = parse_tasks(tasks)
    results = {}
    for p in map(Path, paths):
        out = out_dir / f"{p.name}.json"
        sha = verified_weights_sha256(p)  # a damaged step is refused here, before its good JSON can be replaced
        prev = _previous(out, sha, ctx)
        todo = [t for t in tasks if prev is None or t not in prev["tasks"] or outdated(t, prev["tasks"][t])
                or data_changed(t, prev["tasks"][t], ctx)]
        if not todo:
            results[p.name] = prev
            continue
        step_ctx = dataclasses.replace(ctx, out_dir=out_dir / p.name)
        res = evaluate_checkpoint(p, todo, step_ctx, device=device, weights_sha256=sha)
        if prev is not None:
            res["tasks"] = {**prev["tasks"], **res["tasks"]}
            res["timing_s"] = {**prev.get("timing_s", {}), **res["timing_s"]}
        res = sealed(res)
        atomic_write_json(out, res)
        results[p.name] = res
    return results


def summary_lines(results: dict[str, dict]) -> list[str]:
    """A short table of evaluation results ({checkpoint: result}): each task's headline metrics with how many
    items (tokens, words) they rest on and how those were chosen."""
    rows = []
    for checkpoint, res in results.items():
        for name, result in (res.get("tasks") or {}).items():
            spec = get_task(name)
            for metric in spec.metrics:
                value = dig(result, metric.path)
                if value is not None:
                    rows.append((Path(checkpoint).name, metric.label, f"{value:.4f}", spec.describe(result, metric)))
    if not rows:
        return ["no headline metrics in these results"]
    widths = [max(len(r[i]) for r in rows + [("checkpoint", "metric", "value", "")]) for i in range(3)]
    head = ("checkpoint", "metric", "value", "n, selection")
    return [f"{head[0]:<{widths[0]}}  {head[1]:<{widths[1]}}  {head[2]:>{widths[2]}}  {head[3]}"] + \
        [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows]
