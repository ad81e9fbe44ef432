"""prepare_data on a corpus in the real corpus's layout (bytes, gpt2, bpe-N), synthetic text and a FineWeb-schema dataset:
exact budgets, splits disjoint by document, shard content equal to the source documents read
independently, determinism, reuse/refusal/overwrite, and failures that leave no half-made folder. The corpus is
the synthetic_corpus_root fixture (same files, formats and quirks as the real one, synthetic text), so these run
without the data folder; one test prepares the real corpus and checks what is particular to it."""

import dataclasses
import functools
import json
import random
from pathlib import Path

import numpy as np
import pytest

from connectomes.data.config import DataConfig
from connectomes.data import prepare as prepare_module
from connectomes.data.prepare import SPLITS, build_source, open_prepared, prepare_data
from connectomes.data.config import MULTI_CORPUS_KEYS
from connectomes.data.shards import read_header, read_shard
from connectomes.core.integrity import sha256_file
from connectomes.data.sources import local_source, normalise
from connectomes.data.synthetic import plural_noun, plural_verb, synthetic_document
from connectomes.core.errors import DataError

BUDGETS = {"val": 20_000, "small": 40_000, "large": 300_000}
SHARD = 100_000


@functools.lru_cache(maxsize=None)
def _jsonl_lines(path: Path) -> list[str]:
    # split("\n"), not splitlines(): review text holds U+2028 and other characters splitlines() breaks on
    return path.read_text(encoding="utf-8").rstrip("\n").split("\n")


def source_text(folder: Path, src: str, line: int) -> str:
    """A corpus document read and cleaned by hand (the corpus has BOMs, CRLF and <br /> tags)."""
    path = folder / src
    raw = path.read_bytes().decode("utf-8") if line == 0 else json.loads(_jsonl_lines(path)[line - 1])["text"]
    return raw.removeprefix("\ufeff").replace("\r\n", "\n").replace("<br />", "\n")


def split_tokens(data, split) -> np.ndarray:
    return np.concatenate([np.asarray(read_shard(p)) for p in data.split_paths(split)])


def all_documents(data) -> list[tuple[str, int]]:
    return [(src, line) for s in SPLITS for src, line, _, _ in data.documents(s)]


@pytest.fixture(scope="module")
def corpus_cfg():
    # path "" = <data root>/corpus: novels (BOM + CRLF) and IMDB (<br /> tags)
    return DataConfig(source="local", path="", tokenizer="bytes", val_tokens=BUDGETS["val"], small_tokens=BUDGETS["small"],
                      large_tokens=BUDGETS["large"], seed=3, shard_tokens=SHARD)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, corpus_cfg, synthetic_corpus_root):
    out = tmp_path_factory.mktemp("p") / "data"
    prepare_data(corpus_cfg, out, data_root=synthetic_corpus_root, progress=False)
    return open_prepared(out)


def assert_every_token_comes_from_its_documents(data, folder: Path, budgets: dict[str, int]):
    """Every split is its documents' text (read and cleaned by hand), each after a separator, no document in two splits."""
    seen = set()
    for split in SPLITS:
        toks = split_tokens(data, split)
        docs = data.documents(split)
        assert docs[0][2] == 0 and docs[-1][3] == budgets[split]
        assert all(a[3] == b[2] for a, b in zip(docs, docs[1:]))  # ranges tile the split
        for src, line, start, end in docs:
            assert (src, line) not in seen
            seen.add((src, line))
            body = np.frombuffer(source_text(folder, src, line).encode("utf-8"), dtype=np.uint8)
            assert toks[start] == 0  # the separator before every document
            assert np.array_equal(toks[start + 1:end], body[:end - start - 1])
        # only the split's last document may be cut; the cut-off rest appears nowhere
        src, line, start, end = docs[-1]
        assert end - start - 1 <= len(source_text(folder, src, line).encode("utf-8"))


def assert_normalised(data, folder: Path):
    novels = sorted((folder / "novels").glob("*.txt"))[0].read_bytes()
    assert novels.startswith(b"\xef\xbb\xbf") and b"\r\n" in novels  # what the raw files hold
    assert b"<br />" in (folder / "imdb" / "imdb_train_neg.jsonl").read_bytes()[:100_000]
    sources = {src.split("/")[0] for src, _ in all_documents(data)}
    assert {"novels", "imdb"} <= sources <= {p.name for p in folder.iterdir() if p.is_dir()}  # the real one also holds german/
    for split in SPLITS:
        raw = split_tokens(data, split).astype(np.uint8).tobytes()
        assert b"\r" not in raw and b"<br" not in raw and b"\xef\xbb\xbf" not in raw


# ---------------------------------------------------------------- local sources


def test_normalise():
    assert normalise("\ufeffa\r\nb\rc<br /><br/>d<BR>e<br  />f\x00g") == "a\nb\nc\n\nd\ne\nfg"
    assert normalise("pair \U0001F642, lone \ud800.") == "pair \U0001F642, lone \ufffd."


def test_local_source_reads_txt_jsonl_and_gz_in_sorted_path_order(tmp_path):
    import gzip

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_bytes("\ufeffone\r\ntwo".encode())
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "x<br />y"}) + "\n\n" + json.dumps({"text": "z", "id": 3}) + "\n")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "gz"}) + "\n")
    (tmp_path / "notes.md").write_text("not a document")
    docs = [(r.label(), t) for r, t in local_source(tmp_path).iter_docs()]
    assert docs == [("b.jsonl:1", "x\ny"), ("b.jsonl:3", "z"), ("c.jsonl.gz:1", "gz"), ("sub/a.txt", "one\ntwo")]


@pytest.mark.parametrize("content,message", [('{"text": "ok"}\n{"txt": "no"}\n', r"b\.jsonl:2 has no string 'text' field"),
                                             ('{"text": "ok"}\n{"text": \n', r"b\.jsonl:2 is not valid JSON")])
def test_malformed_jsonl_names_file_and_line(tmp_path, content, message):
    (tmp_path / "b.jsonl").write_text(content)
    with pytest.raises(DataError, match=message):
        local_source(tmp_path)


def test_non_utf8_jsonl(tmp_path):
    (tmp_path / "b.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"b\.jsonl is not UTF-8 text"):
        local_source(tmp_path)


# ---------------------------------------------------------------- the real corpus, bytes


def test_exact_budgets_and_shard_sizes(prepared):
    for split, budget in BUDGETS.items():
        assert prepared.split_tokens(split) == budget == len(split_tokens(prepared, split))
    assert [read_header(p) for p in prepared.split_paths("large")] == [(1, SHARD)] * 3
    assert [p.name for p in prepared.split_paths("small")] == ["small_000000.bin"]
    for split in SPLITS:
        info = prepared.meta["splits"][split]
        assert info["sha256"] == {p.name: sha256_file(p) for p in prepared.split_paths(split)}
        assert info["document_file_sha256"] == sha256_file(prepared.dir / info["document_file"])


def test_every_token_comes_from_its_documents_which_no_other_split_has(prepared, synthetic_corpus_root):
    folder = synthetic_corpus_root / "corpus"
    assert prepared.meta["source"]["path"] == str(folder.resolve())
    assert_every_token_comes_from_its_documents(prepared, folder, BUDGETS)


def test_documents_are_taken_in_the_seeds_order_val_small_large(prepared, synthetic_corpus_root):
    folder = synthetic_corpus_root / "corpus"
    refs = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".txt", ".jsonl")):
        rel = path.relative_to(folder).as_posix()
        refs += [(rel, 0)] if path.suffix == ".txt" else [(rel, i + 1) for i in range(len(_jsonl_lines(path)))]
    random.Random(3).shuffle(refs)
    taken = all_documents(prepared)
    assert taken == refs[:len(taken)]
    assert prepared.meta["documents_read"] == len(taken) and prepared.meta["source"]["documents"] == len(refs)


def test_normalisation(prepared, synthetic_corpus_root):
    assert_normalised(prepared, synthetic_corpus_root / "corpus")


def test_the_real_corpus_is_prepared_traced_and_normalised(corpus_cfg, data_root, tmp_path):
    # what the fixture corpus mimics, checked on the real one: BOM + CRLF novels, <br /> in IMDB, 67 + 2 files (and
    # the German novels added to the folder later)
    cfg = dataclasses.replace(corpus_cfg, val_tokens=200_000, small_tokens=400_000, large_tokens=3_000_000, shard_tokens=1_000_000)
    prepare_data(cfg, tmp_path / "d", data_root=data_root, progress=False)
    real = open_prepared(tmp_path / "d")
    files = real.meta["source"]["files"]
    on_disk = [p for p in (data_root / "corpus").rglob("*") if p.suffix in (".txt", ".jsonl", ".gz")]
    assert len(files) == len(on_disk)  # every file of the folder, whatever corpora it holds now
    assert sum("novels/" in str(f) for f in files) == 67 and sum("imdb/" in str(f) for f in files) == 2
    assert [read_header(p) for p in real.split_paths("large")] == [(1, 1_000_000)] * 3
    assert_normalised(real, data_root / "corpus")
    assert_every_token_comes_from_its_documents(real, data_root / "corpus", {s: getattr(cfg, f"{s}_tokens") for s in SPLITS})


def test_meta_records_what_produced_the_data(prepared, corpus_cfg, synthetic_corpus_root):
    meta = prepared.meta
    assert (meta["tokenizer"], meta["vocab_size"], meta["eot_id"], meta["seed"]) == ("bytes", 256, 0, 3)
    assert meta["settings"] == {k: v for k, v in dataclasses.asdict(corpus_cfg).items() if k not in ("dir", "synthetic_fallback", "workers", *MULTI_CORPUS_KEYS)}
    neg = synthetic_corpus_root / "corpus" / "imdb" / "imdb_train_neg.jsonl"
    assert meta["source"]["files"]["imdb/imdb_train_neg.jsonl"] == sha256_file(neg)
    assert len(meta["source"]["files"]) == 14  # 12 novels + 2 IMDB files
    assert {"connectomes", "numpy", "tiktoken", "tokenizers", "python"} <= set(meta["versions"])
    assert json.loads((prepared.dir / "meta.json").read_text()) == meta


def test_same_seed_same_bytes_other_seed_other_documents(prepared, corpus_cfg, synthetic_corpus_root, tmp_path):
    data_root = synthetic_corpus_root
    again = prepare_data(corpus_cfg, tmp_path / "again", data_root=data_root, progress=False)
    for split in SPLITS:
        assert again["splits"][split]["sha256"] == prepared.meta["splits"][split]["sha256"]
        assert again["splits"][split]["document_file_sha256"] == prepared.meta["splits"][split]["document_file_sha256"]
    other = prepare_data(dataclasses.replace(corpus_cfg, seed=4), tmp_path / "other", data_root=data_root, progress=False)
    assert other["splits"]["val"]["sha256"] != prepared.meta["splits"]["val"]["sha256"]
    assert all_documents(open_prepared(tmp_path / "other"))[:50] != all_documents(prepared)[:50]


# ---------------------------------------------------------------- gpt2 (the GPT-2-format stand-in file) and bpe-N on IMDB


def test_gpt2_shards_hold_the_documents_as_tiktoken_encodes_them(synthetic_corpus_root, gpt2_standin, tmp_path):
    data_root = synthetic_corpus_root
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    enc = tiktoken.Encoding(  # built by hand as data/gpt2/README.md says
        name="gpt2", pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks=load_tiktoken_bpe(str(gpt2_standin)), special_tokens={"<|endoftext|>": 50256})
    cfg = DataConfig(path="corpus/imdb", tokenizer="gpt2", val_tokens=5_000, small_tokens=10_000, large_tokens=30_000, seed=1,
                     gpt2_bpe_file=str(gpt2_standin))
    meta = prepare_data(cfg, tmp_path / "d", data_root=data_root, progress=False)  # relative path: inside the data folder
    data = open_prepared(tmp_path / "d")
    assert (meta["tokenizer"], meta["vocab_size"], meta["eot_id"]) == ("gpt2", 50257, 50256)
    for split in SPLITS:
        toks = split_tokens(data, split)
        assert len(toks) == getattr(cfg, f"{split}_tokens") and read_header(data.split_paths(split)[0])[0] == 1
        for src, line, start, end in data.documents(split)[:10]:
            want = enc.encode_ordinary(source_text(data_root / "corpus" / "imdb", src, line))
            assert toks[start] == 50256 and toks[start + 1:end].tolist() == want[:end - start - 1]


def test_bpe_is_trained_on_the_corpus_saved_and_used_for_the_shards(synthetic_corpus_root, tmp_path, monkeypatch):
    data_root = synthetic_corpus_root
    monkeypatch.setattr(prepare_module, "BPE_TRAIN_CHARS", 300_000)
    cfg = DataConfig(path=str(data_root / "corpus" / "imdb"), tokenizer="bpe-512", val_tokens=3_000, small_tokens=3_000,
                     large_tokens=10_000)
    meta = prepare_data(cfg, tmp_path / "d", progress=False)
    data = open_prepared(tmp_path / "d")
    tok = data.tokenizer()
    assert (tok.name, tok.vocab_size, meta["vocab_size"], meta["eot_id"]) == ("bpe-512", 512, 512, tok.eot_id)
    training = meta["tokenizer_training"]
    assert 300_000 <= training["chars"] < 310_000 and training["sha256"] == sha256_file(tmp_path / "d" / "tokenizer.json")
    toks = split_tokens(data, "val")
    for src, line, start, end in data.documents("val")[:5]:
        want = tok.encode(source_text(data_root / "corpus" / "imdb", src, line))
        assert toks[start] == tok.eot_id and toks[start + 1:end].tolist() == want[:end - start - 1]


# ---------------------------------------------------------------- synthetic and FineWeb-schema sources


def test_synthetic_source_prepares_exact_budgets_for_any_tokenizer(tmp_path, gpt2_standin):
    cfg = DataConfig(source="synthetic", tokenizer="gpt2", val_tokens=2_000, small_tokens=5_000, large_tokens=20_000, seed=5,
                     gpt2_bpe_file=str(gpt2_standin))
    meta = prepare_data(cfg, tmp_path / "a", progress=False)
    assert {s: meta["splits"][s]["tokens"] for s in SPLITS} == {"val": 2_000, "small": 5_000, "large": 20_000}
    data = open_prepared(tmp_path / "a")
    src, line, start, end = data.documents("small")[0]
    assert src == "synthetic/seed5" and data.tokenizer().decode(split_tokens(data, "small")[start + 1:end]) == synthetic_document(5, line - 1)
    other = prepare_data(dataclasses.replace(cfg, seed=6), tmp_path / "b", progress=False)
    assert other["splits"]["val"]["sha256"] != meta["splits"]["val"]["sha256"]


def test_synthetic_grammar_agrees_in_number():
    assert [plural_verb(v) for v in ("hurries", "watches", "crosses", "closes", "sails")] == ["hurry", "watch", "cross", "close", "sail"]
    assert [plural_noun(n) for n in ("child", "bridge", "harbour")] == ["children", "bridges", "harbours"]
    assert synthetic_document(0, 3) == synthetic_document(0, 3) != synthetic_document(1, 3)
    assert " a o" not in synthetic_document(0, 0) + synthetic_document(0, 1)  # "an old", not "a old"


FINEWEB_COLUMNS = ("text", "id", "dump", "url", "date", "file_path", "language", "language_score", "token_count")


def fineweb_rows(first: int, n: int) -> list[dict]:
    return [{"text": f"Web page {i}: " + "lorem ipsum dolor " * (5 + i % 7), "id": f"<urn:uuid:{i:04d}>", "dump": "CC-MAIN-2024-10",
             "url": f"https://example.org/{i}", "date": "2024-02-21T00:00:00Z", "file_path": f"s3://commoncrawl/{i}.warc.gz",
             "language": "en", "language_score": 0.95, "token_count": 30} for i in range(first, first + n)]


@pytest.fixture
def fineweb_parquet(tmp_path):
    import pandas as pd

    folder = tmp_path / "fineweb"
    folder.mkdir()
    for k in range(2):
        pd.DataFrame(fineweb_rows(100 * k, 100), columns=FINEWEB_COLUMNS).to_parquet(folder / f"00{k}_00000.parquet")
    return folder


def test_fineweb_schema_parquet_through_datasets(fineweb_parquet, tmp_path):
    cfg = DataConfig(source="fineweb", path=str(fineweb_parquet), tokenizer="bytes", val_tokens=1_000, small_tokens=2_000,
                     large_tokens=6_000, seed=0)
    meta = prepare_data(cfg, tmp_path / "a", progress=False)
    data = open_prepared(tmp_path / "a")
    assert meta["source"]["kind"] == "fineweb" and "shuffle buffer" in meta["order"]
    assert meta["source"]["files"] == {str(p): sha256_file(p) for p in sorted(fineweb_parquet.glob("*.parquet"))}
    ids = {s: [src for src, _, _, _ in data.documents(s)] for s in SPLITS}
    assert all(i.startswith("<urn:uuid:") for v in ids.values() for i in v)
    assert len({i for v in ids.values() for i in v}) == sum(map(len, ids.values()))  # no row in two splits
    rows = {r["id"]: r["text"] for r in fineweb_rows(0, 200)}
    toks = split_tokens(data, "small")
    for src, _, start, end in data.documents("small"):
        assert toks[start + 1:end].astype(np.uint8).tobytes() == rows[src].encode()[:end - start - 1]
    again = prepare_data(cfg, tmp_path / "b", progress=False)
    other = prepare_data(dataclasses.replace(cfg, seed=1), tmp_path / "c", progress=False)
    assert again["splits"]["val"]["sha256"] == meta["splits"]["val"]["sha256"] != other["splits"]["val"]["sha256"]


def test_fineweb_schema_jsonl_file_and_missing_text(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in fineweb_rows(0, 60)))
    cfg = DataConfig(source="fineweb", path=str(path), tokenizer="bytes", val_tokens=500, small_tokens=500, large_tokens=1_000)
    assert prepare_data(cfg, tmp_path / "d", progress=False)["splits"]["large"]["tokens"] == 1_000
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "body": "no text column"}) + "\n")
    with pytest.raises(DataError, match="no string 'text' field"):
        prepare_data(dataclasses.replace(cfg, path=str(bad)), tmp_path / "e", progress=False)
    assert not (tmp_path / "e").exists()


# ---------------------------------------------------------------- reuse, refusal, failures


def small_corpus(folder: Path) -> Path:
    folder.mkdir()
    for i in range(30):
        (folder / f"doc{i:02d}.txt").write_text(f"document {i} " * 20)
    (folder / "empty.txt").write_text("")
    return folder


def test_empty_documents_are_skipped(tmp_path):
    cfg = DataConfig(path=str(small_corpus(tmp_path / "c")), val_tokens=500, small_tokens=500, large_tokens=2_000)
    meta = prepare_data(cfg, tmp_path / "d", progress=False)
    assert meta["empty_documents_skipped"] == 1
    assert "empty.txt" not in {src for src, _ in all_documents(open_prepared(tmp_path / "d"))}


def test_reuse_refusal_and_overwrite(tmp_path):
    cfg = DataConfig(path=str(small_corpus(tmp_path / "c")), val_tokens=500, small_tokens=500, large_tokens=2_000)
    out = tmp_path / "d"
    meta = prepare_data(cfg, out, progress=False)
    stamp = (out / "val_000000.bin").stat().st_mtime_ns
    assert prepare_data(dataclasses.replace(cfg, dir="elsewhere"), out, progress=False) == meta  # where it goes is not a setting
    assert (out / "val_000000.bin").stat().st_mtime_ns == stamp
    changed = dataclasses.replace(cfg, large_tokens=1_000, seed=9)
    with pytest.raises(DataError, match=r"prepared with other data settings \(differs in large_tokens, seed\)"):
        prepare_data(changed, out, progress=False)
    assert open_prepared(out).meta == meta
    assert prepare_data(changed, out, progress=False, overwrite=True)["splits"]["large"]["tokens"] == 1_000
    assert listing(tmp_path) == ["c", "d"]  # no temporary or old folders left


def test_a_crash_leaves_no_folder_and_keeps_a_good_one(tmp_path, monkeypatch):
    cfg = DataConfig(path=str(small_corpus(tmp_path / "c")), val_tokens=500, small_tokens=500, large_tokens=2_000)
    good = prepare_data(cfg, tmp_path / "good", progress=False)

    def crash():
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "_versions", crash)  # the last step before meta.json
    with pytest.raises(KeyboardInterrupt):
        prepare_data(cfg, tmp_path / "new", progress=False)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(dataclasses.replace(cfg, seed=2), tmp_path / "good", progress=False, overwrite=True)
    assert listing(tmp_path) == ["c", "good"]
    assert open_prepared(tmp_path / "good").meta == good


def test_corpus_too_small_for_the_budgets_says_the_numbers(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "t.txt").write_text("tiny")
    cfg = DataConfig(path=str(tmp_path / "c"), val_tokens=10, small_tokens=10, large_tokens=100)
    with pytest.raises(DataError, match=r"ran out after 1 documents with 5 tokens .* need 120 .*lower data.large_tokens"):
        prepare_data(cfg, tmp_path / "d", progress=False)
    assert listing(tmp_path) == ["c"]


def test_missing_data_folder(tmp_path):
    with pytest.raises(DataError, match=r"text folder .*none does not exist; set data.path .* or CONNECTOMES_DATA"):
        prepare_data(DataConfig(path=str(tmp_path / "none")), tmp_path / "d", progress=False)
    with pytest.raises(DataError, match=r"text folder .*corpus does not exist"):
        prepare_data(DataConfig(path=""), tmp_path / "d", data_root=tmp_path / "absent", progress=False)
    with pytest.raises(DataError, match="set data.path .* or CONNECTOMES_DATA"):
        build_source(DataConfig(path=""), None)
    assert not (tmp_path / "d").exists()


def test_budgets_must_be_positive(tmp_path):
    with pytest.raises(DataError, match="data.val_tokens is 0"):
        prepare_data(DataConfig(path=str(tmp_path), val_tokens=0), tmp_path / "d", progress=False)


def test_open_prepared_errors(tmp_path):
    cfg = DataConfig(path=str(small_corpus(tmp_path / "c")), val_tokens=500, small_tokens=500, large_tokens=2_000)
    prepare_data(cfg, tmp_path / "d", progress=False)
    with pytest.raises(DataError, match="has no split 'test'"):
        open_prepared(tmp_path / "d").split_paths("test")
    (tmp_path / "d" / "large_000000.bin").unlink()
    with pytest.raises(DataError, match=r"large_000000\.bin does not exist; re-run `connectomes prepare`"):
        open_prepared(tmp_path / "d").split_paths("large")
    (tmp_path / "d" / "meta.json").write_text("{")
    with pytest.raises(DataError, match=r"meta\.json is not valid JSON.*run `connectomes prepare` again"):
        open_prepared(tmp_path / "d")
    (tmp_path / "d" / "meta.json").unlink()
    with pytest.raises(DataError, match="has no meta.json, so it is not a prepared data folder"):
        open_prepared(tmp_path / "d")
    with pytest.raises(DataError, match="does not exist; run `connectomes prepare` first"):
        open_prepared(tmp_path / "nowhere")
    with pytest.raises(DataError, match="exists but is not a prepared data folder"):
        prepare_data(cfg, tmp_path / "d", progress=False)


# ---------------------------------------------------------------- worker pool


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a prepared folder; meta.json without its `versions` (same process, same anyway)."""
    out = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "meta.json"}
    out["meta.json"] = json.dumps(json.loads((folder / "meta.json").read_text()), sort_keys=True).encode()
    return out


@pytest.mark.parametrize("source,tokenizer", [("local", "gpt2"), ("local", "bytes"), ("synthetic", "gpt2"), ("synthetic", "bpe-300")])
def test_worker_pool_writes_the_single_process_bytes(source, tokenizer, synthetic_corpus_root, gpt2_standin, tmp_path, monkeypatch):
    data_root = synthetic_corpus_root
    # Small batches so that even these budgets cross many tasks and the look-ahead window.
    monkeypatch.setattr(prepare_module, "ENCODE_BATCH_DOCS", 3)
    monkeypatch.setattr(prepare_module, "BPE_TRAIN_CHARS", 200_000)  # bpe-300 needs little text
    cfg = DataConfig(source=source, path="", tokenizer=tokenizer, val_tokens=4_000, small_tokens=6_000,
                     large_tokens=30_000, seed=3, shard_tokens=10_000, gpt2_bpe_file=str(gpt2_standin))
    prepare_data(cfg, tmp_path / "w1", data_root=data_root, progress=False)
    base = _folder_bytes(tmp_path / "w1")
    for workers in (2, 3):
        meta = prepare_data(dataclasses.replace(cfg, workers=workers), tmp_path / f"w{workers}", data_root=data_root, progress=False)
        assert "workers" not in meta["settings"]  # the count does not change what is prepared
        assert _folder_bytes(tmp_path / f"w{workers}") == base, workers


def test_worker_pool_on_a_fineweb_schema_dataset(fineweb_parquet, tmp_path):
    cfg = DataConfig(source="fineweb", path=str(fineweb_parquet), tokenizer="bytes", val_tokens=1_000, small_tokens=2_000,
                     large_tokens=6_000, seed=0)
    prepare_data(cfg, tmp_path / "w1", progress=False)
    prepare_data(dataclasses.replace(cfg, workers=2), tmp_path / "w2", progress=False)
    assert _folder_bytes(tmp_path / "w2") == _folder_bytes(tmp_path / "w1")


def test_worker_count_must_be_positive(tmp_path):
    cfg = DataConfig(source="synthetic", tokenizer="bytes", val_tokens=100, small_tokens=100, large_tokens=100, workers=0)
    with pytest.raises(DataError, match="data.workers is 0"):
        prepare_data(cfg, tmp_path / "d", progress=False)


def test_a_prepared_folder_is_reused_whatever_the_worker_count(tmp_path):
    cfg = DataConfig(source="synthetic", tokenizer="bytes", val_tokens=500, small_tokens=500, large_tokens=1_000)
    first = prepare_data(cfg, tmp_path / "d", progress=False)
    assert prepare_data(dataclasses.replace(cfg, workers=2), tmp_path / "d", progress=False) == first


def listing(folder):
    """A folder's entries, less the writers' lock files (``.<name>.lock``: they stay by design, an
    empty file once released, see connectomes.lock)."""
    names = sorted(p.name for p in folder.iterdir())
    locks = [n for n in names if n.startswith(".") and n.endswith(".lock")]
    assert all((folder / n).read_text() == "" for n in locks)  # released
    return [n for n in names if n not in locks]
