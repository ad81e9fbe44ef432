"""Local-corpus files that are not UTF-8 text are refused by name, or skipped and counted."""

import dataclasses
import json
import random

import pytest

from connectomes.data.config import DataConfig
from connectomes.data.prepare import open_prepared, prepare_data
from connectomes.data.sources import MAX_BAD_FRACTION, local_source, text_problem
from connectomes.core.errors import DataError

FRENCH = "Le café était fermé; à côté, l'hôtel où nous étions a été rénové en été. " * 200


def _corpus(folder):
    folder.mkdir()
    for i in range(10):
        (folder / f"doc{i}.txt").write_text(f"plain document {i} " * 30)
    return folder


def test_random_bytes_txt_is_refused_by_name(tmp_path):
    c = _corpus(tmp_path / "c")
    (c / "noise.txt").write_bytes(random.Random(0).randbytes(20_000))
    with pytest.raises(DataError, match=rf"{c}/noise\.txt is not UTF-8 text \([\d,]+ of its [\d,]+ characters .* the first at byte \d+; "
                                        r"at most 0\.1% is tolerated\); convert it to UTF-8 .*data\.skip_bad_files: true"):
        local_source(c)


def test_latin1_txt_is_refused(tmp_path):
    c = _corpus(tmp_path / "c")
    (c / "latin.txt").write_bytes(FRENCH.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.txt is not UTF-8 text \(3,000 of its 14,600 characters \(20\.5%\) .* the first at byte 6;"):
        local_source(c)


def test_latin1_jsonl_is_refused_and_skippable(tmp_path):
    c = _corpus(tmp_path / "c")
    (c / "rows.jsonl").write_bytes(json.dumps({"text": "x"}).encode() + b"\n" + '{"text": "café"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"rows\.jsonl is not UTF-8 text \(line 2: invalid continuation byte at byte 13 of the line\)"):
        local_source(c)
    src = local_source(c, skip_bad_files=True)
    assert src.description["skipped_files"]["count"] == 1
    assert {r.source for r, _ in src.iter_docs()} == {f"doc{i}.txt" for i in range(10)}


def test_one_stray_byte_in_a_long_text_is_tolerated(tmp_path):
    c = _corpus(tmp_path / "c")
    good = ("A long and ordinary English novel, " * 100).encode()  # 3,500 characters: one bad byte is < 0.1%
    (c / "novel.txt").write_bytes(good[:1000] + b"\xff" + good[1000:])
    docs = dict((r.source, t) for r, t in local_source(c).iter_docs())
    assert docs["novel.txt"].count("\ufffd") == 1 and len(docs["novel.txt"]) == 3501
    assert local_source(c).description["skipped_files"] == {"count": 0, "files": {}}


def test_threshold_counts_only_bad_bytes_and_nuls():
    ok = ("x" * 999).encode()
    assert text_problem(ok + b"\xff") is None  # 1 in 1,000 = exactly the tolerated fraction
    assert text_problem(ok[:-1] + b"\xff\xff") is not None  # 2 in 1,000
    assert text_problem(("\ufffd" * 50 + "y" * 50).encode()) is None  # U+FFFD written in the file is text
    assert text_problem(b"a\x00" * 100).startswith("100 of its 200 characters (50.0%) are undecodable bytes or NULs;")
    assert text_problem(b"") is None
    assert MAX_BAD_FRACTION == 0.001


def test_skip_option_prepares_without_the_bad_files_and_records_them(tmp_path):
    c = _corpus(tmp_path / "c")
    (c / "noise.txt").write_bytes(random.Random(1).randbytes(5_000))
    (c / "sub").mkdir()
    (c / "sub" / "latin.txt").write_bytes(FRENCH.encode("latin-1"))
    src = local_source(c, skip_bad_files=True)
    skipped = src.description["skipped_files"]
    assert skipped["count"] == 2 and sorted(skipped["files"]) == ["noise.txt", "sub/latin.txt"]
    assert "is not UTF-8 text" in skipped["files"]["sub/latin.txt"]
    texts = [t for _, t in src.iter_docs(0)]
    assert len(texts) == 10 and not any("\ufffd" in t for t in texts)


def test_skip_option_reaches_meta_json_through_the_data_config(tmp_path, monkeypatch):
    c = _corpus(tmp_path / "c")
    (c / "noise.txt").write_bytes(random.Random(2).randbytes(5_000))
    cfg = DataConfig(path=str(c), val_tokens=200, small_tokens=200, large_tokens=1_000)
    with pytest.raises(DataError, match=r"noise\.txt is not UTF-8 text"):
        prepare_data(cfg, tmp_path / "d", progress=False)
    assert not (tmp_path / "d").exists()
    cfg = dataclasses.replace(cfg, skip_bad_files=True)
    meta = prepare_data(cfg, tmp_path / "d", progress=False)
    assert meta["source"]["skipped_files"]["count"] == 1
    assert list(meta["source"]["skipped_files"]["files"]) == ["noise.txt"]
    assert json.loads((tmp_path / "d" / "meta.json").read_text())["source"]["skipped_files"]["count"] == 1
    assert "noise.txt" not in {s for sp in ("val", "small", "large") for s, *_ in open_prepared(tmp_path / "d").documents(sp)}


def test_every_file_bad_is_one_error(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "noise.txt").write_bytes(b"\xff" * 100)
    with pytest.raises(DataError, match=r"every file in text folder .* is not UTF-8 text \(1 skipped\)"):
        local_source(tmp_path / "c", skip_bad_files=True)
