"""Masked vs dense training-step time, same shapes, measured in one run as a ratio (issue #3).
Masked = the connectome recipe (gradient mask before clip, weight mask after the step, one fused
_foreach_mul_ each) at density 0.8^6. Steps alternate dense/masked so machine noise hits both.
Usage: python benchmarks/masked_vs_dense.py [--device cuda] [--rounds N]
"""

import argparse
import statistics
import time

import torch

from _machine import header
from connectomes.training.config import TrainConfig
from connectomes.connectome.masks import ParamMask, dense_masks
from connectomes.model.gpt import GPT, GPTConfig, preset
from connectomes.training.optim import build_optimizer
from connectomes.training.loop import DeviceSetup, train_step


def setup(cfg: GPTConfig, device: str, masked: bool):
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    opt = build_optimizer(model, TrainConfig(device=device), torch.device(device).type)
    masks = None
    if masked:
        g = torch.Generator().manual_seed(0)
        m = {k: (torch.rand(v.shape, generator=g) < 0.8 ** 6) for k, v in dense_masks(model).items()}
        masks = ParamMask(m)
        masks.to(device) if hasattr(masks, "to") else None
        masks.apply_to_weights(model)
    return model, opt, masks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    header("masked vs dense step time")
    shapes = [("demo B16", preset("demo"), 16), ("replicate-cpu B32", preset("replicate-cpu"), 32),
              ("gpt2-124m B1", preset("gpt2-124m"), 1)]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    rt = DeviceSetup(device=torch.device(args.device))
    print(f"{'shape':<20} {'dense s/step':>13} {'masked s/step':>14} {'ratio':>7}")
    for name, cfg, batch in shapes:
        runs = {m: setup(cfg, args.device, m) for m in (False, True)}
        x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), device=args.device)
        times = {False: [], True: []}
        rounds = args.rounds if "124m" not in name else max(2, args.rounds // 2)
        for r in range(rounds + 1):
            for m in (False, True):
                model, opt, masks = runs[m]
                sync()
                t0 = time.perf_counter()
                train_step(model, model, opt, x, x, micro=batch, masks=masks, rt=rt)
                sync()
                if r:  # round 0 is warm-up
                    times[m].append(time.perf_counter() - t0)
        d, mk = statistics.median(times[False]), statistics.median(times[True])
        print(f"{name:<20} {d:>13.4f} {mk:>14.4f} {mk / d:>7.3f}")


if __name__ == "__main__":
    main()
