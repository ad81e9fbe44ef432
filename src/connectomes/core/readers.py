"""One reader per file format: every file the package reads goes through one of these.

A file on disk may be missing, cut by a kill, flipped by a bad disk, edited by hand, swapped for a
folder, a pipe or another format, or hold the right syntax with the wrong shape (a list where an
object belongs). Each reader turns every such case into one error of the caller's class (``error``,
a :class:`UserError`) that names the file, says what is wrong with it and ends with ``remedy`` (what
to do), so no damaged file ever surfaces as a traceback. Callers that tolerate damage (the report)
catch that error; nothing else needs a try/except around a read.

``missing``: what to return when the file does not exist (default: that is an error too).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from .errors import CheckpointError, ConfigError, DataError, UserError

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|[\x00-\x1f\x7f]+")
_REQUIRED = object()
_ABSENT = object()
_KIND = {dict: "a JSON object", list: "a JSON list"}


def _one_line(text: str, limit: int) -> str:
    """A library's message as part of one line: no colour codes, no line breaks, bounded length."""
    text = " ".join(_ANSI.sub(" ", text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _fail(error: type[UserError], path: Path, why: str, remedy: str) -> UserError:
    return error(f"{path} {why}" + (f"; {remedy}" if remedy else ""))


def _absent(path, missing, remedy: str, error: type[UserError]):
    if missing is _REQUIRED:
        raise _fail(error, Path(path), "is missing", remedy)
    return missing


def read_bytes(path: str | Path, *, remedy: str, error: type[UserError] = DataError, missing: Any = _REQUIRED):
    """The file's bytes. A folder, pipe or device in its place is refused without blocking on it."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO put where a file belongs must not hang the process
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return _absent(path, missing, remedy, error)
    except IsADirectoryError:
        raise _fail(error, path, "is a folder, not a file", remedy) from None
    except OSError as e:
        raise _fail(error, path, f"cannot be read ({e.strerror})", remedy) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise _fail(error, path, "is a folder, not a file", remedy)
        if not stat.S_ISREG(st.st_mode):
            raise _fail(error, path, "is not a regular file (a pipe, socket or device)", remedy)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError as e:
        raise _fail(error, path, f"cannot be read ({e.strerror})", remedy) from None
    finally:
        os.close(fd)


def decode_utf8(raw: bytes, path: Path, *, remedy: str, error: type[UserError] = DataError) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(error, path, f"is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})", remedy) from None


def read_text(path: str | Path, *, remedy: str, error: type[UserError] = DataError, missing: Any = _REQUIRED):
    raw = read_bytes(path, remedy=remedy, error=error, missing=_ABSENT)
    if raw is _ABSENT:
        return _absent(path, missing, remedy, error)
    return decode_utf8(raw, Path(path), remedy=remedy, error=error)


def parse_json(text: str, path: Path, *, remedy: str, error: type[UserError] = DataError, expect: type | None = dict):
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(error, path, f"is not valid JSON ({e.msg}: line {e.lineno}, column {e.colno})", remedy) from None
    except RecursionError:
        raise _fail(error, path, "is not valid JSON (nested too deeply)", remedy) from None
    if expect is not None and not isinstance(obj, expect):
        raise _fail(error, path, f"holds {_describe(obj)}, not {_KIND.get(expect, expect.__name__)}", remedy)
    return obj


def read_json(path: str | Path, *, remedy: str, error: type[UserError] = DataError, expect: type | None = dict,
              missing: Any = _REQUIRED):
    """The parsed content of a JSON file, which must be of type ``expect`` (a dict by default)."""
    path = Path(path)
    text = read_text(path, remedy=remedy, error=error, missing=_ABSENT)
    if text is _ABSENT:
        return _absent(path, missing, remedy, error)
    return parse_json(text, path, remedy=remedy, error=error, expect=expect)


def _describe(obj) -> str:
    if obj is None:
        return "null"
    return _KIND.get(type(obj)) or f"a {type(obj).__name__} ({str(obj)[:20]!r})"


class JsonLines(NamedTuple):
    records: list[dict]
    cut_tail: bool  # the last line was cut short (a kill mid-append) and is not among the records


def read_jsonl(path: str | Path, *, remedy: str, error: type[UserError] = DataError, missing: Any = _REQUIRED):
    """The records (JSON objects, one a line) of an append-only file.

    Only the last line may be damaged without an error: a process killed mid-append leaves a cut last
    line with no newline after it, which is dropped (``cut_tail``). Any other line that is not a JSON
    object is damage and named with its number: dropping it would lose a record silently."""
    path = Path(path)
    raw = read_bytes(path, remedy=remedy, error=error, missing=_ABSENT)
    if raw is _ABSENT:
        return _absent(path, missing, remedy, error)
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline, as every whole append does
    records = []
    for i, line in enumerate(lines, 1):
        rec = _jsonl_record(line)
        if isinstance(rec, str):
            raise _fail(error, path, f"line {i} is damaged ({rec})", remedy)
        if rec is not None:
            records.append(rec)
    cut = False
    if tail.strip():
        rec = _jsonl_record(tail)
        cut = isinstance(rec, str)
        if not cut:
            records.append(rec)
    return JsonLines(records, cut)


def _jsonl_record(line: bytes) -> dict | str | None:
    """A line's record, None for a blank line, or a string saying why it is not a record."""
    if not line.strip():
        return None
    try:
        rec = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as e:
        return f"not valid JSON: {e.msg}"
    except RecursionError:
        return "nested too deeply"
    return rec if isinstance(rec, dict) else f"{_describe(rec)}, not a JSON object"


# -- YAML -------------------------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""


def _mapping_without_repeats(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    first: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # keys merged in with << may be overridden on purpose; only keys written twice are refused
        key = loader.construct_object(key_node, deep=True)
        try:
            seen = key in first
        except TypeError:
            continue  # an unhashable key: the base constructor reports it
        if seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (first given at line {first[key] + 1})",
                                                    key_node.start_mark)
        first[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)
# Integers are plain decimals only. YAML 1.1 also reads 0x128 as hex (296), 012 as octal, 0b1 as binary and
# 4:30 as base 60 (270), so a model.shapes entry "0x128" became '296' and a seed written 010 became 8; such text
# now stays text, and the field that receives it says whether it fits.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"),
                                    list("-+0123456789"))


def parse_yaml(text: str, source: str, *, remedy: str = "", error: type[UserError] = ConfigError):
    """YAML text as Python data; a syntax error or a repeated key is one line naming ``source``, line and column."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = _one_line(str(e.problem or e.context or "unreadable"), 200)
        raise error(f"{source} is not valid YAML: {problem}{where}" + (f"; {remedy}" if remedy else "")) from None
    except (yaml.YAMLError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else _one_line(str(e), 200)
        raise error(f"{source} is not valid YAML: {why}" + (f"; {remedy}" if remedy else "")) from None


def read_yaml(path: str | Path, *, remedy: str, error: type[UserError] = ConfigError, missing: Any = _REQUIRED) -> dict:
    """A YAML file that holds a mapping (an empty file is an empty one)."""
    path = Path(path)
    text = read_text(path, remedy=remedy, error=error, missing=_ABSENT)
    if text is _ABSENT:
        return _absent(path, missing, remedy, error)
    loaded = parse_yaml(text, str(path), remedy=remedy, error=error)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise _fail(error, path, f"must be a mapping of sections, got {type(loaded).__name__}", remedy)
    return loaded


# -- tensors ----------------------------------------------------------------------------------------

def _regular_file(path: Path, remedy: str, error: type[UserError]) -> None:
    """Refuse what the tensor libraries would mishandle: absent, a folder (IsADirectoryError) or a pipe (a hang)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _fail(error, path, "is missing", remedy) from None
    except OSError as e:
        raise _fail(error, path, f"cannot be read ({e.strerror})", remedy) from None
    if not stat.S_ISREG(st.st_mode):
        raise _fail(error, path, "is a folder, not a file" if stat.S_ISDIR(st.st_mode) else "is not a regular file", remedy)


def read_safetensors(path: str | Path, *, remedy: str, error: type[UserError] = CheckpointError,
                     framework: str = "pt") -> tuple[dict, dict]:
    """(tensors, the header's string metadata) of a safetensors file. The library checks that every
    tensor's shape and offsets fit inside the file before it allocates, so a forged header cannot
    ask for more memory than the file holds."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    _regular_file(path, remedy, error)
    try:
        with safe_open(str(path), framework=framework) as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError, MemoryError) as e:
        raise _fail(error, path, f"is not a readable safetensors file ({_one_line(str(e), 200)})", remedy) from None


def read_torch(path: str | Path, *, remedy: str, error: type[UserError] = CheckpointError):
    """A torch.save file read with ``weights_only=True``: tensors and plain containers, never code."""
    import torch

    path = Path(path)
    _regular_file(path, remedy, error)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises a dozen types for a damaged zip or a forbidden global
        why = _one_line(str(e), 160)
        raise _fail(error, path, f"cannot be loaded safely ({type(e).__name__}: {why})", remedy) from None
