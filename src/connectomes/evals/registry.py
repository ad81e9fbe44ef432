"""The task registry: every evaluation declares itself with a ``TaskSpec`` in a module of ``evals/tasks/``.

A task module defines ``SPEC = TaskSpec(...)``: its name, the folder it reads under the data root, its
options (typed, with defaults and docs), its headline metrics with their chance rates and figures,
whether an item limit samples it, how its results say what they rest on, and ``run(lm, ctx) -> dict``
where ``lm`` is a :class:`connectomes.evals.scoring.ScoringLM` and ``ctx`` an
:class:`connectomes.evals.context.EvalContext`. The registry finds every such module, so adding a task
is one new file: config validation, the CLI help, the study and the report read only the specs.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Callable

from ..core.errors import UserError
from ..core.inputs import parse_bool
from . import tasks as _tasks_package


@dataclass(frozen=True)
class Option:
    """One task option, read from ``EvalContext.options`` (Python values or command-line strings)."""

    key: str  # "fmri.roi"; keys shared by several tasks (skip_malformed) are declared by each of them
    default: Any
    doc: str
    parse: Callable[[Any, str], Any] = lambda raw, key: raw  # (raw value, key) -> value; UserError names the key


def dig(obj, path):
    """A headline number in a task result: follow ``path`` into nested dicts; a leaf dict with "value"/"mean"/"r" yields that number."""
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    if isinstance(obj, dict):
        for k in ("value", "mean", "r"):
            if k in obj and isinstance(obj[k], (int, float)):
                return float(obj[k])
        return None
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return float(obj)
    return None


@dataclass(frozen=True)
class Metric:
    """A headline number of the report: where it sits in the task's result JSON, which way is better,
    its guessing rate, and the report figures that draw it."""

    label: str
    path: tuple[str, ...]
    higher_is_better: bool = True
    chance: float | None = None  # the guessing rate of an accuracy (its floor beside the untrained model's)
    # report figures drawing it: "accuracy" (bars at the final step beside chance), "steps" (across the kept
    # steps), "units" (bars beside a task's per-layer curve), "frontier" (against connectome size in a sweep)
    figures: tuple[str, ...] = ()
    tick: str = ""  # its name on a figure's axis (default: the label)

    @property
    def outcomes(self) -> bool:
        """Accuracies keep a 0/1 outcome per item beside the number (``correct[<metric>]``), so arms can be
        compared item by item."""
        return self.chance is not None


@dataclass(frozen=True)
class Breakdown:
    """A task's first headline metric broken down by group for the report (BLiMP: per field, per paradigm).
    The groups sit in the task's result at ``key`` as {group: {"value": accuracy, "n": items, ...}}; the
    metric itself is the overall row."""

    key: str
    label: str  # what one group is, e.g. "field"
    view: str = "table"  # "table": rows beside chance, step 0 and published references; "figure": one figure
    doc: str = ""  # what a group's number is, for the table's caption


def describe_selection(result: dict, metric: Metric) -> str:
    """n and how the items behind a result were chosen, from its ``selection`` record."""
    sel = result.get("selection")
    if not isinstance(sel, dict) or "n" not in sel:  # a result from before the protocol: say so rather than guess
        items = result.get("items")
        return f"{items:,} items, selection not recorded" if isinstance(items, int) else "not recorded"
    seed = f", seed {sel['seed']}" if "seed" in sel else ""
    return f"{sel['n']:,} of {sel['of']:,} {sel.get('unit', 'items')}, {sel['selection']}{seed}"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    doc: str
    run: Callable[[Any, Any], dict]  # (ScoringLM, EvalContext) -> JSON-able result with a "selection" record
    data_dir: str | None  # folder under the data root the task needs; None = the prepared shards
    options: tuple[Option, ...] = ()
    metrics: tuple[Metric, ...] = ()
    title: str = ""  # how the report's prose and captions name the task
    # how an item limit (eval.limit.<task>) draws its items, e.g. "HellaSwag items, a seeded uniform sample
    # (0 = all 10,042)"; None: the task always scores its whole fixed set and takes no limit
    sampled: str | None = None
    default: bool = False  # in the default eval.tasks
    default_steps: bool = False  # in the default eval.step_tasks
    describe: Callable[[dict, Metric], str] = describe_selection  # n and selection, for the report's tables
    # (name, entry) of each cross-validated encoding score in a result (entry: r, se, alpha_edge), for the
    # report's table of cross-validation spread; None: the task has none
    encoding: Callable[[dict], list[tuple[str, dict]]] | None = None
    layers: tuple[str, ...] | None = None  # where a result lists one score per layer (drawn per layer)
    logged: str | None = None  # the metrics.jsonl field the training loop logs the same number under
    # raised when the task's result gains fields or its numbers change meaning: every result records the
    # revision it was made by (REVISION_KEY), and one made by another is scored again (runner) and not reported
    # as current (analysis); a result without the key is revision 1
    revision: int = 1

    breakdowns: tuple[Breakdown, ...] = ()  # metrics[0] by group, for the report's tables and figures
    # the key of per-item values read at every kept step (lower = learned): {"items": [...], "values": [...],
    # "covariates": {name: [...]}}; the report fits each item's learning curve (analysis.learning_curves)
    curves: str | None = None
    # published results beside the breakdowns: (the data folder a result was scored from, its "data_dir")
    # -> {source: {"overall": value, <breakdown key>: {group: value}}}; None: the task has none
    references: Callable[[Path], dict] | None = None
    # the digests of the data files a result would be scored on now, ``data_digest(ctx) -> {file: sha256}``, compared
    # with the result's ``data_sha256``: a paradigm file removed or changed means the result is scored again (runner)
    # and reported stale (analysis); None: the task records no per-file digests
    data_digest: Callable[[Any], dict] | None = None

    def metric_id(self, metric: Metric) -> str:
        """How a config names one of its metrics (eval.primary): ``<task>.<path>``, e.g. ``val_loss.loss``."""
        return ".".join((self.name, *metric.path))


REVISION_KEY = "task_revision"


def outdated(name: str, result) -> str | None:
    """Why a task's result was made by another revision of the task than the registry's (None: it was not,
    or the task is not registered)."""
    spec = tasks().get(name)
    if spec is None or not isinstance(result, dict):
        return None
    made = result.get(REVISION_KEY, 1)
    return None if made == spec.revision else (f"its {name} result was made by revision {made} of the task, "
                                                f"which is now at revision {spec.revision}")


def data_changed(name: str, result, ctx) -> str | None:
    """Why a task's result was scored on other data files than its data folder holds now (None: the same, or the
    task records no digests, or its data are not here to compare: the data root check then says where they were)."""
    spec = tasks().get(name)
    recorded = result.get("data_sha256") if isinstance(result, dict) else None
    if spec is None or spec.data_digest is None or not isinstance(recorded, dict):
        return None
    try:
        now = spec.data_digest(ctx)
    except UserError:
        return None
    if recorded == now:
        return None
    parts = [f"{what} {', '.join(sorted(names)[:3])}{'...' if len(names) > 3 else ''}" for what, names in (
        ("removed", set(recorded) - set(now)), ("added", set(now) - set(recorded)),
        ("changed", {n for n in set(recorded) & set(now) if recorded[n] != now[n]})) if names]
    return f"its {name} result was scored on other data files than there are now ({'; '.join(parts)})"


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
    """name -> spec for every module of ``evals/tasks/`` that declares a ``SPEC``, by name."""
    found = {}
    for mod in sorted(pkgutil.iter_modules(_tasks_package.__path__), key=lambda m: m.name):
        spec = getattr(importlib.import_module(f"{_tasks_package.__name__}.{mod.name}"), "SPEC", None)
        if isinstance(spec, TaskSpec):
            found[spec.name] = spec
    return found


def sampled_tasks() -> list[str]:
    """The tasks an item limit samples (eval.limit's keys), by name."""
    return [n for n, s in tasks().items() if s.sampled is not None]


def default_tasks(steps: bool = False) -> list[str]:
    """The default eval.tasks (or eval.step_tasks), by name."""
    return [n for n, s in tasks().items() if (s.default_steps if steps else s.default)]


def metric_ids() -> dict[str, tuple[str, Metric]]:
    """Every headline metric of every task by its id (TaskSpec.metric_id): {id: (task, metric)}."""
    return {spec.metric_id(m): (n, m) for n, spec in tasks().items() for m in spec.metrics}


def logged_metric() -> tuple[str, Metric] | None:
    """(task, metric) of the number the training loop also logs (its curves' last point), if a task declares one."""
    return next(((n, s.metrics[0]) for n, s in tasks().items() if s.logged), None)


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
    """The ``<task>.path`` option every task with a data folder declares (read by context.data_path)."""
    return Option(f"{task}.path", None, f"{what}; default <data root>/{data_dir}")
