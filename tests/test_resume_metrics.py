"""Exact resume of metrics.jsonl after a kill (issue 12): right after the step-0 checkpoint the
resumed run keeps the step-0 line it finds and does not log it again; a line cut by a kill is
dropped. An unparsable latest.json is refused by name and left as it is."""

import json
import re

import pytest
import torch

from connectomes.data.config import DataConfig
from connectomes.training.config import TrainConfig
from connectomes.data.prepare import open_prepared, prepare_data
from connectomes.core.errors import TrainingError
from connectomes.model.gpt import GPT, GPTConfig
from connectomes.training.loop import make_stream, train

TINY = GPTConfig(vocab_size=256, n_layer=1, n_head=2, n_embd=32, block_size=32)


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    corpus = root / "c"
    corpus.mkdir()
    for i in range(40):
        (corpus / f"d{i}.txt").write_text(f"document number {i} says hello. " * 20)
    prepare_data(DataConfig(path=str(corpus), val_tokens=2_000, small_tokens=500, large_tokens=20_000), root / "d",
                 progress=False)
    return open_prepared(root / "d")


def _train(data, out, **kw):
    torch.manual_seed(0)
    cfg = TrainConfig(iters=3, warmup_iters=1, warmdown_iters=1, batch_size=4, micro_batch_size=4, eval_every=0,
                      eval_tokens=256, save_every=0, log_every=1, keep_steps=[0], device="cpu")
    model = GPT(TINY)
    return train(model, cfg, make_stream(data.split_paths("large"), model.config, cfg), val_paths=data.split_paths("val"),
                 out_dir=out, progress=False, **kw)


def _steps(out):
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_uninterrupted_run_logs_each_step_once(data, tmp_path):
    _train(data, tmp_path / "run")
    assert _steps(tmp_path / "run") == [0, 1, 2, 3]


def test_kill_right_after_step0_checkpoint_leaves_one_step0_line(data, tmp_path):
    out = tmp_path / "run"

    def kill(step, model):  # the first moment after the step-0 checkpoint is on disk
        raise Killed

    with pytest.raises(Killed):
        _train(data, out, on_step=kill)
    assert json.loads((out / "latest.json").read_text())["step"] == 0
    assert _steps(out) == [0]
    _train(data, out)  # resume
    assert _steps(out) == [0, 1, 2, 3]


def _files(out):
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_metrics_line_cut_by_a_kill_is_dropped_on_resume(data, tmp_path):
    _train(data, tmp_path / "whole")
    whole = (tmp_path / "whole" / "metrics.jsonl").read_bytes()
    out = tmp_path / "run"
    assert not _train(data, out, stop_at=2).finished
    # killed while writing step 3's line, after the step-2 checkpoint: half of the line, no newline
    step3 = whole.splitlines()[3]
    assert json.loads(step3)["step"] == 3
    with open(out / "metrics.jsonl", "ab") as f:
        f.write(step3[: len(step3) // 2])
    assert _train(data, out).finished
    assert (out / "metrics.jsonl").read_bytes() == whole


@pytest.mark.parametrize("content", [b'{"step_dir": "step_0000', b"\xff\xfe\x00\x89", b"[]", b'{"step": 2}',
                                     b'{"step_dir": 5, "step": 5}', b'{"step_dir": "../../x", "step": 2}'],
                         ids=["cut", "binary", "list", "no-step_dir", "number-step_dir", "path-step_dir"])
def test_an_unparsable_latest_json_is_refused_naming_it_and_nothing_changes(data, tmp_path, content):
    out = tmp_path / "run"
    assert not _train(data, out, stop_at=2).finished
    (out / "latest.json").write_bytes(content)
    before = _files(out)
    with pytest.raises(TrainingError, match=rf"^{re.escape(str(out / 'latest.json'))} (is|holds) [^;]*; delete it to restart"):
        _train(data, out)
    assert _files(out) == before
