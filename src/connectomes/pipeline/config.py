"""The whole config of a study: its sections composed, loaded from YAML with overrides, and validated as a whole.

Each layer declares its own section (``model``, ``data``, ``train``, ``eval``); the outer and inner
loops' sections are the pipeline's (below). :func:`load_config` applies what one field's type cannot
check: relations between fields and sections, checked before anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, Field

from ..connectome import arms
from ..core import axes
from ..core.axes import axis_field
from ..core.config import (
    RUN_CONFIG_REMEDY,
    SECTION,
    Count,
    Float,
    OneOf,
    PosFloat,
    PosInt,
    Seed,
    apply_overrides,
    check_run_name,
    comma_list,
    doc,
    from_dict,
    later_field,
    read_run_config,
    read_yaml_config,
    to_dict,
)
from ..core.errors import ConfigError, UserError
from ..core.runtime import RuntimeConfig
from ..data.config import DataConfig
from ..data.tokenizers import parse_tokenizer
from ..evals.config import EvalConfig, check_primary
from ..model.config import ModelConfig
from ..training.config import TrainConfig
from . import corpora

# checked when a config is validated, not fixed at import: an arm registered later (one entry in ARMS) is valid
Arm = Annotated[str, AfterValidator(OneOf(arms.choices, accepts=arms.known))]
# A weight of sign(w) * c above 1 is far outside any trained network's range (the paper uses 0.02); larger
# constants overflow activations and surface only as a NaN loss after the run folder was made.
Constant = Annotated[PosFloat, Field(le=1)]
# Shard files per split: more only slows every file system down (data.shard_tokens=1 made 256,965 files)
MAX_SHARDS_PER_SPLIT = 10_000


@dataclass
class EvolveConfig:
    """The outer loop (docs/method.md §3)."""

    __pydantic_config__ = SECTION
    generations: Annotated[PosInt, doc("outer-loop generations G (paper: 6); each ends with one pruning")] = 6
    prune_fraction: Annotated[Float, Field(gt=0, lt=1), doc("fraction of the still-alive weights removed per generation")] = 0.2
    prune_scope: Annotated[Literal["per_tensor", "global"], doc("rank weights per matrix or across all")] = "per_tensor"
    reinit: Annotated[Literal["signed_constant", "rewind"], doc("how survivors restart each generation")] = "signed_constant"
    reinit_constant: Annotated[Constant, doc("c in sign(w) * c")] = 0.02
    rewind_step: Annotated[Count, doc("step of generation 0 whose weights rewind uses")] = 0
    seeds: Annotated[comma_list(Seed), doc("lineages: one independent evolution per seed (init seed and data order); "
                                          "empty = the one lineage seeded by evolve.train.seed")] = axis_field("lineage")
    corpus_by_seed: Annotated[dict[int, str], doc("lineages that evolve on another corpus: evolve.seeds entry -> "
                                                  "corpus name (data.corpora); a lineage not named evolves on the "
                                                  "run's own corpus")] = later_field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class DevelopConfig:
    """The inner loop and its controls (docs/method.md §4)."""

    __pydantic_config__ = SECTION
    arms: Annotated[comma_list(Arm), doc("arms to develop (connectomes.connectome.arms: one entry each)")] = field(
        default_factory=lambda: ["connectome", "random", "dense"])
    seeds: Annotated[comma_list(Seed), doc("seeds per arm; seed s of every arm trains on the same data. A seed "
                                           "varies: dense, its init and its data; the drawn controls (random, mask_only, "
                                           "rewired, rows_kept, cols_kept, transplant:*), their draw and the data; the "
                                           "others, the data only (with develop.sizes the "
                                           "seed's own subset of the small split and its order; on the whole split, "
                                           "where the stream starts)")] = field(
        default_factory=lambda: [0])
    init_constant: Annotated[Constant, doc("c: connectome arms start with weights = ternary * c")] = 0.02
    generations: Annotated[comma_list(Count), doc("generations whose connectome the arms develop from, counted "
                                                  "from 0 (generation k's density is (1 - prune_fraction)^(k+1)); "
                                                  "empty = the last")] = axis_field("generation")
    sizes: Annotated[comma_list(PosInt), doc("developmental data sizes in tokens trained: subsets of the small split "
                                             "(4,096-token chunks in an order seeded by the unit's seed, nested within "
                                             "a seed), each read as a ring for at most develop.train.iters steps; empty = the "
                                             "whole split")] = axis_field("tokens")
    sizes_by_arm: Annotated[dict[str, comma_list(PosInt)], doc("an arm's own developmental sizes (arm: [tokens, ...]), "
                                                             "e.g. a dense reference curve reaching further than the "
                                                             "connectome's; an arm not named uses develop.sizes")] = \
        later_field(default_factory=dict)
    corpora: Annotated[comma_list(str), doc("develop corpora (transfer): each unit develops on the small split of "
                                            "one corpus (data.name or a data.corpora entry) and is validated on its "
                                            "val split; the dense arm once per corpus; empty = the run's own "
                                            "corpus")] = axis_field("corpus")
    untrained_constants: Annotated[comma_list(Constant), doc(
        "re-initialisation constants c at which each lineage's connectome, its rewiring and the random connectome "
        "are scored untrained (step-0 val loss, no training; weight-agnostic scoring); empty = not scored")] = \
        later_field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class Config:
    """A whole study: the run folder and every stage's settings."""

    __pydantic_config__ = SECTION
    name: Annotated[str, doc("run name: the run folder is <runs_dir>/<name>")] = "run"
    runs_dir: Annotated[str, doc("folder that holds run folders")] = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    develop: DevelopConfig = field(default_factory=DevelopConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


# The sections each verb reads, besides name and runs_dir (which place the run folder): declared once, here.
# An override of any other key would change nothing the verb does, yet be written into the run folder's
# config.yaml as if it had, so load_config refuses it by name. The stages of a study (evolve, develop) read
# the study's sections: the config.yaml they write is the one every later stage of the folder is checked
# against. prepare, the first stage of any run folder (a study's or a plain `train`'s), takes them all.
STUDY_SECTIONS = ("model", "data", "evolve", "develop", "eval", "runtime")
VERB_SECTIONS = {
    "prepare": ("model", "data", "train", "evolve", "develop", "eval", "runtime"),
    "train": ("model", "data", "train", "runtime"),
    "evolve": STUDY_SECTIONS,
    "develop": STUDY_SECTIONS,
    "study": STUDY_SECTIONS,
}
_HINTS = {  # (verb kind, section) -> what the user most likely meant
    ("pipeline", "train"): "{subject} trains with {trains}; train.* drives only the `train` verb",
    ("train", "evolve"): "the `train` verb trains with train.*; evolve.* drives `evolve` and `study`",
    ("train", "develop"): "the `train` verb trains with train.*; develop.* drives `develop` and `study`",
}


def check_overrides(verb: str, overrides: list[str] | tuple[str, ...]) -> None:
    """Refuse an override of a key ``verb`` does not read (VERB_SECTIONS), naming the keys it reads."""
    reads = VERB_SECTIONS[verb]
    for ov in overrides:
        key = ov.split("=", 1)[0].strip()
        section = key.split(".", 1)[0]
        if section in ("name", "runs_dir") or section in reads or section not in Config.__dataclass_fields__:
            continue  # an unknown key is named by from_dict, with the valid ones
        trains = {"evolve": "evolve.train.*", "develop": "develop.train.*"}.get(verb, "evolve.train.* and develop.train.*")
        kind = "train" if verb == "train" else "pipeline"
        hint = _HINTS.get((kind, section), "").format(subject="a study" if verb == "study" else f"`{verb}`", trains=trains)
        raise ConfigError(f"override {key!r} is not read by `{verb}`" + (f": {hint}" if hint else "")
                          + f"; `{verb}` reads name, runs_dir, {', '.join(s + '.*' for s in reads)}")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                verb: str | None = None) -> Config:
    """Load YAML (if given), apply dotted overrides, validate; errors name the offending key. With ``verb``, an
    override that verb does not read is refused too (:func:`check_overrides`)."""
    data = read_yaml_config(path) if path is not None else {}
    cfg = from_dict(Config, apply_overrides(data, overrides))
    if verb is not None:
        check_overrides(verb, overrides)
    _validate(cfg)
    return cfg


def run_config(path: str | Path) -> Config:
    """A run folder's config.yaml as a Config; a damaged or foreign one is one ConfigError naming the file."""
    data = read_run_config(path, sections=[f.name for f in Config.__dataclass_fields__.values()])
    try:
        return from_dict(Config, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}; {RUN_CONFIG_REMEDY}") from None


def _validate(cfg: Config) -> None:
    """What one field's type cannot say: the tokenizer spelling and relations between fields."""
    tok = cfg.data.tokenizer
    try:
        parse_tokenizer(tok)
    except UserError:
        raise ConfigError(f"data.tokenizer = {tok!r}; use gpt2, bytes or bpe-N (N >= 257 merges+bytes vocabulary size)") from None
    for section in ("train", "evolve.train", "develop.train"):
        t = cfg.train if section == "train" else getattr(cfg, section.split(".")[0]).train
        if t.batch_size % t.micro_batch_size and t.micro_batch_size < t.batch_size:
            raise ConfigError(f"{section}.batch_size ({t.batch_size}) must be a multiple of {section}.micro_batch_size ({t.micro_batch_size})")
        if t.warmup_iters + t.warmdown_iters > t.iters:
            raise ConfigError(f"{section}: warmup_iters + warmdown_iters ({t.warmup_iters} + {t.warmdown_iters}) exceed iters ({t.iters})")
        late = [k for k in t.keep_steps if k > t.iters]
        if late:  # otherwise found only after training, when the step to evaluate is missing
            raise ConfigError(f"{section}.keep_steps {late} lie past {section}.iters ({t.iters}); lower them or raise iters")
    _validate_study(cfg)
    check_primary(cfg.eval)
    block = cfg.model.gpt_config(vocab_size=256).block_size  # validates shape fields
    _validate_sweep(cfg)
    corpora.check_corpora(cfg)
    _check_one_validation_set(cfg)
    _validate_data_fits(cfg, block)
    _validate_selection(cfg, block)
    _validate_folders(cfg)


def _validate_data_fits(cfg: Config, block: int) -> None:
    """Shard counts that a file system bears, and batches that fit the splits they are drawn from
    (otherwise found by the data stream after the run folder was made and the data prepared)."""
    d = cfg.data
    for split in ("large", "small", "val"):
        n = math.ceil(getattr(d, f"{split}_tokens") / d.shard_tokens)
        if n > MAX_SHARDS_PER_SPLIT:
            raise ConfigError(f"data.shard_tokens = {d.shard_tokens:,} would cut the {split} split into {n:,} files; "
                              f"raise it so that each split has at most {MAX_SHARDS_PER_SPLIT:,}")
    for section, split in (("evolve.train", "large"), ("develop.train", "small")):
        t = getattr(cfg, section.split(".")[0]).train
        need = t.batch_size * block + 1
        limits = [(getattr(d, f"{split}_tokens"), f"data.{split}_tokens"), (d.shard_tokens, "data.shard_tokens")]
        limits += [(n, "a size of develop.sizes") for n in (cfg.develop.sizes if split == "small" else [])]
        room, what = min(limits)
        if need > room:
            raise ConfigError(f"{section}.batch_size ({t.batch_size}) x model.block_size ({block}) + 1 = {need:,} tokens "
                              f"per step do not fit {what} ({room:,} tokens), which one step reads from; lower the "
                              "batch or raise that")
    if d.val_tokens < block + 1 or cfg.develop.train.eval_tokens < block:
        raise ConfigError(f"data.val_tokens ({d.val_tokens:,}) and develop.train.eval_tokens "
                          f"({cfg.develop.train.eval_tokens:,}) must hold at least one validation window of "
                          f"model.block_size ({block}) tokens (+1 for data.val_tokens)")


def _validate_selection(cfg: Config, block: int) -> None:
    """Early stopping's settings: patience stops on the selection slice, so it needs a kept best step (whose
    loss is then read on the report slice) and evaluations to count; the val split must hold both slices."""
    if cfg.evolve.train.patience:
        raise ConfigError(f"evolve.train.patience = {cfg.evolve.train.patience}: each generation is pruned at its "
                          "last step, evolve.train.iters, so the outer loop cannot stop early; set it to 0")
    for section in ("train", "develop.train"):
        t = cfg.train if section == "train" else cfg.develop.train
        if t.patience and not (t.keep_best and t.eval_every):
            raise ConfigError(f"{section}.patience = {t.patience} needs {section}.keep_best=true and "
                              f"{section}.eval_every > 0: it stops on the selection slice's evaluations, and the "
                              "kept best step is the model that is reported (on the report slice)")
    for section in ("train", "evolve.train", "develop.train"):
        t = cfg.train if section == "train" else getattr(cfg, section.split(".")[0]).train
        report = t.report_tokens or t.eval_tokens
        if not t.keep_best:
            continue
        if report < block:
            raise ConfigError(f"{section}.report_tokens ({report:,}) is less than one validation window of "
                              f"model.block_size ({block}) tokens; raise it (0 = as many as eval_tokens)")
        need = t.eval_tokens + report + 1
        if cfg.data.val_tokens < need:
            raise ConfigError(
                f"{section}.keep_best chooses the best step on the first {section}.eval_tokens ({t.eval_tokens:,}) "
                f"val tokens and reports it on the next {section}.report_tokens ({report:,}), which needs "
                f"data.val_tokens >= {need:,} (both + 1), but it is {cfg.data.val_tokens:,}; raise data.val_tokens "
                "or lower the two budgets")


def _validate_folders(cfg: Config) -> None:
    """runs_dir and data.dir must be folders (or not exist yet): a file in their place is refused by name."""
    for key, value, path in (("runs_dir", cfg.runs_dir, cfg.run_dir), ("data.dir", cfg.data.dir, Path(cfg.data.dir))):
        for p in [path, *path.parents] if value else []:
            if p.exists() and not p.is_dir():
                raise ConfigError(f"{key} = {value!r}: {p} is a file, not a folder; choose another folder")


def _validate_sweep(cfg: Config) -> None:
    """Sweep axes: no value twice (it would name one folder twice), generations that exist, sizes that fit."""
    for axis in axes.AXES:
        values = axes.values(cfg, axis)
        if len(set(values)) != len(values):
            raise ConfigError(f"{axis.key} = {values} lists a value twice")
    bad = [g for g in cfg.develop.generations if g >= cfg.evolve.generations]
    if bad:
        raise ConfigError(f"develop.generations = {cfg.develop.generations}: generation {bad[0]} does not exist "
                          f"(evolve.generations = {cfg.evolve.generations}, numbered from 0)")
    for key, sizes in (("develop.sizes", cfg.develop.sizes),
                       *((f"develop.sizes_by_arm.{a}", v) for a, v in cfg.develop.sizes_by_arm.items())):
        big = [n for n in sizes if n > cfg.data.small_tokens]
        if big:
            raise ConfigError(f"{key} = {sizes}: {big[0]:,} tokens exceed the small split "
                              f"(data.small_tokens = {cfg.data.small_tokens:,})")
        if len(set(sizes)) != len(sizes):
            raise ConfigError(f"{key} = {sizes} lists a value twice")
    _validate_sizes_by_arm(cfg)
    for shape in cfg.model.shapes:
        cfg.model.gpt_config(vocab_size=256, shape=shape)  # a shape that does not parse or fit is named now


def _validate_sizes_by_arm(cfg: Config) -> None:
    """Arms with their own sizes: arms the study develops, in a sweep over sizes, reaching its headline size."""
    by_arm = cfg.develop.sizes_by_arm
    if not by_arm:
        return
    unknown = [a for a in by_arm if a not in cfg.develop.arms]
    if unknown:
        raise ConfigError(f"develop.sizes_by_arm names {unknown[0]!r}, which is not in develop.arms ({cfg.develop.arms})")
    if not cfg.develop.sizes:
        raise ConfigError("develop.sizes_by_arm needs develop.sizes: the sizes of the arms it does not name")
    top = max(cfg.develop.sizes)
    short = [a for a, v in by_arm.items() if top not in v]
    if short:
        raise ConfigError(f"develop.sizes_by_arm.{short[0]} must include {top:,}, the largest of develop.sizes: the "
                          "report compares every arm at that size")


def _check_one_validation_set(cfg: Config) -> None:
    """Generation 0 (the dense upper bound), the development curves and the val_loss headline are
    compared with each other, so they must score the same validation windows."""
    a, b = cfg.evolve.train.eval_tokens, cfg.develop.train.eval_tokens
    if a != b:
        raise ConfigError(f"evolve.train.eval_tokens ({a}) and develop.train.eval_tokens ({b}) must be equal: the "
                          "report compares generation 0 with the arms on the same validation windows")


def _validate_study(cfg: Config) -> None:
    """The study's shape and the run name, checked before anything is written."""
    for key, values in (("develop.arms", cfg.develop.arms), ("develop.seeds", cfg.develop.seeds)):
        if not values:
            raise ConfigError(f"{key} is empty; a study needs at least one (e.g. {key}=[{'0' if key.endswith('seeds') else 'dense'}])")
        if len(set(values)) != len(values):
            raise ConfigError(f"{key} = {values} repeats an entry; list each once")
    ev = cfg.evolve
    if ev.reinit == "rewind" and ev.rewind_step > ev.train.iters:
        raise ConfigError(f"evolve.rewind_step ({ev.rewind_step}) lies past evolve.train.iters ({ev.train.iters})")
    _check_transplants(cfg)
    check_run_name(cfg.name)


def _check_transplants(cfg: Config) -> None:
    """A transplant of blocks the model does not have is named before anything is evolved."""
    for arm in cfg.develop.arms:
        family, _, group = arm.partition(":")
        if family == "transplant":
            for shape in cfg.model.shapes or [None]:
                layers = cfg.model.gpt_config(vocab_size=256, shape=shape).n_layer
                arms.group_tensors(group, [f"transformer.h.{i}.attn.c_attn.weight" for i in range(layers)] +
                                   ["transformer.wte.weight", "lm_head.weight", "transformer.h.0.mlp.c_fc.weight"])


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
