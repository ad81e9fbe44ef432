"""Sweeps: the units a study develops, expanded from its sweep axes (core.axes).

A *unit* is one developed model: arm x seed, plus where a sweep sets them the model shape it has
(model.shapes; each shape evolves its own lineages), the lineage (evolve.seeds) whose connectome it
starts from, the generation that connectome comes from (develop.generations; None = the last) and its
developmental data size (develop.sizes, or the arm's own list in develop.sizes_by_arm; None = the whole
small split). The study expands shape x size x arm x lineage x generation x seed, except that the dense
arm inherits nothing: it is developed once per shape and size, whatever the lineages and generations.
Without sweep axes the units are exactly arm x seed of a plain study, with a plain study's folders.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..connectome import arms
from ..core import axes
from . import corpora


@dataclass(frozen=True)
class Unit:
    arm: str
    seed: int
    lineage: int | None = None
    generation: int | None = None  # None: the last generation (a plain study's connectome)
    tokens: int | None = None      # None: the whole small split
    shape: str | None = None       # None: the model section's one shape
    corpus: str | None = None      # the corpus it develops on (develop.corpora); None: the run's own

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
    """The lineages of a study at each shape: one per evolve.seeds entry, or the plain one (None)."""
    return list(cfg.evolve.seeds) or [None]


def shapes(cfg) -> list[str | None]:
    """The model shapes of a study: one per model.shapes entry, or the model section's one (None)."""
    return list(cfg.model.shapes) or [None]


def evolutions(cfg) -> list[tuple[str | None, int | None]]:
    """Every independent evolution of a study: (shape, lineage), shape by shape."""
    return [(sh, lin) for sh in shapes(cfg) for lin in lineages(cfg)]


def sizes_for(cfg, arm: str) -> list[int | None]:
    """The developmental sizes of ``arm`` (develop.sizes_by_arm, else develop.sizes; [None] = the whole split)."""
    return sorted(cfg.develop.sizes_by_arm.get(arm, cfg.develop.sizes)) or [None]


def generations(cfg) -> list[int | None]:
    """The generations the arms develop from; the last is None, so its folders are a plain study's."""
    last = cfg.evolve.generations - 1
    return [None if g == last else g for g in cfg.develop.generations] or [None]


def develop_corpora(cfg) -> list[str | None]:
    """The corpora units develop on: one per develop.corpora entry, or the run's own (None)."""
    return list(cfg.develop.corpora) or [None]


def units(cfg) -> list[Unit]:
    """Every unit of the study in run order: shape, develop corpus, size, then arm, lineage, generation, seed;
    dense once per shape, corpus and size."""
    out = []
    all_sizes = sorted({n for arm in cfg.develop.arms for n in sizes_for(cfg, arm)}, key=lambda n: -1 if n is None else n)
    for sh in shapes(cfg):
        for c in develop_corpora(cfg):
            for n in all_sizes:
                for arm in [a for a in cfg.develop.arms if n in sizes_for(cfg, a)]:
                    if not arms.get(arm).needs_lineage:
                        out += [Unit(arm, s, tokens=n, shape=sh, corpus=c) for s in cfg.develop.seeds]
                        continue
                    # generation 0's weights are the same whichever generation the others develop from
                    gens = [None] if arms.get(arm).weights_from == "first" else generations(cfg)
                    for lin in lineages(cfg):
                        for g in gens:
                            out += [Unit(arm, s, lin, g, n, sh, c) for s in cfg.develop.seeds]
    return out


def connectome_generation(cfg, unit: Unit) -> int:
    """The generation index the unit inherits from: its connectome's, or generation 0 for an arm that inherits
    generation 0's trained dense weights."""
    if arms.known(unit.arm) and arms.get(unit.arm).weights_from == "first":
        return 0
    return cfg.evolve.generations - 1 if unit.generation is None else unit.generation


def trained_at(cfg, unit: Unit) -> dict:
    """What the unit trained at on every sweep axis (core.axes order), swept or not: where an axis is not swept,
    the generation its connectome comes from (None for an arm that inherits none) and its developmental tokens
    per pass (the tokens it cycles over: the whole small split); an unswept shape or lineage stays None (the
    model section's shape, the run's own evolution)."""
    at = dict(unit.at)
    at["generation"] = connectome_generation(cfg, unit) if not arms.known(unit.arm) or arms.get(unit.arm).needs_lineage else None
    at["tokens"] = unit.tokens or cfg.data.small_tokens
    return at


def headline_unit(cfg, arm: str, seed: int) -> Unit:
    """The unit that stands for (arm, seed) in the report's headline table, comparisons and development
    curves: the first lineage, the latest generation developed from and the largest data size. In a
    plain study it is the plain unit, so the headline is unchanged; in a sweep it is the slice closest
    to the paper's design (its last-generation connectome on its whole small corpus)."""
    tokens = max(cfg.develop.sizes, default=None)
    shape = shapes(cfg)[0]
    corpus = headline_corpus(cfg)
    if not arms.get(arm).needs_lineage:
        return Unit(arm, seed, tokens=tokens, shape=shape, corpus=corpus)
    gens = generations(cfg)
    return Unit(arm, seed, lineages(cfg)[0], None if None in gens else max(gens), tokens, shape, corpus)


def headline_corpus(cfg) -> str | None:
    """The develop corpus of the headline slice: the first lineage's own evolve corpus where it is developed on,
    else the first of develop.corpora (None: not swept)."""
    listed = develop_corpora(cfg)
    home = corpora.lineage_corpus(cfg, lineages(cfg)[0]) or corpora.own_name(cfg.data)
    return home if home in listed else listed[0]


def describe_slice(cfg) -> str:
    """How the report names the headline slice of a sweep, e.g. 'lineage 0, generation 5's connectome, 800,000 tokens'."""
    u = headline_unit(cfg, "connectome", 0)
    where = ([] if u.shape is None else [f"shape {u.shape}"]) + ([] if u.lineage is None else [f"lineage {u.lineage}"]) + \
            [f"generation {connectome_generation(cfg, u)}'s connectome"] + \
            [f"{trained_at(cfg, u)['tokens']:,} developmental tokens"] + \
            ([] if u.corpus is None else [f"developed on {u.corpus}"])
    return ", ".join(where)
