"""Tokenizers: gpt2 from the local BPE file (and its offline failure), bytes, corpus-trained bpe-N;
exact character spans for every token, including tokens that end inside a multi-byte character."""

import json
import re
from pathlib import Path

import pytest
import tiktoken

import connectomes
from connectomes.data.tokenizers import EOT, TokenizerSpec, load_tokenizer, parse_tokenizer, train_bpe
from connectomes.core.errors import DataError, UserError

MIXED = "naïve café — “quoted” words, 日本語のテキスト and 🙂🙂 emoji.\n\n\tend"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the ByteLevel alphabet), written out independently."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def token_bytes(tok, ids) -> list[bytes]:
    if tok.name == "bytes":
        return [bytes([i]) for i in ids]
    if tok.name == "gpt2":
        return [tok.enc.decode_single_token_bytes(i) for i in ids]
    inverse = {c: b for b, c in bytes_to_unicode().items()}
    return [bytes(inverse[c] for c in tok.tok.id_to_token(i)) for i in ids]


def chars_touched(text: str, pieces: list[bytes]) -> list[tuple[int, int]]:
    """The reference definition of a token's span: first to last character its bytes belong to."""
    owner = [ci for ci, ch in enumerate(text) for _ in ch.encode("utf-8")]
    spans, pos = [], 0
    for b in pieces:
        spans.append((owner[pos], owner[pos + len(b) - 1] + 1))
        pos += len(b)
    assert pos == len(owner)
    return spans


@pytest.fixture(scope="module")
def bpe(tmp_path_factory, synthetic_texts):
    folder = tmp_path_factory.mktemp("bpe")
    train_bpe("bpe-400", synthetic_texts, folder)
    return load_tokenizer("bpe-400", data_dir=folder)


@pytest.fixture
def tokenizer(request, bpe):
    if request.param == "bpe":
        return bpe
    if request.param == "gpt2":  # GPT-2's format and loading path; the published ids are checked on the real file above
        return load_tokenizer("gpt2", gpt2_bpe_file=request.getfixturevalue("gpt2_standin"))
    return load_tokenizer(request.param)


# ---------------------------------------------------------------- gpt2


def test_gpt2_from_the_local_file_gives_the_published_ids(data_root):
    tok = load_tokenizer("gpt2", gpt2_bpe_file=data_root / "gpt2" / "gpt2.tiktoken")
    ids = tok.encode("Hello world, this is GPT-2.")
    assert ids == [15496, 995, 11, 428, 318, 402, 11571, 12, 17, 13]
    assert (tok.name, tok.vocab_size, tok.eot_id) == ("gpt2", 50257, 50256)
    assert tok.decode(ids) == "Hello world, this is GPT-2."


def test_gpt2_file_is_found_in_the_data_folder_without_network(synthetic_corpus_root, gpt2_standin, monkeypatch):
    monkeypatch.setenv("CONNECTOMES_DATA", str(synthetic_corpus_root))  # holds gpt2/gpt2.tiktoken (the stand-in)

    def no_download(name):
        raise AssertionError("the local file should have been used")

    monkeypatch.setattr(tiktoken, "get_encoding", no_download)
    ids = load_tokenizer("gpt2").encode(" world")
    assert ids == load_tokenizer("gpt2", gpt2_bpe_file=gpt2_standin).encode(" world") and len(ids) < len(" world")


def test_gpt2_offline_without_a_local_file_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CONNECTOMES_DATA", str(tmp_path))

    def offline(name):
        raise ConnectionError("no network")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    with pytest.raises(DataError, match="no local gpt2.tiktoken found.*data.gpt2_bpe_file or CONNECTOMES_DATA"):
        load_tokenizer("gpt2")


def test_gpt2_file_missing_or_not_a_bpe_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.tiktoken does not exist"):
        load_tokenizer("gpt2", gpt2_bpe_file=tmp_path / "nope.tiktoken")
    (tmp_path / "vocab.tiktoken").write_text("aGVsbG8= 0\nd29ybGQ= 1\n")  # a valid tiktoken file, but 2 ranks
    with pytest.raises(DataError, match=r"vocab\.tiktoken has 2 ranks, GPT-2 has 50256"):
        load_tokenizer("gpt2", gpt2_bpe_file=tmp_path / "vocab.tiktoken")


def test_gpt2_token_ending_inside_a_character_spans_that_character(data_root):
    tok = load_tokenizer("gpt2", gpt2_bpe_file=data_root / "gpt2" / "gpt2.tiktoken")
    ids, spans = tok.encode_with_offsets("x “quoted” y")
    # ' “' is split as b' \xe2\x80' + b'\x9c': the first token carries part of the quote, so it spans it
    assert ids == [87, 564, 250, 421, 5191, 447, 251, 331]
    assert spans == [(0, 1), (1, 3), (2, 3), (3, 5), (5, 9), (9, 10), (9, 10), (10, 12)]


def test_gpt2_encodes_the_separator_text_as_ordinary_text(gpt2_standin):
    tok = load_tokenizer("gpt2", gpt2_bpe_file=gpt2_standin)
    assert tok.eot_id not in tok.encode(f"a{EOT}b")


# ---------------------------------------------------------------- bytes


def test_bytes_are_utf8_with_nul_as_separator():
    tok = load_tokenizer("bytes")
    assert (tok.name, tok.vocab_size, tok.eot_id) == ("bytes", 256, 0)
    assert tok.encode("aé日") == [97, 0xC3, 0xA9, 0xE6, 0x97, 0xA5]
    assert tok.encode_with_offsets("aé日") == ([97, 0xC3, 0xA9, 0xE6, 0x97, 0xA5], [(0, 1), (1, 2), (1, 2), (2, 3), (2, 3), (2, 3)])
    assert tok.decode(tok.encode(MIXED)) == MIXED


# ---------------------------------------------------------------- all three


@pytest.mark.parametrize("tokenizer", ["bytes", "gpt2", "bpe"], indirect=True)
def test_spans_are_the_characters_each_token_touches(tokenizer):
    ids, spans = tokenizer.encode_with_offsets(MIXED)
    assert ids == tokenizer.encode(MIXED) and tokenizer.decode(ids) == MIXED
    assert spans == chars_touched(MIXED, token_bytes(tokenizer, ids))


@pytest.mark.parametrize("tokenizer", ["bytes", "gpt2", "bpe"], indirect=True)
def test_empty_text(tokenizer):
    assert tokenizer.encode("") == [] and tokenizer.encode_with_offsets("") == ([], [])


@pytest.mark.parametrize("tokenizer", ["bytes", "gpt2", "bpe"], indirect=True)
def test_lone_surrogate_in_offsets_is_a_clear_error(tokenizer):
    with pytest.raises(DataError, match="lone surrogate|invalid Unicode"):
        tokenizer.encode_with_offsets("a\ud800b")


# ---------------------------------------------------------------- bpe-N


def test_bpe_is_saved_and_reloaded_with_its_exact_ids(tmp_path, synthetic_texts, bpe):
    trained = train_bpe("bpe-400", synthetic_texts, tmp_path)
    loaded = load_tokenizer("bpe-400", data_dir=tmp_path)
    text = synthetic_texts[7]
    assert (loaded.name, loaded.vocab_size) == ("bpe-400", 400)
    assert loaded.eot_id == trained.eot_id == json.loads((tmp_path / "tokenizer.json").read_text())["added_tokens"][0]["id"]
    assert loaded.encode(text) == trained.encode(text) == bpe.encode(text)  # training is deterministic
    assert loaded.decode(loaded.encode(text)) == text
    assert len(loaded.encode(text)) < len(text.encode("utf-8"))  # the merges compress


def test_bpe_encodes_the_separator_text_as_ordinary_text(bpe, tmp_path):
    assert bpe.eot_id not in bpe.encode(f"a{EOT}b")
    assert bpe.decode(bpe.encode(f"a{EOT}b")) == f"a{EOT}b"


def test_bpe_larger_than_the_text_supports_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"only supports \d+ BPE ids.*fewer than the 5000 of bpe-5000"):
        train_bpe("bpe-5000", ["ab ab ab"] * 10, tmp_path)
    assert not (tmp_path / "tokenizer.json").exists()


def test_bpe_loading_errors(tmp_path, bpe):
    with pytest.raises(DataError, match="pass the prepared data folder"):
        load_tokenizer("bpe-400")
    with pytest.raises(DataError, match=r"tokenizer\.json is missing.*connectomes prepare"):
        load_tokenizer("bpe-400", data_dir=tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match=r"tokenizer\.json is not a readable tokenizers file"):
        load_tokenizer("bpe-400", data_dir=tmp_path)
    bpe.tok.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(DataError, match="has 400 ids but the config asks for bpe-512"):
        load_tokenizer("bpe-512", data_dir=tmp_path)


@pytest.mark.parametrize("name,message", [("wordpiece", "use gpt2, bytes or bpe-N"), ("bpe-abc", "bpe-N with N the vocabulary size"),
                                          ("bpe-100", "at least 257 ids")])
def test_bad_tokenizer_names(name, message):
    with pytest.raises(UserError, match=message):
        load_tokenizer(name)


def test_a_tokenizer_name_parses_to_its_kind_and_vocabulary():
    assert parse_tokenizer("gpt2") == TokenizerSpec("gpt2", 50257)
    assert parse_tokenizer("bytes") == TokenizerSpec("bytes", 256)
    assert parse_tokenizer("bpe-4096") == TokenizerSpec("bpe", 4096) and parse_tokenizer("bpe-257").vocab_size == 257
    for bad in ("bpe-", "bpe-+300", "bpe-4096x", "BYTES", None):
        with pytest.raises(UserError, match="bpe-N"):
            parse_tokenizer(bad)


def test_tokenizer_names_are_read_only_by_parse_tokenizer():
    """No module but data/tokenizers.py takes a tokenizer name apart (its bpe- prefix, its number, its vocabulary)."""
    package = Path(connectomes.__file__).parent
    spelled = re.compile(r"""startswith\(["']bpe|["']bpe-["']|split\(["']-["']\)\[1\]|["']bytes["']: 256""")
    found = [f"{p.relative_to(package)}:{i}: {line.strip()}" for p in sorted(package.rglob("*.py"))
             if p.name != "tokenizers.py" and "hf_remote" not in p.parts
             for i, line in enumerate(p.read_text().splitlines(), 1) if spelled.search(line)]
    assert not found, "\n".join(found)
