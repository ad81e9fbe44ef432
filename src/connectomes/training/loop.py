"""The one training loop every stage uses (plain training, each generation, each inner-loop arm).

Schedule (docs/method.md §3), AdamW or Muon, gradient clipping, gradient accumulation to a fixed global
batch, optional parameter masks, a fixed-budget validation loss at a set cadence, ``metrics.jsonl``
and a progress bar. Under ``torchrun`` it runs DDP (gloo on CPU, nccl on CUDA) with the same global
batch whatever the process count. The caller builds the data stream (:func:`make_stream`), so it
decides where the data start (a seed's offset, the previous generation's position); checkpoints
are the :class:`connectomes.training.checkpoint.CheckpointManager`'s.

Resume is exact: the model, optimizer, masks, RNG states and the data stream position are all in
the checkpoint, and nothing in a step depends on wall-clock state, so stopping at a saved step and
resuming gives bit-identical weights and losses on CPU.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from ..core import distributed
from ..core.atomic import append_line, atomic_write_text, make_dirs
from ..core.config import config_hash, result_neutral, to_dict
from ..core.distributed import DeviceSetup, setup_device
from ..core.errors import TrainingError
from ..core.integrity import sealed
from ..core.layout import TrainLayout
from ..core.progress import bar
from ..core.readers import read_jsonl
from ..data.stream import TokenStream
from ..model.gpt import GPT, GPTConfig
from .checkpoint import CheckpointManager
from .config import TrainConfig
from .optim import build_optimizer
from .tracking import make_sink
from .validation import REPORT_LOSS, report_slice, validation_loss


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup from 0, hold, linear decay to min_lr over the last warmdown_iters (reference L235-246)."""
    if step < cfg.warmup_iters:
        return cfg.lr * step / cfg.warmup_iters
    decay_start = cfg.iters - cfg.warmdown_iters
    if cfg.warmdown_iters > 0 and step > decay_start:
        return cfg.lr - (cfg.lr - cfg.min_lr) * (step - decay_start) / cfg.warmdown_iters
    return cfg.lr


@dataclass
class TrainResult:
    out_dir: Path
    final_step: int
    final_val_loss: float | None
    steps_run: int
    wall_s: float
    tokens_per_s: float
    finished: bool
    stream_state: dict  # where the data stream stopped (the next generation continues from it)


class Metrics:
    """Append-only metrics.jsonl, each record sealed with the digest of its content (core.integrity);
    on resume, lines past the resumed step are dropped so that the file of a resumed run equals that of
    an uninterrupted one. A cut last line (a kill mid-append) is dropped too; a damaged line before it
    is a record lost, refused by name rather than silently rewritten away. ``sink`` (train.log)
    receives every record too."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None, sink=None):
        self.path = Path(path)
        self.enabled = enabled
        self.sink = sink if enabled else None
        if not enabled or not self.path.exists():
            return
        keep = []
        if resume_step is not None:  # a fresh start keeps nothing, so damage in the old file loses nothing
            remedy = (f"a logged record is lost: restore the file, or delete {self.path.parent} to train this run "
                      "again from scratch")
            for rec in read_jsonl(self.path, remedy=remedy, error=TrainingError).records:
                step = rec.get("step", 0)
                if isinstance(step, bool) or not isinstance(step, int):
                    raise TrainingError(f"{self.path} holds a record whose step is {step!r}, not a number; {remedy}")
                if step <= resume_step:
                    keep.append(json.dumps(rec) + "\n")
        atomic_write_text(self.path, "".join(keep))

    def log(self, rec: dict) -> None:
        if self.enabled:
            append_line(self.path, json.dumps(sealed(rec)) + "\n")
            if self.sink is not None:
                self.sink.log(rec)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()


def make_stream(paths: list[Path], gcfg: GPTConfig, cfg: TrainConfig, max_tokens: int | None = None,
                subset_seed: int = 0) -> TokenStream:
    """This process's share of every global batch of ``paths`` (of ``subset_seed``'s ``max_tokens``-token subset
    of them), as :func:`train` expects it."""
    return TokenStream(paths, gcfg.block_size, cfg.batch_size, rank=distributed.rank(), world=distributed.world_size(),
                       vocab_size=gcfg.vocab_size, max_tokens=max_tokens, subset_seed=subset_seed)


def train_step(fwd_model, model: GPT, optimizer, x: torch.Tensor, y: torch.Tensor, *, micro: int, masks=None,
               grad_clip: float = 1.0, rt: DeviceSetup | None = None, ddp_model=None) -> tuple[float, float | None]:
    """One optimizer step over the batch (x, y), accumulated in micro-batches of ``micro`` sequences.

    Masking recipe of docs/method.md §4: gradients are multiplied by the mask before clipping (pruned
    entries do not count towards the norm) and weights after the step (AdamW's decoupled decay and
    Muon's dense update would otherwise move them). Returns (mean loss, grad norm before clipping).
    A non-finite loss returns before any update so the weights stay as they were.
    """
    rt = rt or DeviceSetup(device=x.device)
    accum = x.size(0) // micro
    loss_sum = torch.zeros((), device=x.device)
    for i in range(accum):
        xs, ys = x[i * micro:(i + 1) * micro], y[i * micro:(i + 1) * micro]
        last = i == accum - 1
        sync = ddp_model.no_sync() if (rt.distributed and not last) else contextlib.nullcontext()
        with sync:
            with rt.autocast():
                _, loss = fwd_model(xs, ys)
            (loss / accum).backward()
        loss_sum += loss.detach()
    mean_loss = loss_sum / accum
    if rt.distributed:
        dist.all_reduce(mean_loss, op=dist.ReduceOp.AVG)
    value = mean_loss.item()
    if not math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        return value, None
    if masks is not None:
        masks.apply_to_grads(model)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip) if grad_clip > 0 else None
    optimizer.step()
    if masks is not None:
        masks.apply_to_weights(model)
    optimizer.zero_grad(set_to_none=True)
    return value, float(grad_norm) if grad_norm is not None else None


def _micro_batch(cfg: TrainConfig, rt: DeviceSetup, stream: TokenStream, block_size: int) -> int:
    """Sequences per forward pass, after checking that the stream serves this process this run's batches."""
    if (stream.B, stream.T, stream.rank, stream.world) != (cfg.batch_size, block_size, rt.rank, rt.world):
        raise TrainingError(
            f"the data stream serves {stream.B} x {stream.T} tokens to rank {stream.rank} of {stream.world} but this run "
            f"trains on {cfg.batch_size} x {block_size} on rank {rt.rank} of {rt.world}; build it with make_stream"
        )
    local_batch = cfg.batch_size // rt.world
    micro = min(cfg.micro_batch_size, local_batch)
    if local_batch % micro:
        raise TrainingError(
            f"per-process batch {local_batch} (train.batch_size / processes) is not a multiple of train.micro_batch_size ({micro})"
        )
    return micro


def _wrap(model: GPT, cfg: TrainConfig, rt: DeviceSetup) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the DDP-wrapped model, the model forward passes go through: compiled when asked)."""
    ddp_model = model
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None)
    return ddp_model, torch.compile(ddp_model) if cfg.compile else ddp_model


@dataclass
class _Session:
    """What one training run holds while it steps."""

    model: GPT
    optimizer: torch.optim.Optimizer
    masks: object  # connectomes.connectome.masks.ParamMask or None
    stream: TokenStream
    cfg: TrainConfig
    rt: DeviceSetup
    micro: int
    val_paths: list[Path] | None
    ckpt: CheckpointManager
    metrics: Metrics

    def __post_init__(self):
        self.ddp_model, self.fwd_model = _wrap(self.model, self.cfg, self.rt)
        best = self.ckpt.best()
        # kept in memory so every process decides a patience stop alike; -1: no finite loss yet
        self.best_step = best["step"] if best is not None else -1

    def evaluate(self, report: bool = True) -> dict:
        """A record's validation fields: ``val_loss`` on the selection slice (the first eval_tokens: the
        curves, best.json and patience read it) and, where the run selects a step, ``report_loss`` on the
        slice after it (validation.report_slice), the number the study reports."""
        if not self.val_paths:
            return {"val_loss": None}
        block = self.model.config.block_size
        out = {"val_loss": validation_loss(self.model, self.val_paths, block, self.cfg.eval_tokens, self.rt.device)[0]}
        where = report_slice(self.cfg)
        if report and where is not None:
            offset, tokens = where
            out[REPORT_LOSS] = validation_loss(self.model, self.val_paths, block, tokens, self.rt.device, offset)[0]
        return out

    def track_best(self, step: int, val_loss: float | None) -> bool:
        new = self.ckpt.track_best(step, val_loss)
        if new:
            self.best_step = step
        return new

    def out_of_patience(self, step: int) -> bool:
        """Whether patience ends the run at evaluation step ``step``: train.patience evaluations have passed
        since the best one (best.json's step, so a resumed run stops where an uninterrupted one does). A run
        without validation data never stops early."""
        cfg = self.cfg
        if not (cfg.patience and cfg.eval_every and self.val_paths) or step <= 0 or not is_eval_step(step, cfg):
            return False
        return evaluations_between(self.best_step, step, cfg) >= cfg.patience

    def optimizer_step(self, step: int) -> tuple[float, float, float | None]:
        """(learning rate, loss, grad norm) of the optimizer step that takes the model from ``step`` to ``step + 1``."""
        lr = lr_at(step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = self.stream.next_batch()
        loss, grad_norm = train_step(self.fwd_model, self.model, self.optimizer, x.to(self.rt.device),
                                     y.to(self.rt.device), micro=self.micro, masks=self.masks,
                                     grad_clip=self.cfg.grad_clip, rt=self.rt, ddp_model=self.ddp_model)
        return lr, loss, grad_norm


class _Progress:
    """The progress bar (main process only): loss, throughput and the last validation loss."""

    def __init__(self, enabled: bool, cfg: TrainConfig, start: int, desc: str, tokens_per_step: int):
        self.bar = None
        if enabled:
            self.bar = bar(cfg.iters, desc, "step", initial=start)
        self.tokens_per_step = tokens_per_step
        self.t_start = time.perf_counter()
        self.steps = 0

    def update(self, loss: float, val_loss: float | None) -> None:
        self.steps += 1
        if self.bar is None:
            return
        elapsed = time.perf_counter() - self.t_start
        post = {"loss": f"{loss:.3f}", "tok/s": f"{self.steps * self.tokens_per_step / max(elapsed, 1e-9):,.0f}"}
        if val_loss is not None:
            post["val"] = f"{val_loss:.3f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def close(self) -> float:
        """Seconds since the bar was made."""
        if self.bar is not None:
            self.bar.close()
        return time.perf_counter() - self.t_start


def is_eval_step(step: int, cfg: TrainConfig) -> bool:
    """Whether the training loop validates after ``step`` (step 0 always, before the first step)."""
    return step == 0 or bool(cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.iters


def evaluations_between(after: int, upto: int, cfg: TrainConfig) -> int:
    """How many validations the loop makes at steps in (after, upto] (``after`` = -1 counts step 0)."""
    if upto <= after:
        return 0
    n = upto // cfg.eval_every - after // cfg.eval_every if cfg.eval_every else int(after < 0)
    return n + int(after < cfg.iters <= upto and not (cfg.eval_every and cfg.iters % cfg.eval_every == 0))


def _run_steps(s: _Session, step: int, last_val: float | None, progress: _Progress, *, desc: str,
               stop_at: int | None, on_step: Callable[[int, GPT], None] | None) -> tuple[int, float | None, bool]:
    """Step from ``step`` to ``cfg.iters`` (or ``stop_at``, or a patience stop), logging, validating and
    checkpointing on the way; returns (the step reached, the last validation loss, whether patience stopped it)."""
    cfg = s.cfg
    if step > 0 and s.out_of_patience(step):  # a run patience stopped resumes at its stop step and ends there
        return step, last_val, True
    s.model.train()
    while step < cfg.iters:
        lr, train_loss, grad_norm = s.optimizer_step(step)
        if not math.isfinite(train_loss):
            good = s.ckpt.latest()
            raise TrainingError(
                f"training loss became {train_loss} at step {step} ({desc}); nothing was saved from this step — "
                f"the last good checkpoint is {good if good else 'none'}; lower train.lr or check the data"
            )
        step += 1
        if on_step is not None:
            on_step(step, s.model)
        rec = {"step": step, "loss": train_loss, "lr": lr, "tokens": step * s.stream.step_tokens, "grad_norm": grad_norm}
        if is_eval_step(step, cfg):
            rec.update(s.evaluate())
            last_val = rec["val_loss"]
        if cfg.log_every and (step % cfg.log_every == 0 or "val_loss" in rec or step == cfg.iters):
            s.metrics.log(rec)
        progress.update(train_loss, last_val)
        new_best = "val_loss" in rec and s.track_best(step, last_val)
        stopped = "val_loss" in rec and s.out_of_patience(step)
        if s.ckpt.should_save(step) or new_best or stopped:  # a patience stop is the run's last checkpoint
            s.ckpt.save(step)
        if stopped:
            return step, last_val, True
        if stop_at is not None and step >= stop_at:
            break
    return step, last_val, False


def train(
    model: GPT,
    cfg: TrainConfig,
    stream: TokenStream,
    *,
    val_paths: list[Path] | None,
    out_dir: Path,
    masks=None,
    run_info: dict | None = None,
    desc: str = "train",
    stop_at: int | None = None,
    on_step: Callable[[int, GPT], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place for ``cfg.iters`` steps on ``stream`` (fewer when train.patience stops it),
    resuming from ``out_dir`` if it has a checkpoint.

    ``stream`` comes from :func:`make_stream`, positioned where this run's data start (a resumed run
    moves it to the checkpoint's position); the result says where it stopped. ``masks`` is a
    :class:`connectomes.connectome.masks.ParamMask` (or None): gradients are masked before clipping and
    weights after every optimizer step. ``run_info`` goes into every ``state.json`` (tokenizer, data
    folder, resolved config) so a step folder can be evaluated on its own. ``stop_at`` returns after
    the step ``stop_at`` checkpoint is written (time-sliced jobs, tests). ``on_step(step, model)`` is
    called after every optimizer step (e.g. to snapshot weights for rewinding).
    """
    rt = setup_device(cfg.device, cfg.dtype)
    layout = TrainLayout(Path(out_dir))
    if rt.is_main:
        make_dirs(layout.steps)
    micro = _micro_batch(cfg, rt, stream, model.config.block_size)
    info = dict(run_info or {}, model_config=model.config.to_dict(), train_config=to_dict(cfg))
    info["train_config_hash"] = run_hash(cfg, info.get("upstream_hash"))
    model.to(rt.device)
    model.activation_checkpointing = cfg.activation_checkpointing
    optimizer = build_optimizer(model, cfg, rt.device.type)
    if masks is not None:
        masks.to(rt.device)
    ckpt = CheckpointManager(layout, cfg, rt, model=model, optimizer=optimizer, masks=masks, stream=stream, info=info,
                             stop_at=stop_at)
    resumed = ckpt.resume()
    if resumed is None:
        torch.manual_seed(cfg.seed)
    start = resumed or 0
    sink = make_sink(cfg.log, layout.root, resume_step=resumed) if rt.is_main else None
    s = _Session(model, optimizer, masks, stream, cfg, rt, micro, val_paths, ckpt,
                 Metrics(layout.metrics, rt.is_main, resumed, sink=sink))
    ended = resumed is not None and (start >= cfg.iters or s.out_of_patience(start))
    last_val = _first_record(s, fresh=resumed is None, finished=ended)
    bar = _Progress(progress and rt.is_main, cfg, start, desc, stream.step_tokens)
    try:
        step, last_val, stopped = _run_steps(s, start, last_val, bar, desc=desc, stop_at=stop_at, on_step=on_step)
    finally:
        s.metrics.close()
    wall = bar.close()
    finished = step >= cfg.iters or stopped
    if finished:
        ckpt.finish(step, last_val)
    return TrainResult(out_dir=layout.root, final_step=step, final_val_loss=last_val, steps_run=bar.steps, wall_s=wall,
                       tokens_per_s=bar.steps * stream.step_tokens / wall if wall > 0 else 0.0, finished=finished,
                       stream_state=stream.state_dict())


def _first_record(s: "_Session", *, fresh: bool, finished: bool) -> float | None:
    """The validation loss known before the first step: a fresh run evaluates, logs and (if kept)
    saves step 0; a run resumed from its step-0 checkpoint already has that line; a resumed
    finished run reports its final loss."""
    if fresh:
        fields = s.evaluate()
        val = fields["val_loss"]
        s.metrics.log({"step": 0, **fields, "lr": lr_at(0, s.cfg), "tokens": 0})
        new_best = s.track_best(0, val)
        if s.ckpt.should_save(0) or new_best:
            s.ckpt.save(0)
        return val
    return s.evaluate(report=False)["val_loss"] if finished else None


def run_hash(cfg: TrainConfig, upstream_hash: str | None = None) -> str:
    """Identity of a training run: its settings plus whatever produced its initial model and data."""
    settings = {k: v for k, v in to_dict(cfg).items() if not result_neutral(k)}
    return config_hash({"train": settings, "upstream": upstream_hash})
