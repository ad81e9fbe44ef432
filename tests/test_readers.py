"""core.readers: the one reader per format every file of the package goes through, and what each promises."""

import os

import pytest
import torch
from safetensors.torch import save_file

from connectomes.core.errors import CheckpointError, ConfigError, DataError
from connectomes.core.readers import parse_yaml, read_json, read_jsonl, read_safetensors, read_text, read_torch, read_yaml


def test_a_pipe_or_a_folder_in_a_file_s_place_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.json")  # opening it for reading would wait for a writer forever
    with pytest.raises(DataError, match=r"pipe\.json is not a regular file \(a pipe, socket or device\); fix it"):
        read_json(tmp_path / "pipe.json", remedy="fix it")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(DataError, match=r"dir\.json is a folder, not a file"):
        read_json(tmp_path / "dir.json", remedy="fix it")
    with pytest.raises(CheckpointError, match=r"pipe\.json is not a regular file"):
        read_safetensors(tmp_path / "pipe.json", remedy="x")


def test_missing_is_an_error_unless_a_default_is_given(tmp_path):
    with pytest.raises(DataError, match=r"nope\.json is missing; run prepare"):
        read_json(tmp_path / "nope.json", remedy="run prepare")
    assert read_json(tmp_path / "nope.json", remedy="x", missing=None) is None
    assert read_yaml(tmp_path / "nope.yaml", remedy="x", missing={}) == {}


@pytest.mark.parametrize("content, says", [
    (b"\x89PNG\xff", "is not UTF-8 text (byte 0x89 at offset 0)"),
    (b'{"a": ', "is not valid JSON (Expecting value: line 1, column 7)"),
    (b"[1]", "holds a JSON list, not a JSON object"),
    (b"null", "holds null, not a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "is not valid JSON (nested too deeply)"),
])
def test_json_damage_is_one_line(tmp_path, content, says):
    (tmp_path / "f.json").write_bytes(content)
    with pytest.raises(DataError) as e:
        read_json(tmp_path / "f.json", remedy="delete it")
    assert str(e.value) == f"{tmp_path / 'f.json'} {says}; delete it"


def test_jsonl_drops_only_a_cut_last_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_bytes(b'{"step": 1}\n{"step": 2}\n{"ste')
    assert read_jsonl(p, remedy="x") == ([{"step": 1}, {"step": 2}], True)
    p.write_bytes(b'{"step": 1}\n{"step": 2}')  # whole but for its newline: kept
    assert read_jsonl(p, remedy="x") == ([{"step": 1}, {"step": 2}], False)
    for middle, why in ((b'{"ste', "not valid JSON"), (b"[1]", "a JSON list, not a JSON object"), (b"\xff", "not UTF-8 text")):
        p.write_bytes(b'{"step": 1}\n' + middle + b'\n{"step": 3}\n')
        with pytest.raises(DataError, match=rf"m\.jsonl line 2 is damaged \({why}"):
            read_jsonl(p, remedy="x")


def test_yaml_refuses_a_repeated_key_but_not_a_merged_one():
    with pytest.raises(ConfigError, match=r"c\.yaml is not valid YAML: duplicate key 'lr' \(first given at line 2\) "
                                          r"at line 3, column 3"):
        parse_yaml("train:\n  lr: 1\n  lr: 2\n", "c.yaml")
    # a merge key brings keys in on purpose, and an explicit key overrides them
    assert parse_yaml("base: &b {lr: 1, iters: 2}\ntrain:\n  <<: *b\n  lr: 3\n", "c.yaml")["train"] == {"lr": 3, "iters": 2}
    # the same key in two different mappings is no repetition
    assert parse_yaml("a: {x: 1}\nb: {x: 2}\n", "c.yaml") == {"a": {"x": 1}, "b": {"x": 2}}


def test_yaml_syntax_errors_and_other_shapes_are_one_line(tmp_path):
    (tmp_path / "c.yaml").write_text("model:\n  preset: [demo\n")
    with pytest.raises(ConfigError) as e:
        read_yaml(tmp_path / "c.yaml", remedy="fix it")
    assert "\n" not in str(e.value) and "at line 3, column 1; fix it" in str(e.value)
    (tmp_path / "c.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"c\.yaml must be a mapping of sections, got list; fix it"):
        read_yaml(tmp_path / "c.yaml", remedy="fix it")
    (tmp_path / "c.yaml").write_text("")
    assert read_yaml(tmp_path / "c.yaml", remedy="x") == {}


def test_safetensors_and_torch_files(tmp_path):
    save_file({"w": torch.ones(3)}, str(tmp_path / "w.safetensors"), metadata={"k": "v"})
    tensors, meta = read_safetensors(tmp_path / "w.safetensors", remedy="x")
    assert torch.equal(tensors["w"], torch.ones(3)) and meta == {"k": "v"}
    # a forged header asking for 10^12 floats in a 100-byte file is refused before anything is allocated
    header = b'{"w":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4000000000000]}}'
    (tmp_path / "big.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 100)
    with pytest.raises(CheckpointError, match=r"big\.safetensors is not a readable safetensors file"):
        read_safetensors(tmp_path / "big.safetensors", remedy="x")
    torch.save({"x": DataError("a pickled object")}, tmp_path / "p.pt")
    with pytest.raises(CheckpointError, match=r"p\.pt cannot be loaded safely \(UnpicklingError: .*\); convert it"):
        read_torch(tmp_path / "p.pt", remedy="convert it")


def test_text_is_utf8_or_named(tmp_path):
    (tmp_path / "t.txt").write_bytes("héllo".encode())
    assert read_text(tmp_path / "t.txt", remedy="x") == "héllo"
    (tmp_path / "t.txt").write_bytes("héllo".encode("latin-1"))
    with pytest.raises(DataError, match=r"t\.txt is not UTF-8 text \(byte 0xe9 at offset 1\)"):
        read_text(tmp_path / "t.txt", remedy="x")
