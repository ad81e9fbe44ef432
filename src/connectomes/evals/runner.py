"""Run evaluation tasks on a model, a checkpoint, or a list of saved steps of one run."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path

from ..checkpoint import atomic_write_json
from . import EvalContext, get_task, parse_tasks
from .scoring import ScoringLM


def evaluate(model, tokenizer, tasks: list[str], ctx: EvalContext, device="cpu") -> dict:
    """{task: result} plus per-task wall time."""
    tasks = parse_tasks(tasks)
    lm = ScoringLM(model, tokenizer, device=device, batch_size=ctx.batch_size)
    results, timing = {}, {}
    for name in tasks:
        t0 = time.perf_counter()
        results[name] = get_task(name).run(lm, ctx)
        timing[name] = time.perf_counter() - t0
    return {"tasks": results, "timing_s": timing}


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 22):
            h.update(b)
    return h.hexdigest()


def _versions() -> dict:
    import numpy
    import torch

    from .. import __version__

    return {"connectomes": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def evaluate_checkpoint(path: Path, tasks: list[str], ctx: EvalContext, device="cpu", out: Path | None = None) -> dict:
    from ..checkpoint import WEIGHTS, load_model, load_tokenizer_for

    path = Path(path)
    model, info = load_model(path, device)
    tok = load_tokenizer_for(info)
    if ctx.prepared_dir is None and info.get("data_dir"):
        ctx = EvalContext(**{**ctx.__dict__, "prepared_dir": Path(info["data_dir"])})
    weights = path / WEIGHTS if path.is_dir() else path
    res = evaluate(model, tok, tasks, ctx, device)
    res.update({
        "checkpoint": str(path),
        "step": info.get("step"),
        "model_sha256": _file_sha(weights),
        "model_config": info.get("model_config"),
        "config_hash": info.get("config_hash"),
        "tokenizer": info.get("tokenizer"),
        "limit": ctx.limit,
        "options": ctx.options,
        "versions": _versions(),
    })
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(out), res)
    return res


def evaluate_steps(paths: list[Path], tasks: list[str], ctx: EvalContext, out_dir: Path, device="cpu") -> dict:
    """One JSON per step folder in ``out_dir`` (named after the folder); a step whose JSON already
    holds these tasks with the same limit and options is skipped, so this resumes after a kill."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = parse_tasks(tasks)
    results = {}
    for p in paths:
        p = Path(p)
        out = out_dir / f"{p.name}.json"
        if out.exists():
            try:
                prev = json.loads(out.read_text())
                if set(tasks) <= set(prev.get("tasks", {})) and prev.get("limit") == ctx.limit and prev.get("options") == ctx.options:
                    results[p.name] = prev
                    continue
            except json.JSONDecodeError:
                pass
        step_ctx = EvalContext(**{**ctx.__dict__, "out_dir": out_dir / p.name})  # side files (word tables, unit masks) per step
        results[p.name] = evaluate_checkpoint(p, tasks, step_ctx, device=device, out=out)
    return results
