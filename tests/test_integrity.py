"""Digests: a byte flip, a missing file or a manifest pointing outside its folder is named."""

import json
from pathlib import Path

import pytest

from connectomes.core.errors import CheckpointError, UserError
from connectomes.core.integrity import IntegrityError, read_manifest, record_manifest, sha256_file, verify_file, verify_manifest, write_manifest
from helpers import flip_bit


def test_sha256_file_known_value(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_verify_file_byte_flip_and_missing(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(bytes(range(256)) * 10)
    digest = sha256_file(f)
    verify_file(f, digest, remedy="re-save it")
    flip_bit(f, 1000)
    with pytest.raises(IntegrityError, match=rf"{f} is corrupt: its sha256 is [0-9a-f]{{12}}…, not the {digest[:12]}… .*; re-save it"):
        verify_file(f, digest, remedy="re-save it")
    f.unlink()
    with pytest.raises(CheckpointError, match=rf"{f} is missing; re-save it"):
        verify_file(f, digest, remedy="re-save it", error=CheckpointError)
    assert issubclass(IntegrityError, UserError)


def test_manifest_records_every_file_and_catches_aflip_bit(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"a" * 100)
    (tmp_path / "sub" / "b.json").write_text("{}")
    m = write_manifest(tmp_path)
    assert m == {"a.bin": sha256_file(tmp_path / "a.bin"), "sub/b.json": sha256_file(tmp_path / "sub" / "b.json")}
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"sha256": m}
    assert record_manifest(tmp_path) == m  # the manifest does not list itself
    assert read_manifest(tmp_path, remedy="x") == m
    verify_manifest(tmp_path, remedy="x")
    flip_bit(tmp_path / "sub" / "b.json", 0)
    with pytest.raises(IntegrityError, match=r"sub/b\.json is corrupt.*; retrain the step"):
        verify_manifest(tmp_path, remedy="retrain the step")


def test_manifest_of_chosen_files_and_a_missing_one(tmp_path):
    (tmp_path / "a").write_text("1")
    (tmp_path / "b").write_text("2")
    m = write_manifest(tmp_path, [tmp_path / "a"], name="weights.sha256.json")
    assert m == {"a": sha256_file(tmp_path / "a")}
    (tmp_path / "a").unlink()
    with pytest.raises(IntegrityError, match=r"/a is missing; redo"):
        verify_manifest(tmp_path, name="weights.sha256.json", remedy="redo")


def test_bad_manifests_are_named(tmp_path):
    with pytest.raises(IntegrityError, match=r"manifest\.json is missing, so .* cannot be checked; redo"):
        verify_manifest(tmp_path, remedy="redo")
    (tmp_path / "manifest.json").write_text("[1]")
    with pytest.raises(IntegrityError, match=r"manifest\.json holds a JSON list, not a JSON object; redo"):
        verify_manifest(tmp_path, remedy="redo")
    (tmp_path / "manifest.json").write_text('{"sha256": [1]}')
    with pytest.raises(IntegrityError, match=r"manifest\.json has no \{'sha256'"):
        verify_manifest(tmp_path, remedy="redo")
    with pytest.raises(IntegrityError, match=r"lists '\.\./x', which is outside"):
        verify_manifest(tmp_path, {"../x": "0" * 64}, remedy="redo")


def test_a_folder_given_as_a_relative_path_gets_the_same_manifest(tmp_path, monkeypatch):
    """`make demo` runs in runs/ relative to the checkout: rglob of a relative folder yields paths
    that already start with the folder, which must not be joined to it a second time."""
    folder = tmp_path / "runs" / "demo" / "step"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "sub" / "state.json").write_text("{}")
    absolute = record_manifest(folder)
    monkeypatch.chdir(tmp_path)
    relative = Path("runs/demo/step")
    assert record_manifest(relative) == absolute == {"model.safetensors": sha256_file(folder / "model.safetensors"),
                                                     "sub/state.json": sha256_file(folder / "sub" / "state.json")}
    assert record_manifest(relative, [relative / "model.safetensors", "sub/state.json"]) == absolute
    assert record_manifest(relative, [folder / "model.safetensors"]) == {"model.safetensors": absolute["model.safetensors"]}
    write_manifest(relative)
    verify_manifest(relative, remedy="redo it")
