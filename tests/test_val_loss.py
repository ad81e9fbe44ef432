"""val_loss over a real prepared folder against a hand computation from the shard bytes."""

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from connectomes.data.config import DataConfig
from connectomes.data.prepare import open_prepared, prepare_data
from connectomes.data.shards import read_shard
from connectomes.data.tokenizers import load_tokenizer
from connectomes.core.errors import DataError, UserError
from connectomes.evals.context import EvalContext
from connectomes.evals.tasks import val_loss
from connectomes.evals.scoring import ScoringLM
from connectomes.model.gpt import GPT, GPTConfig

T = 32


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "data"
    prepare_data(DataConfig(source="synthetic", tokenizer="bytes", val_tokens=1000, small_tokens=100, large_tokens=100,
                            shard_tokens=400), out, progress=False)
    return out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=T))


def hand_loss(model, paths, max_tokens):
    """Windows written out by hand: the split read as one stream, whole windows of T predictions
    from its start, as many as the budget holds."""
    toks = np.concatenate([read_shard(p).astype(np.int64) for p in paths])
    total, count = 0.0, 0
    for start in range(0, len(toks) - T, T):
        if count + T > max_tokens:
            break
        x, y = torch.tensor(toks[start:start + T]), torch.tensor(toks[start + 1:start + T + 1])
        with torch.no_grad():
            logp = F.log_softmax(model(x[None])[0].double(), dim=-1)
        total -= logp[torch.arange(T), y].sum().item()
        count += T
    return total / count, count


def test_validation_loss_equals_hand_computation(model, prepared):
    paths = open_prepared(prepared).split_paths("val")
    assert len(paths) > 1 and 400 % T  # some windows span two shards
    for budget in (5 * T, 5 * T + 7, 10_000):
        loss, n = val_loss.validation_loss(model, paths, T, budget, device="cpu")
        want, want_n = hand_loss(model, paths, budget)
        assert n == want_n and loss == pytest.approx(want, rel=1e-5)
    assert model.training  # the caller's mode is restored


def test_validation_loss_is_bit_identical_whatever_the_eval_batch_size(model, prepared):
    # the training loop calls validation_loss directly; the task, whatever its batch size, must give
    # the very same float, or the headline and the curve's last point would differ
    paths = open_prepared(prepared).split_paths("val")
    direct = val_loss.validation_loss(model, paths, T, 640, device="cpu")
    for bs in (1, 7, 16):
        lm = ScoringLM(model, load_tokenizer("bytes"), batch_size=bs)
        res = val_loss.run(lm, EvalContext(prepared_dir=prepared, batch_size=bs, options={"val_loss.tokens": 640}))
        assert (res["loss"], res["tokens"]) == direct


def test_run_reports_loss_tokens_and_shard_hashes(model, prepared):
    lm = ScoringLM(model, load_tokenizer("bytes"), batch_size=4)
    res = val_loss.run(lm, EvalContext(prepared_dir=prepared, batch_size=4, options={"val_loss.tokens": "320"}))
    paths = open_prepared(prepared).split_paths("val")
    assert res["tokens"] == 320 and res["loss"] == pytest.approx(hand_loss(model, paths, 320)[0], rel=1e-5)
    assert res["shard_sha256"] == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_bad_inputs(model, prepared, tmp_path):
    lm = ScoringLM(model, load_tokenizer("bytes"))
    with pytest.raises(DataError, match="val_loss needs the prepared data folder"):
        val_loss.run(lm, EvalContext())
    with pytest.raises(DataError, match=f"prepared data folder {tmp_path / 'none'} does not exist"):
        val_loss.run(lm, EvalContext(prepared_dir=tmp_path / "none"))
    with pytest.raises(UserError, match="val_loss.tokens='lots' is not an integer"):
        val_loss.run(lm, EvalContext(prepared_dir=prepared, options={"val_loss.tokens": "lots"}))
    with pytest.raises(UserError, match="budget of 10 tokens is smaller than one window of 32"):
        val_loss.validation_loss(model, open_prepared(prepared).split_paths("val"), T, 10, "cpu")
