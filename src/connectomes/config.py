"""Typed configuration: one dataclass per section, YAML load/save, dotted CLI overrides.

Each field's type carries its choices (``Literal``), its range and its one-line doc; pydantic checks a
loaded config against them and ``--help`` prints them, so the two never disagree. Unknown keys and
badly typed values are errors that name the key and list the valid ones, so a typo never silently
falls back to a default. The sections stay plain dataclasses: code may build them directly, and the
resolved config (every default written out) is saved into each run folder, where its hash
identifies what produced a result.
"""

import copy
import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Literal

import yaml
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from .arms import ARMS
from .errors import ConfigError
from .inputs import parse_bool
from .model import PRESETS, GPTConfig

# ---------------------------------------------------------------------------------------------
# field types: what a key accepts, in one place


def _number(value: Any) -> Any:
    """YAML reads 1e6 (no dot) as a string, and a bool must not pass as 1 or 0."""
    if isinstance(value, bool):
        raise ValueError("a yes/no value is not a number")
    if isinstance(value, str):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return value  # pydantic reports it as not a number
    return value


def _as_list(value: Any) -> Any:
    """``a,b`` on the command line is a list, and ``develop.seeds=0`` means the list [0]."""
    if isinstance(value, str):
        return [v for v in value.split(",") if v != ""]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return value


class OneOf:
    """A name checked against a registry read when validating, so a new task file needs no edit here."""

    def __init__(self, names: Callable[[], Iterable[str]]):
        self.names = names

    def __call__(self, value: str) -> str:
        if value not in list(self.names()):
            raise ValueError("not a registered name")
        return value


def doc(text: str):
    return Field(description=text)


Int = Annotated[int, BeforeValidator(_number)]
Float = Annotated[float, BeforeValidator(_number)]
Bool = Annotated[bool, BeforeValidator(parse_bool)]
PosInt = Annotated[Int, Field(ge=1)]
Count = Annotated[Int, Field(ge=0)]  # 0 allowed: "none" or "off"
PosFloat = Annotated[Float, Field(gt=0)]
NonNegFloat = Annotated[Float, Field(ge=0)]
Beta = Annotated[Float, Field(ge=0, lt=1)]


def _task_names() -> Iterable[str]:
    from .evals import tasks  # imported when validating: the task modules need not load with the config

    return tasks()


Task = Annotated[str, AfterValidator(OneOf(_task_names))]
Arm = Literal[tuple(ARMS)]


def comma_list(item):
    return Annotated[list[item], BeforeValidator(_as_list)]


_SECTION = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

# Sweep axes (evolve.seeds, develop.generations, develop.sizes) are left out of the resolved config
# and of every hash while they hold their default (empty = no sweep), so a study without a sweep
# writes exactly the run folder it wrote before sweeps existed, and such folders stay resumable.
SWEEP_AXIS = {"sweep_axis": True}


@dataclass
class ModelConfig:
    """Model shape: a preset name plus optional per-field overrides (method.md §1)."""

    __pydantic_config__ = _SECTION
    preset: Annotated[Literal[tuple(PRESETS)], doc("model size preset (shapes in model.PRESETS)")] = "demo"
    vocab_size: Annotated[PosInt | None, doc("override; default = tokenizer vocabulary padded to a multiple of 64")] = None
    n_layer: Annotated[PosInt | None, doc("override the preset's number of blocks")] = None
    n_head: Annotated[PosInt | None, doc("override the preset's attention heads")] = None
    n_embd: Annotated[PosInt | None, doc("override the preset's width")] = None
    block_size: Annotated[PosInt | None, doc("override the preset's context length")] = None

    def gpt_config(self, vocab_size: int | None = None) -> GPTConfig:
        """The GPTConfig this section describes; ``vocab_size`` (from the tokenizer) fills a gap."""
        if self.preset not in PRESETS:
            raise ConfigError(f"model.preset {self.preset!r} is not a preset; choose one of {sorted(PRESETS)}")
        values = dict(PRESETS[self.preset])
        for f in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size"):
            if getattr(self, f) is not None:
                values[f] = getattr(self, f)
        if vocab_size is not None and self.vocab_size is None:
            values["vocab_size"] = padded_vocab(vocab_size)
        try:
            return GPTConfig(**values)
        except ValueError as e:
            raise ConfigError(str(e)) from None


def padded_vocab(n: int, multiple: int = 64) -> int:
    """Round a tokenizer's vocabulary up to a multiple of 64 (GPT-2's 50257 -> 50304)."""
    return ((n + multiple - 1) // multiple) * multiple


@dataclass
class DataConfig:
    """Where text comes from, how it is tokenised and how it is split (method.md §2)."""

    __pydantic_config__ = _SECTION
    source: Annotated[Literal["local", "fineweb", "synthetic"], doc("where the text comes from")] = "local"
    path: Annotated[str, doc("local: folder of .txt/.jsonl/.jsonl.gz (relative paths also tried inside "
                             "$CONNECTOMES_DATA); empty = $CONNECTOMES_DATA/corpus")] = ""
    tokenizer: Annotated[str, doc("gpt2 | bytes | bpe-N")] = "bytes"
    gpt2_bpe_file: Annotated[str, doc("local gpt2.tiktoken; empty = $CONNECTOMES_DATA/gpt2/gpt2.tiktoken if present")] = ""
    large_tokens: Annotated[PosInt, doc("tokens in the outer-loop split L (paper: 4B)")] = 2_000_000
    small_tokens: Annotated[PosInt, doc("tokens in the inner-loop split S (paper: 100M)")] = 200_000
    val_tokens: Annotated[PosInt, doc("tokens in the validation split")] = 100_000
    seed: Annotated[Int, doc("document shuffle seed for the split")] = 0
    shard_tokens: Annotated[PosInt, doc("tokens per shard file")] = 10_000_000
    fineweb_name: Annotated[str, doc("Hugging Face dataset name for source=fineweb (or a local dataset folder)")] = "HuggingFaceFW/fineweb"
    fineweb_subset: Annotated[str, doc("FineWeb configuration name")] = "sample-10BT"
    fineweb_split: Annotated[str, doc("FineWeb split")] = "train"
    synthetic_fallback: Annotated[Bool, doc("demo: generate text when the data folder is absent")] = True
    skip_bad_files: Annotated[Bool, doc("local corpus: leave out files that are not UTF-8 text (counted in meta.json) instead of refusing them")] = False
    dir: Annotated[str, doc("prepared data folder; empty = <run>/data")] = ""
    workers: Annotated[PosInt, doc("tokenising processes for prepare; the output is byte-identical for any count")] = 1


@dataclass
class TrainConfig:
    """One training loop's settings (method.md §3): schedule, optimizer, batch, cadence."""

    __pydantic_config__ = _SECTION
    iters: Annotated[PosInt, doc("optimizer steps")] = 200
    warmup_iters: Annotated[Count, doc("linear warmup from 0 to lr over the first warmup_iters steps")] = 20
    warmdown_iters: Annotated[Count, doc("linear decay to min_lr over the last warmdown_iters")] = 100
    lr: Annotated[PosFloat, doc("peak learning rate")] = 3e-3
    min_lr: Annotated[NonNegFloat, doc("learning rate at the end of the decay")] = 0.0
    beta1: Annotated[Beta, doc("Adam beta1")] = 0.9
    beta2: Annotated[Beta, doc("Adam beta2")] = 0.95
    weight_decay: Annotated[NonNegFloat, doc("decoupled weight decay (AdamW)")] = 0.1
    grad_clip: Annotated[NonNegFloat, doc("global gradient-norm clip (0 = off)")] = 1.0
    optimizer: Annotated[Literal["adamw", "muon"], doc("optimizer of the weight matrices")] = "adamw"
    batch_size: Annotated[PosInt, doc("global sequences per step, whatever the process count")] = 16
    micro_batch_size: Annotated[PosInt, doc("sequences per forward pass per process")] = 16
    eval_every: Annotated[Count, doc("validation cadence in steps (0 = only at the end)")] = 50
    eval_tokens: Annotated[PosInt, doc("fixed validation token budget")] = 32_768
    save_every: Annotated[Count, doc("checkpoint cadence in steps (0 = only at the end)")] = 100
    keep_steps: Annotated[comma_list(Count), doc("steps whose weights are kept for evaluation")] = field(default_factory=list)
    seed: Annotated[Int, doc("seed for torch's RNG at the start of training")] = 0
    device: Annotated[Literal["auto", "cpu", "cuda"], doc("auto = cuda when visible, else cpu")] = "auto"
    dtype: Annotated[Literal["auto", "float32", "bfloat16"], doc("auto = bf16 on CUDA, fp32 on CPU")] = "auto"
    compile: Annotated[Bool, doc("torch.compile the model (CUDA)")] = False
    log_every: Annotated[PosInt, doc("metrics.jsonl cadence in steps")] = 10
    log: Annotated[Literal["none", "tensorboard"], doc("also log every metrics.jsonl record to <run>/tb (TensorBoard event files)")] = "none"
    activation_checkpointing: Annotated[Bool, doc("recompute each block in backward: less activation memory, ~1/3 more forward FLOPs")] = False


@dataclass
class EvolveConfig:
    """The outer loop (method.md §3)."""

    __pydantic_config__ = _SECTION
    generations: Annotated[PosInt, doc("outer-loop generations G (paper: 6); each ends with one pruning")] = 6
    prune_fraction: Annotated[Float, Field(gt=0, lt=1), doc("fraction of the still-alive weights removed per generation")] = 0.2
    prune_scope: Annotated[Literal["per_tensor", "global"], doc("rank weights per matrix or across all")] = "per_tensor"
    reinit: Annotated[Literal["signed_constant", "rewind"], doc("how survivors restart each generation")] = "signed_constant"
    reinit_constant: Annotated[PosFloat, doc("c in sign(w) * c")] = 0.02
    rewind_step: Annotated[Count, doc("step of generation 0 whose weights rewind uses")] = 0
    seeds: Annotated[comma_list(Int), doc("lineages: one independent evolution per seed (init seed and data order); "
                                          "empty = the one lineage seeded by evolve.train.seed")] = field(
        default_factory=list, metadata=SWEEP_AXIS)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class DevelopConfig:
    """The inner loop and its controls (method.md §4)."""

    __pydantic_config__ = _SECTION
    arms: Annotated[comma_list(Arm), doc("arms to develop (connectomes.arms)")] = field(
        default_factory=lambda: ["connectome", "random", "dense"])
    seeds: Annotated[comma_list(Int), doc("seeds per arm: init, random-connectome draw and data order")] = field(
        default_factory=lambda: [0])
    init_constant: Annotated[PosFloat, doc("c: connectome arms start with weights = ternary * c")] = 0.02
    generations: Annotated[comma_list(Count), doc("generations whose connectome the arms develop from (density "
                                                  "0.8^(k+1)); empty = the last")] = field(default_factory=list, metadata=SWEEP_AXIS)
    sizes: Annotated[comma_list(PosInt), doc("developmental data sizes in tokens: nested subsets of the small split "
                                             "(4,096-token chunks in one fixed random order), each trained for "
                                             "develop.train.iters steps; empty = the whole split")] = field(
        default_factory=list, metadata=SWEEP_AXIS)
    train: TrainConfig = field(default_factory=TrainConfig)


def _limit_for_both(value: Any) -> Any:
    """A plain number of items, as configs before per-task limits wrote it, limits both sampled tasks."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return {"hellaswag": value, "mmlu": value}
    return value


@dataclass
class EvalLimit:
    """Items scored per accuracy task, a seeded sample (evals.sampling); the alignment tasks and val_loss
    always use their whole fixed sets, so they have no limit."""

    __pydantic_config__ = _SECTION
    hellaswag: Annotated[Count, doc("HellaSwag items, a seeded uniform sample (0 = all 10,042)")] = 0
    mmlu: Annotated[Count, doc("MMLU test items, a seeded sample stratified by subject (0 = all 14,042)")] = 0

    def by_task(self) -> dict[str, int]:
        return {"hellaswag": self.hellaswag, "mmlu": self.mmlu}


@dataclass
class EvalConfig:
    """Evaluations run over saved steps of every inner-loop arm (method.md §6)."""

    __pydantic_config__ = _SECTION
    tasks: Annotated[comma_list(Task), doc("tasks run on each arm's final step")] = field(
        default_factory=lambda: ["val_loss", "hellaswag", "mmlu", "reading_times", "fmri", "langloc"])
    step_tasks: Annotated[comma_list(Task), doc("tasks run on every kept step (curves over training)")] = field(
        default_factory=lambda: ["val_loss", "reading_times"])
    limit: Annotated[EvalLimit, BeforeValidator(_limit_for_both),
                     doc("items per accuracy task; a plain number limits both")] = field(default_factory=EvalLimit)
    sample_seed: Annotated[Count, doc("seed of the accuracy tasks' item samples")] = 0
    batch_size: Annotated[PosInt, doc("sequences per forward pass during evaluation")] = 16
    data_root: Annotated[str, doc("folder with each task's data folder; empty = $CONNECTOMES_DATA")] = ""


@dataclass
class Config:
    """A whole study: the run folder and every stage's settings."""

    __pydantic_config__ = _SECTION
    name: Annotated[str, doc("run name: the run folder is <runs_dir>/<name>")] = "run"
    runs_dir: Annotated[str, doc("folder that holds run folders")] = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    develop: DevelopConfig = field(default_factory=DevelopConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


def default_data_root() -> Path | None:
    """$CONNECTOMES_DATA, else ../shared/data when it exists (the layout of this project's machines)."""
    env = os.environ.get("CONNECTOMES_DATA")
    if env:
        return Path(env)
    for cand in (Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data"):
        if cand.is_dir():
            return cand
    return None


# ---------------------------------------------------------------------------------------------
# dict <-> dataclass


def _bare(tp: Any) -> Any:
    """The type without its Annotated metadata and without ``| None``."""
    while True:
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
        elif type(None) in typing.get_args(tp):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp


def _metadata(tp: Any) -> list:
    """Every Annotated metadata item on ``tp``, nested ones included (the field's doc, range, validators),
    with each ``Field(...)``'s constraints unpacked."""
    if typing.get_origin(tp) is Annotated:
        own, inner = list(tp.__metadata__), _metadata(typing.get_args(tp)[0])
    elif type(None) in typing.get_args(tp):
        own, inner = [], _metadata(next(a for a in typing.get_args(tp) if a is not type(None)))
    else:
        return []
    return own + [m for f in own for m in getattr(f, "metadata", [])] + inner


def _type_at(cls, loc: tuple) -> Any:
    """The declared type at an error location such as ("develop", "arms", 1)."""
    tp = cls
    for part in loc:
        bare = _bare(tp)
        if isinstance(part, int):
            tp = typing.get_args(bare)[0]
        else:
            tp = typing.get_type_hints(bare, include_extras=True)[part]
    return tp


def _choices(tp: Any) -> list[str] | None:
    bare = _bare(tp)
    if typing.get_origin(bare) is Literal:
        return list(typing.get_args(bare))
    names = [m.func.names for m in _metadata(tp) if isinstance(getattr(m, "func", None), OneOf)]
    return list(names[0]()) if names else None


def _range(tp: Any) -> str:
    bounds = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return " and ".join(f"{op} {getattr(m, k)}" for m in _metadata(tp) for k, op in bounds.items()
                        if getattr(m, k, None) is not None)


_KIND = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}


def _message(cls, err: dict, prefix: str) -> str:
    """One sentence for pydantic's first error: the key, the value given and what to do."""
    loc = err["loc"]
    names = [p for p in loc if isinstance(p, str)]
    key = prefix + ".".join(names)
    value = err["input"]
    if err["type"] == "unexpected_keyword_argument":
        section = _bare(_type_at(cls, loc[:-1]))
        where = f" in {prefix + '.'.join(names[:-1])}" if len(names) > 1 or prefix else ""
        return f"unknown config key {key!r}; valid keys{where}: {', '.join(f.name for f in dataclasses.fields(section))}"
    tp = _type_at(cls, loc)
    if dataclasses.is_dataclass(_bare(tp)):
        return f"{key} must be a mapping of its fields, got {value!r}"
    choices = _choices(tp)
    if choices is not None:
        return f"{key} = {value!r} is not one of {', '.join(choices)}"
    if err["type"].startswith(("greater_than", "less_than")):
        return f"{key} = {value!r} must be {_range(tp)}"
    bare = _bare(tp)
    return f"{key} must be {_KIND.get(typing.get_origin(bare) or bare, 'valid')}, got {value!r}"


@cache
def _adapter(cls) -> TypeAdapter:
    return TypeAdapter(cls)


def from_dict(cls, data: dict, prefix: str = ""):
    """A section (or the whole Config) from plain data, checked against the field types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'the config'} must be a mapping of its fields, got {data!r}")
    try:
        return _adapter(cls).validate_python(data)
    except ValidationError as e:
        errors = sorted(e.errors(), key=lambda x: x["type"] != "unexpected_keyword_argument")
        raise ConfigError(_message(cls, errors[0], prefix)) from None


def to_dict(obj) -> dict:
    """Plain data of a config section (deep-copied), without sweep axes at their default (SWEEP_AXIS)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("sweep_axis") and value == f.default_factory():
            continue
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
    return out


def _validate(cfg: Config) -> None:
    """What one field's type cannot say: the tokenizer spelling and relations between fields."""
    tok = cfg.data.tokenizer
    if not (tok in ("gpt2", "bytes") or (tok.startswith("bpe-") and tok[4:].isdigit() and int(tok[4:]) >= 257)):
        raise ConfigError(f"data.tokenizer = {tok!r}; use gpt2, bytes or bpe-N (N >= 257 merges+bytes vocabulary size)")
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
    cfg.model.gpt_config(vocab_size=256)  # validates shape fields
    _validate_sweep(cfg)
    _check_one_validation_set(cfg)


def _validate_sweep(cfg: Config) -> None:
    """Sweep axes: no value twice (it would name one folder twice), generations that exist, sizes that fit."""
    for key, values in (("evolve.seeds", cfg.evolve.seeds), ("develop.generations", cfg.develop.generations),
                        ("develop.sizes", cfg.develop.sizes)):
        if len(set(values)) != len(values):
            raise ConfigError(f"{key} = {values} lists a value twice")
    bad = [g for g in cfg.develop.generations if g >= cfg.evolve.generations]
    if bad:
        raise ConfigError(f"develop.generations = {cfg.develop.generations}: generation {bad[0]} does not exist "
                          f"(evolve.generations = {cfg.evolve.generations}, numbered from 0)")
    big = [n for n in cfg.develop.sizes if n > cfg.data.small_tokens]
    if big:
        raise ConfigError(f"develop.sizes = {cfg.develop.sizes}: {big[0]:,} tokens exceed the small split "
                          f"(data.small_tokens = {cfg.data.small_tokens:,})")


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
    check_run_name(cfg.name)


def check_run_name(name: str) -> None:
    """The run folder is <runs_dir>/<name>: the name must be one plain path component, so a run
    never writes outside runs_dir (``..``, ``/``) or into runs_dir itself (empty), nor hides (``.``)."""
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        raise ConfigError(f"name = {name!r} must be one folder name (no '/', not empty, not starting with '.'); "
                          "e.g. name=my_run")


# Settings that change how a run is carried out or observed but not a number it produces; a run
# folder may be continued with other values of these.
RESULT_NEUTRAL = ("workers", "log")


def result_neutral(key: str) -> bool:
    """Whether the dotted ``key`` names a setting in :data:`RESULT_NEUTRAL`."""
    return key.rsplit(".", 1)[-1] in RESULT_NEUTRAL


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = data
    for p in parts[:-1]:
        if not isinstance(cur.get(p, {}), dict):
            raise ConfigError(f"cannot set {dotted!r}: {p!r} is not a section")
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. train.lr=1e-3)")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    return key.strip(), value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load YAML (if given), apply dotted overrides, validate; errors name the offending key."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; pass a YAML file such as configs/demo.yaml")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must be a mapping of sections, got {type(loaded).__name__}")
        data = loaded
    for ov in overrides:
        k, v = parse_override(ov)
        set_dotted(data, k, v)
    cfg = from_dict(Config, data)
    _validate(cfg)
    return cfg


def read_run_config(path: str | Path) -> dict:
    """A run folder's config.yaml as a mapping; a damaged one (not YAML, binary, not a mapping) is
    one ConfigError naming it, raised before a run writes anything into its folder."""
    path = Path(path)
    remedy = "restore it, or use another run name (name=...) or delete the run folder"
    try:
        loaded = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path} is not readable YAML ({type(e).__name__}); {remedy}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path} ({e.strerror}); {remedy}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must be a mapping of sections, got {type(loaded).__name__}; {remedy}")
    return loaded


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def config_hash(obj: Any) -> str:
    """Stable short hash of a config (or any JSON-able dict) for provenance and stage matching."""
    d = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _type_name(tp: Any) -> str:
    bare = _bare(tp)
    choices = _choices(tp)
    if choices is not None:
        name = "|".join(choices)
    elif typing.get_origin(bare) is list:
        return f"list[{_type_name(typing.get_args(bare)[0])}]"
    else:
        name = bare.__name__
    bound = _range(tp)
    return f"{name} ({bound})" if bound else name


def describe_fields(cls, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, help) for every field: --help explains every option from this."""
    out = []
    hints = typing.get_type_hints(cls, include_extras=True)
    inst = cls()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        val = getattr(inst, f.name)
        if dataclasses.is_dataclass(val):
            out.extend(describe_fields(type(val), prefix + f.name + "."))
        else:
            docs = [m.description for m in _metadata(tp) if getattr(m, "description", None)]
            out.append((prefix + f.name, _type_name(tp), repr(val), docs[0] if docs else ""))
    return out
