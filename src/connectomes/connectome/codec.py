"""The connectome as a file (docs/method.md §5). Loading never executes code and refuses damaged files.

``connectome.safetensors`` (codec "packed", the canonical form): per tensor two uint8 entries,
``<name>.mask`` = the alive bits of the flat (row-major) tensor packed 8 per byte with
``numpy.packbits(bitorder="big")`` (the first weight is the most significant bit of byte 0; the
padding bits of the last byte are 0) and ``<name>.signs`` = one bit per alive weight in the same
order, packed the same way, 1 = positive. The safetensors ``__metadata__`` key "connectome" holds
JSON: format name and version, per tensor shape/numel/nnz/density, the connectome's ``meta`` (model
config, generation, source run, config hash, ...; the generation counted from ``generation_base``, 0 as
everywhere else, and read on that base from files written before it, which counted from 1), the sha256 of the decoded content
(:func:`content_hash`) and a sha256 of the header itself, so a flipped bit anywhere is detected. Size: 1 + d bits per weight.

``*.cnx`` (codec "ans"): the entropy-coded form for the information-theoretic claim. Layout:
``CNXANS01`` magic, little-endian u64 header length, the JSON header (as above, plus per tensor the
symbol counts of {pruned, +, -} and the number of 32-bit words), then per tensor, in header order,
its ANS words (little-endian u32). Every tensor is coded with constriction's ``AnsCoder`` under a
categorical model of its own measured counts, which reaches the per-tensor i.i.d. Shannon bound
H(d) + d * H(sign balance) bits per weight to within a fraction of a percent.

``*.cnx`` (codec "structured", issue 10): the same container with magic ``CNXSTR01`` and format
"connectome-structured/1"; each tensor's header entry adds its ``context``, the smallest (by ideal
code length, side information included) of "iid" (coded exactly as above), "rows" or "cols". Under
"rows" a 2-D tensor's words hold first the alive count of every row, each coded uniformly over
0..row length (log2(length + 1) bits, counted in the file), then the rows grouped by alive count in
ascending order, each group under one categorical model: the row's own alive rate and the tensor's
sign balance. "cols" is the same on the transposed tensor. Pruned wiring is not i.i.d. (embedding rows
of rare tokens, lm_head columns), so this beats the per-tensor i.i.d. bound where rates differ.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import struct
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import atomic_write
from ..core.errors import CheckpointError
from ..core.layout import generation_name
from ..core.readers import read_bytes, read_safetensors
from ..model.gpt import GPT, preset
from .ternary import Connectome

FORMAT = "connectome-packed/1"
ANS_FORMAT = "connectome-ans/1"
ANS_MAGIC = b"CNXANS01"
STRUCT_FORMAT = "connectome-structured/1"
STRUCT_MAGIC = b"CNXSTR01"
_MAGIC = {ANS_FORMAT: ANS_MAGIC, STRUCT_FORMAT: STRUCT_MAGIC}
CONTEXTS = ("iid", "rows", "cols")
CODECS = {"ans": ANS_FORMAT, "structured": STRUCT_FORMAT}
METADATA_KEY = "connectome"
GENERATION_BASE = 0  # generations count from 0, as the gen_XX/ folders and every record do
PAPER_ESTIMATE_MB = 16.0  # paper §2: 1.06 bits x 124M weights
BITORDER = "big"


def content_hash(conn: Connectome) -> str:
    """sha256 over (name, shape, int8 values) of every tensor in name order."""
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
    return {"format": fmt, "bitorder": BITORDER, "tensors": tensors, "meta": conn.meta, "sha256": content_hash(conn)}


def _header_digest(header: dict) -> str:
    body = {k: v for k, v in header.items() if k != "header_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _sealed(header: dict) -> bytes:
    """The header as JSON with a digest of itself, so edits to the metadata are detected too."""
    header = json.loads(json.dumps(header))  # canonical: what the reader will parse
    header["header_sha256"] = _header_digest(header)
    return json.dumps(header, sort_keys=True).encode()  # keys in one order, however the dicts were built


def save_connectome(conn: Connectome, path: str | Path, codec: str | None = None) -> Path:
    """Write ``conn`` atomically: codec None/"packed" -> safetensors, "ans" / "structured" -> a .cnx container."""
    path = Path(path)
    # tensors in name order: a connectome built from a live model (parameter order) and one rebuilt from files
    # after a kill (file order) are then the same bytes, as the resume promise says
    conn = copy.copy(conn)
    conn.ternary = {name: conn.ternary[name] for name in sorted(conn.ternary)}
    if codec in (None, "packed"):
        return _save_packed(conn, path)
    if codec in CODECS:
        return _save_cnx(conn, path, CODECS[codec])
    raise ValueError(f"unknown codec {codec!r}; use packed, ans or structured")


def load_connectome(path: str | Path) -> Connectome:
    """Read either format (dispatch on the magic bytes); raises CheckpointError on any damage."""
    return _load(Path(path))[0]


# ---- packed (safetensors)

def _save_packed(conn: Connectome, path: Path) -> Path:
    from safetensors.numpy import save_file

    arrays = {}
    for name, t in conn.ternary.items():
        flat = t.view(-1).numpy()
        alive = flat != 0
        arrays[f"{name}.mask"] = np.packbits(alive, bitorder=BITORDER)
        arrays[f"{name}.signs"] = np.packbits(flat[alive] > 0, bitorder=BITORDER)
    metadata = {METADATA_KEY: _sealed(_header(conn, FORMAT)).decode()}
    atomic_write(path, lambda tmp: save_file(arrays, str(tmp), metadata=metadata))
    return path


def _unpack(path: Path, packed: np.ndarray, count: int, what: str) -> np.ndarray:
    """Exactly ``count`` bits from a packed uint8 array whose padding bits are 0, else CheckpointError."""
    if packed.dtype != np.uint8 or packed.ndim != 1 or packed.size != (count + 7) // 8:
        raise CheckpointError(f"{path}: {what} has {packed.size} bytes of {packed.dtype} but {count} bits need "
                              f"{(count + 7) // 8} uint8 bytes; the file was modified or damaged")
    bits = np.unpackbits(packed, bitorder=BITORDER)
    if bits[count:].any():
        raise CheckpointError(f"{path}: {what} has padding bits set; the file was modified or damaged")
    return bits[:count].astype(bool)


_REMEDY = "it is truncated, damaged or not a connectome file; write it again (`connectomes evolve` or `connectomes connectome`)"


def _load_packed(path: Path) -> tuple[Connectome, dict[str, int]]:
    arrays, metadata = read_safetensors(path, framework="numpy", remedy=_REMEDY)
    if METADATA_KEY not in metadata:
        raise CheckpointError(f"{path} is a safetensors file but not a connectome (no connectome metadata)")
    header = _parse_header(path, metadata[METADATA_KEY], FORMAT)
    expected = {f"{n}.{part}" for n in header["tensors"] for part in ("mask", "signs")}
    if set(arrays) != expected:
        odd = sorted(set(arrays) ^ expected)[0]
        raise CheckpointError(f"{path}: entry {odd} is missing or unexpected; the file was modified or damaged")
    ternary, stored_bits = {}, {}
    for name, info in header["tensors"].items():
        mask = _unpack(path, arrays[f"{name}.mask"], info["numel"], f"the mask of {name}")
        if int(mask.sum()) != info["nnz"]:
            raise CheckpointError(f"{path}: tensor {name} holds {int(mask.sum())} alive weights but its header says "
                                  f"{info['nnz']}; the file was modified or damaged")
        positive = _unpack(path, arrays[f"{name}.signs"], info["nnz"], f"the signs of {name}")
        flat = np.zeros(info["numel"], dtype=np.int8)
        flat[mask] = np.where(positive, 1, -1)
        ternary[name] = torch.from_numpy(flat.reshape(info["shape"]))
        stored_bits[name] = 8 * (arrays[f"{name}.mask"].size + arrays[f"{name}.signs"].size)
    return _verified(path, header, ternary), stored_bits


# ---- ANS containers (.cnx): "ans" codes every tensor i.i.d., "structured" may use per-row/column rates

def _symbols(t: torch.Tensor) -> np.ndarray:
    """Ternary -> ANS alphabet: 0 = pruned, 1 = +1, 2 = -1."""
    flat = t.view(-1).numpy()
    return np.where(flat == 0, 0, np.where(flat > 0, 1, 2)).astype(np.int32)


def _ans_model(counts):
    import constriction

    # Unnormalised counts are fine; constriction gives an absent symbol the smallest representable
    # probability, and encoder and decoder build the same model from the same integers.
    return constriction.stream.model.Categorical(np.asarray(counts, dtype=np.float64), perfect=False)


def _units(shape: list[int], context: str) -> tuple[int, int]:
    """(number of units, weights per unit) a tensor is split into under ``context``."""
    if context == "iid":
        return 1, math.prod(shape)
    rows, cols = shape
    return (rows, cols) if context == "rows" else (cols, rows)


def _unit_model(k: int, length: int, counts):
    """A unit with ``k`` of ``length`` weights alive: its own alive rate, the tensor's sign balance.

    Integer weights (pruned ∝ (length - k) * nnz, + ∝ k * n+, - ∝ k * n-) so that encoder and decoder
    build the identical model; a tensor with no alive weight still gets a normalisable table."""
    nnz = max(counts[1] + counts[2], 1)
    return _ans_model([(length - k) * nnz, k * counts[1], k * counts[2]])


def _context_bits(symbols: np.ndarray, shape: list[int], counts, context: str) -> float:
    """Ideal code length in bits of one tensor under ``context``, side information included: the
    per-unit alive counts cost log2(length + 1) bits each (they are sent uniformly coded)."""
    n_units, length = _units(shape, context)
    if context == "iid":
        return _entropy_bits(np.asarray(counts, dtype=np.float64))
    alive = (symbols.reshape(shape) != 0).sum(axis=1 if context == "rows" else 0)
    mask_bits = _entropy_bits(np.stack([length - alive, alive]).astype(np.float64))
    return float(mask_bits + _entropy_bits(np.asarray(counts[1:], dtype=np.float64)) + n_units * math.log2(length + 1))


def _entropy_bits(counts: np.ndarray) -> float:
    """sum over columns of n * H(column / n), for counts of shape (symbols,) or (symbols, units)."""
    counts = counts.reshape(counts.shape[0], -1)
    total = counts.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(counts > 0, counts * np.log2(np.where(counts > 0, counts / total, 1.0)), 0.0)
    return float(-terms.sum())


def _best_context(symbols: np.ndarray, shape: list[int], counts) -> str:
    """The context of smallest ideal size; per-row/column rates only for non-empty matrices."""
    options = ["iid"] + (["rows", "cols"] if len(shape) == 2 and math.prod(shape) else [])
    return min(options, key=lambda c: _context_bits(symbols, shape, counts, c))


def _encode_tensor(symbols: np.ndarray, shape: list[int], counts, context: str) -> np.ndarray:
    """One tensor's ANS words (little-endian u32) under ``context``."""
    import constriction

    coder = constriction.stream.stack.AnsCoder()
    if context == "iid":
        coder.encode_reverse(symbols, _ans_model(counts))
        return coder.get_compressed().astype("<u4")
    n_units, length = _units(shape, context)
    units = symbols.reshape(shape) if context == "rows" else symbols.reshape(shape).T
    alive = (units != 0).sum(axis=1).astype(np.int32)
    # The decoder reads the alive counts first, then the units grouped by count in ascending order
    # (one static model per group keeps both directions vectorised); ANS is a stack, so encode backwards.
    for k in np.unique(alive)[::-1]:
        coder.encode_reverse(np.ascontiguousarray(units[alive == k]).ravel(), _unit_model(int(k), length, counts))
    coder.encode_reverse(alive, _ans_model(np.ones(length + 1)))
    return coder.get_compressed().astype("<u4")


def _decode_tensor(coder, info: dict, context: str) -> np.ndarray | None:
    """The flat symbols of one tensor, or None where the alive counts contradict the header."""
    counts, shape = info["counts"], info["shape"]
    if context == "iid":
        return coder.decode(_ans_model(counts), info["numel"])
    n_units, length = _units(shape, context)
    alive = coder.decode(_ans_model(np.ones(length + 1)), n_units)
    if int(alive.sum()) != info["nnz"]:
        return None
    units = np.empty((n_units, length), dtype=np.int32)
    for k in np.unique(alive):
        rows = alive == k
        units[rows] = coder.decode(_unit_model(int(k), length, counts), int(rows.sum()) * length).reshape(-1, length)
    return (units if context == "rows" else units.T).ravel()


def _encode_cnx(conn: Connectome, fmt: str) -> bytes:
    """The whole .cnx file: magic, header length, sealed header, then each tensor's ANS words."""
    header = _header(conn, fmt)
    blobs = []
    for name, t in conn.ternary.items():
        info = header["tensors"][name]
        symbols = _symbols(t)
        counts = np.bincount(symbols, minlength=3).tolist()
        context = "iid" if fmt == ANS_FORMAT else _best_context(symbols, info["shape"], counts)
        words = _encode_tensor(symbols, info["shape"], counts, context)
        info.update(counts=counts, words=int(words.size))
        if fmt == STRUCT_FORMAT:
            info["context"] = context
        blobs.append(words.tobytes())
    hjson = _sealed(header)
    return b"".join([_MAGIC[fmt], struct.pack("<Q", len(hjson)), hjson, *blobs])


def _save_cnx(conn: Connectome, path: Path, fmt: str) -> Path:
    data = _encode_cnx(conn, fmt)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return path


def _load_cnx(path: Path, fmt: str, raw: bytes) -> tuple[Connectome, dict[str, int]]:
    import constriction

    if len(raw) < 16:
        raise CheckpointError(f"{path} is truncated (shorter than its header)")
    (hlen,) = struct.unpack("<Q", raw[8:16])
    if 16 + hlen > len(raw):
        raise CheckpointError(f"{path} is truncated inside its header")
    header = _parse_header(path, raw[16:16 + hlen], fmt)
    off = 16 + hlen
    ternary, stored_bits = {}, {}
    for name, info in header["tensors"].items():
        context = _checked_context(path, name, info, fmt)
        end = off + 4 * info["words"]
        if end > len(raw):
            raise CheckpointError(f"{path} is truncated inside tensor {name}")
        words = np.frombuffer(raw[off:end], dtype="<u4").astype(np.uint32)
        off = end
        try:
            coder = constriction.stream.stack.AnsCoder(words)
            symbols = _decode_tensor(coder, info, context)
            exhausted = coder.is_empty()
        except Exception:  # constriction raises assorted errors on garbage input
            raise CheckpointError(f"{path}: tensor {name} cannot be decoded; the file was modified or damaged") from None
        if symbols is None or not exhausted or np.bincount(symbols, minlength=3).tolist() != info["counts"]:
            raise CheckpointError(f"{path}: tensor {name} does not decode to its recorded counts; the file was modified or damaged")
        flat = np.array([0, 1, -1], dtype=np.int8)[symbols]
        ternary[name] = torch.from_numpy(flat.reshape(info["shape"]))
        stored_bits[name] = 32 * info["words"]
    if off != len(raw):
        raise CheckpointError(f"{path} has {len(raw) - off} unexpected trailing bytes; the file was modified or damaged")
    return _verified(path, header, ternary), stored_bits


def _checked_context(path: Path, name: str, info: dict, fmt: str) -> str:
    """The tensor's coding context after checking the header's counts, word count and context."""
    counts, n_words = info.get("counts"), info.get("words")
    if (not isinstance(counts, list) or len(counts) != 3 or not all(_is_count(c) for c in counts)
            or sum(counts) != info["numel"] or counts[0] != info["numel"] - info["nnz"] or not _is_count(n_words)):
        raise CheckpointError(f"{path}: the header's symbol counts of {name} are inconsistent; the file was modified or damaged")
    context = info.get("context", "iid") if fmt == STRUCT_FORMAT else "iid"
    if context not in CONTEXTS or (context != "iid" and len(info["shape"]) != 2):
        raise CheckpointError(f"{path}: tensor {name} has coding context {context!r}, which does not fit its shape "
                              f"{info['shape']} (expected one of {', '.join(CONTEXTS)}); the file was modified or damaged")
    return context


# ---- sizes for the bottleneck frontier

def codec_bits(conn: Connectome) -> dict:
    """A connectome's size in bits three ways, per tensor and in total: ``bound`` = the per-tensor
    i.i.d. Shannon bound (measured sign balance), ``ans`` = the ANS-coded words of the "ans" codec,
    ``structured`` = those of the "structured" codec (its per-row/column alive counts included), and
    the chosen ``context``. The totals add ``ans_file`` / ``structured_file``: whole files, headers included."""
    out, total = {}, {"numel": 0, "bound": 0.0, "ans": 0, "structured": 0}
    for name, t in conn.ternary.items():
        symbols = _symbols(t)
        counts = np.bincount(symbols, minlength=3).tolist()
        shape = list(t.shape)
        context = _best_context(symbols, shape, counts)
        row = {"numel": t.numel(), "bound": _entropy_bits(np.asarray(counts, dtype=np.float64)),
               "ans": 32 * _encode_tensor(symbols, shape, counts, "iid").size,
               "structured": 32 * _encode_tensor(symbols, shape, counts, context).size, "context": context}
        out[name] = row
        for k in total:
            total[k] += row[k]
    total["ans_file"] = 8 * len(_encode_cnx(conn, ANS_FORMAT))
    total["structured_file"] = 8 * len(_encode_cnx(conn, STRUCT_FORMAT))
    return {"tensors": out, "total": total}


# ---- shared checks

def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _parse_header(path: Path, text, fmt: str) -> dict:
    """The JSON header, with every field the loaders rely on type-checked."""
    try:
        header = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} has a corrupt connectome header; the file was modified or damaged") from None
    if not isinstance(header, dict) or header.get("format") != fmt:
        found = header.get("format") if isinstance(header, dict) else None
        raise CheckpointError(f"{path} has format {found!r}, expected {fmt!r}; it is not a connectome this version can read")
    if header.get("header_sha256") != _header_digest(header):
        raise CheckpointError(f"{path}: the connectome header does not match its digest; the file was modified or damaged")
    tensors = header.get("tensors")
    if not isinstance(tensors, dict) or not isinstance(header.get("meta", {}), dict) or not isinstance(header.get("sha256"), str):
        raise CheckpointError(f"{path}: the connectome header lacks its tensor table, meta or sha256; the file is damaged")
    for name, info in tensors.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        if (not isinstance(shape, list) or not all(_is_count(s) for s in shape) or not _is_count(info.get("numel"))
                or not _is_count(info.get("nnz"))):
            raise CheckpointError(f"{path}: the header entry of tensor {name} is malformed; the file is damaged")
        if math.prod(shape) != info["numel"] or info["nnz"] > info["numel"]:
            raise CheckpointError(f"{path}: tensor {name} has shape {shape}, numel {info['numel']} and nnz {info['nnz']}, "
                                  "which do not agree; the file was modified or damaged")
    return header


def _verified(path: Path, header: dict, ternary: dict[str, torch.Tensor]) -> Connectome:
    conn = Connectome(ternary, on_generation_base(header.get("meta", {})))
    if content_hash(conn) != header["sha256"]:
        raise CheckpointError(f"{path}: content hash mismatch; the file was modified or damaged")
    return conn


def on_generation_base(meta: dict) -> dict:
    """``meta`` with its generation counted from GENERATION_BASE. A file that records no generation_base
    was written when connectome files counted prunings, from 1 (generation g's file said g + 1)."""
    g = meta.get("generation")
    if not isinstance(g, int) or isinstance(g, bool):
        return meta
    base = meta.get("generation_base", 1)
    return {**meta, "generation": g - base + GENERATION_BASE, "generation_base": GENERATION_BASE}


def _load(path: Path) -> tuple[Connectome, dict[str, int], str]:
    """(connectome, stored payload bits per tensor, format)."""
    if not path.exists():
        raise CheckpointError(f"connectome file {path} does not exist; run `connectomes evolve` first")
    raw = read_bytes(path, error=CheckpointError, remedy=_REMEDY)
    for fmt, magic in _MAGIC.items():
        if raw[:len(magic)] == magic:
            return (*_load_cnx(path, fmt, raw), fmt)
    return (*_load_packed(path), FORMAT)


# ---- inspect

def _gpt2_124m_shapes() -> dict[str, tuple]:
    with torch.device("meta"):
        return {n: tuple(p.shape) for n, p in GPT(preset("gpt2-124m")).named_parameters() if p.dim() == 2}


def _structured_line(total: dict) -> str:
    """The codes side by side: per-row/column rates against the i.i.d. bound and the i.i.d. ANS file."""
    return (f"structured code (per-row/column alive rates where smaller): {total['structured_file'] / 8e6:.3f} MB file, "
            f"payload {total['structured'] / total['bound']:.4f}x the i.i.d. bound ({total['bound'] / 8e6:.3f} MB); "
            f"i.i.d. ANS file {total['ans_file'] / 8e6:.3f} MB")


_CODING = {FORMAT: "bit-packed mask + signs", ANS_FORMAT: "ANS-coded, i.i.d. per tensor",
           STRUCT_FORMAT: "ANS-coded, per-row/column rates where smaller"}


def inspect_connectome(path: str | Path) -> str:
    """A table per tensor (shape, density, sign balance, entropy, stored bits/weight, and the structured
    code's bits/weight with its context) and totals, the structured code against the i.i.d. bound."""
    path = Path(path)
    conn, stored_bits, fmt = _load(path)
    st = conn.stats()
    sizes = codec_bits(conn)
    t = st["total"]
    N = t["numel"]
    size = path.stat().st_size
    name_w = max([len("tensor")] + [len(r["name"]) for r in st["tensors"]])
    g = conn.meta.get("generation")
    lines = [f"{path}  format {fmt}; {generation_name(g) if isinstance(g, int) else 'generation ?'}; source {conn.meta.get('source_run', '?')}",
             f"{'tensor':<{name_w}} {'shape':>12} {'density':>8} {'+ frac':>7} {'H bits/w':>9} {'stored b/w':>10} {'struct b/w':>10} ctx"]
    for r in st["tensors"]:
        lines.append(f"{r['name']:<{name_w}} {'x'.join(map(str, r['shape'])):>12} {r['density']:>8.4f} "
                     f"{r['sign_balance']:>7.4f} {r['entropy_bits']:>9.4f} {stored_bits[r['name']] / r['numel']:>10.4f} "
                     f"{sizes['tensors'][r['name']]['structured'] / r['numel']:>10.4f} {sizes['tensors'][r['name']]['context']}")
    lines.append(f"{'total':<{name_w}} {N:>12,} {t['density']:>8.4f} {t['sign_balance']:>7.4f} {t['entropy_bits']:>9.4f} "
                 f"{8 * size / N:>10.4f} {sizes['total']['structured'] / N:>10.4f}")
    lines.append(f"file: {size / 1e6:.3f} MB = {8 * size / N:.4f} bits/weight stored, header included "
                 f"({_CODING[fmt]})")
    lines.append(f"i.i.d. bound: {t['entropy_bits']:.4f} bits/weight with even signs = {t['entropy_bits'] * N / 8e6:.3f} MB; "
                 f"{t['entropy_bits_measured_signs']:.4f} with the measured sign balance "
                 f"= {t['entropy_bits_measured_signs'] * N / 8e6:.3f} MB")
    lines.append(_structured_line(sizes["total"]))
    if {k: tuple(v.shape) for k, v in conn.ternary.items()} == _gpt2_124m_shapes():
        lines.append(f"gpt2-124m shapes ({N:,} weights): {size / 1e6:.1f} MB here vs the paper's "
                     f"~{PAPER_ESTIMATE_MB:.0f} MB estimate (1.06 bits x 124M weights)")
    return "\n".join(lines)
