"""Evaluations (method.md §6): one module per task over one small scoring interface.

Every task module defines ``NAME`` and ``run(lm, ctx) -> dict`` where ``lm`` is a
:class:`connectomes.evals.scoring.ScoringLM` and ``ctx`` an :class:`EvalContext`. The returned dict is
JSON-serialisable and carries the metric values, their variant names, item counts and data hashes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

# name -> module (imported lazily so that a task's heavy dependencies load only when it runs)
TASKS: dict[str, str] = {
    "val_loss": "connectomes.evals.val_loss",
    "hellaswag": "connectomes.evals.hellaswag",
    "mmlu": "connectomes.evals.mmlu",
    "reading_times": "connectomes.evals.reading_times",
    "fmri": "connectomes.evals.fmri",
    "langloc": "connectomes.evals.langloc",
}


@dataclass
class EvalContext:
    """What a task needs besides the model: where data lives and how much of it to use."""

    data_root: Path | None = None  # folder holding hellaswag/, mmlu/, naturalstories/, tuckute2024/, langloc/
    prepared_dir: Path | None = None  # prepared token shards (val split) for val_loss
    limit: int = 0  # max items for the accuracy tasks, a seeded sample (0 = all); alignment tasks ignore it
    sample_seed: int = 0  # seed of that sample (evals.sampling)
    batch_size: int = 16
    out_dir: Path | None = None  # where tasks may write side files (per-word tables, unit masks)
    options: dict = field(default_factory=dict)  # task-specific options, e.g. {"fmri.roi": "lang_LH_IFG"}


def parse_tasks(spec: str | list[str]) -> list[str]:
    names = [t.strip() for t in (spec.split(",") if isinstance(spec, str) else spec) if t.strip()]
    for n in names:
        if n not in TASKS:
            raise UserError(f"unknown evaluation task {n!r}; valid tasks: {', '.join(TASKS)}")
    return names


def get_task(name: str):
    parse_tasks([name])
    return importlib.import_module(TASKS[name])
