"""Evaluations (method.md §6): one module per task, each declaring itself with a ``SPEC``.

A task module defines ``SPEC = TaskSpec(...)``: its name, the folder it reads under the data root,
its options (typed, with defaults and docs), its headline metrics and ``run(lm, ctx) -> dict`` where
``lm`` is a :class:`connectomes.evals.scoring.ScoringLM` and ``ctx`` an :class:`EvalContext`. The
registry finds every module of this package that has a ``SPEC``, so adding a task is one new file:
the study, the report, config validation and the CLI help all read the specs.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..inputs import parse_bool, resolve_data_path


@dataclass(frozen=True)
class Option:
    """One task option, read from ``EvalContext.options`` (Python values or command-line strings)."""

    key: str  # "fmri.roi"; keys shared by several tasks (skip_malformed) are declared by each of them
    default: Any
    doc: str
    parse: Callable[[Any, str], Any] = lambda raw, key: raw  # (raw value, key) -> value; UserError names the key


@dataclass(frozen=True)
class Metric:
    """A headline number of the report: where it sits in the task's result JSON and which way is better."""

    label: str
    path: tuple[str, ...]
    higher_is_better: bool = True


@dataclass(frozen=True)
class TaskSpec:
    name: str
    doc: str
    run: Callable[[Any, "EvalContext"], dict]
    data_dir: str | None  # folder under the data root the task needs; None = the prepared shards
    options: tuple[Option, ...] = ()
    metrics: tuple[Metric, ...] = ()


@dataclass
class EvalContext:
    """What a task needs besides the model: where data lives and how much of it to use."""

    data_root: Path | None = None  # folder holding each task's data_dir (hellaswag/, mmlu/, ...)
    prepared_dir: Path | None = None  # prepared token shards (val split) for val_loss
    # max items of the accuracy tasks, a seeded sample (0 = all): one number for every task, or per task
    # name ({"hellaswag": 500, "mmlu": 570}; an absent task = all); alignment tasks and val_loss ignore it
    limit: int | dict = 0
    sample_seed: int = 0  # seed of that sample (evals.sampling)
    batch_size: int = 16
    out_dir: Path | None = None  # where tasks may write side files (per-word tables, unit masks)
    options: dict = field(default_factory=dict)  # task-specific options, e.g. {"fmri.roi": "lang_LH_IFG"}

    def limit_for(self, task: str) -> int:
        """The item limit of ``task`` (0 = all)."""
        return int(self.limit.get(task, 0)) if isinstance(self.limit, dict) else int(self.limit)

    def option(self, key: str):
        """The declared option ``key``, parsed; its default when not given."""
        opt = all_options()[key]
        return opt.parse(self.options.get(key, opt.default), key)


# ---------------------------------------------------------------------------------------------
# option parsers shared by the tasks


def flag(raw, key: str) -> bool:
    try:
        return parse_bool(raw)
    except ValueError:
        raise UserError(f"option {key}={raw!r} is not a yes/no value; use {key}=true or {key}=false") from None


def integer(minimum: int) -> Callable[[Any, str], int]:
    def parse(raw, key: str) -> int:
        try:
            n = int(raw)
        except (TypeError, ValueError):
            raise UserError(f"option {key}={raw!r} is not an integer; pass a whole number >= {minimum}") from None
        if n < minimum:
            raise UserError(f"option {key}={n} must be at least {minimum}")
        return n
    return parse


def one_or_more(valid: tuple[str, ...]) -> Callable[[Any, str], list[str]]:
    """A list given as a list or a comma-separated string, each entry one of ``valid``."""
    def parse(raw, key: str) -> list[str]:
        items = [s.strip() for s in (raw.split(",") if isinstance(raw, str) else raw) if str(s).strip()]
        if not items or any(s not in valid for s in items):
            raise UserError(f"option {key}={raw!r} must list one or more of {', '.join(valid)}")
        return items
    return parse


# ---------------------------------------------------------------------------------------------
# registry


@cache
def tasks() -> dict[str, TaskSpec]:
    """name -> spec for every module of this package that declares a ``SPEC``, by name."""
    found = {}
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        spec = getattr(importlib.import_module(f"{__name__}.{mod.name}"), "SPEC", None)
        if isinstance(spec, TaskSpec):
            found[spec.name] = spec
    return found


@cache
def all_options() -> dict[str, Option]:
    return {o.key: o for spec in tasks().values() for o in spec.options}


def parse_tasks(spec: str | list[str]) -> list[str]:
    names = [t.strip() for t in (spec.split(",") if isinstance(spec, str) else spec) if t.strip()]
    for n in names:
        if n not in tasks():
            raise UserError(f"unknown evaluation task {n!r}; valid tasks: {', '.join(tasks())}")
    return names


def get_task(name: str) -> TaskSpec:
    parse_tasks([name])
    return tasks()[name]


def check_options(options: dict) -> None:
    """Every key is a declared option and every value parses (before any model is loaded)."""
    for key, raw in options.items():
        if key not in all_options():
            raise UserError(f"unknown task option {key!r}; valid options: {', '.join(sorted(all_options()))}")
        all_options()[key].parse(raw, key)


def path_option(task: str, data_dir: str, what: str) -> Option:
    """The ``<task>.path`` option every task with a data folder declares (read by :func:`data_path`)."""
    return Option(f"{task}.path", None, f"{what}; default <data root>/{data_dir}")


def data_path(ctx: EvalContext, spec: TaskSpec) -> Path:
    """The ``<task>.path`` option if given, else ``data_root/<spec.data_dir>``."""
    key = f"{spec.name}.path"
    return resolve_data_path(ctx.option(key), ctx.data_root, spec.data_dir, key)
