"""The config machinery: typed sections, YAML load/save, dotted overrides, one-line errors, hashes and --help.

Each layer declares its own section as a plain dataclass (``model``, ``data``, ``train``, ``eval``, ...)
whose field types carry their choices (``Literal``), range and one-line doc; the whole config composes
them (connectomes.pipeline.config). pydantic checks loaded data against those types and ``--help``
prints them, so the two never disagree. Unknown keys and badly typed values are errors that name the
key and list the valid ones, so a typo never silently falls back to a default. The resolved config
(every default written out) is saved into each run folder, where its hash identifies what produced
a result.
"""

import copy
import dataclasses
import hashlib
import json
import typing
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Literal

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from .axes import METADATA as AXIS_METADATA
from .errors import ConfigError
from .inputs import parse_bool
from .presets import preset_names, resolve_config_path
from .readers import parse_yaml, read_yaml

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

    def __init__(self, names: Callable[[], Iterable[str]], accepts: Callable[[str], bool] | None = None):
        self.names = names  # as messages and --help list them
        self.accepts = accepts  # for a registry with parameterised names (e.g. arms' transplant:<group>)

    def __call__(self, value: str) -> str:
        if not (self.accepts(value) if self.accepts is not None else value in list(self.names())):
            raise ValueError("not a registered name")
        return value


def doc(text: str):
    return Field(description=text)


Int = Annotated[int, BeforeValidator(_number)]
# inf and nan pass a range check (inf > 0) and surface as a NaN loss after the run folder was made
Float = Annotated[float, BeforeValidator(_number), Field(allow_inf_nan=False)]
Bool = Annotated[bool, BeforeValidator(parse_bool)]
PosInt = Annotated[Int, Field(ge=1)]
Count = Annotated[Int, Field(ge=0)]  # 0 allowed: "none" or "off"
PosFloat = Annotated[Float, Field(gt=0)]
NonNegFloat = Annotated[Float, Field(ge=0)]
Beta = Annotated[Float, Field(ge=0, lt=1)]
# torch, numpy and Python's random all take a seed in [0, 2**63): one range for every seed (check_seed)
Seed = Annotated[Int, Field(ge=0, lt=2**63)]


def comma_list(item):
    return Annotated[list[item], BeforeValidator(_as_list)]


SECTION = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

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
        if isinstance(part, int) or typing.get_origin(bare) is dict:  # a list item, or a mapping's value
            tp = typing.get_args(bare)[-1]
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
    return " and ".join(f"{op} {_bound(getattr(m, k))}" for m in _metadata(tp) for k, op in bounds.items()
                        if getattr(m, k, None) is not None)


def _bound(value: Any) -> str:
    """A range bound as a person reads it: a seed's 2**63 as ``2**63``, not 9223372036854775808."""
    if isinstance(value, int) and value >= 2**16 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return str(value)


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
    if err["type"] == "finite_number":
        return f"{key} = {value!r} must be a finite number" + (f" ({_range(tp)})" if _range(tp) else "")
    bare = _bare(tp)
    return f"{key} must be {_KIND.get(typing.get_origin(bare) or bare, 'valid')}, got {value!r}"


@cache
def _adapter(cls) -> TypeAdapter:
    return TypeAdapter(cls)


def check_seed(value: Any, key: str = "seed") -> int:
    """``value`` as a seed (a whole number in :data:`Seed`'s range), else one ConfigError naming ``key`` and
    the range. Text is read as an integer first: a float would round 2**63 - 1 up, out of range."""
    parsed = value
    if isinstance(value, str):
        try:
            parsed = int(value)
        except ValueError:
            pass  # pydantic says what it is not
    try:
        return _adapter(Seed).validate_python(parsed)
    except ValidationError:
        raise ConfigError(f"{key} = {value!r} must be {_range(Seed)}: a seed is a whole number below 2**63, the range "
                          "torch, numpy and Python's random take") from None


def from_dict(cls, data: dict, prefix: str = ""):
    """A section (or the whole Config) from plain data, checked against the field types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'the config'} must be a mapping of its fields, got {data!r}")
    try:
        return _adapter(cls).validate_python(data)
    except ValidationError as e:
        errors = sorted(e.errors(), key=lambda x: x["type"] != "unexpected_keyword_argument")
        raise ConfigError(_message(cls, errors[0], prefix)) from None


# A setting added after run folders already existed: at its default it is left out of the resolved config
# and of every hash, so those folders keep their identity and resume (sweep axes are such settings too).
LATER = "added_later"


def later_field(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING) -> Any:
    """A field for a setting added after run folders existed (see LATER)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={LATER: True})


def _at_default(f: dataclasses.Field, value: Any) -> bool:
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return value == default


def to_dict(obj) -> dict:
    """Plain data of a config section (deep-copied), without sweep axes (core.axes) and later settings (LATER)
    at their defaults."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if (f.metadata.get(AXIS_METADATA) or f.metadata.get(LATER)) and _at_default(f, value):
            continue
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
    return out


# a run folder's name plus the longest suffix the toolkit adds to a sibling (".tmp<pid>") fits NAME_MAX (255 bytes)
MAX_NAME_BYTES = 200


def check_run_name(name: str) -> None:
    """The run folder is <runs_dir>/<name>: the name must be one plain path component, so a run
    never writes outside runs_dir (``..``, ``/``) or into runs_dir itself (empty), nor hides (``.``);
    no control characters (a newline would name another folder than the one shown) and short enough
    for every file system."""
    if (not name or name.startswith(".") or "/" in name or "\\" in name
            or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise ConfigError(f"name = {name!r} must be one folder name (no '/', no control characters, not empty, "
                          "not starting with '.'); e.g. name=my_run")
    if len(name.encode("utf-8", errors="surrogateescape")) > MAX_NAME_BYTES:
        raise ConfigError(f"name is {len(name.encode('utf-8', errors='surrogateescape'))} bytes long; a run name may "
                          f"have at most {MAX_NAME_BYTES} (file systems limit a folder name to 255)")


# Settings that change how a run is carried out or observed but not a number it produces; a run
# folder may be continued with other values of these.
RESULT_NEUTRAL = ("workers", "log")
# Whole sections of such settings (how the machine is used: core.runtime).
RESULT_NEUTRAL_SECTIONS = ("runtime",)
# Where a run is, not what it is: the same folder reached as runs/x and /abs/runs/x is one run.
LOCATION = ("name", "runs_dir")


def result_neutral(key: str) -> bool:
    """Whether the dotted ``key`` names a setting in :data:`RESULT_NEUTRAL` or a :data:`RESULT_NEUTRAL_SECTIONS` section."""
    return key.rsplit(".", 1)[-1] in RESULT_NEUTRAL or key.split(".", 1)[0] in RESULT_NEUTRAL_SECTIONS


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
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
    if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in raw):
        # YAML would fold a line break into a space: name=a<newline>b would name the folder "a b"
        raise ConfigError(f"override {key.strip()!r}: its value holds a line break or control character; "
                          "give a one-line value")
    value = parse_yaml(raw, f"the value of override {text!r}", remedy="quote it or fix it (e.g. key=[1,2])") \
        if raw.strip() else ""
    return key.strip(), value


def read_yaml_config(path: str | Path) -> dict:
    """A YAML config file as a mapping (empty file: {}); a missing, unparsable (one line with the line and
    column), repeated-key or non-mapping file is one ConfigError."""
    p = resolve_config_path(path)  # a bare preset name (demo) is the packaged config
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist and is no packaged preset; pass a YAML file or a preset "
                          f"name ({', '.join(preset_names())}; `connectomes config show NAME` prints one)")
    return read_yaml(p, remedy="fix the file (`connectomes config show demo` shows the layout)")


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """``data`` with each ``section.key=value`` override set (values parsed as YAML)."""
    for ov in overrides:
        k, v = parse_override(ov)
        set_dotted(data, k, v)
    return data


RUN_CONFIG_REMEDY = "restore it, or use another run name (name=...) or delete the run folder"


def read_run_config(path: str | Path, sections: Iterable[str] = ()) -> dict:
    """A run folder's config.yaml as a mapping holding every one of ``sections`` (it is written fully
    resolved); a damaged one (not YAML, binary, not a mapping, a section missing) is one ConfigError
    naming it, raised before a run writes anything into its folder."""
    path = Path(path)
    loaded = read_yaml(path, remedy=RUN_CONFIG_REMEDY)
    missing = [s for s in sections if s not in loaded]
    if missing:
        raise ConfigError(f"{path} is not a run's resolved config: it lacks {', '.join(missing)}; {RUN_CONFIG_REMEDY}")
    return loaded


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
        name = getattr(bare, "__name__", None) or str(bare).replace(" ", "")  # a union such as str | int
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
