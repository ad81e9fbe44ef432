"""Hugging Face interop (issue 11): export a checkpoint as an HF folder that transformers loads with
trust_remote_code and that gives our logits exactly; read the authors' HF layout back as a checkpoint."""

import json

import pytest
import torch
from safetensors.torch import save_file

from connectomes.training import checkpoint as ckpt
from connectomes.io.load import load_model, load_tokenizer_for
from connectomes.cli import main
from connectomes.core.errors import CheckpointError, UserError
from connectomes.core.integrity import sealed
from connectomes.io.export import export_hf
from connectomes.model.gpt import GPT, GPTConfig

BYTES_CFG = GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=48)
TEXTS = ["Hello, world!", "héllo ✓ 😀 — Ā", "  two  spaces\nand a line", "It's 3.14 o'clock; isn't it?"]


def _step(tmp_path, cfg=BYTES_CFG, tokenizer="bytes", seed=0, **state):
    torch.manual_seed(seed)
    model = GPT(cfg)
    folder = tmp_path / "run" / "develop" / "connectome" / "seed_0" / "steps" / "step_000010"
    ckpt.save_step(folder, model, {"step": 10, "model_config": cfg.to_dict(), "tokenizer": tokenizer, **state})
    return model.eval(), folder


def _ids(batch=2, T=40, vocab=256, seed=1):
    return torch.randint(0, vocab, (batch, T), generator=torch.Generator().manual_seed(seed))


def _authors_folder(tmp_path, model: GPT, name="authors", weights="safetensors"):
    """A folder laid out as the released models: their config.json fields and auto_map, their
    state-dict names (RoPE buffers included), no tokenizer and no connectomes record."""
    c = model.config
    folder = tmp_path / name
    folder.mkdir()
    config = {"architectures": ["GPT"], "auto_map": {"AutoConfig": "config.GPTConfig", "AutoModelForCausalLM": "model.GPT"},
              "block_size": c.block_size, "bias": False, "dropout": 0.0, "model_type": "GenerationalPruning.GPT",
              "n_embd": c.n_embd, "n_head": c.n_head, "n_layer": c.n_layer, "pos_init": None,
              "torch_dtype": "float32", "transformers_version": "4.46.3", "vocab_size": c.vocab_size}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    sd = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    assert any(k.endswith("rotary.inv_freq") for k in sd)
    if weights == "safetensors":
        save_file(sd, str(folder / "model.safetensors"))
    else:
        torch.save(sd, folder / "pytorch_model.bin")
    return folder


# -- import: the authors' layout ------------------------------------------------------------------

@pytest.mark.parametrize("weights", ["safetensors", "bin"])
def test_authors_layout_loads_with_identical_logits(tmp_path, weights):
    torch.manual_seed(3)
    model = GPT(GPTConfig(vocab_size=300, n_layer=3, n_head=4, n_embd=32, block_size=32)).eval()
    folder = _authors_folder(tmp_path, model, weights=weights)
    loaded, info = load_model(folder)
    assert loaded.config.n_head == 4  # from config.json, not guessed from the width
    assert info["format"] == "hf" and info["tokenizer"] == "gpt2"
    idx = _ids(vocab=300, T=20)
    with torch.no_grad():
        assert torch.equal(loaded(idx), model(idx))


def test_authors_layout_missing_field_is_named(tmp_path):
    model = GPT(BYTES_CFG)
    folder = _authors_folder(tmp_path, model)
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["n_head"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config\.json lacks the field\(s\) n_head"):
        load_model(folder)
    cfg["n_head"] = 2
    cfg["bias"] = True
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="field bias is true"):
        load_model(folder)
    cfg["bias"] = False
    cfg["n_layer"] = "2"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="field n_layer must be a positive integer"):
        load_model(folder)


def test_hf_folder_without_weights_and_with_wrong_shape(tmp_path):
    model = GPT(BYTES_CFG)
    folder = _authors_folder(tmp_path, model)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights: expected model.safetensors"):
        load_model(folder)
    save_file({"transformer.wte.weight": torch.zeros(256, 32)}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing"):
        load_model(folder)


def test_bin_that_needs_pickle_is_refused(tmp_path):
    model = GPT(BYTES_CFG)
    folder = _authors_folder(tmp_path, model, weights="bin")
    torch.save({"x": UserError("an arbitrary pickled object")}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_model(folder)


# -- export, checked without transformers ---------------------------------------------------------

def test_export_round_trips_through_our_loader(tmp_path):
    model, step = _step(tmp_path)
    out = export_hf(step, tmp_path / "hf")
    cfg = json.loads((out / "config.json").read_text())
    for k, v in {"vocab_size": 256, "n_embd": 32, "n_layer": 2, "n_head": 2, "block_size": 48, "dropout": 0.0,
                 "bias": False, "model_type": "GenerationalPruning.GPT", "architectures": ["GPT"]}.items():
        assert cfg[k] == v, k
    assert cfg["auto_map"] == {"AutoConfig": "config.GPTConfig", "AutoModelForCausalLM": "model.GPT"}
    assert cfg["connectomes"]["tokenizer"] == "bytes" and cfg["connectomes"]["step"] == 10
    assert {"config.py", "model.py", "tokenizer.json", "tokenizer_config.json", "README.md"} <= {p.name for p in out.iterdir()}
    # the weights are exactly the names the authors' strict loader expects (RoPE buffers included)
    from safetensors.torch import load_file
    assert set(load_file(str(out / "model.safetensors"))) == set(model.state_dict())
    loaded, info = load_model(out)
    idx = _ids()
    with torch.no_grad():
        assert torch.equal(loaded(idx), model(idx))
    assert info["tokenizer"] == "bytes" and load_tokenizer_for(info).encode("hé") == [104, 195, 169]


def test_export_refuses_a_non_empty_folder(tmp_path):
    _, step = _step(tmp_path)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "x").write_text("")
    with pytest.raises(UserError, match="not empty"):
        export_hf(step, tmp_path / "hf")


def test_model_card_has_config_wiring_and_evaluations(tmp_path):
    _, step = _step(tmp_path, config={"model": {"preset": "demo"}, "train": {"lr": 0.001}})
    run = tmp_path / "run"
    (run / "config.yaml").write_text("name: run\n")
    ev = run / "eval" / "connectome" / "seed_0" / "step_000010.json"
    ev.parent.mkdir(parents=True)
    ev.write_text(json.dumps(sealed({"step": 10, "checkpoint": str(step), "limit": 20, "tasks": {
        "hellaswag": {"acc": {"value": 0.25, "stderr": 0.0993, "n": 20}, "items": 20},
        "reading_times": {"all_words": {"r": 0.3125, "p": 0.01, "n": 99}}}})))
    card = (export_hf(step, tmp_path / "hf") / "README.md").read_text()
    assert "| hellaswag | acc | 0.2500 | 0.0993 |" in card
    assert "| reading_times | all_words (Pearson r, n=99) | 0.3125 | |" in card
    assert "| transformer.h.0.attn.c_attn.weight | 96x32 | 1.0000 |" in card
    assert "lr: 0.001" in card and "library_name: transformers" in card


def test_cli_export_verb(tmp_path, capsys):
    _, step = _step(tmp_path)
    assert main(["export", str(step), "--to", str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    assert main(["export", str(step), "--to", str(tmp_path / "hf")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_model_card_states_per_task_limits():
    from connectomes.io.card import eval_section

    res = {"step": 10, "checkpoint": "steps/step_000010", "limit": {"hellaswag": 500, "mmlu": 0}, "tasks": {}}
    assert eval_section([res])[0] == "Step 10, `steps/step_000010`, limits hellaswag 500:"
    assert eval_section([dict(res, limit=0)])[0] == "Step 10, `steps/step_000010`, all items:"
    assert eval_section([dict(res, limit=200)])[0] == "Step 10, `steps/step_000010`, limit 200:"
