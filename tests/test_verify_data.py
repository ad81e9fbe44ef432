"""Prepared shards are checked against meta.json's sha256 before use, once per open."""

import pytest

from connectomes.data.config import DataConfig
from connectomes.data import prepare as prepare_module
from connectomes.data.prepare import open_prepared, prepare_data
from connectomes.core.errors import DataError
from helpers import flip_bit


@pytest.fixture
def data_dir(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i in range(20):
        (corpus / f"doc{i:02d}.txt").write_text(f"document {i} " * 20)
    cfg = DataConfig(path=str(corpus), val_tokens=500, small_tokens=500, large_tokens=2_000, shard_tokens=1_000)
    prepare_data(cfg, tmp_path / "d", progress=False)
    return tmp_path / "d"


def test_a_flipped_token_byte_is_named_with_what_to_do(data_dir):
    flip_bit(data_dir / "large_000001.bin", 1024 + 7)  # in the tokens, past the header: size and magic stay valid
    data = open_prepared(data_dir)
    assert len(data.split_paths("val")) == 1  # other splits are unaffected
    with pytest.raises(DataError, match=rf"{data_dir}/large_000001\.bin is corrupt: its sha256 .* delete {data_dir} and run `connectomes prepare` again"):
        data.split_paths("large")
    assert len(open_prepared(data_dir, verify=False).split_paths("large")) == 2  # a meta-only reader is not blocked


def test_each_split_is_hashed_once_per_open(data_dir, monkeypatch):
    calls = []
    real = prepare_module.verify_file
    monkeypatch.setattr(prepare_module, "verify_file", lambda p, *a, **k: (calls.append(p.name), real(p, *a, **k)))
    data = open_prepared(data_dir)
    for _ in range(3):
        data.split_paths("large")
    assert calls == ["large_000000.bin", "large_000001.bin"]
    open_prepared(data_dir).split_paths("large")
    assert len(calls) == 4  # a new open checks again (the files may have changed in between)


def test_a_changed_document_list_is_named(data_dir):
    with open(data_dir / "val_documents.tsv", "a") as f:
        f.write("extra\t0\t0\t1\n")
    with pytest.raises(DataError, match=r"val_documents\.tsv is corrupt"):
        open_prepared(data_dir).documents("val")


def test_a_shard_without_a_recorded_digest_is_refused(data_dir):
    import json

    meta = json.loads((data_dir / "meta.json").read_text())
    del meta["splits"]["small"]["sha256"]["small_000000.bin"]
    (data_dir / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"records no sha256 for small_000000\.bin"):
        open_prepared(data_dir).split_paths("small")
