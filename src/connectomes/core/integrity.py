"""File digests: sha256 of a file, and a manifest {relative path: sha256} for a folder.

Written when a file is produced, checked before it is used, so a flipped bit or a file swapped by
hand is caught with its name instead of silently changing results. Used for prepared token shards
(meta.json holds their digests); checkpoints and connectome files can call the same functions.

Cost: sha256 runs at roughly disk/CPU speed (see docs/reliability.md for the measured rate), so a
folder is verified once when it is opened, never per read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

from .atomic import atomic_write_text
from .errors import UserError
from .readers import read_json

MANIFEST = "manifest.json"


class IntegrityError(UserError):
    """A file's bytes differ from the digest recorded when it was written."""


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_file(path: str | Path, expected: str, *, remedy: str, error: type[UserError] = IntegrityError) -> None:
    """Raise ``error`` naming ``path`` when it is missing or its sha256 is not ``expected``;
    ``remedy`` says what to do (e.g. "re-run `connectomes prepare`")."""
    path = Path(path)
    if not isinstance(expected, str):
        raise error(f"the digest recorded for {path} is {expected!r}, not a sha256; {remedy}")
    if path.exists() and not path.is_file():  # a folder or a pipe: hashing would fail or hang
        raise error(f"{path} is not a regular file; {remedy}")
    try:
        got = sha256_file(path)
    except FileNotFoundError:
        raise error(f"{path} is missing; {remedy}") from None
    except OSError as e:
        raise error(f"cannot read {path} ({e.strerror}); {remedy}") from None
    if got != expected:
        raise error(f"{path} is corrupt: its sha256 is {got[:12]}…, not the {expected[:12]}… recorded when it was "
                    f"written (a changed or damaged file); {remedy}")


def record_manifest(folder: str | Path, files: Iterable[str | Path] | None = None) -> dict[str, str]:
    """{path relative to ``folder``, with '/': sha256} for ``files`` (default: every file below
    ``folder`` except a manifest itself), in sorted order."""
    folder = Path(folder)
    if files is None:
        files = [p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST]
    rels = sorted({_relative(folder, f).as_posix() for f in files})
    return {rel: sha256_file(folder / rel) for rel in rels}


def _relative(folder: Path, file: str | Path) -> Path:
    """``file`` relative to ``folder``: an absolute path, a path under ``folder`` as given (rglob of a
    relative folder yields "runs/x/steps/.../f"), or a name already relative to it."""
    path = Path(file)
    if path.is_absolute():
        return path.resolve().relative_to(folder.resolve())
    try:
        return path.relative_to(folder)
    except ValueError:
        return path


def write_manifest(folder: str | Path, files: Iterable[str | Path] | None = None, name: str = MANIFEST) -> dict[str, str]:
    """Record the manifest of ``folder`` into ``folder/name`` (atomically) and return it."""
    manifest = record_manifest(folder, files)
    store_manifest(folder, manifest, name)
    return manifest


def store_manifest(folder: str | Path, manifest: dict[str, str], name: str = MANIFEST) -> None:
    """Write an already computed ``manifest`` into ``folder/name`` atomically (e.g. one with an
    entry dropped after its file was deleted: re-hashing the rest would bless a damaged file)."""
    atomic_write_text(Path(folder) / name, json.dumps({"sha256": manifest}, indent=2, sort_keys=True) + "\n")


def read_manifest(folder: str | Path, name: str = MANIFEST, *, remedy: str,
                  error: type[UserError] = IntegrityError) -> dict[str, str]:
    path = Path(folder) / name
    if not path.exists() and not path.is_symlink():
        raise error(f"{path} is missing, so {folder} cannot be checked; {remedy}")
    sha = read_json(path, remedy=remedy, error=error).get("sha256")
    if not isinstance(sha, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in sha.items()):
        raise error(f"{path} has no {{'sha256': {{path: digest}}}} table; {remedy}")
    return sha


def verify_manifest(folder: str | Path, manifest: dict[str, str] | None = None, *, remedy: str,
                    name: str = MANIFEST, error: type[UserError] = IntegrityError) -> None:
    """Check every file of ``manifest`` (default: the one stored in ``folder/name``) against its
    digest; the first missing or changed file raises ``error`` naming it."""
    folder = Path(folder)
    if manifest is None:
        manifest = read_manifest(folder, name, remedy=remedy, error=error)
    for rel, digest in sorted(manifest.items()):
        if Path(rel).is_absolute() or ".." in Path(rel).parts:  # a manifest must not point outside its folder
            raise error(f"{folder / name} lists {rel!r}, which is outside {folder}; {remedy}")
        verify_file(folder / rel, digest, remedy=remedy, error=error)


# -- result digests -------------------------------------------------------------------------------
# A result (an evaluation JSON, a metrics.jsonl record) carries the sha256 of its own content, so a
# number changed by hand afterwards is named as changed when the report reads it. It is a seal against
# edits and damage that still parse, not a signature: whoever rewrites a number can recompute it.

DIGEST_KEY = "content_sha256"


def content_digest(obj: dict) -> str:
    """sha256 of ``obj``'s canonical JSON, its own digest left out."""
    body = {k: v for k, v in obj.items() if k != DIGEST_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def sealed(obj: dict) -> dict:
    """``obj`` as it reads back from JSON (tuples as lists, keys as strings), with its digest added."""
    plain = json.loads(json.dumps(obj, default=str))
    plain[DIGEST_KEY] = content_digest(plain)
    return plain


def seal_state(obj: dict) -> str:
    """"intact" (the digest matches the content), "unsealed" (no digest: written before results were
    sealed, or stripped) or "changed" (a number differs from what was written)."""
    digest = obj.get(DIGEST_KEY)
    if digest is None:
        return "unsealed"
    return "intact" if digest == content_digest(obj) else "changed"


def seal_problem(obj: dict) -> str | None:
    """Why ``obj`` is not vouched for by its digest (None when it is)."""
    return {"intact": None, "unsealed": "carries no digest of its content (edited by hand, or written by an older version)",
            "changed": "was changed after it was written (its content does not match its digest)"}[seal_state(obj)]
