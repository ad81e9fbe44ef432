"""Typed configuration: one dataclass per section, YAML load/save, dotted CLI overrides.

Unknown keys and badly typed values are errors that name the key and list the valid ones, so a
typo never silently falls back to a default. The resolved config (every default written out) is
saved into each run folder and its hash identifies what produced a result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError
from .model import PRESETS, GPTConfig


class ConfigError(UserError):
    pass


@dataclass
class ModelConfig:
    """Model shape: a preset name plus optional per-field overrides (method.md §1)."""

    preset: str = "demo"  # demo | replicate-cpu | gpt2-124m | gpt2-417m (sizes in model.PRESETS)
    vocab_size: int | None = None  # override; default = tokenizer vocabulary padded to a multiple of 64
    n_layer: int | None = None  # override the preset's number of blocks
    n_head: int | None = None  # override the preset's attention heads
    n_embd: int | None = None  # override the preset's width
    block_size: int | None = None  # override the preset's context length

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

    source: str = "local"  # local | fineweb | synthetic
    path: str = ""  # local: folder of .txt/.jsonl/.jsonl.gz (relative paths also tried inside $CONNECTOMES_DATA); empty = $CONNECTOMES_DATA/corpus
    tokenizer: str = "bytes"  # gpt2 | bytes | bpe-N
    gpt2_bpe_file: str = ""  # local gpt2.tiktoken; empty = $CONNECTOMES_DATA/gpt2/gpt2.tiktoken if present
    large_tokens: int = 2_000_000  # tokens in the outer-loop split L (paper: 4B)
    small_tokens: int = 200_000  # tokens in the inner-loop split S (paper: 100M)
    val_tokens: int = 100_000  # tokens in the validation split
    seed: int = 0  # document shuffle seed for the split
    shard_tokens: int = 10_000_000  # tokens per shard file
    fineweb_name: str = "HuggingFaceFW/fineweb"  # Hugging Face dataset name for source=fineweb (or a local dataset folder)
    fineweb_subset: str = "sample-10BT"  # FineWeb configuration name
    fineweb_split: str = "train"  # FineWeb split
    synthetic_fallback: bool = True  # demo: generate text when the data folder is absent
    dir: str = ""  # prepared data folder; empty = <run>/data
    workers: int = 1  # tokenising processes for prepare; the output is byte-identical for any count


@dataclass
class TrainConfig:
    """One training loop's settings (method.md §3): schedule, optimizer, batch, cadence."""

    iters: int = 200  # optimizer steps
    warmup_iters: int = 20  # linear warmup from 0 to lr over the first warmup_iters steps
    warmdown_iters: int = 100  # linear decay to min_lr over the last warmdown_iters
    lr: float = 3e-3  # peak learning rate
    min_lr: float = 0.0  # learning rate at the end of the decay
    beta1: float = 0.9  # Adam beta1
    beta2: float = 0.95  # Adam beta2
    weight_decay: float = 0.1  # decoupled weight decay (AdamW)
    grad_clip: float = 1.0  # global gradient-norm clip (0 = off)
    optimizer: str = "adamw"  # adamw | muon
    batch_size: int = 16  # global sequences per step, whatever the process count
    micro_batch_size: int = 16  # sequences per forward pass per process
    eval_every: int = 50  # validation cadence in steps (0 = only at the end)
    eval_tokens: int = 32_768  # fixed validation token budget
    save_every: int = 100  # checkpoint cadence in steps (0 = only at the end)
    keep_steps: list[int] = field(default_factory=list)  # steps whose weights are kept for evaluation
    seed: int = 0  # seed for torch's RNG at the start of training
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16
    compile: bool = False  # torch.compile the model (CUDA)
    activation_checkpointing: bool = False  # recompute each block in backward: less activation memory, ~1/3 more forward FLOPs
    log_every: int = 10  # metrics.jsonl cadence in steps


@dataclass
class EvolveConfig:
    """The outer loop (method.md §3)."""

    generations: int = 6  # outer-loop generations G (paper: 6); each ends with one pruning
    prune_fraction: float = 0.2  # fraction of the still-alive weights removed per generation
    prune_scope: str = "per_tensor"  # per_tensor | global
    reinit: str = "signed_constant"  # signed_constant | rewind
    reinit_constant: float = 0.02  # c in sign(w) * c
    rewind_step: int = 0  # step of generation 0 whose weights rewind uses
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class DevelopConfig:
    """The inner loop and its controls (method.md §4)."""

    arms: list[str] = field(default_factory=lambda: ["connectome", "random", "dense"])  # connectome | random | dense | mask_only
    seeds: list[int] = field(default_factory=lambda: [0])  # seeds per arm: init, random-connectome draw and data order
    init_constant: float = 0.02  # c: connectome arms start with weights = ternary * c
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class EvalConfig:
    """Evaluations run over saved steps of every inner-loop arm (method.md §6)."""

    tasks: list[str] = field(default_factory=lambda: ["val_loss", "hellaswag", "mmlu", "reading_times", "fmri", "langloc"])  # tasks run on each arm's final step
    step_tasks: list[str] = field(default_factory=lambda: ["val_loss", "reading_times"])  # tasks run on every kept step (curves over training)
    limit: int = 0  # items per task (0 = all)
    batch_size: int = 16  # sequences per forward pass during evaluation
    data_root: str = ""  # folder with hellaswag/, mmlu/, ...; empty = $CONNECTOMES_DATA


@dataclass
class Config:
    name: str = "run"  # run name: the run folder is <runs_dir>/<name>
    runs_dir: str = "runs"  # folder that holds run folders
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    develop: DevelopConfig = field(default_factory=DevelopConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


CHOICES = {
    "data.source": ("local", "fineweb", "synthetic"),
    "train.optimizer": ("adamw", "muon"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.dtype": ("auto", "float32", "bfloat16"),
    "evolve.prune_scope": ("per_tensor", "global"),
    "evolve.reinit": ("signed_constant", "rewind"),
}


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


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping of its fields, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if origin is list:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # `develop.seeds=0` on the command line means the list [0]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_coerce(v, args[0], key) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            f = float(str(value).replace("_", ""))
        except ValueError:
            raise ConfigError(f"{key} must be an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls, data: dict, prefix: str = ""):
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown config key {prefix + unknown[0]!r}; valid keys{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    obj = cls(**kwargs)
    return obj


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def _validate(cfg: Config) -> None:
    for k, v in flatten(to_dict(cfg)).items():
        short = ".".join(k.split(".")[-2:])
        if short in CHOICES and v not in CHOICES[short]:
            raise ConfigError(f"{k} = {v!r} is not one of {', '.join(CHOICES[short])}")
    tok = cfg.data.tokenizer
    if not (tok in ("gpt2", "bytes") or (tok.startswith("bpe-") and tok[4:].isdigit() and int(tok[4:]) >= 257)):
        raise ConfigError(f"data.tokenizer = {tok!r}; use gpt2, bytes or bpe-N (N >= 257 merges+bytes vocabulary size)")
    for arm in cfg.develop.arms:
        if arm not in ("connectome", "random", "dense", "mask_only"):
            raise ConfigError(f"develop.arms contains {arm!r}; valid arms: connectome, random, dense, mask_only")
    for section in ("train", "evolve.train", "develop.train"):
        t = cfg.train if section == "train" else getattr(cfg, section.split(".")[0]).train
        if t.batch_size % t.micro_batch_size and t.micro_batch_size < t.batch_size:
            raise ConfigError(f"{section}.batch_size ({t.batch_size}) must be a multiple of {section}.micro_batch_size ({t.micro_batch_size})")
        if t.warmup_iters + t.warmdown_iters > t.iters:
            raise ConfigError(f"{section}: warmup_iters + warmdown_iters ({t.warmup_iters} + {t.warmdown_iters}) exceed iters ({t.iters})")
    if not 0.0 < cfg.evolve.prune_fraction < 1.0:
        raise ConfigError(f"evolve.prune_fraction must be in (0, 1), got {cfg.evolve.prune_fraction}")
    cfg.model.gpt_config(vocab_size=256)  # validates shape fields


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


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def config_hash(obj: Any) -> str:
    """Stable short hash of a config (or any JSON-able dict) for provenance and stage matching."""
    d = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _field_comments(cls) -> dict[str, str]:
    """The ``# comment`` after each field in the class source: the single place options are documented."""
    import inspect
    import re

    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    doc = (cls.__doc__ or "").strip().splitlines()
    out["__doc__"] = doc[0] if doc else ""
    return out


def describe_fields(cls, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, help) for every field: --help explains every option from this."""
    out = []
    hints = _hints(cls)
    comments = _field_comments(cls)
    inst = cls()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        val = getattr(inst, f.name)
        if dataclasses.is_dataclass(val):
            out.extend(describe_fields(type(val), prefix + f.name + "."))
        else:
            tname = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
            out.append((prefix + f.name, tname, repr(val), comments.get(f.name, "")))
    return out
