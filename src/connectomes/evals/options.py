"""Typed reads of ``EvalContext.options``.

Options arrive either from Python (real bools, ints, lists) or from the command line as strings
(``--option skip_malformed=false``); ``bool("false")`` is True, so every read goes through here.
"""

from __future__ import annotations

from ..errors import UserError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def flag(options: dict, key: str, default: bool = False) -> bool:
    v = options.get(key, default)
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise UserError(f"option {key}={v!r} is not a yes/no value; use {key}=true or {key}=false")


def integer(options: dict, key: str, default: int, minimum: int = 1) -> int:
    v = options.get(key, default)
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise UserError(f"option {key}={v!r} is not an integer; pass e.g. {key}={default}") from None
    if n < minimum:
        raise UserError(f"option {key}={n} must be at least {minimum}")
    return n


def choices(options: dict, key: str, default: list[str], valid: tuple[str, ...]) -> list[str]:
    """A list option given as a list or a comma-separated string, each entry checked against ``valid``."""
    v = options.get(key, default)
    items = [s.strip() for s in (v.split(",") if isinstance(v, str) else v) if str(s).strip()]
    bad = [s for s in items if s not in valid]
    if bad or not items:
        raise UserError(f"option {key}={v!r} must list one or more of {', '.join(valid)}")
    return items
