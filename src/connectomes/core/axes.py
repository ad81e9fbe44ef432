"""Sweep axes, declared once: config validation, the run folder, the units, status and the report read them.

A study without sweep axes develops arm x seed from one evolution. Each axis set in the config adds a
dimension to the developed units (connectomes.pipeline.sweep.Unit): its values name the unit's folders
between ``develop/`` (or ``eval/``) and the arm, in the order of :data:`AXES`, and its label names the
unit in plans, status lines and progress bars. An axis whose values each evolve their own connectome
(``evolves``: lineages) also gives every value an evolve tree of its own under ``lineages/``.

A config field that holds an axis's values is declared with :func:`axis_field`, so it is left out of the
resolved config and of every hash while it holds its default (empty = no sweep): a study without a sweep
writes exactly the run folder it wrote before sweeps existed, and such folders stay resumable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Axis:
    name: str      # the Unit field, and the keyword of tag() and label()
    key: str       # the config key listing its values
    folder: str    # a value's folder in a unit's tag, as a format string
    text: str      # a value as plans, status and progress name it, as a format string
    evolves: bool  # each value evolves its own connectome (an evolve tree under lineages/)


AXES: tuple[Axis, ...] = (
    Axis("shape", "model.shapes", "shape_{}", "shape {}", evolves=True),
    Axis("lineage", "evolve.seeds", "lineage_{}", "lineage {}", evolves=True),
    Axis("generation", "develop.generations", "gen_{:02d}", "gen {}", evolves=False),
    # developmental tokens per pass: the n-token subset of the small split a unit cycles over (develop.sizes keeps
    # its key; the folders, the results table and the report call the axis tokens)
    Axis("tokens", "develop.sizes", "tokens_{}", "{:,} tokens", evolves=False),
    # transfer (issue 31): the corpus a unit develops on and is validated on (data.name or a data.corpora entry)
    Axis("corpus", "develop.corpora", "corpus_{}", "on {}", evolves=False),
)
BY_NAME = {a.name: a for a in AXES}
METADATA = "sweep_axis"


def axis_field(name: str) -> Any:
    """A config field listing an axis's values (empty by default: no sweep along it)."""
    return dataclasses.field(default_factory=list, metadata={METADATA: BY_NAME[name].name})


def values(cfg, axis: Axis) -> list:
    """The values the config ``cfg`` (a whole typed config) lists for ``axis``."""
    obj = cfg
    for part in axis.key.split("."):
        obj = getattr(obj, part)
    return list(obj)


def is_sweep(cfg) -> bool:
    """Whether the config sets any sweep axis."""
    return any(values(cfg, a) for a in AXES)


def tag(**at) -> tuple[str, ...]:
    """The folders naming a unit at these axis values (None: the axis is not swept; it adds no folder)."""
    return tuple(a.folder.format(at[a.name]) for a in AXES if at.get(a.name) is not None)


def label(**at) -> list[str]:
    """How the axis values of a unit read in plans, status and progress bars."""
    return [a.text.format(at[a.name]) for a in AXES if at.get(a.name) is not None]
