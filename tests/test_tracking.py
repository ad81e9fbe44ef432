"""train.log=tensorboard: every numeric field of the metrics records lands in readable event files."""

import math

import pytest

from connectomes.core.errors import UserError
from connectomes.training.tracking import TensorBoardSink, flatten, make_sink


def test_flatten_keeps_numeric_leaves_with_slash_tags():
    rec = {"step": 3, "loss": 2.5, "lr": 1e-3, "note": "x", "eval": {"hellaswag": {"acc": 0.25}}, "flag": True, "x": None}
    assert flatten(rec) == {"step": 3.0, "loss": 2.5, "lr": 1e-3, "eval/hellaswag/acc": 0.25, "flag": 1.0}


def test_tensorboard_event_files_are_readable(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = make_sink("tensorboard", tmp_path)
    records = [{"step": 0, "val_loss": 5.5, "lr": 0.0, "tokens": 0},
               {"step": 10, "loss": 4.25, "lr": 1e-3, "tokens": 640, "grad_norm": 0.5},
               {"step": 20, "loss": 3.75, "lr": 5e-4, "tokens": 1280, "val_loss": math.nan,
                "eval": {"hellaswag": {"acc": 0.3}}}]
    for rec in records:
        sink.log(rec)
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"val_loss", "lr", "tokens", "loss", "grad_norm", "eval/hellaswag/acc"}
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(10, 4.25), (20, 3.75)]
    assert [(e.step, e.value) for e in acc.Scalars("val_loss")] == [(0, 5.5)]  # the NaN is left out
    assert [e.step for e in acc.Scalars("tokens")] == [0, 10, 20]
    assert acc.Scalars("eval/hellaswag/acc")[0].value == pytest.approx(0.3)


def test_record_without_step_and_unknown_sink_are_errors(tmp_path):
    pytest.importorskip("tensorboard")
    sink = TensorBoardSink(tmp_path / "tb")
    with pytest.raises(ValueError, match="integer 'step'"):
        sink.log({"loss": 1.0})
    sink.close()
    assert make_sink("none", tmp_path) is None
    with pytest.raises(UserError, match="train.log='wandb' is not a known sink"):
        make_sink("wandb", tmp_path)


def test_resume_purges_the_steps_logged_after_the_resumed_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = make_sink("tensorboard", tmp_path)
    for step in (0, 10, 20, 30):
        sink.log({"step": step, "loss": float(step)})
    sink.close()
    sink = make_sink("tensorboard", tmp_path, resume_step=10)  # killed after 30, resumed from step 10
    for step in (20, 30):
        sink.log({"step": step, "loss": step + 0.5})
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(0, 0.0), (10, 10.0), (20, 20.5), (30, 30.5)]
