"""Hugging Face folders: the layout and reading one (ours or the authors') as a checkpoint; writing one is
connectomes.io.export.

A folder holds
- ``config.json``        the authors' field names (vocab_size, n_embd, n_layer, n_head, block_size,
                         dropout, bias) plus rope_base, norm_eps, model_type, architectures, auto_map
                         (``config.GPTConfig`` / ``model.GPT``, as the released models) and a
                         ``connectomes`` record (tokenizer, step, source);
- ``model.safetensors``  the weights under the reference names, RoPE buffers included so the
                         authors' strict loader accepts them;
- ``config.py``, ``model.py``  the self-contained code for ``trust_remote_code=True``
                         (:mod:`connectomes.io.hf_remote`);
- the tokenizer:  gpt2 → vocab.json + merges.txt + tokenizer.json from the local GPT-2 files;
                  bytes → a tokenizer.json whose ids are the UTF-8 bytes (id 0 = NUL = end of text);
                  bpe-N → the trained tokenizer.json; each with tokenizer_config.json;
- ``README.md``          a model card: shape, run config, connectome statistics, evaluations.

Reading needs only safetensors/torch; writing the tokenizer needs the ``tokenizers`` library (core).
Nothing here imports transformers. Larger released models come as shards: ``model.safetensors.index.json``
maps each weight to a shard file of the folder; only files inside the folder are read (a shard named
``../x`` or ``/x`` is refused), and every file is read through core.readers, so damage is one line.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path, PurePosixPath

import torch

from ..core.errors import CheckpointError
from ..core.integrity import sha256_file
from ..core.readers import read_json, read_safetensors, read_torch
from ..data.tokenizers import parse_tokenizer
from ..model.gpt import GPT, GPTConfig, check_memory, clean_state_dict, load_reference_state_dict

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
MODEL_TYPE = "GenerationalPruning.GPT"
AUTO_MAP = {"AutoConfig": "config.GPTConfig", "AutoModelForCausalLM": "model.GPT"}
REQUIRED = ("vocab_size", "n_embd", "n_layer", "n_head", "block_size")
REMOTE_CODE = ("config.py", "model.py")
EOT = "<|endoftext|>"


# -- reading --------------------------------------------------------------------------------------

def is_hf_folder(path: Path) -> bool:
    """A folder with config.json and no toolkit state.json (a step folder has the latter)."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG).is_file() and not (path / "state.json").exists()


REMEDY = "the folder is not a whole model; download or export it again"


def read_hf_config(folder: Path) -> tuple[GPTConfig, dict]:
    """Our model config from config.json, and the raw JSON. A missing or bad field is an error naming it;
    the shape is checked (ranges, then the memory it needs) before anything is allocated."""
    path = Path(folder) / CONFIG
    raw = read_json(path, error=CheckpointError, remedy=REMEDY)
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise CheckpointError(f"{path} lacks the field(s) {', '.join(missing)}; an authors'-layout config.json "
                              f"has {', '.join(REQUIRED)}")
    for k in REQUIRED:
        if isinstance(raw[k], bool) or not isinstance(raw[k], int) or raw[k] <= 0:
            raise CheckpointError(f"{path}: field {k} must be a positive integer, got {raw[k]!r}")
    if raw.get("bias"):
        raise CheckpointError(f"{path}: field bias is true, but this architecture has no biases")
    extra = {}
    for k in ("rope_base", "norm_eps"):
        v = raw.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise CheckpointError(f"{path}: field {k} must be a positive number, got {v!r}")
        extra[k] = float(v)
    try:
        cfg = GPTConfig(**{k: raw[k] for k in REQUIRED}, **extra)
        check_memory(cfg, f"the model of {folder}")
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return cfg, raw


def _shard_names(folder: Path) -> dict[str, str]:
    """{weight name: shard file} from the index, each shard a plain path inside ``folder``."""
    index_path = folder / SAFETENSORS_INDEX
    weight_map = read_json(index_path, error=CheckpointError, remedy=REMEDY).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise CheckpointError(f"{index_path} has no weight_map of weight names to shard files; {REMEDY}")
    for shard in sorted(set(weight_map.values())):
        parts = PurePosixPath(shard).parts
        if not parts or shard.startswith("/") or "\\" in shard or "\0" in shard or ".." in parts:
            raise CheckpointError(f"{index_path} names the shard {shard!r}, which is not a file inside {folder}; "
                                  "only files of the model folder are read")
    return weight_map


def weights_files(folder: Path) -> list[Path]:
    """The files that hold a Hugging Face folder's weights, in the order they are read (an error naming the
    folder when it has none)."""
    folder = Path(folder)
    if (folder / SAFETENSORS).exists():
        return [folder / SAFETENSORS]
    if (folder / SAFETENSORS_INDEX).exists():
        shards = [folder / s for s in sorted(set(_shard_names(folder).values()))]
        absent = [p for p in shards if not p.is_file()]
        if absent:
            raise CheckpointError(f"{folder / SAFETENSORS_INDEX} names the shard {absent[0].name}, which is not in "
                                  f"{folder}; {REMEDY}")
        return [folder / SAFETENSORS_INDEX] + shards
    if (folder / PYTORCH_BIN).exists():
        return [folder / PYTORCH_BIN]
    raise CheckpointError(f"{folder} has {CONFIG} but no weights: expected {SAFETENSORS}, {SAFETENSORS_INDEX} "
                          f"or {PYTORCH_BIN}")


def weights_sha256(folder: Path) -> str:
    """The digest of a Hugging Face folder's weights: the file's sha256, or for shards the sha256 of the
    index's and each shard's digests in order."""
    files = weights_files(folder)
    if len(files) == 1:
        return sha256_file(files[0])
    return hashlib.sha256("".join(f"{f.name}:{sha256_file(f)}\n" for f in files).encode()).hexdigest()


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, else the shards of model.safetensors.index.json, else pytorch_model.bin
    (read with ``torch.load(weights_only=True)``: tensors only, never arbitrary objects)."""
    folder = Path(folder)
    files = weights_files(folder)
    if files[0].name == PYTORCH_BIN:
        sd = read_torch(files[0], remedy="convert it to safetensors (only tensors are accepted: torch.load weights_only=True)")
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise CheckpointError(f"{files[0]} does not hold a state dict of tensors; {REMEDY}")
        return sd
    if files[0].name == SAFETENSORS:
        return read_safetensors(files[0], remedy=REMEDY)[0]
    weight_map = _shard_names(folder)
    out: dict[str, torch.Tensor] = {}
    for shard in files[1:]:
        tensors = read_safetensors(shard, remedy=REMEDY)[0]
        listed = {k for k, v in weight_map.items() if v == shard.relative_to(folder).as_posix()}
        if set(tensors) != listed:
            odd = sorted(set(tensors) ^ listed)[0]
            raise CheckpointError(f"{shard} does not hold the weights the index assigns to it (first difference: {odd}); "
                                  f"{REMEDY}")
        out.update(tensors)
    return out


def load_hf_folder(folder: Path) -> tuple[GPT, dict]:
    """A model from a Hugging Face folder (ours or the authors'), plus checkpoint-style info.

    The tokenizer is the one our export recorded; the authors' folders name none and use GPT-2.
    A bpe-N tokenizer is read from the folder's own tokenizer.json (``tokenizer_dir``)."""
    folder = Path(folder)
    cfg, raw = read_hf_config(folder)
    model = GPT(cfg)
    try:
        load_reference_state_dict(model, clean_state_dict(read_hf_weights(folder)))
    except ValueError as e:
        raise CheckpointError(f"{folder}: {e}") from None
    meta = raw.get("connectomes") if isinstance(raw.get("connectomes"), dict) else {}
    info = {"tokenizer": meta.get("tokenizer", "gpt2"), "model_config": cfg.to_dict(), "path": str(folder),
            "format": "hf", "step": meta.get("step")}
    if parse_tokenizer(info["tokenizer"]).kind == "bpe":
        info["tokenizer_dir"] = str(folder)
    return model.eval(), info
