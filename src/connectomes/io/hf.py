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
Nothing here imports transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..core.errors import CheckpointError
from ..model.gpt import GPT, GPTConfig, clean_state_dict, load_reference_state_dict

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


def read_hf_config(folder: Path) -> tuple[GPTConfig, dict]:
    """Our model config from config.json, and the raw JSON. A missing or bad field is an error naming it."""
    path = Path(folder) / CONFIG
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise CheckpointError(f"{path} lacks the field(s) {', '.join(missing)}; an authors'-layout config.json "
                              f"has {', '.join(REQUIRED)}")
    for k in REQUIRED:
        if isinstance(raw[k], bool) or not isinstance(raw[k], int) or raw[k] <= 0:
            raise CheckpointError(f"{path}: field {k} must be a positive integer, got {raw[k]!r}")
    if raw.get("bias"):
        raise CheckpointError(f"{path}: field bias is true, but this architecture has no biases")
    extra = {k: float(raw[k]) for k in ("rope_base", "norm_eps") if raw.get(k) is not None}
    try:
        cfg = GPTConfig(**{k: raw[k] for k in REQUIRED}, **extra)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return cfg, raw


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, else the shards of model.safetensors.index.json, else pytorch_model.bin
    (read with ``torch.load(weights_only=True)``: tensors only, never arbitrary objects)."""
    folder = Path(folder)
    if (folder / SAFETENSORS).is_file():
        return _load_safetensors(folder / SAFETENSORS)
    if (folder / SAFETENSORS_INDEX).is_file():
        index_path = folder / SAFETENSORS_INDEX
        try:
            shards = sorted(set(json.loads(index_path.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as e:
            raise CheckpointError(f"{index_path} has no readable weight_map ({e})") from None
        out: dict[str, torch.Tensor] = {}
        for shard in shards:
            out.update(_load_safetensors(folder / shard))
        return out
    if (folder / PYTORCH_BIN).is_file():
        path = folder / PYTORCH_BIN
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types; the point is: not loadable safely
            raise CheckpointError(f"{path} cannot be loaded safely ({type(e).__name__}); only tensors are accepted "
                                  "(torch.load weights_only=True) — convert it to safetensors") from None
        if not isinstance(sd, dict):
            raise CheckpointError(f"{path} does not hold a state dict")
        return sd
    raise CheckpointError(f"{folder} has {CONFIG} but no weights: expected {SAFETENSORS}, {SAFETENSORS_INDEX} "
                          f"or {PYTORCH_BIN}")


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
    if str(info["tokenizer"]).startswith("bpe-"):
        info["tokenizer_dir"] = str(folder)
    return model.eval(), info
