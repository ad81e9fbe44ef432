"""Hugging Face folders: export a checkpoint as one, and read one (ours or the authors') as a checkpoint.

A folder holds
- ``config.json``        the authors' field names (vocab_size, n_embd, n_layer, n_head, block_size,
                         dropout, bias) plus rope_base, norm_eps, model_type, architectures, auto_map
                         (``config.GPTConfig`` / ``model.GPT``, as the released models) and a
                         ``connectomes`` record (tokenizer, step, source);
- ``model.safetensors``  the weights under the reference names, RoPE buffers included so the
                         authors' strict loader accepts them;
- ``config.py``, ``model.py``  the self-contained code for ``trust_remote_code=True``
                         (:mod:`connectomes.hf_remote`);
- the tokenizer:  gpt2 → vocab.json + merges.txt + tokenizer.json from the local GPT-2 files;
                  bytes → a tokenizer.json whose ids are the UTF-8 bytes (id 0 = NUL = end of text);
                  bpe-N → the trained tokenizer.json; each with tokenizer_config.json;
- ``README.md``          a model card: shape, run config, connectome statistics, evaluations.

Reading needs only safetensors/torch; writing the tokenizer needs the ``tokenizers`` library (core).
Nothing here imports transformers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, DataError, UserError
from .model import GPT, GPTConfig, clean_state_dict

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
    from .model import load_reference_state_dict

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


# -- writing: config, weights, code ---------------------------------------------------------------

def hf_config(cfg: GPTConfig, eot_id: int, meta: dict) -> dict:
    return {
        "architectures": ["GPT"], "auto_map": dict(AUTO_MAP), "model_type": MODEL_TYPE,
        "vocab_size": cfg.vocab_size, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
        "block_size": cfg.block_size, "dropout": 0.0, "bias": False,
        "rope_base": cfg.rope_base, "norm_eps": cfg.norm_eps,
        "bos_token_id": eot_id, "eos_token_id": eot_id, "tie_word_embeddings": False, "torch_dtype": "float32",
        "connectomes": meta,
    }


def write_weights(model: GPT, path: Path) -> None:
    """Reference names with the RoPE buffers (the authors' model holds them as persistent buffers)."""
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in clean_state_dict(model.state_dict()).items()}
    save_file(state, str(path), metadata={"format": "pt"})


def write_remote_code(out: Path) -> None:
    src = Path(__file__).parent / "hf_remote"
    for name in REMOTE_CODE:
        shutil.copyfile(src / name, out / name)


# -- writing: tokenizers --------------------------------------------------------------------------

def _tokenizer_config(out: Path, cls: str, eos: str, block_size: int) -> None:
    cfg = {"tokenizer_class": cls, "bos_token": eos, "eos_token": eos, "unk_token": eos,
           "model_max_length": block_size, "add_bos_token": False, "add_prefix_space": False,
           "clean_up_tokenization_spaces": False}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def write_gpt2_tokenizer(out: Path, gpt2_bpe_file: str | None, block_size: int) -> None:
    """vocab.json/merges.txt are GPT-2's encoder.json/vocab.bpe, found beside gpt2.tiktoken."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    from .data.tokenizers import find_gpt2_file

    tiktoken_file = find_gpt2_file(gpt2_bpe_file)
    folder = tiktoken_file.parent if tiktoken_file else None
    if folder is None or not (folder / "encoder.json").is_file() or not (folder / "vocab.bpe").is_file():
        raise DataError(f"exporting the gpt2 tokenizer needs encoder.json and vocab.bpe beside gpt2.tiktoken "
                        f"(looked in {folder or 'no folder: set CONNECTOMES_DATA'})")
    shutil.copyfile(folder / "encoder.json", out / "vocab.json")
    shutil.copyfile(folder / "vocab.bpe", out / "merges.txt")
    tok = Tokenizer(models.BPE.from_file(str(out / "vocab.json"), str(out / "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(EOT, special=True)])
    tok.save(str(out / "tokenizer.json"))
    _tokenizer_config(out, "GPT2Tokenizer", EOT, block_size)


def write_bytes_tokenizer(out: Path, block_size: int) -> None:
    """Id = UTF-8 byte. A BPE without merges whose vocabulary is the 255 byte-fallback tokens <0x01>..<0xFF>
    plus NUL itself at id 0: NUL is the toolkit's end-of-text, and because it is in the model's
    vocabulary the special token keeps id 0 (a ByteLevel alphabet would push it to a new id 256)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    vocab = {"\x00": 0, **{f"<0x{b:02X}>": b for b in range(1, 256)}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True))
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken("\x00", special=True)])
    tok.save(str(out / "tokenizer.json"))
    _tokenizer_config(out, "PreTrainedTokenizerFast", "\x00", block_size)


def write_bpe_tokenizer(out: Path, name: str, data_dir: str | None, block_size: int) -> None:
    src = Path(data_dir) / "tokenizer.json" if data_dir else None
    if src is None or not src.is_file():
        raise DataError(f"the {name} tokenizer lives in the prepared data folder's tokenizer.json, "
                        f"not found ({src or 'the checkpoint records no data folder'})")
    shutil.copyfile(src, out / "tokenizer.json")
    _tokenizer_config(out, "PreTrainedTokenizerFast", EOT, block_size)


def write_tokenizer(out: Path, info: dict, block_size: int) -> None:
    name = info["tokenizer"]
    if name == "gpt2":
        write_gpt2_tokenizer(out, info.get("gpt2_bpe_file") or None, block_size)
    elif name == "bytes":
        write_bytes_tokenizer(out, block_size)
    elif str(name).startswith("bpe-"):
        write_bpe_tokenizer(out, name, info.get("tokenizer_dir") or info.get("data_dir"), block_size)
    else:
        raise UserError(f"unknown tokenizer {name!r}; use gpt2, bytes or bpe-N")


# -- export ---------------------------------------------------------------------------------------

def export_hf(src: str | Path, out: str | Path, *, tokenizer: str | None = None, evals: list[Path] | None = None) -> Path:
    """Write the Hugging Face folder ``out`` for a step folder or weights file ``src``.

    ``tokenizer`` overrides the checkpoint's (a bare weights file records none: gpt2 by default).
    ``evals`` are result JSONs for the model card; by default the run's own for this step, if any."""
    from .checkpoint import load_model, load_tokenizer_for
    from .integrity import sha256_file
    from .hf_card import find_eval_results, model_card

    src, out = Path(src), Path(out)
    model, info = load_model(src)
    if tokenizer:
        info["tokenizer"] = tokenizer
    eot_id = load_tokenizer_for(info).eot_id if info["tokenizer"] != "gpt2" else 50256
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty; choose a new folder for the export")
    out.mkdir(parents=True, exist_ok=True)
    write_weights(model, out / SAFETENSORS)
    meta = {"tokenizer": info["tokenizer"], "step": info.get("step"), "source": str(src),
            "source_sha256": sha256_file(src / "model.safetensors" if src.is_dir() else src)}
    config = hf_config(model.config, eot_id, meta)
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    write_remote_code(out)
    write_tokenizer(out, info, model.config.block_size)
    results = [json.loads(Path(p).read_text()) for p in evals] if evals else find_eval_results(src)
    (out / "README.md").write_text(model_card(model, info, config, src, results))
    return out
