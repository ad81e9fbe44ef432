"""The checkpoint manager: what is saved when, what is kept, latest.json, exact resume; masks on disk."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from connectomes.training.checkpoint import MASKS, TRAINER, CheckpointManager, load_masks, save_step, saved_step
from connectomes.training.config import TrainConfig
from connectomes.connectome.masks import ParamMask
from connectomes.data.shards import write_shard
from connectomes.data.stream import TokenStream
from connectomes.core.distributed import DeviceSetup
from connectomes.core.errors import CheckpointError, TrainingError
from connectomes.core.layout import TrainLayout
from connectomes.model.gpt import GPT, GPTConfig
from connectomes.training.optim import build_optimizer

SMALL = GPTConfig(vocab_size=256, n_layer=1, n_head=2, n_embd=32, block_size=16)
CFG = TrainConfig(iters=6, batch_size=4, micro_batch_size=4, save_every=2, keep_steps=[2], device="cpu")


@pytest.fixture
def shard(tmp_path):
    return [write_shard(tmp_path / "s.bin", np.random.default_rng(0).integers(0, 256, 4096))]


def _manager(tmp_path, shard, seed=0, run_hash="h", stop_at=None):
    torch.manual_seed(seed)
    model = GPT(SMALL)
    masks = ParamMask({"transformer.h.0.mlp.c_fc.weight": torch.rand(128, 32) > 0.5})
    stream = TokenStream(shard, SMALL.block_size, CFG.batch_size)
    return CheckpointManager(TrainLayout(tmp_path / "run"), CFG, DeviceSetup(device=torch.device("cpu")), model=model,
                             optimizer=build_optimizer(model, CFG, "cpu"), masks=masks, stream=stream,
                             info={"train_config_hash": run_hash}, stop_at=stop_at)


def _step(m: CheckpointManager) -> None:
    x, y = m.stream.next_batch()
    m.model(x, y)[1].backward()
    m.optimizer.step()
    m.optimizer.zero_grad()


def test_should_save_kept_steps_cadence_last_and_stop_at(tmp_path, shard):
    m = _manager(tmp_path, shard, stop_at=3)
    assert [s for s in range(7) if m.should_save(s)] == [2, 3, 4, 6]
    assert not _manager(tmp_path, shard).should_save(0)  # step 0 only when kept


def test_rolling_saves_keep_weights_of_kept_steps_and_purge_the_rest(tmp_path, shard):
    m = _manager(tmp_path, shard)
    layout = m.layout
    assert m.latest() is None and saved_step(layout) is None
    for step in range(1, 7):
        _step(m)
        if m.should_save(step):
            m.save(step)
    assert sorted(p.name for p in layout.steps.iterdir()) == ["step_000002", "step_000006"]
    assert not (layout.step(2) / TRAINER).exists() and (layout.step(2) / "model.safetensors").exists()
    assert (layout.step(6) / TRAINER).exists()
    assert json.loads(layout.latest.read_text()) == {"step_dir": "step_000006", "step": 6}
    assert m.latest() == layout.step(6) and saved_step(layout) == 6
    m.finish(6, 1.5)
    assert json.loads(layout.done.read_text()) == {"step": 6, "val_loss": 1.5, "train_config_hash": "h"}


def test_resume_restores_model_optimizer_masks_rng_and_stream(tmp_path, shard):
    m = _manager(tmp_path, shard)
    for _ in range(2):
        _step(m)
    m.save(2)
    expected_draw = torch.rand(3)  # the next draw after the save
    fresh = _manager(tmp_path, shard, seed=1)  # other initial weights and masks, stream at its start
    assert fresh.resume() == 2
    assert torch.equal(torch.rand(3), expected_draw)  # the RNG is where it was when step 2 was saved
    assert all(torch.equal(a, b) for a, b in zip(m.model.state_dict().values(), fresh.model.state_dict().values()))
    assert all(torch.equal(m.masks.masks[k], fresh.masks.masks[k]) for k in m.masks.masks)
    assert fresh.stream.state_dict() == m.stream.state_dict()
    assert str(fresh.optimizer.state_dict()) == str(m.optimizer.state_dict())


def test_resume_refuses_other_settings_and_a_corrupt_latest(tmp_path, shard):
    m = _manager(tmp_path, shard)
    m.save(2)
    with pytest.raises(TrainingError, match="different training settings"):
        _manager(tmp_path, shard, run_hash="other").resume()
    m.layout.latest.write_text("{not json")
    with pytest.raises(TrainingError, match="latest.json is not valid JSON.*delete it to restart"):
        _manager(tmp_path, shard).resume()


def test_masks_are_saved_as_0_1_and_loaded_through_the_validity_check(tmp_path):
    mask = ParamMask({"w": torch.tensor([[True, False], [False, True]])})
    folder = save_step(tmp_path / "step_000001", GPT(SMALL), {"step": 1}, masks=mask)
    loaded = load_masks(folder)
    assert isinstance(loaded, ParamMask) and torch.equal(loaded.masks["w"], mask.masks["w"])
    save_file({"w": torch.tensor([[1.0, 0.5], [0.0, 1.0]])}, str(folder / MASKS))
    with pytest.raises(CheckpointError, match=rf"mask w in {folder / MASKS} holds values other than 0 and 1; the checkpoint is damaged"):
        load_masks(folder)
