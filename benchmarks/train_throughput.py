"""Tokens/s of one training step (forward, backward, clip, AdamW) and its FLOP/s as a fraction of
this machine's measured fp32 matmul peak, for the shapes of issue #2:
  - width 256, 4 layers, vocab 8192, context 256, batch 16
  - the gpt2-124m shape at batch 1
Usage: python benchmarks/train_throughput.py [--device cuda] [--steps N]
"""

import argparse
import time

import torch

from _machine import header, matmul_peak_flops
from connectomes.training.config import TrainConfig
from connectomes.model.gpt import GPT, GPTConfig, preset
from connectomes.training.optim import build_optimizer
from connectomes.training.loop import DeviceSetup, train_step


def time_steps(cfg: GPTConfig, batch: int, steps: int, device: str, dtype: str = "float32") -> float:
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    tc = TrainConfig(device=device, dtype=dtype)
    opt = build_optimizer(model, tc, torch.device(device).type)
    rt = DeviceSetup(device=torch.device(device), autocast_dtype=torch.bfloat16 if dtype == "bfloat16" else None)
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), device=device)
    y = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(2):  # warm-up (allocator, kernels)
        train_step(model, model, opt, x, y, micro=batch, rt=rt)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(model, model, opt, x, y, micro=batch, rt=rt)
    sync()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = ap.parse_args()
    header("training-step throughput")
    peak = matmul_peak_flops(device=args.device)
    print(f"measured fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s")
    shapes = [
        ("w256 L4 V8192 T256 B16", GPTConfig(vocab_size=8192, n_layer=4, n_head=4, n_embd=256, block_size=256), 16),
        ("gpt2-124m B1", preset("gpt2-124m"), 1),
    ]
    print(f"{'shape':<26} {'s/step':>8} {'tokens/s':>10} {'GFLOP/s':>9} {'of peak':>8}")
    for name, cfg, batch in shapes:
        dt = time_steps(cfg, batch, args.steps if "124m" not in name else max(2, args.steps // 2), args.device, args.dtype)
        tokens = batch * cfg.block_size
        with torch.device("meta"):
            fpt = GPT(cfg).flops_per_token()
        flops = fpt * tokens / dt
        print(f"{name:<26} {dt:>8.3f} {tokens / dt:>10,.0f} {flops / 1e9:>9.1f} {flops / peak:>8.1%}")


if __name__ == "__main__":
    main()
