"""The study configs that ship inside the package (``src/connectomes/configs/*.yaml``; ``configs/`` in a
checkout is a link to that folder, so there is one copy): a wheel installed anywhere runs
``connectomes study demo`` and prints one with ``connectomes config show demo``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def presets_dir() -> Path:
    """The packaged configs folder (a real folder: setuptools installs package data as files)."""
    return Path(str(resources.files("connectomes") / "configs"))


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def preset_path(name: str) -> Path | None:
    """The packaged config called ``name`` (with or without .yaml), else None."""
    stem = name[:-5] if name.endswith(".yaml") else name
    p = presets_dir() / f"{stem}.yaml"
    return p if "/" not in name and "\\" not in name and p.is_file() else None


def resolve_config_path(path: str | Path) -> Path:
    """``path`` when it exists; else a bare name of a packaged preset (``demo``) is that preset. A file the
    user has always wins over a preset of the same name: a local demo.yaml is what they mean."""
    p = Path(path)
    if p.exists():
        return p
    return preset_path(str(path)) or p
