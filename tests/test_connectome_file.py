"""The connectome file: exact layout, bit-exact round trips, damage detection, the entropy bound, inspect."""

import json
import math
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from connectomes import connectome_file as cf
from connectomes.cli import main
from connectomes.connectome import Connectome, dense_masks, magnitude_prune
from connectomes.connectome_file import inspect_connectome, load_connectome, save_connectome
from connectomes.errors import CheckpointError

FILES = [(None, "c.safetensors"), ("ans", "c.cnx"), ("structured", "s.cnx")]
META = {"generation": 6, "model_config": {"n_layer": 1}, "source_run": "runs/x", "config_hash": "abc"}


def random_connectome(shapes=((200, 300), (100, 500), (50, 64)), density=0.8 ** 6, seed=0) -> Connectome:
    g = torch.Generator().manual_seed(seed)
    tern = {}
    for i, shape in enumerate(shapes):
        alive = torch.rand(shape, generator=g) < density
        signs = torch.where(torch.rand(shape, generator=g) < 0.5, 1, -1)
        tern[f"h.{i}.weight"] = alive.to(torch.int8) * signs.to(torch.int8)
    return Connectome(tern, META)


def pruned_connectome(shapes, generations=6, seed=0) -> Connectome:
    """Built as evolve builds one: exact 20% magnitude pruning of N(0, 1) weights, six times."""

    class Weights(torch.nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(seed)
            for i, s in enumerate(shapes):
                self.register_parameter(f"w{i}", torch.nn.Parameter(torch.randn(s, generator=g)))

    m = Weights()
    masks = dense_masks(m)
    for _ in range(generations):
        masks = magnitude_prune(m, masks, 0.2)
    return Connectome.from_model(m, masks, META)


@pytest.mark.parametrize("codec,name", FILES)
def test_round_trip_is_bit_exact(tmp_path, codec, name):
    c = random_connectome()
    path = save_connectome(c, tmp_path / name, codec=codec)
    back = load_connectome(path)
    assert back.equal(c) and back.meta == c.meta
    assert list(back.ternary) == list(c.ternary)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left behind


def test_packed_layout_by_hand(tmp_path):
    c = Connectome({"w": torch.tensor([[1, 0, -1], [0, 0, 1], [-1, 0, 0]])}, {"generation": 1})
    path = save_connectome(c, tmp_path / "c.safetensors")
    with safe_open(str(path), framework="numpy") as f:
        # mask 101 001 100 -> 10100110 0(0000000); signs of the alive + - + - -> 1010(0000)
        assert f.get_tensor("w.mask").tolist() == [0b10100110, 0b00000000]
        assert f.get_tensor("w.signs").tolist() == [0b10100000]
        header = json.loads(f.metadata()["connectome"])
    assert header["format"] == "connectome-packed/1" and header["bitorder"] == "big"
    assert header["tensors"] == {"w": {"shape": [3, 3], "numel": 9, "nnz": 4, "density": 4 / 9}}
    assert header["meta"] == {"generation": 1}
    assert header["sha256"] == cf.content_hash(c)
    # the safetensors file is 8 bytes of header length, the header, then exactly the packed bits
    raw = path.read_bytes()
    assert len(raw) == 8 + struct.unpack("<Q", raw[:8])[0] + 2 + 1


def test_packed_size_is_one_plus_density_bits(tmp_path):
    c = random_connectome()
    path = save_connectome(c, tmp_path / "c.safetensors")
    payload = sum(math.ceil(t.numel() / 8) + math.ceil(int((t != 0).sum()) / 8) for t in c.ternary.values())
    raw = path.read_bytes()
    assert len(raw) == 8 + struct.unpack("<Q", raw[:8])[0] + payload


def test_ans_is_within_one_percent_of_the_shannon_bound(tmp_path):
    c = pruned_connectome([(1024, 768), (768, 2304), (768, 768), (3072, 768)])  # 5.5M weights
    st = c.stats()
    for r in st["tensors"]:
        alive = r["numel"]
        for _ in range(6):
            alive -= math.floor(0.2 * alive)
        assert r["alive"] == alive
    path = save_connectome(c, tmp_path / "c.cnx", codec="ans")
    assert load_connectome(path).equal(c)
    bits = path.stat().st_size * 8  # header included
    even_bound = sum(r["entropy_bits"] * r["numel"] for r in st["tensors"])
    measured_bound = sum(r["entropy_bits_measured_signs"] * r["numel"] for r in st["tensors"])
    assert measured_bound <= even_bound
    assert measured_bound < bits < 1.01 * even_bound  # no code beats the empirical entropy


@pytest.mark.parametrize("codec,name", FILES)
@pytest.mark.parametrize("keep", [5, 40, 1000, -1])
def test_truncated_files_are_refused(tmp_path, codec, name, keep):
    path = save_connectome(random_connectome(), tmp_path / name, codec=codec)
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(CheckpointError, match=name):
        load_connectome(path)


@pytest.mark.parametrize("codec,name", FILES)
@pytest.mark.parametrize("where", [0.3, 0.6, 0.999])
def test_a_flipped_bit_in_the_data_is_detected(tmp_path, codec, name, where):
    path = save_connectome(random_connectome(), tmp_path / name, codec=codec)
    raw = bytearray(path.read_bytes())
    raw[int(where * len(raw))] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="modified or damaged"):
        load_connectome(path)


@pytest.mark.parametrize("codec,name", FILES)
def test_edited_metadata_is_detected(tmp_path, codec, name):
    path = save_connectome(random_connectome(), tmp_path / name, codec=codec)
    raw = path.read_bytes()
    # same length, still valid JSON (escaped once more inside the safetensors header)
    edited = raw.replace(b'"generation": 6', b'"generation": 7').replace(b'\\"generation\\": 6', b'\\"generation\\": 7')
    assert edited != raw
    path.write_bytes(edited)
    with pytest.raises(CheckpointError, match="header does not match its digest"):
        load_connectome(path)


def _forge_packed(path, header_tensors, arrays):
    """A packed file whose header digest is valid but whose content disagrees with its header."""
    header = {"format": cf.FORMAT, "bitorder": "big", "tensors": header_tensors, "meta": {}, "sha256": "0" * 64}
    save_file(arrays, str(path), metadata={"connectome": cf._sealed(header).decode()})


def test_wrong_nnz_shape_and_padding_are_refused(tmp_path):
    arrays = {"w.mask": np.array([0b11100000], dtype=np.uint8), "w.signs": np.array([0b10100000], dtype=np.uint8)}
    path = tmp_path / "c.safetensors"
    _forge_packed(path, {"w": {"shape": [1, 4], "numel": 4, "nnz": 2, "density": 0.5}}, arrays)
    with pytest.raises(CheckpointError, match="holds 3 alive weights but its header says 2"):
        load_connectome(path)
    _forge_packed(path, {"w": {"shape": [2, 3], "numel": 4, "nnz": 3, "density": 0.75}}, arrays)
    with pytest.raises(CheckpointError, match=r"shape \[2, 3\], numel 4"):
        load_connectome(path)
    arrays["w.mask"] = np.array([0b11101000], dtype=np.uint8)  # a bit set beyond the 4 weights
    _forge_packed(path, {"w": {"shape": [1, 4], "numel": 4, "nnz": 3, "density": 0.75}}, arrays)
    with pytest.raises(CheckpointError, match="padding bits"):
        load_connectome(path)


def test_a_plain_safetensors_file_and_a_missing_file_are_refused(tmp_path):
    from safetensors.torch import save_file as torch_save_file

    torch_save_file({"w": torch.zeros(3)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match="not a connectome"):
        load_connectome(tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_connectome(tmp_path / "nope.safetensors")


def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    import safetensors.numpy

    good = random_connectome(seed=1)
    path = save_connectome(good, tmp_path / "c.safetensors")

    def broken(arrays, filename, metadata=None):
        open(filename, "wb").write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_connectome(random_connectome(seed=2), path)
    assert load_connectome(path).equal(good)
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


HAND = Connectome({"a.weight": torch.tensor([[1, 1, 1, -1, 0, 0, 0, 0], [0] * 8]), "b.weight": torch.tensor([[1, -1]])},
                  {"generation": 2, "source_run": "runs/hand"})


@pytest.mark.parametrize("codec,name", FILES)
def test_inspect_prints_the_hand_computed_numbers(tmp_path, capsys, codec, name):
    path = save_connectome(HAND, tmp_path / name, codec=codec)
    text = inspect_connectome(path)
    rows = {line.split()[0]: line.split() for line in text.splitlines()[2:5]}
    # a: d = 4/16, 3 of 4 positive, H(0.25) + 0.25 = 1.0613 bits; b: d = 1, even signs, 1 bit
    assert rows["a.weight"][:5] == ["a.weight", "2x8", "0.2500", "0.7500", "1.0613"]
    assert rows["b.weight"][:5] == ["b.weight", "1x2", "1.0000", "0.5000", "1.0000"]
    size = path.stat().st_size
    if codec is None:  # (2 mask bytes + 1 sign byte) / 16 weights; (1 + 1) / 2
        assert rows["a.weight"][5] == "1.5000" and rows["b.weight"][5] == "8.0000"
    assert rows["total"][1:5] == ["18", "0.3333", "0.6667", f"{(16 * 1.0612781 + 2) / 18:.4f}"]
    assert f"{size / 1e6:.3f} MB = {8 * size / 18:.4f} bits/weight stored" in text
    assert "generation 2; source runs/hand" in text
    assert "gpt2-124m" not in text
    assert main(["inspect", str(path)]) == 0
    assert "a.weight" in capsys.readouterr().out


def test_inspect_compares_gpt2_124m_shapes_with_the_paper(tmp_path, monkeypatch):
    path = save_connectome(HAND, tmp_path / "c.safetensors")
    assert cf._gpt2_124m_shapes()["transformer.wte.weight"] == (50304, 768)
    monkeypatch.setattr(cf, "_gpt2_124m_shapes", lambda: {"a.weight": (2, 8), "b.weight": (1, 2)})
    assert "vs the paper's ~16 MB estimate" in inspect_connectome(path)
