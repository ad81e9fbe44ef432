"""What a study costs before it runs: steps, tokens and training FLOPs per stage, and the wall time
either on this machine (a short forward/backward probe) or on N GPUs of a named kind at an MFU.

GPU time = FLOPs / (N x bf16 dense peak x MFU). It assumes data-parallel scaling is linear in N
(DDP over NVLink at these model sizes loses a few percent) and counts training only: evaluations,
checkpoints and data preparation come on top.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ..core.errors import ConfigError
from ..core.readers import read_json
from ..data.tokenizers import parse_tokenizer
from ..model.gpt import GPT, GPTConfig
from . import corpora
from .config import Config
from .sweep import evolutions, shapes, units

# bf16 dense tensor-core peaks (no 2:4 sparsity) from NVIDIA's datasheets: A100 SXM/PCIe 312 TFLOP/s;
# H100 SXM 989.4 TFLOP/s; H200 is the same GH100 die with more memory, so the same 989.4.
GPU_PEAK_BF16 = {"a100": 312e12, "h100": 989.4e12, "h200": 989.4e12}
# Default model-FLOPs utilisation when none was measured: nanoGPT/llm.c report ~40-50% at GPT-2 124M
# on A100/H100 with bf16 and torch.compile; 0.40 is the cautious end.
DEFAULT_MFU = 0.40


def gpu_kind(device_name: str) -> str | None:
    """The GPU_PEAK_BF16 key for a CUDA device name ("NVIDIA H100 80GB HBM3" -> "h100"), or None."""
    low = device_name.lower()
    for kind in GPU_PEAK_BF16:
        if kind in low:
            return kind
    return None


def gpu_flops_per_s(gpu: str, gpus: int, mfu: float) -> float:
    """Achieved training FLOP/s of ``gpus`` GPUs of kind ``gpu`` at ``mfu``."""
    if gpu not in GPU_PEAK_BF16:
        raise ConfigError(f"unknown GPU {gpu!r}; choose one of {', '.join(GPU_PEAK_BF16)}")
    if gpus < 1:
        raise ConfigError(f"--gpus must be at least 1, got {gpus}")
    if not 0.0 < mfu <= 1.0:
        raise ConfigError(f"MFU must be in (0, 1], got {mfu}")
    return GPU_PEAK_BF16[gpu] * gpus * mfu


def mfu_from_benchmark(path: str | Path, preset: str, compiled: bool) -> float:
    """The MFU that benchmarks/gpu.py measured for this model preset on the masked (connectome) step,
    with or without torch.compile as the study will run."""
    p = Path(path)
    remedy = "pass the JSON that benchmarks/gpu.py wrote"
    runs = read_json(p, error=ConfigError, remedy=remedy).get("train")
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise ConfigError(f"{p} is not a benchmarks/gpu.py result (no 'train' list of measurements); {remedy}")
    match = [r for r in runs if r.get("model") == preset and r.get("masked") and r.get("compile") == compiled
             and isinstance(r.get("mfu"), (int, float))]
    if not match:
        have = sorted({f"({r.get('model')!r}, {r.get('compile')!r})" for r in runs})
        raise ConfigError(f"{p} has no masked measurement for model {preset!r} with compile={compiled}; it has (model, compile) {', '.join(have)}")
    return float(match[0]["mfu"])


def measure_flops_per_s(gcfg: GPTConfig, seconds: float = 1.5, batch: int = 1) -> float:
    """Achieved training FLOP/s of this model shape on this machine: a short forward/backward probe of ``batch``
    sequences (a one-sequence probe is dominated by per-call overhead, so it under-rates a real step), each
    pass timed in the process's CPU seconds shared over its threads, the median pass taken. CPU time is what
    the computation costs, not how long other processes kept it waiting: a plan made on a busy machine
    estimates the machine, not its load."""
    import statistics

    import torch

    probe_T = min(gcfg.block_size, 128)
    probe = dataclasses.replace(gcfg, block_size=probe_T)
    torch.manual_seed(0)
    model = GPT(probe)
    x = torch.randint(0, probe.vocab_size, (batch, probe_T))
    flops = model.flops_per_token() * probe_T * batch
    model(x, x)[1].backward()  # warm-up
    passes, t0 = [], time.perf_counter()
    while time.perf_counter() - t0 < seconds or len(passes) < 3:
        c0 = time.process_time()
        model(x, x)[1].backward()
        passes.append((time.process_time() - c0) / torch.get_num_threads())
    return flops / max(statistics.median(passes), 1e-9)


# sequences in the probe: the config's micro-batch up to this many, so a paper-scale plan still probes in seconds
PROBE_BATCH = 8


def plan_gpt_config(cfg: Config, vocab_size: int | None = None, shape: str | None = None) -> GPTConfig:
    """The model shape a config will train (at a model.shapes entry when given), with the tokenizer's
    vocabulary known without preparing data."""
    return cfg.model.gpt_config(vocab_size=vocab_size or parse_tokenizer(cfg.data.tokenizer).vocab_size, shape=shape)


def plan(cfg: Config, *, vocab_size: int | None = None, measure: bool = True,
         flops_per_s: float | None = None) -> list[dict]:
    """Every stage with steps, tokens, FLOPs and an estimated time; runs nothing. A unit's steps are
    develop.train.iters, the most it trains (develop.train.patience may stop it sooner).

    The time uses ``flops_per_s`` when given (e.g. :func:`gpu_flops_per_s`), else a probe of this
    machine (of the model section's shape) when ``measure``, else it is None.
    """
    import torch

    gcfg = plan_gpt_config(cfg, vocab_size)
    shaped = {sh: gcfg if sh is None else cfg.model.gpt_config(vocab_size=gcfg.vocab_size, shape=sh) for sh in shapes(cfg)}
    with torch.device("meta"):
        fpt = {sh: GPT(g).flops_per_token() for sh, g in shaped.items()}
    rate = flops_per_s or (measure_flops_per_s(gcfg, batch=min(cfg.evolve.train.micro_batch_size, PROBE_BATCH))
                           if measure else None)
    rows = []

    def add(stage, steps, tokens, flops):
        rows.append({"stage": stage, "steps": steps, "tokens": tokens, "flops": flops,
                     "est_s": flops / rate if rate else None})

    ev = cfg.evolve.train
    tok_step = ev.batch_size * gcfg.block_size
    for sh, lin in evolutions(cfg):
        where = corpora.evolution_label(cfg, sh, lin)
        for g in range(cfg.evolve.generations):
            add(f"{where + ' ' if where else ''}evolve gen {g}", ev.iters, ev.iters * tok_step,
                fpt[sh] * ev.iters * tok_step)
    dv = cfg.develop.train
    tok_step = dv.batch_size * gcfg.block_size
    # with develop.train.patience a unit may stop before iters: the rows then give the cap, an upper bound
    cap = " (at most: patience may stop it sooner)" if dv.patience else ""
    for u in units(cfg):  # every size trains the same steps (develop.py), so the same tokens
        add(f"develop {u.label}{cap}", dv.iters, dv.iters * tok_step, fpt[u.shape] * dv.iters * tok_step)
    total = {"stage": "total", "steps": sum(r["steps"] for r in rows), "tokens": sum(r["tokens"] for r in rows),
             "flops": sum(r["flops"] for r in rows),
             "est_s": sum(r["est_s"] for r in rows) if rate else None}
    rows.append(total)
    return rows


def plan_on(cfg: Config, *, gpu: str | None = None, gpus: int | None = None,
            mfu_json: str | None = None) -> tuple[list[dict], str]:
    """(plan rows, where the time estimate is for): ``gpus`` x ``gpu`` at the MFU gpu.py measured
    (``mfu_json``) or DEFAULT_MFU; with no ``gpu``, this machine (probed)."""
    if gpu is None:
        if gpus is not None or mfu_json is not None:
            raise ConfigError("--gpus and --mfu-json need --gpu (a100, h100 or h200)")
        return plan(cfg), "this machine (forward/backward probe of this model shape)"
    gpus = 1 if gpus is None else gpus
    if mfu_json is not None:
        mfu = mfu_from_benchmark(mfu_json, cfg.model.preset, cfg.evolve.train.compile)
        source = f"measured by benchmarks/gpu.py ({mfu_json})"
    else:
        mfu, source = DEFAULT_MFU, "default; pass --mfu-json to use a measured one"
    rate = gpu_flops_per_s(gpu, gpus, mfu)
    where = (f"{gpus} x {gpu.upper()} at {GPU_PEAK_BF16[gpu] / 1e12:.1f} TFLOP/s bf16 peak x MFU {mfu:.2f} ({source}); "
             "data-parallel scaling taken as linear")
    return plan(cfg, flops_per_s=rate), where


def _lpt(durations: list[float], workers: int) -> float:
    """Wall time of jobs on ``workers`` machines by longest-processing-time-first list scheduling."""
    loads = [0.0] * max(1, workers)
    for d in sorted(durations, reverse=True):
        loads[loads.index(min(loads))] += d
    return max(loads)


def parallel_wall(cfg: Config, rows: list[dict], workers: int) -> float | None:
    """The training wall time of :func:`plan`'s rows with ``workers`` study workers: the lineages' evolutions
    in parallel, then the units (a unit's connectome must exist first, so the phases do not overlap).
    None when the rows carry no time estimate."""
    if rows[-1]["est_s"] is None:
        return None
    per_lineage = cfg.evolve.generations
    evolve = [r["est_s"] for r in rows[: per_lineage * len(evolutions(cfg))]]
    lineage_s = [sum(evolve[i:i + per_lineage]) for i in range(0, len(evolve), per_lineage)]
    unit_s = [r["est_s"] for r in rows[len(evolve):-1]]
    return _lpt(lineage_s, workers) + _lpt(unit_s, workers)
