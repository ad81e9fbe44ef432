"""Compiled vs eager masked training steps on the CPU (train.compile): step time, compile time, and whether
the two agree bit for bit. Two models start from the same weights and masks; steps alternate eager and
compiled on the same batches so machine noise hits both; the first compiled step's time is the compile
cost. Also how many steps a study unit needs before compiling pays for itself.
Usage: OMP_NUM_THREADS=1 python benchmarks/compile_cpu.py [--rounds N] [--shapes demo,replicate-cpu]
"""

import argparse
import copy
import statistics
import time

import torch

from _machine import header
from connectomes.connectome.masks import ParamMask, dense_masks
from connectomes.model.gpt import GPT, preset
from connectomes.training.config import TrainConfig
from connectomes.training.loop import DeviceSetup, train_step
from connectomes.training.optim import build_optimizer

BATCH = {"demo": 16, "replicate-cpu": 32}


def setup(name: str):
    cfg = preset(name, vocab_size=256)
    torch.manual_seed(0)
    model = GPT(cfg)
    g = torch.Generator().manual_seed(0)
    masks = ParamMask({k: torch.rand(v.shape, generator=g) < 0.8 ** 6 for k, v in dense_masks(model).items()})
    masks.apply_to_weights(model)
    return cfg, model, masks


def measure(name: str, rounds: int) -> dict:
    cfg, eager, masks = setup(name)
    compiled_model = copy.deepcopy(eager)
    rt = DeviceSetup(device=torch.device("cpu"))
    opts = {m: build_optimizer(mod, TrainConfig(), "cpu") for m, mod in (("eager", eager), ("compiled", compiled_model))}
    fwd = {"eager": eager, "compiled": torch.compile(compiled_model)}
    models = {"eager": eager, "compiled": compiled_model}
    g = torch.Generator().manual_seed(1)
    times, losses = {"eager": [], "compiled": []}, {"eager": [], "compiled": []}
    compile_s = None
    for r in range(rounds + 1):
        x = torch.randint(0, cfg.vocab_size, (BATCH[name], cfg.block_size), generator=g)
        for m in ("eager", "compiled"):
            t0 = time.perf_counter()
            loss, _ = train_step(fwd[m], models[m], opts[m], x, x, micro=BATCH[name], masks=masks, rt=rt)
            dt = time.perf_counter() - t0
            losses[m].append(loss)
            if r == 0 and m == "compiled":
                compile_s = dt
            elif r:
                times[m].append(dt)
    e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
    same_loss = losses["eager"] == losses["compiled"]
    same_weights = all(torch.equal(a, b) for a, b in zip(eager.parameters(), compiled_model.parameters()))
    return {"eager": e, "compiled": c, "speedup": e / c, "compile_s": compile_s,
            "break_even_steps": compile_s / max(e - c, 1e-12) if e > c else float("inf"),
            "bitwise": same_loss and same_weights,
            "max_loss_diff": max(abs(a - b) for a, b in zip(losses["eager"], losses["compiled"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--shapes", default="demo,replicate-cpu")
    args = ap.parse_args()
    header("compiled vs eager masked training step, CPU")
    print(f"{'shape':<15} {'eager s/step':>13} {'compiled':>9} {'speedup':>8} {'compile s':>10} {'break-even steps':>17} "
          f"{'bitwise':>8} {'max |loss diff|':>16}")
    for name in args.shapes.split(","):
        r = measure(name, args.rounds)
        print(f"{name:<15} {r['eager']:>13.4f} {r['compiled']:>9.4f} {r['speedup']:>8.2f} {r['compile_s']:>10.1f} "
              f"{r['break_even_steps']:>17.0f} {str(r['bitwise']):>8} {r['max_loss_diff']:>16.2e}")


if __name__ == "__main__":
    main()
