"""Run evaluation tasks on an in-memory model, a checkpoint, or a list of saved steps of one run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from ..atomic import atomic_write_json
from ..integrity import sha256_file
from ..provenance import versions
from . import EvalContext, get_task, parse_tasks
from .scoring import ScoringLM

def evaluate(model, tokenizer, tasks: list[str], ctx: EvalContext, device="cpu") -> dict:
    """{"tasks": {task: result}, "timing_s": {task: seconds}} for the tasks in the order given."""
    tasks = parse_tasks(tasks)
    lm = ScoringLM(model, tokenizer, device=device, batch_size=ctx.batch_size)
    results, timing = {}, {}
    for name in tasks:
        t0 = time.perf_counter()
        results[name] = get_task(name).run(lm, ctx)
        timing[name] = round(time.perf_counter() - t0, 3)
    return {"tasks": results, "timing_s": timing, "tokenizer": getattr(tokenizer, "name", None),
            "max_length": lm.max_length, "device": str(device), "batch_size": ctx.batch_size}


def _json_sha256(obj) -> str | None:
    if obj is None:
        return None
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def weights_file(path: Path) -> Path:
    from ..checkpoint import WEIGHTS

    path = Path(path)
    if not path.is_dir():
        return path
    # an HF folder in the authors' layout may hold pytorch_model.bin instead
    return path / WEIGHTS if (path / WEIGHTS).exists() or not (path / "pytorch_model.bin").exists() else path / "pytorch_model.bin"


def _request(ctx: EvalContext) -> dict:
    """What, besides the weights and the task names, decides a result; JSON-normalised so that an
    option given as a list in Python and read back from a file compare equal. The data root is part
    of it: other task data (eval.data_root) means other results. The report binds results with it too."""
    data_root = str(ctx.data_root) if ctx.data_root else None
    return json.loads(json.dumps({"limit": ctx.limit, "sample_seed": ctx.sample_seed, "options": ctx.options,
                                  "data_root": data_root},
                                 sort_keys=True, default=str))


def evaluate_checkpoint(path: Path, tasks: list[str], ctx: EvalContext, device="cpu", out: Path | None = None,
                        weights_sha256: str | None = None) -> dict:
    """Evaluate one step folder or reference-format weights file; with ``out``, also write the
    result JSON atomically (a crash never leaves a half-written file). A checkpoint that records
    its prepared data folder supplies ``ctx.prepared_dir`` when the context has none.
    ``weights_sha256`` saves hashing the weights again when the caller already has (from
    :func:`connectomes.checkpoint.verified_weights_sha256`, which also checked the step folder)."""
    from ..checkpoint import load_model, load_tokenizer_for

    path = Path(path)
    tasks = parse_tasks(tasks)
    t0 = time.perf_counter()
    model, info = load_model(path, device, verify=weights_sha256 is None)
    tokenizer = load_tokenizer_for(info)
    if ctx.prepared_dir is None and info.get("data_dir"):
        ctx = dataclasses.replace(ctx, prepared_dir=Path(info["data_dir"]))
    res = evaluate(model, tokenizer, tasks, ctx, device)
    res.update({
        "checkpoint": str(path),
        "step": info.get("step"),
        "model_sha256": weights_sha256 or sha256_file(weights_file(path)),
        "model_config": info.get("model_config"),
        "config_sha256": _json_sha256(info.get("config")),
        "prepared_dir": str(ctx.prepared_dir) if ctx.prepared_dir else None,
        **_request(ctx),
        "versions": versions(),
        "wall_s": round(time.perf_counter() - t0, 3),
    })
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(out), res)
    return res


def _previous(out: Path, weights_sha256: str, ctx: EvalContext) -> dict | None:
    """The step's earlier result if it was made from these weights with this limit, sample seed and options."""
    try:
        prev = json.loads(out.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    same = (isinstance(prev, dict) and isinstance(prev.get("tasks"), dict)
            and {k: prev.get(k) for k in _request(ctx)} == _request(ctx)
            and prev.get("model_sha256") == weights_sha256)
    return prev if same else None


def evaluate_steps(paths: list[Path], tasks: list[str], ctx: EvalContext, out_dir: Path, device="cpu") -> dict:
    """One JSON per step folder in ``out_dir``, named after the folder ({name: result}).

    Resumable: a step whose JSON already holds every task, made from the same weights with the
    same limit, sample seed and options, is not evaluated again; one that holds some of them gets only the
    missing tasks, merged into its JSON. Task side files (word tables, unit masks) go to
    ``out_dir/<step folder name>/``.
    """
    from ..checkpoint import verified_weights_sha256

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = parse_tasks(tasks)
    results = {}
    for p in map(Path, paths):
        out = out_dir / f"{p.name}.json"
        sha = verified_weights_sha256(p)  # a damaged step is refused here, before its good JSON can be replaced
        prev = _previous(out, sha, ctx)
        todo = [t for t in tasks if prev is None or t not in prev["tasks"]]
        if not todo:
            results[p.name] = prev
            continue
        step_ctx = dataclasses.replace(ctx, out_dir=out_dir / p.name)
        res = evaluate_checkpoint(p, todo, step_ctx, device=device, weights_sha256=sha)
        if prev is not None:
            res["tasks"] = {**prev["tasks"], **res["tasks"]}
            res["timing_s"] = {**prev.get("timing_s", {}), **res["timing_s"]}
        atomic_write_json(out, res)
        results[p.name] = res
    return results
