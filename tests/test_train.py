"""The training loop: learning on real text, exact resume, DDP equivalence, NaN safety."""

import dataclasses
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from connectomes.data.config import DataConfig
from connectomes.training.config import TrainConfig
from connectomes.data.prepare import open_prepared, prepare_data
from connectomes.model.gpt import GPT, GPTConfig
from connectomes.training.loop import TrainingError, make_stream, train

TINY = GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=64, block_size=64)


@pytest.fixture(scope="module")
def prepared(synthetic_data):
    return synthetic_data


@pytest.fixture(scope="module")
def real_prepared(tmp_path_factory, data_root):  # learning is checked on real text
    out = tmp_path_factory.mktemp("prep") / "data"
    cfg = DataConfig(source="local", path=str(data_root / "corpus" / "imdb"), tokenizer="bytes",
                     large_tokens=400_000, small_tokens=60_000, val_tokens=30_000, seed=0)
    prepare_data(cfg, out, data_root=data_root, progress=False)
    return open_prepared(out)


def _cfg(**kw) -> TrainConfig:
    base = dict(iters=20, warmup_iters=4, warmdown_iters=8, lr=3e-3, weight_decay=0.1, batch_size=8,
                micro_batch_size=4, eval_every=5, eval_tokens=4096, save_every=5, log_every=1, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _model(seed=0):
    torch.manual_seed(seed)
    return GPT(TINY)


def _run(prepared, out, cfg, **kw):
    stream = make_stream(prepared.split_paths("large"), TINY, cfg)
    return train(_model(), cfg, stream, val_paths=prepared.split_paths("val"), out_dir=out, progress=False, **kw)


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def test_validation_loss_falls_well_below_unigram_entropy(real_prepared, tmp_path):
    from connectomes.data.shards import read_shard

    toks = np.concatenate([np.asarray(read_shard(p)) for p in real_prepared.split_paths("large")])
    p = np.bincount(toks, minlength=256) / len(toks)
    unigram = float(-(p[p > 0] * np.log(p[p > 0])).sum())  # nats/token
    res = _run(real_prepared, tmp_path / "run", _cfg(iters=150, warmup_iters=10, warmdown_iters=60, batch_size=16,
                                                      micro_batch_size=16, eval_every=50, save_every=0))
    assert res.final_val_loss < unigram - 0.5, (res.final_val_loss, unigram)
    recs = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert recs[0]["step"] == 0 and recs[-1]["step"] == 150 and recs[-1]["val_loss"] == res.final_val_loss


def test_resume_is_bit_identical(prepared, tmp_path):
    cfg = _cfg()
    assert _run(prepared, tmp_path / "full", cfg).finished
    part = _run(prepared, tmp_path / "part", cfg, stop_at=10)
    assert not part.finished and part.final_step == 10
    resumed = _run(prepared, tmp_path / "part", cfg)  # a fresh process would build a fresh model: so do we
    assert resumed.finished and resumed.steps_run == 10
    a, b = _weights(tmp_path / "full/steps/step_000020"), _weights(tmp_path / "part/steps/step_000020")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "full/metrics.jsonl").read_text() == (tmp_path / "part/metrics.jsonl").read_text()


def test_resume_refuses_different_settings(prepared, tmp_path):
    _run(prepared, tmp_path / "r", _cfg(), stop_at=5)
    with pytest.raises(TrainingError, match="different training settings"):
        _run(prepared, tmp_path / "r", _cfg(lr=1e-2))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(prepared, tmp_path):
    def poison(step, model):
        if step == 12:
            with torch.no_grad():
                model.lm_head.weight.fill_(float("nan"))

    with pytest.raises(TrainingError, match="loss became nan at step 12"):
        _run(prepared, tmp_path / "r", _cfg(), on_step=poison)
    latest = json.loads((tmp_path / "r/latest.json").read_text())
    assert latest["step"] == 10
    w = _weights(tmp_path / "r/steps/step_000010")
    assert all(torch.isfinite(v).all() for v in w.values())


def test_keep_steps_survive_rolling_checkpoints(prepared, tmp_path):
    _run(prepared, tmp_path / "r", _cfg(keep_steps=[0, 5]))
    names = sorted(p.name for p in (tmp_path / "r/steps").iterdir())
    assert names == ["step_000000", "step_000005", "step_000020"]
    assert not (tmp_path / "r/steps/step_000005/trainer.pt").exists()  # weights only once superseded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, paths, val, out, cfg_kw):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = GPT(TINY)
    cfg = _cfg(**cfg_kw)
    train(model, cfg, make_stream(paths, TINY, cfg), val_paths=val, out_dir=out, progress=False)
    torch.distributed.destroy_process_group()


def test_ddp_two_processes_match_one(prepared, tmp_path):
    kw = dict(iters=8, warmup_iters=2, warmdown_iters=4, batch_size=8, micro_batch_size=2, eval_every=4, save_every=0)
    paths, val = prepared.split_paths("large"), prepared.split_paths("val")
    mp.spawn(_ddp_worker, args=(2, _free_port(), paths, val, tmp_path / "ddp", kw), nprocs=2, join=True)
    torch.manual_seed(0)
    train(GPT(TINY), _cfg(**kw), make_stream(paths, TINY, _cfg(**kw)), val_paths=val, out_dir=tmp_path / "one", progress=False)
    read = lambda p: [json.loads(l) for l in (p / "metrics.jsonl").read_text().splitlines()]
    a, b = read(tmp_path / "ddp"), read(tmp_path / "one")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in ("loss", "val_loss"):
            if rb.get(key) is not None:
                assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), (ra, rb)
    wa, wb = _weights(tmp_path / "ddp/steps/step_000008"), _weights(tmp_path / "one/steps/step_000008")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-6)


def test_train_continues_the_callers_stream_and_returns_where_it_stopped(prepared, tmp_path):
    cfg = _cfg(iters=6, eval_every=0, save_every=0)
    paths, val = prepared.split_paths("large"), prepared.split_paths("val")
    stream = make_stream(paths, TINY, cfg)
    first = train(_model(), cfg, stream, val_paths=val, out_dir=tmp_path / "a", progress=False)
    assert first.stream_state == stream.state_dict() and first.stream_state["steps"] == 6
    # handing the same stream on (as evolve does between generations) equals a fresh one moved there
    second = train(_model(), cfg, stream, val_paths=val, out_dir=tmp_path / "b", progress=False)
    moved = make_stream(paths, TINY, cfg)
    moved.load_state_dict(first.stream_state)
    again = train(_model(), cfg, moved, val_paths=val, out_dir=tmp_path / "c", progress=False)
    assert second.stream_state == again.stream_state and second.stream_state["steps"] == 12
    assert (tmp_path / "b/metrics.jsonl").read_text() == (tmp_path / "c/metrics.jsonl").read_text()
    assert (tmp_path / "a/metrics.jsonl").read_text() != (tmp_path / "b/metrics.jsonl").read_text()


def test_a_stream_built_for_another_batch_is_refused(prepared, tmp_path):
    stream = make_stream(prepared.split_paths("large"), TINY, _cfg(batch_size=4))
    with pytest.raises(TrainingError, match="the data stream serves 4 x 64 tokens to rank 0 of 1 but this run trains on 8 x 64"):
        train(_model(), _cfg(), stream, val_paths=None, out_dir=tmp_path / "r", progress=False)


def test_tensorboard_log_mirrors_metrics_and_leaves_the_run_identity_alone(prepared, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from connectomes.training.loop import run_hash

    cfg = _cfg(iters=4, warmup_iters=1, warmdown_iters=2, log_every=1, eval_every=2, save_every=0, log="tensorboard")
    _run(prepared, tmp_path / "tb_run", cfg)
    lines = [json.loads(l) for l in (tmp_path / "tb_run" / "metrics.jsonl").read_text().splitlines()]
    acc = EventAccumulator(str(tmp_path / "tb_run" / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [
        (r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in lines if "loss" in r]
    assert [e.step for e in acc.Scalars("val_loss")] == [r["step"] for r in lines if r.get("val_loss") is not None]
    assert run_hash(cfg) == run_hash(dataclasses.replace(cfg, log="none"))


def _worsen_after(step_from: int):
    """An on_step hook that adds noise to the weights from ``step_from`` on, so val loss rises: the best
    logged step is then an early one, not the last."""
    def hook(step, model):
        if step >= step_from:
            g = torch.Generator().manual_seed(step)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return hook


def test_keep_best_keeps_the_lowest_logged_step_and_resumes_exactly(prepared, tmp_path):
    cfg = _cfg(keep_best=True, save_every=4)
    full = _run(prepared, tmp_path / "full", cfg, on_step=_worsen_after(11))
    assert full.finished
    recs = [json.loads(l) for l in (tmp_path / "full/metrics.jsonl").read_text().splitlines() if "val_loss" in l]
    logged = {r["step"]: r["val_loss"] for r in recs if r.get("val_loss") is not None}
    best_step = min(logged, key=logged.get)
    assert best_step <= 10 < max(logged)  # the noise made the later validations worse
    best = json.loads((tmp_path / "full/best.json").read_text())
    assert best == {"step": best_step, "val_loss": logged[best_step]}
    steps = sorted(p.name for p in (tmp_path / "full/steps").iterdir())
    assert steps == sorted({f"step_{best_step:06d}", "step_000020"})  # superseded bests and rolling saves are gone
    assert not (tmp_path / f"full/steps/step_{best_step:06d}/trainer.pt").exists()  # weights only, for evaluation
    # a run stopped and resumed keeps the same best step with the same weights
    part = _run(prepared, tmp_path / "part", cfg, on_step=_worsen_after(11), stop_at=12)
    assert not part.finished
    assert _run(prepared, tmp_path / "part", cfg, on_step=_worsen_after(11)).finished
    assert json.loads((tmp_path / "part/best.json").read_text()) == best
    a, b = (_weights(tmp_path / k / f"steps/step_{best_step:06d}") for k in ("full", "part"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (tmp_path / "part/steps").iterdir()) == steps
