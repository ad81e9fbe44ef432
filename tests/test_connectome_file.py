"""The connectome file: exact layout, bit-exact round trips, damage detection, the entropy bound, inspect."""

import json
import math
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from connectomes.connectome import codec as cf
from connectomes.cli import main
from connectomes.connectome.ternary import Connectome
from connectomes.connectome.masks import dense_masks, magnitude_prune
from connectomes.connectome.codec import inspect_connectome, load_connectome, save_connectome
from connectomes.core.errors import CheckpointError

FILES = [(None, "c.safetensors"), ("ans", "c.cnx"), ("structured", "s.cnx")]
META = {"generation": 5, "generation_base": 0, "model_config": {"n_layer": 1}, "source_run": "runs/x", "config_hash": "abc"}


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
    edited = raw.replace(b'"generation": 5', b'"generation": 7').replace(b'\\"generation\\": 5', b'\\"generation\\": 7')
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
                  {"generation": 2, "generation_base": 0, "source_run": "runs/hand"})


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
    assert "generation 2 (the 3rd); source runs/hand" in text
    assert "gpt2-124m" not in text
    assert main(["inspect", str(path)]) == 0
    assert "a.weight" in capsys.readouterr().out


def test_inspect_compares_gpt2_124m_shapes_with_the_paper(tmp_path, monkeypatch):
    path = save_connectome(HAND, tmp_path / "c.safetensors")
    assert cf._gpt2_124m_shapes()["transformer.wte.weight"] == (50304, 768)
    monkeypatch.setattr(cf, "_gpt2_124m_shapes", lambda: {"a.weight": (2, 8), "b.weight": (1, 2)})
    assert "vs the paper's ~16 MB estimate" in inspect_connectome(path)


# ---- the structured codec (per-row / per-column alive rates)

def structured_connectome(seed=0) -> Connectome:
    """Row rates from 0 to 1 in r.weight (an empty and a full row included), column rates in c.weight,
    an i.i.d. tensor, and a vector (which can only be coded i.i.d.)."""
    g = torch.Generator().manual_seed(seed)

    def ternary(rates):
        alive = torch.rand(rates.shape, generator=g) < rates
        return alive.to(torch.int8) * torch.where(torch.rand(rates.shape, generator=g) < 0.5, 1, -1).to(torch.int8)

    rows = torch.linspace(0, 1, 120).unsqueeze(1).expand(120, 200)
    return Connectome({"r.weight": ternary(rows), "c.weight": ternary(rows.T.contiguous()),
                       "i.weight": ternary(torch.full((100, 100), 0.26)), "v.weight": ternary(torch.full((1, 50), 0.3))}, META)


def test_structured_picks_rows_columns_or_iid_and_round_trips(tmp_path):
    c = structured_connectome()
    assert c.ternary["r.weight"][0].abs().sum() == 0 and c.ternary["r.weight"][-1].abs().sum() == 200
    path = save_connectome(c, tmp_path / "s.cnx", codec="structured")
    raw = path.read_bytes()
    assert raw[:8] == b"CNXSTR01"
    header = json.loads(raw[16:16 + struct.unpack("<Q", raw[8:16])[0]])
    assert header["format"] == "connectome-structured/1" and header["sha256"] == cf.content_hash(c)
    assert {n: i["context"] for n, i in header["tensors"].items()} == {
        "r.weight": "rows", "c.weight": "cols", "i.weight": "iid", "v.weight": "iid"}
    back = load_connectome(path)
    assert back.equal(c) and list(back.ternary) == sorted(c.ternary) and back.meta == c.meta  # files list tensors by name
    ans = save_connectome(c, tmp_path / "a.cnx", codec="ans")
    assert path.stat().st_size < 0.9 * ans.stat().st_size  # rates spread over [0, 1]: ~0.72 bits per mask bit


def test_codec_bits_match_the_files_and_the_ideal_code_lengths(tmp_path):
    c = structured_connectome()
    bits = cf.codec_bits(c)
    ans = save_connectome(c, tmp_path / "a.cnx", codec="ans")
    structured = save_connectome(c, tmp_path / "s.cnx", codec="structured")
    total = bits["total"]
    assert total["ans_file"] == 8 * ans.stat().st_size and total["structured_file"] == 8 * structured.stat().st_size
    assert total["numel"] == 120 * 200 * 2 + 100 * 100 + 50
    for name, row in bits["tensors"].items():
        t = c.ternary[name]
        counts = np.bincount(cf._symbols(t), minlength=3)
        p = counts / counts.sum()
        assert row["bound"] == pytest.approx(-(counts * np.log2(np.where(p > 0, p, 1))).sum())
        ideal = cf._context_bits(cf._symbols(t), list(t.shape), counts.tolist(), row["context"])
        assert ideal <= row["bound"] + 1e-9  # the chosen context never needs more than i.i.d.
        assert ideal - 1 < row["structured"] < 1.01 * ideal + 64  # ANS: within 1% plus the final words
        assert row["bound"] - 1 < row["ans"] < 1.01 * row["bound"] + 64
    r = c.ternary["r.weight"]
    alive = (r != 0).sum(1).numpy()
    # per-row code by hand: each row's binary entropy, the signs at the tensor's balance, log2(201) per count
    h = lambda q: np.where((q > 0) & (q < 1), -(q * np.log2(np.clip(q, 1e-300, 1)) + (1 - q) * np.log2(np.clip(1 - q, 1e-300, 1))), 0)
    pos = int((r > 0).sum())
    by_hand = (200 * h(alive / 200)).sum() + alive.sum() * h(pos / alive.sum()) + 120 * math.log2(201)
    assert cf._context_bits(cf._symbols(r), [120, 200], np.bincount(cf._symbols(r), minlength=3).tolist(), "rows") == pytest.approx(by_hand)


@pytest.mark.parametrize("keep", [5, 40, 1000, -1, -5000])
def test_truncated_structured_files_are_refused(tmp_path, keep):
    path = save_connectome(structured_connectome(), tmp_path / "s.cnx", codec="structured")
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(CheckpointError, match="s.cnx"):
        load_connectome(path)


@pytest.mark.parametrize("where", [0.2, 0.4, 0.6, 0.8, 0.999])
def test_a_flipped_byte_in_structured_data_is_detected(tmp_path, where):
    path = save_connectome(structured_connectome(), tmp_path / "s.cnx", codec="structured")
    raw = bytearray(path.read_bytes())
    raw[int(where * len(raw))] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="modified or damaged"):
        load_connectome(path)


def _reseal(path, edit):
    """Rewrite a .cnx file's header through ``edit`` with a valid digest (a deliberate forgery)."""
    raw = path.read_bytes()
    hlen = struct.unpack("<Q", raw[8:16])[0]
    header = json.loads(raw[16:16 + hlen])
    edit(header)
    header.pop("header_sha256")
    new = cf._sealed(header)
    path.write_bytes(raw[:8] + struct.pack("<Q", len(new)) + new + raw[16 + hlen:])


@pytest.mark.parametrize("edit,message", [
    (lambda h: h["tensors"]["r.weight"].update(context="diagonal"), "coding context 'diagonal'"),
    (lambda h: h["tensors"]["v.weight"].update(shape=[50], context="rows"), r"context 'rows', which does not fit its shape \[50\]"),
    (lambda h: h["tensors"]["r.weight"].update(context="cols"), "r.weight"),
    (lambda h: h["tensors"]["i.weight"].update(context="rows"), "i.weight"),
    (lambda h: h["tensors"]["c.weight"].update(counts=[0, 0, 0]), "symbol counts of c.weight are inconsistent"),
])
def test_a_forged_structured_header_is_refused(tmp_path, edit, message):
    path = save_connectome(structured_connectome(), tmp_path / "s.cnx", codec="structured")
    _reseal(path, edit)
    with pytest.raises(CheckpointError, match=message):
        load_connectome(path)


def test_inspect_shows_the_structured_code(tmp_path):
    path = save_connectome(structured_connectome(), tmp_path / "s.cnx", codec="structured")
    text = inspect_connectome(path)
    assert "format connectome-structured/1" in text and "(ANS-coded, per-row/column rates where smaller)" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()[2:6]}
    assert [rows[n][-1] for n in ("r.weight", "c.weight", "i.weight", "v.weight")] == ["rows", "cols", "iid", "iid"]
    bits = cf.codec_bits(load_connectome(path))
    assert rows["r.weight"][-2] == f"{bits['tensors']['r.weight']['structured'] / 24000:.4f}"
    assert f"payload {bits['total']['structured'] / bits['total']['bound']:.4f}x the i.i.d. bound" in text


@pytest.mark.parametrize("codec,name", FILES)
def test_a_file_from_before_generation_base_reads_its_generation_from_0(tmp_path, codec, name):
    """Connectome files once counted prunings (generation g's file said g + 1) and named no base; read now,
    they say g, as the gen_XX folders and every record do, and the file itself is left as it was."""
    old = Connectome(HAND.ternary, {"generation": 6, "source_run": "runs/old", "config_hash": "abc"})
    path = save_connectome(old, tmp_path / name, codec=codec)
    raw = path.read_bytes()
    back = load_connectome(path)
    assert back.meta == {"generation": 5, "generation_base": 0, "source_run": "runs/old", "config_hash": "abc"}
    assert back.equal(old) and path.read_bytes() == raw
    assert "generation 5 (the 6th); source runs/old" in inspect_connectome(path)
    new = save_connectome(Connectome(HAND.ternary, back.meta), tmp_path / f"new_{name}", codec=codec)
    assert load_connectome(new).meta == back.meta  # a file that names its base is read as written
