"""The one training loop every stage uses (plain training, each generation, each inner-loop arm).

Schedule (method.md §3), AdamW or Muon, gradient clipping, gradient accumulation to a fixed global
batch, optional parameter masks, a fixed-budget validation loss at a set cadence, ``metrics.jsonl``,
a progress bar, atomic checkpoints and exact resume. Under ``torchrun`` it runs DDP (gloo on CPU,
nccl on CUDA) with the same global batch whatever the process count.

Resume is exact: the model, optimizer, masks, RNG states and the data stream position are all in
the checkpoint, and nothing in a step depends on wall-clock state, so stopping at a saved step and
resuming gives bit-identical weights and losses on CPU.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from . import checkpoint as ckpt
from . import distributed
from .config import TrainConfig, config_hash, to_dict
from .errors import UserError
from .model import GPT


class TrainingError(UserError):
    pass


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup from 0, hold, linear decay to min_lr over the last warmdown_iters (reference L235-246)."""
    if step < cfg.warmup_iters:
        return cfg.lr * step / cfg.warmup_iters
    decay_start = cfg.iters - cfg.warmdown_iters
    if cfg.warmdown_iters > 0 and step > decay_start:
        return cfg.lr - (cfg.lr - cfg.min_lr) * (step - decay_start) / cfg.warmdown_iters
    return cfg.lr


# ---------------------------------------------------------------------------------------------
# process group and device


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    autocast_dtype: torch.dtype | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Pick the device and, under torchrun, join the process group (once per process)."""
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device=cuda but no CUDA device is visible; use train.device=cpu or auto")
    local_rank = distributed.local_rank()
    device = torch.device(f"cuda:{local_rank}" if want == "cuda" else "cpu")
    if want == "cuda":
        torch.cuda.set_device(device)
    distributed.init(want)
    dtype = cfg.dtype
    if dtype == "auto":
        dtype = "bfloat16" if want == "cuda" else "float32"
    autocast = torch.bfloat16 if dtype == "bfloat16" else None
    if want == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device=device, rank=distributed.rank(), world=distributed.world_size(), local_rank=local_rank,
                   autocast_dtype=autocast)


def _autocast(rt: Runtime):
    if rt.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=rt.device.type, dtype=rt.autocast_dtype)


# ---------------------------------------------------------------------------------------------
# the loop


@dataclass
class TrainResult:
    out_dir: Path
    final_step: int
    final_val_loss: float | None
    steps_run: int
    wall_s: float
    tokens_per_s: float
    finished: bool


class Metrics:
    """Append-only metrics.jsonl; on resume, lines past the resumed step are dropped so that the
    file of a resumed run equals that of an uninterrupted one."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None):
        self.path = Path(path)
        self.enabled = enabled
        if enabled and self.path.exists():
            keep = []
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if resume_step is not None and rec.get("step", 0) <= resume_step:
                    keep.append(line)
            ckpt.atomic_write_text(self.path, "".join(l + "\n" for l in keep))

    def log(self, rec: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")


def _latest_step(out_dir: Path) -> Path | None:
    p = out_dir / "latest.json"
    if not p.exists():
        return None
    try:
        name = json.loads(p.read_text())["step_dir"]
    except (json.JSONDecodeError, KeyError):
        raise TrainingError(f"{p} is corrupt; delete it to restart this run from scratch") from None
    folder = out_dir / "steps" / name
    if not (folder / ckpt.TRAINER).exists():
        raise TrainingError(f"{p} points to {folder}, which cannot be resumed from; delete {p} to restart")
    return folder


def _seek_for_seed(stream, paths: list[Path], seed: int, tokens_per_step: int) -> None:
    """Advance the stream by a seed-dependent number of steps, spread over one pass of the split
    by the golden ratio so that different seeds start far apart."""
    from .data.shards import read_shard

    steps_per_pass = max(1, sum(len(read_shard(p)) for p in paths) // tokens_per_step)
    skip = int((seed * 0.6180339887498949) % 1.0 * steps_per_pass)
    for _ in range(skip):
        stream.next_batch()


def _rng_state() -> dict:
    st = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["cpu"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def train_step(fwd_model, model: GPT, optimizer, x: torch.Tensor, y: torch.Tensor, *, micro: int, masks=None,
               grad_clip: float = 1.0, rt: Runtime | None = None, ddp_model=None) -> tuple[float, float | None]:
    """One optimizer step over the batch (x, y), accumulated in micro-batches of ``micro`` sequences.

    Masking recipe of method.md §4: gradients are multiplied by the mask before clipping (pruned
    entries do not count towards the norm) and weights after the step (AdamW's decoupled decay and
    Muon's dense update would otherwise move them). Returns (mean loss, grad norm before clipping).
    A non-finite loss returns before any update so the weights stay as they were.
    """
    rt = rt or Runtime(device=x.device)
    accum = x.size(0) // micro
    loss_sum = torch.zeros((), device=x.device)
    for i in range(accum):
        xs, ys = x[i * micro:(i + 1) * micro], y[i * micro:(i + 1) * micro]
        last = i == accum - 1
        sync = ddp_model.no_sync() if (rt.distributed and not last) else contextlib.nullcontext()
        with sync:
            with _autocast(rt):
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


def train(
    model: GPT,
    cfg: TrainConfig,
    *,
    train_paths: list[Path],
    val_paths: list[Path] | None,
    out_dir: Path,
    masks=None,
    run_info: dict | None = None,
    desc: str = "train",
    stop_at: int | None = None,
    on_step: Callable[[int, GPT], None] | None = None,
    progress: bool = True,
    data_seed: int | None = None,
    stream_start: dict | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``cfg.iters`` steps, resuming from ``out_dir`` if it has a checkpoint.

    ``masks`` is a :class:`connectomes.connectome.ParamMask` (or None): gradients are masked before
    clipping and weights after every optimizer step. ``run_info`` goes into every ``state.json``
    (tokenizer, data folder, resolved config) so a step folder can be evaluated on its own.
    ``stop_at`` returns after the step ``stop_at`` checkpoint is written (time-sliced jobs, tests).
    ``on_step(step, model)`` is called after every optimizer step (e.g. to snapshot weights for rewinding).
    ``data_seed`` starts the data stream at a seed-dependent point of its cycle (seeds of one arm then
    see the same tokens in a different order); None or 0 starts at the beginning.
    ``stream_start`` starts the stream at a saved position (the outer loop continues the stream of
    the previous generation, as the reference's persistent loader does).
    """
    from .data.stream import TokenStream
    from .evals.val_loss import validation_loss
    from .optim import build_optimizer

    rt = setup_runtime(cfg)
    out_dir = Path(out_dir)
    steps_dir = out_dir / "steps"
    if rt.is_main:
        steps_dir.mkdir(parents=True, exist_ok=True)
    T = model.config.block_size
    if cfg.batch_size % rt.world:
        raise TrainingError(f"train.batch_size ({cfg.batch_size}) must be divisible by the number of processes ({rt.world})")
    local_batch = cfg.batch_size // rt.world
    micro = min(cfg.micro_batch_size, local_batch)
    if local_batch % micro:
        raise TrainingError(
            f"per-process batch {local_batch} (train.batch_size / processes) is not a multiple of train.micro_batch_size ({micro})"
        )
    info = dict(run_info or {})
    tcfg_hash = run_hash(cfg, info.get("upstream_hash"))
    info.update(model_config=model.config.to_dict(), train_config=to_dict(cfg), train_config_hash=tcfg_hash)

    model.to(rt.device)
    model.activation_checkpointing = cfg.activation_checkpointing
    stream = TokenStream(train_paths, T, cfg.batch_size, rank=rt.rank, world=rt.world, vocab_size=model.config.vocab_size)
    optimizer = build_optimizer(model, cfg, rt.device.type)
    if masks is not None:
        masks.to(rt.device)

    # ---- resume
    start = 0
    latest = _latest_step(out_dir)
    if latest is not None:
        state = ckpt.read_state(latest)
        if state.get("train_config_hash") != tcfg_hash:
            raise TrainingError(
                f"{out_dir} holds a run started with different training settings; use a new run name or delete the folder"
            )
        ckpt_masks = ckpt.load_masks(latest)
        if (ckpt_masks is None) != (masks is None):
            raise TrainingError(f"{latest} was saved {'with' if ckpt_masks is not None else 'without'} masks but this run is not")
        from .model import load_reference_state_dict

        load_reference_state_dict(model, ckpt.load_weights(latest))
        model.to(rt.device)
        if masks is not None:
            masks.load(ckpt_masks)
        trainer = ckpt.load_trainer(latest)
        optimizer.load_state_dict(trainer["optimizer"])
        _set_rng_state(trainer["rng"])
        stream.load_state_dict(state["stream"])
        start = state["step"]
    else:
        torch.manual_seed(cfg.seed)
        if stream_start is not None:
            stream.load_state_dict(stream_start)
        if data_seed:
            _seek_for_seed(stream, train_paths, data_seed, cfg.batch_size * T)

    metrics = Metrics(out_dir / "metrics.jsonl", rt.is_main, start if latest is not None else None)

    ddp_model = model
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ddp_model = DDP(model, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None)
    fwd_model = torch.compile(ddp_model) if cfg.compile else ddp_model

    def evaluate() -> float | None:
        if not val_paths:
            return None
        loss, _ = validation_loss(model, val_paths, T, cfg.eval_tokens, micro, rt.device)
        return loss

    def save(step: int) -> None:
        """Checkpoint (main process only); steps in keep_steps or the last one are kept for evaluation."""
        if rt.is_main:
            state = dict(info, step=step, stream=stream.state_dict(), tokens=step * cfg.batch_size * T)
            trainer = {"optimizer": optimizer.state_dict(), "rng": _rng_state()}
            folder = ckpt.save_step(steps_dir / ckpt.step_dir_name(step), model, state, trainer=trainer,
                                    masks=masks.masks if masks is not None else None)
            previous = _latest_step(out_dir) if (out_dir / "latest.json").exists() else None
            ckpt.atomic_write_json(out_dir / "latest.json", {"step_dir": folder.name, "step": step})
            if previous is not None and previous != folder:
                prev_step = int(previous.name.split("_")[1])
                if prev_step in cfg.keep_steps:
                    (previous / ckpt.TRAINER).unlink(missing_ok=True)  # keep weights for evaluation only
                else:
                    shutil.rmtree(previous, ignore_errors=True)
        if rt.distributed:
            dist.barrier()

    last_val = evaluate() if start >= cfg.iters else None  # resumed a finished run: report its loss
    if start == 0:
        last_val = evaluate()
        rec = {"step": 0, "val_loss": last_val, "lr": lr_at(0, cfg), "tokens": 0}
        metrics.log(rec)
        if 0 in cfg.keep_steps:
            save(0)

    tokens_per_step = cfg.batch_size * T
    bar = None
    if progress and rt.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.iters, initial=start, desc=desc, unit="step", dynamic_ncols=True, leave=False)
    t_start = time.perf_counter()
    steps_run = 0
    model.train()
    step = start
    while step < cfg.iters:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = stream.next_batch()
        train_loss, grad_norm = train_step(fwd_model, model, optimizer, x.to(rt.device), y.to(rt.device), micro=micro,
                                           masks=masks, grad_clip=cfg.grad_clip, rt=rt, ddp_model=ddp_model)
        if not math.isfinite(train_loss):
            good = _latest_step(out_dir)
            raise TrainingError(
                f"training loss became {train_loss} at step {step} ({desc}); nothing was saved from this step — "
                f"the last good checkpoint is {good if good else 'none'}; lower train.lr or check the data"
            )
        step += 1
        steps_run += 1
        if on_step is not None:
            on_step(step, model)
        dt = time.perf_counter() - t0
        rec = {"step": step, "loss": train_loss, "lr": lr, "tokens": step * tokens_per_step,
               "grad_norm": grad_norm,
               "tok_per_s": tokens_per_step / dt if dt > 0 else None}
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.iters:
            last_val = evaluate()
            rec["val_loss"] = last_val
        if cfg.log_every and (step % cfg.log_every == 0 or "val_loss" in rec or step == cfg.iters):
            metrics.log({k: v for k, v in rec.items() if k != "tok_per_s"})
        if bar is not None:
            elapsed = time.perf_counter() - t_start
            post = {"loss": f"{train_loss:.3f}", "tok/s": f"{steps_run * tokens_per_step / max(elapsed, 1e-9):,.0f}"}
            if last_val is not None:
                post["val"] = f"{last_val:.3f}"
            bar.set_postfix(post, refresh=False)
            bar.update(1)
        if step == cfg.iters or step in cfg.keep_steps or (cfg.save_every and step % cfg.save_every == 0) or step == stop_at:
            save(step)
        if stop_at is not None and step >= stop_at:
            break
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t_start
    finished = step >= cfg.iters
    if finished and rt.is_main:
        ckpt.atomic_write_json(out_dir / "done.json", {"step": step, "val_loss": last_val, "train_config_hash": tcfg_hash})
    return TrainResult(out_dir=out_dir, final_step=step, final_val_loss=last_val, steps_run=steps_run, wall_s=wall,
                       tokens_per_s=steps_run * tokens_per_step / wall if wall > 0 else 0.0, finished=finished)


def run_hash(cfg: TrainConfig, upstream_hash: str | None = None) -> str:
    """Identity of a training run: its settings plus whatever produced its initial model and data."""
    return config_hash({"train": to_dict(cfg), "upstream": upstream_hash})
