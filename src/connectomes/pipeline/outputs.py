"""What a study computed, as comparable content: every file of a run folder that a study writes as a result
(weights, masks, connectomes, records, metrics, evaluations), JSON without its timing fields. Two runs of
one study agree on it whoever ran which item (study workers) and however many threads they used."""

from __future__ import annotations

import json
from pathlib import Path

from .config import load_config

# timing fields, and the digest each result carries of its own content (timings included)
TIMING = {"timing_s", "wall_s", "train_wall_s", "content_sha256"}
# digests of text that names the run's path: they differ between runs made at different paths alone
PATH_DIGESTS = {"config_sha256", "config_hash", "header_sha256"}
# claims and the lock (who held what), the report (drawn from the rest), SLURM logs, and config.yaml, which
# records the runtime settings (workers, threads)
SKIP_DIRS = {".claims", "report", "slurm"}
SKIP_NAMES = {".lock", "config.yaml"}


def _strip(obj, keys: set[str]):
    if isinstance(obj, dict):
        return {k: _strip(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [_strip(v, keys) for v in obj]
    return obj


def _safetensors(data: bytes, keys: set[str], place) -> tuple:
    """(header with paths replaced by ``place`` and without the digests in ``keys``, the tensor bytes): a
    connectome file's header holds JSON that names its source run."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(place(data[8:8 + n]))
    meta = header.get("__metadata__", {})
    header["__metadata__"] = {k: _strip(json.loads(v), keys) if k == "connectome" else v for k, v in meta.items()}
    return header, data[8 + n:]


def run_outputs(run_dir: Path, moved: bool = False) -> dict:
    """{relative path: content} of every computed file of ``run_dir``. ``moved``: compare runs made at
    different paths: the run's path and its runs folder's (from its config.yaml) read as placeholders, and the
    digests over text that holds them left out; every tensor, metric and record is still compared in full."""
    keys = TIMING | (PATH_DIGESTS if moved else set())
    run_dir = Path(run_dir).resolve()
    made = load_config(run_dir / "config.yaml") if moved else None  # where the run was made: what its files name
    made_at = (Path(made.runs_dir) / made.name, Path(made.runs_dir)) if made else ()

    def place(b: bytes) -> bytes:
        for path, holder in zip(made_at, (b"<run>", b"<runs>")):
            b = b.replace(str(path).encode(), holder)
        return b

    out = {}
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if not p.is_file() or p.is_symlink() or rel.parts[0] in SKIP_DIRS or rel.name in SKIP_NAMES:
            continue
        data = p.read_bytes()
        if moved and p.suffix == ".safetensors":
            out[str(rel)] = _safetensors(data, keys, place)
            continue
        if moved:
            data = place(data)
        if p.suffix == ".json":
            data = _strip(json.loads(data), keys)
            if moved and rel.name == "manifest.json":  # the digest of state.json, which holds the path
                data.get("sha256", {}).pop("state.json", None)
        elif p.suffix == ".jsonl":
            data = [_strip(json.loads(line), keys) for line in data.decode().splitlines()]
        out[str(rel)] = data
    return out


def differences(runs: list[Path], moved: bool = False) -> tuple[int, list[str]]:
    """(files in the first run, the files that differ from it or are missing in any other run)."""
    first = run_outputs(runs[0], moved)
    diff = set()
    for other in runs[1:]:
        o = run_outputs(other, moved)
        diff |= {k for k in first.keys() | o.keys() if first.get(k) != o.get(k)}
    return len(first), sorted(diff)
