"""Issue 23, model folders: Hugging Face shards load and only files inside the folder are read; exports are
whole or absent; model shapes are checked (ranges, then memory) before anything is allocated, for configs
and imported folders alike."""

import json
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from connectomes.cli import main
from connectomes.core.errors import CheckpointError
from connectomes.io.load import load_model, verified_weights_sha256
from connectomes.model.gpt import GPT, GPTConfig
from test_hf import _authors_folder, _ids, _step
from test_reliability import SMALL, error_line

CFG = GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=48)


def _sharded(tmp_path, model: GPT, name="sharded"):
    """The authors' layout with the weights split over two shards and an index, as larger releases come."""
    folder = _authors_folder(tmp_path, model, name=name)
    sd = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    names = sorted(sd)
    shards = {"model-00001-of-00002.safetensors": names[:len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        save_file({k: sd[k] for k in keys}, str(folder / shard))
    index = {"metadata": {"total_size": 0}, "weight_map": {k: s for s, keys in shards.items() for k in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def test_a_sharded_folder_loads_evaluates_and_exports(tmp_path, capsys):
    torch.manual_seed(0)
    model = GPT(CFG).eval()
    folder = _sharded(tmp_path, model)
    loaded, info = load_model(folder)  # was: FileNotFoundError
    with torch.no_grad():
        assert torch.equal(loaded(_ids()), model(_ids()))
    assert len(verified_weights_sha256(folder)) == 64  # what eval records and compares (was: FileNotFoundError)
    assert main(["export", str(folder), "--to", str(tmp_path / "out"), "--tokenizer", "bytes"]) == 0
    capsys.readouterr()
    again, _ = load_model(tmp_path / "out")
    with torch.no_grad():
        assert torch.equal(again(_ids()), model(_ids()))


@pytest.mark.parametrize("shard", ["../elsewhere/x.safetensors", "/etc/x.safetensors", "a/../../x.safetensors"])
def test_a_shard_index_that_points_outside_the_folder_is_refused(tmp_path, shard):
    folder = _sharded(tmp_path, GPT(CFG))
    (tmp_path / "elsewhere").mkdir()
    save_file({"transformer.wte.weight": torch.zeros(1)}, str(tmp_path / "elsewhere" / "x.safetensors"))
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = shard
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=rf"names the shard '{shard}', which is not a file inside {folder}"):
        load_model(folder)


def test_a_shard_holding_other_weights_than_its_index_says_is_refused(tmp_path):
    folder = _sharded(tmp_path, GPT(CFG))
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"] = {k: "model-00001-of-00002.safetensors" for k in index["weight_map"]}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="does not hold the weights the index assigns to it"):
        load_model(folder)


def test_exporting_the_authors_bin_layout_works(tmp_path, capsys):
    torch.manual_seed(1)
    model = GPT(CFG).eval()
    folder = _authors_folder(tmp_path, model, weights="bin")
    assert main(["export", str(folder), "--to", str(tmp_path / "out"), "--tokenizer", "bytes"]) == 0  # was: half a folder
    capsys.readouterr()
    assert json.loads((tmp_path / "out" / "config.json").read_text())["connectomes"]["source_sha256"] == \
        verified_weights_sha256(folder)


def test_a_failed_export_leaves_nothing_behind(tmp_path, capsys):
    _, step = _step(tmp_path)
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["export", str(step), "--to", str(tmp_path / "out"), "--eval-json", str(bad)]) == 2
    assert f"{bad} is not valid JSON" in error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no out/, no out.tmp<pid>/


def test_a_killed_export_is_redone_by_the_same_command(tmp_path, capsys):
    _, step = _step(tmp_path)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)
    half = tmp_path / f"out.tmp{dead}"  # what a kill mid-write leaves: the target name is never half-written
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"half")
    assert main(["export", str(step), "--to", str(tmp_path / "out")]) == 0  # was: "exists and is not empty"
    capsys.readouterr()
    assert not half.exists() and load_model(tmp_path / "out")[1]["format"] == "hf"


# ------------------------------------------------------------------------------------------------
# shapes before allocation


@pytest.mark.parametrize("field, value, says", [
    ("n_layer", 10 ** 9, "model.n_layer = 1,000,000,000 must be between 1 and 1,024"), ("n_embd", 2 ** 30, "model.n_embd = 1,073,741,824 must be between"),
    ("vocab_size", 10 ** 12, "model.vocab_size = 1,000,000,000,000 must be between"),
    ("rope_base", "abc", "field rope_base must be a positive number, got 'abc'"),
    ("norm_eps", float("inf"), "field norm_eps must be a positive number"),
])
def test_an_imported_config_json_with_an_absurd_shape_is_refused_at_once(tmp_path, field, value, says):
    folder = _authors_folder(tmp_path, GPT(CFG))
    config = json.loads((folder / "config.json").read_text())
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=rf"{folder / 'config.json'}.*" + says.replace("(", r"\(").replace(")", r"\)")):
        load_model(folder)
    assert time.perf_counter() - t0 < 2  # was: 36 s and 3.7 GB before the allocator failed


def test_a_non_utf8_config_json_is_one_line(tmp_path):
    folder = _authors_folder(tmp_path, GPT(CFG))
    (folder / "config.json").write_bytes(b'{"n_layer": "\xff"}')
    with pytest.raises(CheckpointError, match=r"config\.json is not UTF-8 text \(byte 0xff at offset 13\)"):
        load_model(folder)


def test_a_model_larger_than_the_memory_is_refused_before_allocating(tmp_path, capsys, monkeypatch):
    from connectomes.model import gpt

    monkeypatch.setattr(gpt, "available_memory", lambda: 1 << 18)  # a machine with 256 KiB to spare
    folder = _authors_folder(tmp_path, GPT(CFG))
    with pytest.raises(CheckpointError, match=r"has 40,960 weights .* needs about 0\.3 MiB of memory to build; this "
                                              r"machine has 0\.\d MiB available"):
        load_model(folder)
    runs = tmp_path / "runs"
    assert main(["study", "configs/demo.yaml", f"runs_dir={runs}", "name=big", *SMALL, "model.n_embd=512"]) == 2
    line = error_line(capsys)
    assert "needs about" in line and "choose a smaller model" in line
    assert not (runs / "big" / "config.yaml").exists()  # refused: nothing pins the folder


def test_the_estimate_is_the_model_s_weight_count():
    cfg = GPTConfig(vocab_size=300, n_layer=3, n_head=4, n_embd=32, block_size=32)
    assert cfg.n_weights() == sum(p.numel() for p in GPT(cfg).parameters())
