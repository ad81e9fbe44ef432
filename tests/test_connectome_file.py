"""The connectome file: bit-exact round trips, tamper detection, the entropy bound, inspect."""

import math

import pytest
import torch

from connectomes.cli import main
from connectomes.connectome import Connectome
from connectomes.connectome_file import inspect_connectome, load_connectome, save_connectome
from connectomes.errors import CheckpointError


def random_connectome(numel_per_tensor=(400_000, 250_000, 50_000), density=0.8 ** 6, seed=0) -> Connectome:
    g = torch.Generator().manual_seed(seed)
    tern = {}
    for i, n in enumerate(numel_per_tensor):
        alive = torch.rand(n, generator=g) < density
        signs = torch.where(torch.rand(n, generator=g) < 0.5, 1, -1)
        tern[f"t{i}.weight"] = (alive.to(torch.int8) * signs.to(torch.int8)).view(100, -1)
    return Connectome(tern, {"generation": 6, "model_config": {"n_layer": 1}})


@pytest.mark.parametrize("codec,name", [(None, "c.safetensors"), ("ans", "c.cnx")])
def test_round_trip_is_bit_exact(tmp_path, codec, name):
    c = random_connectome()
    path = save_connectome(c, tmp_path / name, codec=codec)
    back = load_connectome(path)
    assert back.equal(c) and back.meta == c.meta


def test_packed_size_is_one_plus_density_bits(tmp_path):
    c = random_connectome()
    path = save_connectome(c, tmp_path / "c.safetensors")
    N = sum(t.numel() for t in c.ternary.values())
    nnz = sum(int((t != 0).sum()) for t in c.ternary.values())
    payload = sum(math.ceil(t.numel() / 8) + math.ceil(int((t != 0).sum()) / 8) for t in c.ternary.values())
    assert payload <= path.stat().st_size < payload + 4096  # + the JSON header
    assert abs(payload * 8 / N - (1 + nnz / N)) < 0.01


def test_ans_is_within_one_percent_of_the_shannon_bound(tmp_path):
    c = random_connectome()
    path = save_connectome(c, tmp_path / "c.cnx", codec="ans")
    bound_bits = sum(r["entropy_bits"] * r["numel"] for r in c.stats()["tensors"])
    payload_bits = path.stat().st_size * 8
    header_bits = 8 * 2048  # the JSON header is a few hundred bytes
    assert payload_bits - header_bits < 1.01 * bound_bits
    assert payload_bits > 0.98 * bound_bits  # no code beats the bound on i.i.d. symbols


def test_truncated_files_are_refused(tmp_path):
    for codec, name in ((None, "c.safetensors"), ("ans", "c.cnx")):
        path = save_connectome(random_connectome(), tmp_path / name, codec=codec)
        path.write_bytes(path.read_bytes()[:-1000])
        with pytest.raises(CheckpointError, match=name):
            load_connectome(path)


def test_a_flipped_bit_is_detected(tmp_path):
    path = save_connectome(random_connectome(), tmp_path / "c.safetensors")
    raw = bytearray(path.read_bytes())
    raw[-5000] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="modified or damaged"):
        load_connectome(path)


def test_a_plain_safetensors_file_is_not_a_connectome(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match="not a connectome"):
        load_connectome(tmp_path / "w.safetensors")


def test_inspect_prints_density_balance_entropy_and_size(tmp_path, capsys):
    c = random_connectome()
    path = save_connectome(c, tmp_path / "c.safetensors")
    text = inspect_connectome(path)
    st = c.stats()
    assert f"{st['tensors'][0]['density']:.4f}" in text
    assert f"{st['total']['entropy_bits']:.4f}" in text
    assert f"{path.stat().st_size / 1e6:.2f} MB" in text
    assert main(["inspect", str(path)]) == 0
    assert "t0.weight" in capsys.readouterr().out
