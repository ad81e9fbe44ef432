"""The warmup / hold / linear-decay schedule of method.md §3 at its boundaries."""

import pytest

from connectomes.training.config import TrainConfig
from connectomes.training.loop import lr_at

PAPER_OUTER = TrainConfig(iters=7000, warmup_iters=250, warmdown_iters=1750, lr=0.0018)
PAPER_INNER = TrainConfig(iters=2000, warmup_iters=250, warmdown_iters=1750, lr=0.0018)


def test_warmup_starts_at_zero_and_is_linear():
    assert lr_at(0, PAPER_OUTER) == 0.0
    assert lr_at(125, PAPER_OUTER) == pytest.approx(0.0009)
    assert lr_at(249, PAPER_OUTER) == pytest.approx(0.0018 * 249 / 250)


def test_hold():
    assert lr_at(250, PAPER_OUTER) == 0.0018
    assert lr_at(5250, PAPER_OUTER) == 0.0018  # hold to step 5250 inclusive


def test_decay_to_zero_one_step_after_the_last():
    assert lr_at(5251, PAPER_OUTER) == pytest.approx(0.0018 * (1 - 1 / 1750))
    assert lr_at(6999, PAPER_OUTER) == pytest.approx(0.0018 / 1750)  # the last step
    assert lr_at(7000, PAPER_OUTER) == pytest.approx(0.0)


def test_inner_loop_is_warmup_then_immediate_decay():
    assert lr_at(250, PAPER_INNER) == 0.0018
    assert lr_at(251, PAPER_INNER) == pytest.approx(0.0018 * (1 - 1 / 1750))
    assert lr_at(1999, PAPER_INNER) == pytest.approx(0.0018 / 1750)


def test_min_lr_floor():
    cfg = TrainConfig(iters=100, warmup_iters=10, warmdown_iters=50, lr=1.0, min_lr=0.1)
    assert lr_at(100, cfg) == pytest.approx(0.1)
    assert lr_at(75, cfg) == pytest.approx(1.0 - 0.9 * 25 / 50)
