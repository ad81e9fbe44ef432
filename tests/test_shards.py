"""llm.c token shards: exact byte layout, uint16/uint32 versions, validation errors that name the
file, atomic writes."""

import os
import struct

import numpy as np
import pytest

from connectomes.core import atomic
from connectomes.data.shards import check_vocab, read_header, read_shard, write_shard
from connectomes.core.integrity import sha256_file
from connectomes.core.errors import DataError


def llmc_bytes(version: int, tokens: list[int], count: int | None = None, magic: int = 20240520) -> bytes:
    """A shard written by hand the way llm.c's writer lays it out."""
    header = struct.pack("<256i", magic, version, len(tokens) if count is None else count, *([0] * 253))
    return header + struct.pack(f"<{len(tokens)}{'H' if version == 1 else 'I'}", *tokens)


def test_bytes_on_disk_are_llmc_format(tmp_path):
    path = write_shard(tmp_path / "s.bin", np.array([50256, 15496, 995, 0]))
    assert path.read_bytes() == llmc_bytes(1, [50256, 15496, 995, 0])


def test_reads_a_shard_written_by_hand(tmp_path):
    (tmp_path / "v1.bin").write_bytes(llmc_bytes(1, [1, 65535, 7]))
    (tmp_path / "v2.bin").write_bytes(llmc_bytes(2, [1, 70000, 2**32 - 1]))
    assert read_shard(tmp_path / "v1.bin").tolist() == [1, 65535, 7]
    assert read_shard(tmp_path / "v2.bin").tolist() == [1, 70000, 2**32 - 1]
    assert read_header(tmp_path / "v2.bin") == (2, 3)


@pytest.mark.parametrize("vocab,version,itemsize", [(256, 1, 2), (50257, 1, 2), (65536, 1, 2), (65537, 2, 4), (100_000, 2, 4)])
def test_round_trip_and_version_by_vocabulary(tmp_path, vocab, version, itemsize):
    toks = np.random.default_rng(vocab).integers(0, vocab, 1000)
    toks[0] = vocab - 1
    path = write_shard(tmp_path / "s.bin", toks, vocab_size=vocab)
    assert np.fromfile(path, dtype="<i4", count=3).tolist() == [20240520, version, 1000]
    assert path.stat().st_size == 1024 + 1000 * itemsize
    got = read_shard(path)
    assert isinstance(got, np.memmap) and got.dtype.itemsize == itemsize and np.array_equal(got, toks)


def test_version_without_vocabulary_follows_the_largest_id(tmp_path):
    assert read_header(write_shard(tmp_path / "a.bin", np.array([0, 65535]))) == (1, 2)
    assert read_header(write_shard(tmp_path / "b.bin", np.array([0, 65536]))) == (2, 2)


def test_a_large_vocabulary_keeps_uint32_even_for_small_ids(tmp_path):
    assert read_header(write_shard(tmp_path / "s.bin", np.array([1, 2, 3]), vocab_size=100_000)) == (2, 3)


def test_shard_is_read_only(tmp_path):
    toks = read_shard(write_shard(tmp_path / "s.bin", np.arange(10)))
    with pytest.raises(ValueError):
        toks[0] = 5
    empty = read_shard(write_shard(tmp_path / "e.bin", np.zeros(0, dtype=np.int64)))
    assert empty.size == 0 and not empty.flags.writeable


@pytest.mark.parametrize("tokens", [np.array([-1, 2]), np.array([2**16], dtype=np.int64), np.array([0.5])])
def test_ids_that_do_not_fit_are_refused(tmp_path, tokens):
    with pytest.raises(ValueError):
        write_shard(tmp_path / "s.bin", tokens, vocab_size=50257)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- validation


def test_truncated_shard_says_expected_and_actual_bytes(tmp_path):
    path = write_shard(tmp_path / "s.bin", np.arange(100))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"s\.bin is truncated: 1221 bytes, expected 1224 for 100 tokens; re-run `connectomes prepare`"):
        read_shard(path)


def test_shard_longer_than_its_header(tmp_path):
    (tmp_path / "s.bin").write_bytes(llmc_bytes(1, [1, 2, 3], count=2))
    with pytest.raises(DataError, match=r"s\.bin is longer than its header says: 1030 bytes, expected 1028"):
        read_shard(tmp_path / "s.bin")


def test_file_shorter_than_the_header(tmp_path):
    (tmp_path / "s.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match=r"s\.bin is truncated \(100 bytes, shorter than the 1024-byte header\)"):
        read_shard(tmp_path / "s.bin")


def test_wrong_magic_is_not_an_llmc_shard(tmp_path):
    (tmp_path / "s.bin").write_bytes(llmc_bytes(1, [1, 2], magic=12345))
    with pytest.raises(DataError, match=r"s\.bin is not an llm\.c token shard \(magic 12345, expected 20240520\)"):
        read_shard(tmp_path / "s.bin")


@pytest.mark.parametrize("version,count,message", [(3, 2, "unsupported version 3"), (1, -5, r"a negative token count \(-5\)")])
def test_bad_header_fields(tmp_path, version, count, message):
    (tmp_path / "s.bin").write_bytes(llmc_bytes(version, [1, 2], count=count))
    with pytest.raises(DataError, match=rf"s\.bin has {message}"):
        read_shard(tmp_path / "s.bin")


def test_missing_shard(tmp_path):
    with pytest.raises(DataError, match=r"shard .*gone\.bin does not exist; re-run `connectomes prepare`"):
        read_shard(tmp_path / "gone.bin")


def test_token_outside_the_vocabulary_names_file_id_and_size(tmp_path):
    path = write_shard(tmp_path / "s.bin", np.array([1, 2, 300, 4, 299]))
    check_vocab(path, 301)
    with pytest.raises(DataError, match=r"s\.bin holds token id 300, outside the model's vocabulary of 256; the tokenizer"):
        check_vocab(path, 256)


# ---------------------------------------------------------------- atomic writes


def test_a_failed_write_keeps_the_old_shard_and_leaves_no_temp(tmp_path, monkeypatch):
    path = write_shard(tmp_path / "s.bin", np.arange(10))
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", crash)  # the one atomic-write helper
    with pytest.raises(OSError, match="disk full"):
        write_shard(path, np.arange(20))
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["s.bin"]


def test_sha256_file(tmp_path):
    import hashlib

    (tmp_path / "f").write_bytes(b"abc" * 1000)
    assert sha256_file(tmp_path / "f", chunk=7) == hashlib.sha256(b"abc" * 1000).hexdigest()
