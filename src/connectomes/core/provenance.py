"""What software produced a result: recorded in prepared data and in every evaluation JSON."""

from __future__ import annotations

import platform
from importlib import metadata

VERSION = "0.1.0"
PACKAGES = ("torch", "numpy", "tiktoken", "tokenizers", "scipy", "scikit-learn")


def versions() -> dict:
    out = {"connectomes": VERSION, "python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out
