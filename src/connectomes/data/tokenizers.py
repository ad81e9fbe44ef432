"""Tokenizers behind one small interface: ``encode``, ``decode``, ``encode_with_offsets``.

- ``gpt2``:  GPT-2 BPE through tiktoken, built from a local ``gpt2.tiktoken`` file when one is given
             or found (offline), else tiktoken's own download and cache.
- ``bytes``: UTF-8 bytes, vocabulary 256; id 0 (NUL, stripped from text on the way in) separates documents.
- ``bpe-N``: byte-level BPE of N ids trained on the corpus with the ``tokenizers`` library and saved
             as ``tokenizer.json`` next to the shards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from ..core.atomic import atomic_write
from ..core.errors import DataError, UserError
from ..core.inputs import default_data_root

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError("text holds a lone surrogate, which UTF-8 cannot encode; normalise it first "
                        "(connectomes.data.sources.normalise)") from None


def token_spans(text: str, token_lengths: np.ndarray) -> list[tuple[int, int]]:
    """Character span of each token given its length in UTF-8 bytes: from the character holding its
    first byte to the one holding its last. A token that carries only part of a multi-byte
    character spans that whole character, so tokens may share a character but every span is non-empty."""
    _utf8(text)
    code_points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    char_bytes = 1 + (code_points >= 0x80) + (code_points >= 0x800) + (code_points >= 0x10000)
    char_of_byte = np.repeat(np.arange(len(text)), char_bytes)
    ends = np.cumsum(token_lengths)
    if len(ends) and ends[-1] != len(char_of_byte):
        raise ValueError(f"tokens cover {int(ends[-1])} bytes but the text has {len(char_of_byte)}")
    first = char_of_byte[ends - token_lengths]
    last = char_of_byte[ends - 1]
    return list(zip(first.tolist(), (last + 1).tolist()))


class Tokenizer(Protocol):
    name: str
    vocab_size: int
    eot_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids) -> str: ...

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]: ...


class BytesTokenizer:
    name = "bytes"
    vocab_size = 256
    eot_id = 0

    def encode(self, text: str) -> list[int]:
        return list(_utf8(text))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        ids = self.encode(text)
        return ids, token_spans(text, np.ones(len(ids), dtype=np.int64))


class TiktokenTokenizer:
    def __init__(self, encoding, name: str = "gpt2"):
        self.enc = encoding
        self.name = name
        self.vocab_size = encoding.n_vocab
        self.eot_id = encoding.eot_token

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def decode(self, ids) -> str:
        return self.enc.decode([int(i) for i in ids])

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        ids = self.encode(text)
        pieces = self.enc.decode_tokens_bytes(ids)
        if b"".join(pieces) != _utf8(text):  # tiktoken replaces lone surrogates, so spans would not line up
            raise DataError("text does not round-trip through the gpt2 tokenizer (invalid Unicode); normalise it first")
        return ids, token_spans(text, np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)))


class HFTokenizer:
    def __init__(self, tok, name: str, path: Path | None = None):
        self.tok = tok
        self.name = name
        self.path = path
        self.vocab_size = tok.get_vocab_size()
        eot = tok.token_to_id(EOT)
        if eot is None:
            raise DataError(f"tokenizer {path} has no {EOT} token; re-run `connectomes prepare` to train it again")
        self.eot_id = eot
        # Text that happens to spell <|endoftext|> is ordinary text, as with tiktoken's encode_ordinary
        # (a document must not smuggle in a separator). tokenizers does not save this flag: set it on every load.
        tok.encode_special_tokens = True

    def _encode(self, text: str):
        try:
            return self.tok.encode(text, add_special_tokens=False)
        except TypeError:  # what tokenizers raises for a str it cannot pass to Rust (lone surrogates)
            _utf8(text)
            raise

    def encode(self, text: str) -> list[int]:
        return self._encode(text).ids

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self._encode(text)
        # A byte-level token string has one character per byte (ByteLevel's 256-symbol alphabet).
        return enc.ids, token_spans(text, np.fromiter(map(len, enc.tokens), dtype=np.int64, count=len(enc.tokens)))


def gpt2_from_file(path: Path) -> TiktokenTokenizer:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    try:
        ranks = load_tiktoken_bpe(str(path))
    except FileNotFoundError:
        raise DataError(f"GPT-2 BPE file {path} does not exist; point data.gpt2_bpe_file at gpt2.tiktoken") from None
    except Exception as e:
        raise DataError(f"{path} is not a tiktoken BPE file ({e}); point data.gpt2_bpe_file at gpt2.tiktoken") from None
    if len(ranks) != 50256:
        raise DataError(f"{path} has {len(ranks)} ranks, GPT-2 has 50256; is it the gpt2.tiktoken file?")
    enc = tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: 50256})
    return TiktokenTokenizer(enc)


def find_gpt2_file(explicit: str | Path | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    root = default_data_root()
    if root is not None and (root / "gpt2" / "gpt2.tiktoken").is_file():
        return root / "gpt2" / "gpt2.tiktoken"
    return None


@dataclass(frozen=True)
class TokenizerSpec:
    """A tokenizer name parsed: its kind and its vocabulary size (ids, the end-of-text id included)."""

    kind: str        # "gpt2", "bytes" or "bpe"
    vocab_size: int  # 50257 for gpt2, 256 for bytes, N for bpe-N


_FIXED = {"gpt2": TokenizerSpec("gpt2", 50257), "bytes": TokenizerSpec("bytes", 256)}


def parse_tokenizer(name) -> TokenizerSpec:
    """The one reading of a tokenizer name (data.tokenizer, a checkpoint's or export's record): gpt2, bytes or
    bpe-N with N >= 257 the vocabulary size. Anything else is one UserError saying what is accepted."""
    if isinstance(name, str) and name in _FIXED:
        return _FIXED[name]
    if not (isinstance(name, str) and name.startswith("bpe-")):
        raise UserError(f"unknown tokenizer {name!r}; use gpt2, bytes or bpe-N (N >= 257, the vocabulary size)")
    if not re.fullmatch(r"[0-9]+", name[4:]):
        raise UserError(f"tokenizer {name!r} should be bpe-N with N the vocabulary size, e.g. bpe-4096")
    n = int(name[4:])
    if n < 257:
        raise UserError(f"tokenizer {name!r}: a byte-level BPE needs at least 257 ids (256 bytes + {EOT})")
    return TokenizerSpec("bpe", n)


def train_bpe(name: str, texts: Iterable[str], out_dir: Path) -> HFTokenizer:
    """Train a byte-level BPE of ``bpe-N``'s size on ``texts`` and save it as out_dir/tokenizer.json."""
    from tokenizers import Tokenizer as HFTok
    from tokenizers import decoders, models, pre_tokenizers, trainers

    n = parse_tokenizer(name).vocab_size
    tok = HFTok(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=n, special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.get_vocab_size() != n:
        raise DataError(
            f"the training text only supports {tok.get_vocab_size()} BPE ids (every pair is already merged), "
            f"fewer than the {n} of {name}; choose a smaller bpe-N or add text"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tokenizer.json"
    atomic_write(path, lambda tmp: tok.save(str(tmp)))
    return HFTokenizer(tok, name, path)


def load_tokenizer(name: str, *, data_dir: str | Path | None = None, gpt2_bpe_file: str | Path | None = None) -> Tokenizer:
    spec = parse_tokenizer(name)
    if spec.kind == "bytes":
        return BytesTokenizer()
    if spec.kind == "gpt2":
        path = find_gpt2_file(gpt2_bpe_file)
        if path is not None:
            return gpt2_from_file(path)
        import tiktoken

        try:
            return TiktokenTokenizer(tiktoken.get_encoding("gpt2"))
        except Exception as e:
            raise DataError(
                f"cannot load the gpt2 tokenizer ({type(e).__name__}): no local gpt2.tiktoken found and tiktoken could not "
                "download it; set data.gpt2_bpe_file or CONNECTOMES_DATA"
            ) from None
    if data_dir is None:
        raise DataError(f"tokenizer {name} is trained with the data; pass the prepared data folder")
    path = Path(data_dir) / "tokenizer.json"
    if not path.is_file():
        raise DataError(f"{path} is missing: the {name} tokenizer is trained by `connectomes prepare`; re-run it")
    from tokenizers import Tokenizer as HFTok

    try:
        hf = HFTok.from_file(str(path))
    except Exception as e:  # the tokenizers library raises a bare Exception on bad JSON
        raise DataError(f"{path} is not a readable tokenizers file ({e}); re-run `connectomes prepare` to train it again") from None
    tok = HFTokenizer(hf, name, path)
    if tok.vocab_size != spec.vocab_size:
        raise DataError(f"{path} has {tok.vocab_size} ids but the config asks for {name}; re-run `connectomes prepare`")
    return tok
