"""What software produced a result: recorded in prepared data and in every evaluation JSON."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("torch", "numpy", "tiktoken", "tokenizers", "scipy", "scikit-learn")


def versions() -> dict:
    from . import __version__

    out = {"connectomes": __version__, "python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out
