"""Data: tokenizers, the llm.c shard format, exact-budget document splits, the resumable stream."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from connectomes.config import DataConfig
from connectomes.data.prepare import open_prepared, prepare_data
from connectomes.data.shards import HEADER_BYTES, MAGIC, check_vocab, read_shard, write_shard
from connectomes.data.sources import local_source, normalise
from connectomes.data.stream import TokenStream, eval_windows
from connectomes.data.tokenizers import load_tokenizer
from connectomes.errors import DataError

# ---------------------------------------------------------------- tokenizers


def test_gpt2_from_the_local_bpe_file_matches_the_published_ids(data_root):
    tok = load_tokenizer("gpt2", gpt2_bpe_file=data_root / "gpt2" / "gpt2.tiktoken")
    assert tok.encode("Hello world, this is GPT-2.") == [15496, 995, 11, 428, 318, 402, 11571, 12, 17, 13]
    assert (tok.vocab_size, tok.eot_id) == (50257, 50256)


@pytest.mark.parametrize("name", ["bytes", "gpt2"])
def test_offsets_cover_the_text(name, data_root):
    tok = load_tokenizer(name)
    text = "naïve café — “quoted” words, and 日本."
    ids, spans = tok.encode_with_offsets(text)
    assert tok.decode(ids) == text and len(ids) == len(spans)
    assert spans[0][0] == 0 and max(e for _, e in spans) == len(text)
    assert all(s < e for s, e in spans)
    assert all(a[0] <= b[0] for a, b in zip(spans, spans[1:]))


def test_bpe_is_trained_saved_and_reloaded(tmp_path, data_root):
    cfg = DataConfig(path=str(data_root / "corpus" / "imdb"), tokenizer="bpe-512", large_tokens=20000,
                     small_tokens=5000, val_tokens=5000)
    meta = prepare_data(cfg, tmp_path / "d", progress=False)
    tok = open_prepared(tmp_path / "d").tokenizer()
    assert meta["vocab_size"] == tok.vocab_size == 512 and (tmp_path / "d" / "tokenizer.json").exists()
    text = "This movie was great."
    assert tok.decode(tok.encode(text)) == text


def test_unknown_tokenizer():
    with pytest.raises(Exception, match="gpt2, bytes or bpe-N"):
        load_tokenizer("wordpiece")


# ---------------------------------------------------------------- shards


@pytest.mark.parametrize("top", [50256, 70000])
def test_shard_round_trip_uint16_and_uint32(tmp_path, top):
    toks = np.random.default_rng(0).integers(0, top + 1, 1000)
    toks[0] = top
    path = write_shard(tmp_path / "s.bin", toks)
    header = np.fromfile(path, dtype="<i4", count=256)
    assert (header[0], header[1], header[2]) == (MAGIC, 1 if top < 2**16 else 2, 1000)
    assert np.array_equal(read_shard(path), toks)


def test_truncated_shard(tmp_path):
    path = write_shard(tmp_path / "s.bin", np.arange(100))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"s\.bin is truncated.*connectomes prepare"):
        read_shard(path)


def test_wrong_magic(tmp_path):
    path = write_shard(tmp_path / "s.bin", np.arange(100))
    raw = bytearray(path.read_bytes())
    raw[0:4] = (12345).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="not an llm.c token shard"):
        read_shard(path)


def test_token_outside_vocabulary(tmp_path):
    path = write_shard(tmp_path / "s.bin", np.array([1, 2, 300, 4]))
    with pytest.raises(DataError, match=r"s\.bin holds token id 300, outside the model's vocabulary of 256"):
        check_vocab(path, 256)


# ---------------------------------------------------------------- sources


def test_normalisation():
    assert normalise("\ufeffa\r\nb<br /><br/>c<BR>d\x00") == "a\nb\n\nc\nd"


def test_local_source_reads_txt_jsonl_and_gz(tmp_path):
    (tmp_path / "a.txt").write_bytes("\ufeffone\r\ntwo".encode())
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "x<br />y"}) + "\n" + json.dumps({"text": "z"}) + "\n")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "gz"}) + "\n")
    docs = [t for _, t in local_source(tmp_path).iter_docs()]
    assert docs == ["one\ntwo", "x\ny", "z", "gz"]


def test_malformed_jsonl_names_file_and_line(tmp_path):
    (tmp_path / "b.jsonl").write_text('{"text": "ok"}\n{"txt": "no"}\n')
    with pytest.raises(DataError, match=r"b\.jsonl:2 has no string 'text' field"):
        local_source(tmp_path)


def test_fineweb_schema_local_dataset(tmp_path):
    rows = [{"text": f"document number {i} " * 20, "id": f"<urn:{i}>", "dump": "CC-MAIN", "url": "http://x",
             "date": "2024", "file_path": "s3://x", "language": "en", "language_score": 0.9, "token_count": 60}
            for i in range(60)]
    folder = tmp_path / "fw"
    folder.mkdir()
    (folder / "000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(source="fineweb", path=str(folder), tokenizer="bytes", large_tokens=4000, small_tokens=1000, val_tokens=1000)
    meta = prepare_data(cfg, tmp_path / "d", progress=False)
    assert meta["source"]["kind"] == "fineweb" and {s["tokens"] for s in meta["splits"].values()} == {4000, 1000}
    assert "shuffle buffer" in meta["order"]  # a stream is shuffled through a buffer, by the seed


# ---------------------------------------------------------------- prepare on the real corpus


@pytest.fixture(scope="module")
def corpus_cfg(data_root):
    return DataConfig(source="local", path=str(data_root / "corpus"), tokenizer="bytes", large_tokens=3_000_000,
                      small_tokens=400_000, val_tokens=200_000, seed=3, shard_tokens=1_000_000)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, corpus_cfg):
    out = tmp_path_factory.mktemp("p") / "data"
    prepare_data(corpus_cfg, out, progress=False)
    return open_prepared(out)


def test_exact_budgets(prepared, corpus_cfg):
    for split, budget in (("large", 3_000_000), ("small", 400_000), ("val", 200_000)):
        assert sum(len(read_shard(p)) for p in prepared.split_paths(split)) == budget
        assert prepared.meta["splits"][split]["tokens"] == budget
    assert [len(read_shard(p)) for p in prepared.split_paths("large")] == [1_000_000] * 3


def test_splits_are_disjoint_by_document(prepared):
    docs = {s: {(src, line) for src, line, _, _ in prepared.documents(s)} for s in ("large", "small", "val")}
    assert not docs["large"] & docs["small"] and not docs["large"] & docs["val"] and not docs["small"] & docs["val"]
    # and by content: the first 200 bytes of every val document appear nowhere in large
    large = b"".join(np.asarray(read_shard(p)).astype(np.uint8).tobytes() for p in prepared.split_paths("large"))
    val = np.asarray(read_shard(prepared.split_paths("val")[0]))
    for _, _, a, b in prepared.documents("val")[:20]:
        chunk = val[a + 1:min(b, a + 200)].astype(np.uint8).tobytes()
        if len(chunk) > 100:
            assert chunk not in large


def test_documents_start_with_eot_and_ranges_tile_the_split(prepared):
    toks = np.asarray(read_shard(prepared.split_paths("val")[0]))
    ranges = [(a, b) for _, _, a, b in prepared.documents("val")]
    assert ranges[0][0] == 0 and ranges[-1][1] == 200_000
    assert all(x[1] == y[0] for x, y in zip(ranges, ranges[1:]))
    assert all(toks[a] == 0 for a, _ in ranges)


def test_deterministic_for_a_seed(prepared, corpus_cfg, tmp_path):
    import dataclasses

    again = prepare_data(corpus_cfg, tmp_path / "again", progress=False)
    assert again["splits"]["val"]["sha256"] == prepared.meta["splits"]["val"]["sha256"]
    other = prepare_data(dataclasses.replace(corpus_cfg, seed=4), tmp_path / "other", progress=False)
    assert other["splits"]["val"]["sha256"] != prepared.meta["splits"]["val"]["sha256"]


def test_reuse_and_refusal(prepared, corpus_cfg):
    import dataclasses

    assert prepare_data(corpus_cfg, prepared.dir, progress=False) == prepared.meta
    with pytest.raises(DataError, match="other data settings.*large_tokens"):
        prepare_data(dataclasses.replace(corpus_cfg, large_tokens=10), prepared.dir, progress=False)


def test_corpus_too_small_for_budgets(tmp_path):
    (tmp_path / "t.txt").write_text("tiny")
    with pytest.raises(DataError, match="ran out"):
        prepare_data(DataConfig(path=str(tmp_path), large_tokens=100, small_tokens=10, val_tokens=10), tmp_path / "d", progress=False)
    assert not (tmp_path / "d").exists()


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare_data(DataConfig(path=str(tmp_path / "none")), tmp_path / "d", progress=False)


# ---------------------------------------------------------------- stream


def test_windows_are_contiguous_and_resume_exactly(prepared):
    paths = prepared.split_paths("small")
    toks = np.asarray(read_shard(paths[0]))
    s = TokenStream(paths, 32, 4)
    x, y = s.next_batch()
    assert torch.equal(x[1], torch.from_numpy(toks[32:64].astype(np.int64)))
    assert torch.equal(y[0], torch.from_numpy(toks[1:33].astype(np.int64)))
    for _ in range(5):
        s.next_batch()
    state = s.state_dict()
    want = [s.next_batch() for _ in range(3)]
    t = TokenStream(paths, 32, 4)
    t.load_state_dict(json.loads(json.dumps(state)))
    for a, b in zip(want, [t.next_batch() for _ in range(3)]):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_ranks_together_give_the_single_process_batch(prepared):
    paths = prepared.split_paths("small")
    one = TokenStream(paths, 16, 8)
    r0, r1 = TokenStream(paths, 16, 8, rank=0, world=2), TokenStream(paths, 16, 8, rank=1, world=2)
    for _ in range(4):
        x, _ = one.next_batch()
        assert torch.equal(x, torch.cat([r0.next_batch()[0], r1.next_batch()[0]]))


def test_stream_wraps_to_a_new_epoch(prepared):
    s = TokenStream(prepared.split_paths("val"), 64, 64)  # 4096 tokens per step over 200k tokens
    steps_per_epoch = (200_000 - 1) // 4096
    first, _ = s.next_batch()
    for _ in range(steps_per_epoch - 1):
        s.next_batch()
    again, _ = s.next_batch()
    assert s.state_dict()["epoch"] == 1 and torch.equal(first, again)


def test_split_smaller_than_one_step(prepared):
    with pytest.raises(DataError, match="too small for one step"):
        TokenStream(prepared.split_paths("val"), 1024, 512)


def test_eval_windows_fixed_budget(prepared):
    a = list(eval_windows(prepared.split_paths("val"), 64, 8, 5000))
    b = list(eval_windows(prepared.split_paths("val"), 64, 8, 5000))
    assert sum(x.numel() for x, _ in a) == (5000 // 64) * 64
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b))
