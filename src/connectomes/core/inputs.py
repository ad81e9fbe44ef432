"""Reading what a user typed: yes/no values and data paths, one way each for configs and task options."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .errors import DataError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_bool(value: Any) -> bool:
    """A real bool, or a command-line/YAML spelling of one; ``bool("false")`` is True, so never use bool()."""
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a yes/no value (true/false, yes/no, on/off, 1/0)")


def resolve_data_path(explicit: str | Path | None, data_root: Path | None, default: str, what: str) -> Path:
    """The path the user gave (a relative one that does not exist is also tried inside the data
    folder), else ``data_root/default``. ``what`` names the setting in the error when neither exists."""
    if explicit:
        p = Path(explicit)
        if not p.is_absolute() and not p.exists() and data_root is not None:
            return Path(data_root) / p
        return p
    if data_root is None:
        raise DataError(f"no data folder for {what}: set {what} to the path, "
                        "or CONNECTOMES_DATA (or --data-root) to the data folder")
    return Path(data_root) / default


def default_data_root() -> Path | None:
    """$CONNECTOMES_DATA, else ../shared/data when it exists (the layout of this project's machines), else the
    user cache folder `connectomes data fetch` fills, when it exists."""
    env = os.environ.get("CONNECTOMES_DATA")
    if env:
        return Path(env)
    for cand in (Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[4] / "shared" / "data",
                 user_data_dir()):
        if cand.is_dir():
            return cand
    return None


def user_data_dir() -> Path:
    """Where `connectomes data fetch` puts the data when $CONNECTOMES_DATA is unset: the platform's user cache
    folder (as platformdirs names it: $XDG_CACHE_HOME or ~/.cache on Linux, ~/Library/Caches on macOS,
    %LOCALAPPDATA% on Windows), under connectomes/data."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "connectomes" / "data"
