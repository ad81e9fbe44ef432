"""The connectome as a file (method.md §5).

``connectome.safetensors`` (the canonical form): per tensor ``<name>.mask`` = the alive bits packed
8 per byte (numpy ``packbits``, big-endian bit order, row-major flat order) and ``<name>.signs`` = one
bit per alive weight in the same order (1 = positive), plus JSON metadata in the safetensors header:
format, per-tensor shape/numel/nnz/density, model config, generation, provenance, and a sha256 of the
decoded ternary content so any tampering is detected. ~1 + d bits/weight; loading never runs code.

``*.cnx`` (``codec="ans"``): the entropy-coded form for the information-theoretic claim. Per tensor
the symbols {pruned, +, -} are coded with constriction's ANS under that tensor's own categorical
model (its measured frequencies, stored in the header), reaching the i.i.d. Shannon bound
H(d) + d*H(sign balance) bits/weight to within a fraction of a percent.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as np_load_file
from safetensors.numpy import save_file as np_save_file

from .connectome import Connectome
from .errors import CheckpointError

FORMAT = "connectome-packed/1"
ANS_FORMAT = "connectome-ans/1"
ANS_MAGIC = b"CNXANS01"
PAPER_ESTIMATE_MB = 16.0


def content_hash(conn: Connectome) -> str:
    h = hashlib.sha256()
    for name in sorted(conn.ternary):
        t = conn.ternary[name]
        h.update(name.encode() + b"\0" + json.dumps(list(t.shape)).encode() + b"\0")
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def _header(conn: Connectome, fmt: str) -> dict:
    tensors = {}
    for name, t in conn.ternary.items():
        nnz = int((t != 0).sum())
        tensors[name] = {"shape": list(t.shape), "numel": t.numel(), "nnz": nnz, "density": nnz / t.numel()}
    return {"format": fmt, "tensors": tensors, "meta": conn.meta, "sha256": content_hash(conn)}


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def save_connectome(conn: Connectome, path: str | Path, codec: str | None = None) -> Path:
    path = Path(path)
    if codec in (None, "packed"):
        arrays = {}
        for name, t in conn.ternary.items():
            flat = t.view(-1).numpy()
            alive = flat != 0
            arrays[f"{name}.mask"] = np.packbits(alive)
            arrays[f"{name}.signs"] = np.packbits(flat[alive] > 0)
        header = _header(conn, FORMAT)
        _atomic(path, lambda tmp: np_save_file(arrays, str(tmp), metadata={"connectome": json.dumps(header)}))
        return path
    if codec == "ans":
        return _save_ans(conn, path)
    raise ValueError(f"unknown codec {codec!r}; use packed or ans")


def _load_packed(path: Path) -> Connectome:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        arrays = np_load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable connectome file ({e}); it is truncated or not a safetensors file") from None
    if "connectome" not in meta:
        raise CheckpointError(f"{path} is a safetensors file but not a connectome (no connectome metadata)")
    try:
        header = json.loads(meta["connectome"])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path} has corrupt connectome metadata") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} has format {header.get('format')!r}, expected {FORMAT!r}")
    ternary = {}
    for name, info in header["tensors"].items():
        numel, nnz = info["numel"], info["nnz"]
        if int(np.prod(info["shape"])) != numel:
            raise CheckpointError(f"{path}: tensor {name} shape {info['shape']} does not match numel {numel}")
        try:
            mask = np.unpackbits(arrays[f"{name}.mask"], count=numel).astype(bool)
            signs_packed = arrays[f"{name}.signs"]
        except KeyError as e:
            raise CheckpointError(f"{path}: entry {e} is missing; the file is damaged") from None
        except ValueError:
            raise CheckpointError(f"{path}: mask of {name} is shorter than its {numel} weights; the file is damaged") from None
        if int(mask.sum()) != nnz or signs_packed.size != (nnz + 7) // 8:
            raise CheckpointError(f"{path}: tensor {name} holds {int(mask.sum())} alive weights but its header says {nnz}; "
                                  "the file was modified or damaged")
        flat = np.zeros(numel, dtype=np.int8)
        flat[mask] = np.where(np.unpackbits(signs_packed, count=nnz).astype(bool), 1, -1)
        ternary[name] = torch.from_numpy(flat.reshape(info["shape"]))
    conn = Connectome(ternary, header.get("meta", {}))
    if content_hash(conn) != header.get("sha256"):
        raise CheckpointError(f"{path}: content hash mismatch; the file was modified or damaged")
    return conn


def _save_ans(conn: Connectome, path: Path) -> Path:
    import constriction

    header = _header(conn, ANS_FORMAT)
    blobs = []
    for name, t in conn.ternary.items():
        flat = t.view(-1).numpy()
        symbols = np.where(flat == 0, 0, np.where(flat > 0, 1, 2)).astype(np.int32)
        counts = np.bincount(symbols, minlength=3).astype(np.float64)
        probs = _probs(counts)
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(symbols, constriction.stream.model.Categorical(probs, perfect=False))
        words = coder.get_compressed().astype("<u4")
        header["tensors"][name]["counts"] = counts.astype(int).tolist()
        header["tensors"][name]["words"] = int(words.size)
        blobs.append(words.tobytes())
    hjson = json.dumps(header).encode()

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(ANS_MAGIC + struct.pack("<Q", len(hjson)) + hjson)
            for b in blobs:
                f.write(b)

    _atomic(path, write)
    return path


def _probs(counts: np.ndarray) -> np.ndarray:
    # Symbols that never occur get a tiny probability so the model stays valid; it costs ~nothing.
    p = np.maximum(counts, 1e-9 * max(1.0, counts.sum()))
    return p / p.sum()


def _load_ans(path: Path) -> Connectome:
    import constriction

    raw = path.read_bytes()
    if len(raw) < 16:
        raise CheckpointError(f"{path} is truncated (shorter than its header)")
    (hlen,) = struct.unpack("<Q", raw[8:16])
    try:
        header = json.loads(raw[16:16 + hlen])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} has a corrupt header; the file is damaged") from None
    if header.get("format") != ANS_FORMAT:
        raise CheckpointError(f"{path} has format {header.get('format')!r}, expected {ANS_FORMAT!r}")
    off = 16 + hlen
    ternary = {}
    for name, info in header["tensors"].items():
        n = info["words"] * 4
        if off + n > len(raw):
            raise CheckpointError(f"{path} is truncated inside tensor {name}")
        words = np.frombuffer(raw[off:off + n], dtype="<u4").astype(np.uint32)
        off += n
        coder = constriction.stream.stack.AnsCoder(words)
        model = constriction.stream.model.Categorical(_probs(np.asarray(info["counts"], dtype=np.float64)), perfect=False)
        try:
            symbols = coder.decode(model, info["numel"])
        except Exception:
            raise CheckpointError(f"{path}: tensor {name} cannot be decoded; the file is damaged") from None
        flat = np.where(symbols == 0, 0, np.where(symbols == 1, 1, -1)).astype(np.int8)
        ternary[name] = torch.from_numpy(flat.reshape(info["shape"]))
    if off != len(raw):
        raise CheckpointError(f"{path} has {len(raw) - off} unexpected trailing bytes; the file is damaged")
    conn = Connectome(ternary, header.get("meta", {}))
    if content_hash(conn) != header.get("sha256"):
        raise CheckpointError(f"{path}: content hash mismatch; the file was modified or damaged")
    return conn


def load_connectome(path: str | Path) -> Connectome:
    """Read either format (dispatch on the first bytes); never executes code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"connectome file {path} does not exist; run `connectomes evolve` first")
    with open(path, "rb") as f:
        head = f.read(8)
    if head == ANS_MAGIC:
        return _load_ans(path)
    return _load_packed(path)


def inspect_connectome(path: str | Path) -> str:
    """Per-tensor density, sign balance, entropy and stored bits/weight, with totals."""
    path = Path(path)
    conn = load_connectome(path)
    st = conn.stats()
    size_bits = path.stat().st_size * 8
    N = st["total"]["numel"]
    lines = [f"{path}  ({conn.meta.get('generation', '?')} generations, source {conn.meta.get('source_run', '?')})",
             f"{'tensor':<36} {'shape':>14} {'density':>8} {'+ frac':>7} {'H bits/w':>9} {'stored b/w':>10}"]
    ans = path.read_bytes()[:8] == ANS_MAGIC
    for r in st["tensors"]:
        stored = (r["numel"] + r["alive"]) / r["numel"] if not ans else float("nan")
        lines.append(f"{r['name']:<36} {'x'.join(map(str, r['shape'])):>14} {r['density']:>8.4f} {r['sign_balance']:>7.3f} "
                     f"{r['entropy_bits']:>9.4f} {stored:>10.4f}")
    t = st["total"]
    lines.append(f"{'total':<36} {N:>14,} {t['density']:>8.4f} {t['sign_balance']:>7.3f} {t['entropy_bits']:>9.4f} "
                 f"{size_bits / N:>10.4f}")
    lines.append(f"file: {size_bits / 8 / 1e6:.2f} MB = {size_bits / N:.4f} bits/weight stored "
                 f"({'ANS-coded' if ans else 'bit-packed mask + signs'}); i.i.d. bound {t['entropy_bits']:.4f} bits/weight with even "
                 f"signs, {t['entropy_bits_measured_signs']:.4f} with the measured sign balance "
                 f"= {t['entropy_bits'] * N / 8 / 1e6:.2f} MB")
    if N == 162_201_600:
        lines.append(f"gpt2-124m shape: {size_bits / 8 / 1e6:.1f} MB here vs the paper's ~{PAPER_ESTIMATE_MB:.0f} MB estimate")
    return "\n".join(lines)
