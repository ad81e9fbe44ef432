"""Sweeps: the units a study develops, expanded from its sweep axes (core.axes).

A *unit* is one developed model: arm x seed, plus where a sweep sets them the lineage (evolve.seeds)
whose connectome it starts from, the generation that connectome comes from (develop.generations;
None = the last) and its developmental data size (develop.sizes; None = the whole small split).
The study expands lineage x generation x size x arm x seed, except that the dense arm inherits
nothing: it is developed once per size, whatever the lineages and generations. Without sweep axes
the units are exactly arm x seed of a plain study, with a plain study's folders.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..connectome.arms import ARMS
from ..core import axes


@dataclass(frozen=True)
class Unit:
    arm: str
    seed: int
    lineage: int | None = None
    generation: int | None = None  # None: the last generation (a plain study's connectome)
    tokens: int | None = None      # None: the whole small split

    @property
    def at(self) -> dict:
        """The unit's value on every sweep axis (None: not swept)."""
        return {a.name: getattr(self, a.name) for a in axes.AXES}

    @property
    def tag(self) -> tuple[str, ...]:
        """The unit's folders between develop/ (eval/) and the arm (RunLayout.unit)."""
        return axes.tag(**self.at)

    @property
    def label(self) -> str:
        """How plan, status and progress bars name the unit ("connectome seed 0" in a plain study)."""
        where = axes.label(**self.at)
        return f"{self.arm} seed {self.seed}" + (f" [{', '.join(where)}]" if where else "")


def lineages(cfg) -> list[int | None]:
    """The independent evolutions of a study: one per evolve.seeds entry, or the plain one (None)."""
    return list(cfg.evolve.seeds) or [None]


def generations(cfg) -> list[int | None]:
    """The generations the arms develop from; the last is None, so its folders are a plain study's."""
    last = cfg.evolve.generations - 1
    return [None if g == last else g for g in cfg.develop.generations] or [None]


def units(cfg) -> list[Unit]:
    """Every unit of the study in run order: size, then arm, lineage, generation, seed; dense once per size."""
    out = []
    for n in sorted(cfg.develop.sizes) or [None]:
        for arm in cfg.develop.arms:
            if not ARMS[arm].needs_connectome:
                out += [Unit(arm, s, tokens=n) for s in cfg.develop.seeds]
                continue
            for lin in lineages(cfg):
                for g in generations(cfg):
                    out += [Unit(arm, s, lin, g, n) for s in cfg.develop.seeds]
    return out


def connectome_generation(cfg, unit: Unit) -> int:
    """The generation index the unit's connectome comes from."""
    return cfg.evolve.generations - 1 if unit.generation is None else unit.generation


def headline_unit(cfg, arm: str, seed: int) -> Unit:
    """The unit that stands for (arm, seed) in the report's headline table, comparisons and development
    curves: the first lineage, the latest generation developed from and the largest data size. In a
    plain study it is the plain unit, so the headline is unchanged; in a sweep it is the slice closest
    to the paper's design (its last-generation connectome on its whole small corpus)."""
    tokens = max(cfg.develop.sizes, default=None)
    if not ARMS[arm].needs_connectome:
        return Unit(arm, seed, tokens=tokens)
    gens = generations(cfg)
    return Unit(arm, seed, lineages(cfg)[0], None if None in gens else max(gens), tokens)


def describe_slice(cfg) -> str:
    """How the report names the headline slice of a sweep, e.g. 'lineage 0, generation 5's connectome, 800,000 tokens'."""
    u = headline_unit(cfg, "connectome", 0)
    where = ([] if u.lineage is None else [f"lineage {u.lineage}"]) + \
            [f"generation {connectome_generation(cfg, u)}'s connectome"] + \
            [f"{u.tokens or cfg.data.small_tokens:,} developmental tokens"]
    return ", ".join(where)
