"""A study's corpora (issue 31): the run's own (data.source / data.path, called data.name) and the others of
data.corpora, each prepared into a folder of its own with the data section's tokenizer, budgets and seed.

A lineage evolves on one of them (evolve.corpus_by_seed; the run's own when not named), a unit develops on one and
is validated on its val split (develop.corpora, the transfer axis), and every unit is also scored on the val splits
of data.val_corpora. Splits of different corpora never share a document: corpora that hold the same input file (by
its content's sha256) are refused once both are prepared, before anything trains on them.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path, PurePosixPath

from ..connectome import arms
from ..core import axes
from ..core.errors import ConfigError, DataError
from ..core.layout import RunLayout
from ..data.config import DataConfig
from ..data.prepare import PreparedData, open_prepared, prepare_data
from ..data.tokenizers import parse_tokenizer

# a corpus name is a folder name part (develop/corpus_<name>/, data-<name>/)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def own_name(data: DataConfig) -> str:
    """The name of the corpus data.source / data.path give: data.name, else the last part of data.path, else the
    source's kind."""
    if data.name:
        return data.name
    if data.source == "local" and data.path.strip("/"):
        return PurePosixPath(data.path.rstrip("/")).name
    return "corpus" if data.source == "local" else data.source


def names(data: DataConfig) -> list[str]:
    """Every corpus of the run: its own first, then data.corpora in order."""
    return [own_name(data), *data.corpora]


def is_own(data: DataConfig, name: str | None) -> bool:
    """Whether ``name`` (None: not chosen) is the run's own corpus."""
    return name is None or name == own_name(data)


def corpus_config(data: DataConfig, name: str | None) -> DataConfig:
    """The data settings that prepare corpus ``name`` (None: the run's own): the section's, on that folder."""
    base = dataclasses.replace(data, name="", corpora={}, val_corpora=[], foreign_bpe=False)
    if is_own(data, name):
        return base
    return dataclasses.replace(base, source="local", path=data.corpora[name], dir="")


def lineage_corpus(cfg, lineage: int | None) -> str | None:
    """The corpus lineage ``lineage`` evolves on; None for the run's own."""
    name = cfg.evolve.corpus_by_seed.get(lineage) if lineage is not None else None
    return None if is_own(cfg.data, name) else name


def evolve_corpus(cfg, lineage: int | None) -> str:
    """The name of the corpus lineage ``lineage`` evolves on, the run's own included."""
    return lineage_corpus(cfg, lineage) or own_name(cfg.data)


def evolved_on(cfg, unit) -> str | None:
    """The corpus a unit's lineage evolved on (None for an arm without a lineage, such as dense)."""
    return evolve_corpus(cfg, unit.lineage) if arms.get(unit.arm).needs_lineage else None


def evolution_label(cfg, shape: str | None, lineage: int | None) -> str:
    """How plans and status name an evolution: its axis values, and its corpus where it is not the run's own."""
    corpus = lineage_corpus(cfg, lineage)
    return " ".join(axes.label(shape=shape, lineage=lineage) + ([f"(on {corpus})"] if corpus is not None else []))


def folder(layout: RunLayout, data: DataConfig, name: str | None) -> Path:
    """Where corpus ``name`` (None: the run's own) is prepared."""
    return layout.data if is_own(data, name) else layout.corpus_data(name)


def check_corpora(cfg) -> None:
    """Names that exist and can name folders, lineages that exist, and one tokenizer for all (config validation)."""
    d = cfg.data
    if not d.corpora and not d.val_corpora and not cfg.develop.corpora and not cfg.evolve.corpus_by_seed:
        return
    own = own_name(d)
    for name in names(d):
        if not NAME.match(name):
            raise ConfigError(f"corpus name {name!r} (data.name or a data.corpora key) must be letters, digits, '_', "
                              "'-' or '.', starting with a letter or digit (it names folders)")
    if own in d.corpora:
        raise ConfigError(f"data.corpora names {own!r}, the run's own corpus (data.name, or data.path's last part); "
                          "give the other corpus another name, or set data.name")
    paths = [d.path] * (d.source == "local") + list(d.corpora.values())
    twice = [p for p in paths if paths.count(p) > 1]
    if twice:
        raise ConfigError(f"corpus folder {twice[0]!r} is named twice (data.path / data.corpora): two corpora would "
                          "share every document")
    known = names(d)
    for key, listed in (("develop.corpora", cfg.develop.corpora), ("data.val_corpora", d.val_corpora),
                        ("evolve.corpus_by_seed", list(cfg.evolve.corpus_by_seed.values()))):
        bad = [n for n in listed if n not in known]
        if bad:
            raise ConfigError(f"{key} names corpus {bad[0]!r}; the run's corpora are {', '.join(known)} "
                              "(data.name or data.path's last part, and data.corpora)")
    stray = [s for s in cfg.evolve.corpus_by_seed if s not in cfg.evolve.seeds]
    if stray:
        raise ConfigError(f"evolve.corpus_by_seed names lineage {stray[0]}, which is not in evolve.seeds "
                          f"({cfg.evolve.seeds}); add it there")
    if d.corpora and parse_tokenizer(d.tokenizer).kind == "bpe" and not d.foreign_bpe:
        raise ConfigError(f"data.tokenizer = {d.tokenizer} is trained on the run's own corpus ({own}); data.corpora "
                          f"({', '.join(d.corpora)}) would be encoded with merges fitted to another text, so their "
                          "losses are not comparable with a tokenizer of their own. Use tokenizer bytes or gpt2, or "
                          "set data.foreign_bpe=true to accept that")


def prepare_corpora(cfg, layout: RunLayout, *, data_root: Path | None, progress: bool) -> None:
    """Prepare (or reuse) every other corpus beside the run's own, which must be prepared already (its trained
    bpe-N tokenizer encodes them), then refuse corpora that share an input file."""
    d = cfg.data
    shared = layout.data / "tokenizer.json" if parse_tokenizer(d.tokenizer).kind == "bpe" else None
    for name in d.corpora:
        try:
            prepare_data(corpus_config(d, name), layout.corpus_data(name), data_root=data_root, progress=progress,
                         tokenizer_file=shared)
        except DataError as e:  # which of the corpora, since every one is prepared with the same budgets
            raise DataError(f"corpus {name!r} (data.corpora.{name} = {d.corpora[name]!r}): {e}") from None
    if d.corpora:
        check_disjoint({n: open_prepared(folder(layout, d, n), verify=False).meta for n in names(d)})


def open_corpora(cfg, layout: RunLayout, own: PreparedData) -> dict[str, PreparedData]:
    """Every corpus's prepared folder by name (the run's own is ``own``), checked to share one tokenizer."""
    out = {own_name(cfg.data): own}
    for name in cfg.data.corpora:
        data = open_prepared(layout.corpus_data(name))
        if (data.meta["tokenizer"], data.meta.get("vocab_size")) != (own.meta["tokenizer"], own.meta.get("vocab_size")):
            raise DataError(f"{data.dir} was prepared with tokenizer {data.meta['tokenizer']}, the run's own corpus with "
                            f"{own.meta['tokenizer']}; delete {data.dir} and run the study again")
        out[name] = data
    return out


def check_disjoint(metas: dict[str, dict]) -> None:
    """Refuse corpora whose prepared folders read the same input file (by content): a document would then sit in
    splits of two corpora (in one's small split and another's large one)."""
    seen: dict[str, tuple[str, str]] = {}
    for name, meta in metas.items():
        source = meta.get("source") if isinstance(meta.get("source"), dict) else {}
        for file, digest in (source.get("files") or {}).items():
            if digest in seen and seen[digest][0] != name:
                other, other_file = seen[digest]
                raise DataError(f"corpora {other!r} and {name!r} hold the same file ({other_file} in {other}, {file} in "
                                f"{name}): a document would be in splits of both; remove it from one folder")
            seen.setdefault(digest, (name, file))


def describe(cfg) -> list[str]:
    """What each stage reads, in words (``study --plan`` and the report say it): empty for a run of one corpus."""
    d = cfg.data
    if not d.corpora and not cfg.develop.corpora and not d.val_corpora:
        return []
    own = own_name(d)
    where = {own: d.path or f"data.source {d.source}", **d.corpora}
    lines = ["corpora: " + "; ".join(f"{n} = {where[n]}" + (" (the run's own)" if n == own else "") for n in names(d))]
    seeds = list(cfg.evolve.seeds) or [None]
    by: dict[str, list] = {}
    for s in seeds:
        by.setdefault(lineage_corpus(cfg, s) or own, []).append(s)
    lines.append("evolve (large split) on: " + "; ".join(
        f"{n} ({'the one lineage' if ls == [None] else 'lineage' + ('s ' if len(ls) > 1 else ' ') + ', '.join(map(str, ls))})"
        for n, ls in by.items()))
    lines.append(f"develop (small split) and validate (val split) on: {', '.join(cfg.develop.corpora or [own])}")
    if d.val_corpora:
        lines.append(f"every unit also validated on: {', '.join(d.val_corpora)}")
    return lines
