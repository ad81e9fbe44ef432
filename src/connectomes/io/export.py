"""Export a checkpoint as a Hugging Face folder (the layout is connectomes.io.hf's): config.json in the
authors' field names, model.safetensors, the remote code, the tokenizer and a model card.

Writing the tokenizer needs the ``tokenizers`` library (core); nothing here imports transformers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..core.atomic import atomic_dir, sweep_siblings
from ..core.errors import DataError, UserError
from ..core.readers import read_json
from ..data.tokenizers import find_gpt2_file, parse_tokenizer
from ..model.gpt import GPT, GPTConfig, clean_state_dict
from .card import find_eval_results, model_card
from .hf import AUTO_MAP, CONFIG, EOT, MODEL_TYPE, REMOTE_CODE, SAFETENSORS
from .load import load_model, load_tokenizer_for, verified_weights_sha256

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
    kind = parse_tokenizer(name).kind
    if kind == "gpt2":
        write_gpt2_tokenizer(out, info.get("gpt2_bpe_file") or None, block_size)
    elif kind == "bytes":
        write_bytes_tokenizer(out, block_size)
    else:
        write_bpe_tokenizer(out, name, info.get("tokenizer_dir") or info.get("data_dir"), block_size)


# -- export ---------------------------------------------------------------------------------------

def export_hf(src: str | Path, out: str | Path, *, tokenizer: str | None = None, evals: list[Path] | None = None) -> Path:
    """Write the Hugging Face folder ``out`` for a step folder, a Hugging Face folder (the authors' layout,
    sharded or not) or a weights file ``src``.

    ``tokenizer`` overrides the checkpoint's (a bare weights file records none: gpt2 by default).
    ``evals`` are result JSONs for the model card; by default the run's own for this step, if any.
    Everything is read and checked first; the folder is then built under a temporary name and renamed
    into place, so a failed or killed export leaves no half-written ``out`` (a killed one's temporary
    folder is removed by the next export to ``out``)."""
    src, out = Path(src), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not empty (or is not a folder); choose a new folder for the export")
    results = ([read_json(p, remedy="pass an evaluation result JSON written by `connectomes eval` or a study")
                for p in evals] if evals else find_eval_results(src))
    source_sha256 = verified_weights_sha256(src)
    model, info = load_model(src, verify=False)
    if tokenizer:
        info["tokenizer"] = tokenizer
    eot_id = load_tokenizer_for(info).eot_id if parse_tokenizer(info["tokenizer"]).kind != "gpt2" else 50256
    meta = {"tokenizer": info["tokenizer"], "step": info.get("step"), "source": str(src), "source_sha256": source_sha256}
    config = hf_config(model.config, eot_id, meta)

    def fill(tmp: Path) -> None:
        write_weights(model, tmp / SAFETENSORS)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        write_remote_code(tmp)
        write_tokenizer(tmp, info, model.config.block_size)
        (tmp / "README.md").write_text(model_card(model, info, config, src, results, folder=out.resolve()))

    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_siblings(out)
    atomic_dir(out, fill)
    return out
