"""Metric sinks: where training records go besides metrics.jsonl (``train.log``).

A sink has ``log(rec: dict)`` and ``close()``. Each record is one line of metrics.jsonl as written
(``step`` plus numbers, possibly nested dicts); a sink takes every numeric field, so whatever the
training loop adds to the record later shows up without touching this module.

- ``tensorboard``: event files in ``<run>/tb/`` (``torch.utils.tensorboard``; needs the
  ``tensorboard`` extra). Nested fields become slash-separated tags (``eval/hellaswag/acc``).
"""

from __future__ import annotations

import math
from numbers import Real
from pathlib import Path

from ..core.errors import UserError

SINKS = ("none", "tensorboard")


def flatten(rec: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a (nested) record as {"a/b": value}; strings, lists and None are skipped."""
    out: dict[str, float] = {}
    for key, value in rec.items():
        tag = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, tag + "/"))
        elif isinstance(value, Real):  # bool is Real too: logged as 0/1
            out[tag] = float(value)
    return out


class TensorBoardSink:
    def __init__(self, log_dir: str | Path, purge_step: int | None = None):
        """``purge_step``: on resume, the first step logged again; TensorBoard then hides the earlier
        session's events from that step on, as Metrics drops metrics.jsonl lines past the resumed step."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("train.log=tensorboard needs the tensorboard package: pip install 'connectomes[tensorboard]'") from None
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)

    def log(self, rec: dict) -> None:
        step = rec.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise ValueError(f"a metrics record needs an integer 'step' field, got {step!r}")
        for tag, value in flatten({k: v for k, v in rec.items() if k != "step"}).items():
            if math.isfinite(value):  # TensorBoard's charts cannot show NaN/inf and would hide the run
                self.writer.add_scalar(tag, value, global_step=step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def make_sink(kind: str, run_dir: str | Path, resume_step: int | None = None):
    """The sink for ``train.log`` (None for "none"); event files go to <run_dir>/tb."""
    if kind in (None, "", "none"):
        return None
    if kind == "tensorboard":
        return TensorBoardSink(Path(run_dir) / "tb", purge_step=None if resume_step is None else resume_step + 1)
    raise UserError(f"train.log={kind!r} is not a known sink; choose one of {', '.join(SINKS)}")
