"""The ``eval`` config section: which tasks run on which steps, item limits and where task data live.

Task names and the keys of ``eval.limit`` are checked against the task registry when a config is
validated, so a task added as one module is a valid name (and, when it is sampled, a valid limit key)
with no edit here; so is ``eval.primary``, the metric whose arm comparisons form the report's primary
Holm family (docs/method.md §6), named ``<task>.<path>`` (registry.metric_ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from ..core.config import SECTION, Count, OneOf, PosInt, Seed, comma_list, doc, later_field
from ..core.errors import ConfigError
from .registry import default_tasks, metric_ids, sampled_tasks, tasks

Task = Annotated[str, AfterValidator(OneOf(lambda: tasks()))]
MetricId = Annotated[str, AfterValidator(OneOf(lambda: metric_ids()))]
DEFAULT_PRIMARY = "val_loss.loss"


def _limit_per_task(value: Any) -> Any:
    """eval.limit as {sampled task: items}, in registry order with 0 (all) for a task not given; a plain
    number limits every sampled task. A key that is not a sampled task is refused by name."""
    names = sampled_tasks()
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return {t: value for t in names}
    if not isinstance(value, dict):
        return value  # pydantic says what it should be
    unknown = [k for k in value if k not in names]
    if unknown:
        raise ConfigError(f"unknown config key 'eval.limit.{unknown[0]}'; valid keys in eval.limit: {', '.join(names)}")
    return {t: value.get(t, 0) for t in names}


@dataclass
class EvalConfig:
    """Evaluations run over saved steps of every inner-loop arm (docs/method.md §6)."""

    __pydantic_config__ = SECTION
    tasks: Annotated[comma_list(Task), doc("tasks run on each arm's final step")] = field(
        default_factory=default_tasks)
    step_tasks: Annotated[comma_list(Task), doc("tasks run on every kept step (curves over training)")] = field(
        default_factory=lambda: default_tasks(steps=True))
    limit: Annotated[dict[str, Count], BeforeValidator(_limit_per_task),
                     doc("items per sampled task (`connectomes eval --help` lists them), a seeded sample; "
                         "task: N pairs, or one number for all (0 = all)")] = field(
        default_factory=lambda: _limit_per_task({}))
    sample_seed: Annotated[Seed, doc("seed of the sampled tasks' item samples")] = 0
    batch_size: Annotated[PosInt, doc("sequences per forward pass during evaluation")] = 16
    data_root: Annotated[str, doc("folder with each task's data folder; empty = $CONNECTOMES_DATA")] = ""
    primary: Annotated[MetricId, doc("the study's primary metric, <task>.<path> (e.g. val_loss.loss, "
                                     "reading_times.baseline_regression.delta_r2): its arm comparisons are "
                                     "Holm-adjusted as one family, every other comparison as a second")] = \
        later_field(DEFAULT_PRIMARY)


def evaluated_metric_ids(e: EvalConfig) -> list[str]:
    """The ids of the headline metrics of the tasks a config evaluates, in its task order."""
    specs = tasks()
    names = [n for n in dict.fromkeys(e.tasks + e.step_tasks) if n in specs]
    return [specs[n].metric_id(m) for n in names for m in specs[n].metrics]


def check_primary(e: EvalConfig) -> None:
    """eval.primary names a metric of a task the config evaluates. The default, val loss, may be absent (a
    config that does not evaluate it then has no primary family: the report says so)."""
    valid = evaluated_metric_ids(e)
    if e.primary not in valid and e.primary != DEFAULT_PRIMARY:
        raise ConfigError(f"eval.primary = {e.primary!r} is not a metric of the evaluated tasks (eval.tasks, "
                          f"eval.step_tasks); valid choices: {', '.join(valid) or 'none (no task is evaluated)'}")
