"""The CUDA figures in one run (≤ 8 minutes on one A100/H100/H200), written to a JSON file:

  - training step tokens/s and MFU for gpt2-124m and gpt2-417m, bf16 autocast, fused AdamW, through
    the package's train_step; eager and torch.compile; dense and masked (ParamMask at density 0.8^6);
  - peak memory of each (torch.cuda.max_memory_allocated);
  - that pruned weights stay exactly 0.0 under bf16 autocast + compile + fused AdamW;
  - a full HellaSwag pass (items/s) through the package's evaluation code (ScoringLM, hellaswag.run).

Usage:  python benchmarks/gpu.py OUT.json [--data-root DIR]     (on a CUDA machine)
        python benchmarks/gpu.py OUT.json --cpu-smoke             (the same code, tiny shapes, CPU, seconds;
                                                                   torch.compile with dynamo's eager backend)
The MFU of the masked runs feeds `connectomes study CONFIG --plan --gpu h100 --mfu-json OUT.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, matmul_peak_flops  # noqa: E402

from connectomes.training.config import TrainConfig
from connectomes.connectome.masks import ParamMask, dense_masks
from connectomes.model.gpt import GPT, GPTConfig, preset
from connectomes.training.optim import build_optimizer
from connectomes.pipeline.plan import GPU_PEAK_BF16, gpu_kind
from connectomes.core.distributed import DeviceSetup
from connectomes.training.loop import train_step

DENSITY = 0.8**6  # a sixth-generation connectome
# (model, micro-batch): 16 x 1024 tokens per step, the paper configs' micro-batch.
FULL = [("gpt2-124m", 16), ("gpt2-417m", 16)]
SMOKE = [("smoke", 2)]
SMOKE_SHAPE = dict(vocab_size=50304, n_layer=2, n_head=2, n_embd=32, block_size=32)


def model_config(name: str) -> GPTConfig:
    return GPTConfig(**SMOKE_SHAPE) if name == "smoke" else preset(name)


def random_masks(model: GPT, seed: int = 0) -> ParamMask:
    """Masks keeping DENSITY of every 2-D weight, drawn on CPU so they do not depend on the device."""
    g = torch.Generator().manual_seed(seed)
    return ParamMask({n: torch.rand(m.shape, generator=g) < DENSITY for n, m in dense_masks(model).items()})


def peak_flops(device: torch.device) -> tuple[float, str]:
    """bf16 dense peak from the datasheet for a known GPU, else a measured bf16 matmul peak."""
    if device.type == "cuda":
        kind = gpu_kind(torch.cuda.get_device_name(device))
        if kind is not None:
            return GPU_PEAK_BF16[kind], f"{kind} datasheet bf16 dense peak"
        return matmul_peak_flops(n=8192, device=str(device), dtype=torch.bfloat16), "measured bf16 8192^3 matmul"
    return matmul_peak_flops(n=512, seconds=0.5), "measured fp32 512^3 matmul (CPU smoke)"


def time_training(fwd_model, model, opt, batch, masks, rt, steps: int, warmup: int) -> float:
    x, y = batch
    sync = torch.cuda.synchronize if rt.device.type == "cuda" else (lambda: None)
    for _ in range(warmup):  # compile, autotune, allocator
        train_step(fwd_model, model, opt, x, y, micro=x.size(0), masks=masks, rt=rt)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(fwd_model, model, opt, x, y, micro=x.size(0), masks=masks, rt=rt)
    sync()
    return (time.perf_counter() - t0) / steps


def pruned_are_zero(model: GPT, masks: ParamMask) -> bool:
    params = dict(model.named_parameters())
    return all(bool((params[n].detach()[~m.to(params[n].device)] == 0.0).all()) for n, m in masks.masks.items())


def bench_model(name: str, micro: int, device: torch.device, peak: float, steps: int, warmup: int,
                backend: str = "inductor") -> list[dict]:
    """Eager then compiled; dense then masked on each (masking is outside the compiled forward, so
    the compiled module serves both). Masked runs check that pruned weights stayed exactly 0.0.
    ``backend`` "eager" (the CPU smoke) traces with dynamo like inductor but skips code generation."""
    cfg = model_config(name)
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    opt = build_optimizer(model, TrainConfig(lr=6e-4), device.type)  # fused AdamW on CUDA
    rt = DeviceSetup(device=device, autocast_dtype=torch.bfloat16)
    g = torch.Generator().manual_seed(1)
    batch = tuple(torch.randint(0, cfg.vocab_size, (micro, cfg.block_size), generator=g).to(device) for _ in range(2))
    tokens = micro * cfg.block_size
    fpt = model.flops_per_token()
    out = []
    for compiled in (False, True):
        fwd_model = torch.compile(model, backend=backend) if compiled else model
        for masked in (False, True):
            masks = random_masks(model).to(device) if masked else None
            if masks is not None:
                masks.apply_to_weights(model)  # start from a pruned model, as develop does
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            dt = time_training(fwd_model, model, opt, batch, masks, rt, steps, warmup)
            rec = {"model": name, "compile": compiled, "masked": masked, "micro_batch": micro, "block_size": cfg.block_size,
                   "compile_backend": backend if compiled else None, "s_per_step": dt, "tokens_per_s": tokens / dt, "mfu": fpt * tokens / dt / peak,
                   "wall_s_incl_warmup": time.perf_counter() - t0, "fused_adamw": bool(opt.defaults.get("fused"))}
            if device.type == "cuda":
                rec["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            if masked:
                rec["pruned_exactly_zero"] = pruned_are_zero(model, masks)
            print(json.dumps(rec), flush=True)
            out.append(rec)
    return out


def bench_hellaswag(device: torch.device, data_root: Path | None, model_name: str, limit: int) -> dict:
    """Random-weight model, full validation set (or ``limit`` items) through hellaswag.run."""
    from connectomes.data.tokenizers import gpt2_from_file
    from connectomes.evals.context import build_context
    from connectomes.evals.tasks import hellaswag
    from connectomes.evals.scoring import ScoringLM

    if data_root is None or not (data_root / "hellaswag").is_dir() or not (data_root / "gpt2" / "gpt2.tiktoken").is_file():
        return {"skipped": f"no hellaswag/ and gpt2/gpt2.tiktoken under {data_root}"}
    torch.manual_seed(0)
    model = GPT(model_config(model_name))
    lm = ScoringLM(model, gpt2_from_file(data_root / "gpt2" / "gpt2.tiktoken"), device=str(device), batch_size=16)
    ctx = build_context(data_root=data_root, limit=limit, batch_size=16)
    t0 = time.perf_counter()
    res = hellaswag.run(lm, ctx)
    dt = time.perf_counter() - t0
    return {"model": model_name, "items": res["items"], "seconds": dt, "items_per_s": res["items"] / dt,
            "acc_norm_char_random_weights": res.get("acc_norm_char")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="JSON file for the results")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on CPU: checks the script, measures nothing useful")
    ap.add_argument("--data-root", default=os.environ.get("CONNECTOMES_DATA", ""), help="folder with hellaswag/ and gpt2/ (default $CONNECTOMES_DATA)")
    ap.add_argument("--steps", type=int, default=10, help="timed optimizer steps per variant")
    args = ap.parse_args()
    if not args.cpu_smoke and not torch.cuda.is_available():
        sys.exit("no CUDA device: run on a GPU machine, or pass --cpu-smoke to check the script on CPU")
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    if device.type == "cuda":  # as train.setup_device does
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    peak, peak_source = peak_flops(device)
    t0 = time.perf_counter()
    results = {"machine": machine(), "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "cpu_smoke": args.cpu_smoke, "peak_flops": peak, "peak_source": peak_source, "density": DENSITY,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "train": []}
    steps, warmup = (2, 1) if args.cpu_smoke else (args.steps, 3)
    for name, micro in SMOKE if args.cpu_smoke else FULL:
        results["train"].extend(bench_model(name, micro, device, peak, steps, warmup, "eager" if args.cpu_smoke else "inductor"))
    root = Path(args.data_root) if args.data_root else None
    results["hellaswag"] = bench_hellaswag(device, root, "smoke" if args.cpu_smoke else "gpt2-124m", 8 if args.cpu_smoke else 0)
    results["all_pruned_exactly_zero"] = all(r["pruned_exactly_zero"] for r in results["train"] if r["masked"])
    results["wall_s"] = time.perf_counter() - t0
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out} in {results['wall_s']:.0f} s; pruned weights exactly zero: {results['all_pruned_exactly_zero']}")


if __name__ == "__main__":
    main()
