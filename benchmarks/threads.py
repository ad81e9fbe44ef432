"""The thread policy on a busy machine: the demo's masked training step, idle and beside a CPU-bound
competitor, under torch's defaults (every core, OpenMP threads spinning while idle) and under the CLI's
policy (core.runtime: passive waiting, threads chosen for the model). Each setting runs in a fresh
process, since OpenMP reads its wait policy once at start-up; the competitor is a pure-Python busy loop.
Also which thread count is fastest for each CPU preset when idle (the policy's WEIGHTS_PER_THREAD).
With --study, also the demo study from nothing (configs/demo.yaml, through the CLI, in a temporary runs
folder), idle and beside the same competitor. With --cbwr, only the cost of MKL's strict reproducibility mode
(MKL_CBWR=AUTO,STRICT, which the package sets so that the thread count changes no number) against MKL's default
kernels (MKL_CBWR=AUTO), replicate-cpu's step at 1 and 2 threads, alternating the two settings.
Usage: python benchmarks/threads.py [--steps N] [--study | --cbwr]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import header

STEP = r"""
import json, os, statistics, sys, time
import torch
from connectomes.connectome.masks import ParamMask, dense_masks
from connectomes.core.runtime import apply_threads, choose_threads
from connectomes.model.gpt import GPT, preset
from connectomes.training.config import TrainConfig
from connectomes.training.loop import DeviceSetup, train_step
from connectomes.training.optim import build_optimizer
name, batch, steps, policy, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "policy", int(sys.argv[5])
cfg = preset(name, vocab_size=256)
if threads:
    torch.set_num_threads(threads)
elif policy:
    apply_threads(choose_threads("auto", weights=cfg.num_weights))
torch.manual_seed(0)
model = GPT(cfg)
g = torch.Generator().manual_seed(0)
masks = ParamMask({k: torch.rand(v.shape, generator=g) < 0.8 ** 6 for k, v in dense_masks(model).items()})
opt = build_optimizer(model, TrainConfig(), "cpu")
rt = DeviceSetup(device=torch.device("cpu"))
x = torch.randint(0, 256, (batch, cfg.block_size))
times = []
for i in range(steps + 3):
    t0 = time.perf_counter()
    train_step(model, model, opt, x, x, micro=batch, masks=masks, rt=rt)
    if i >= 3:
        times.append(time.perf_counter() - t0)
print(json.dumps({"median": statistics.median(times), "threads": torch.get_num_threads()}))
"""

BUSY = "while True: pass"


def step_time(name: str, batch: int, steps: int, policy: bool, threads: int = 0, cbwr: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_CBWR")}
    if policy:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    if cbwr is not None:
        env["MKL_CBWR"] = cbwr
    out = subprocess.run([sys.executable, "-c", STEP, name, str(batch), str(steps), "policy" if policy else "default",
                          str(threads)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def study_time() -> float:
    """Seconds for `connectomes study configs/demo.yaml` from nothing, with the CLI's own thread policy."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS")}
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as runs:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "connectomes", "study", str(root / "configs" / "demo.yaml"), f"runs_dir={runs}"],
                       env=env, capture_output=True, text=True, check=True)
        return time.perf_counter() - t0


def with_competitor(fn):
    competitor = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        time.sleep(1.0)
        return fn()
    finally:
        competitor.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--study", action="store_true", help="also time the demo study from nothing, idle and busy")
    ap.add_argument("--cbwr", action="store_true", help="only the strict reproducibility mode's cost")
    args = ap.parse_args()
    if args.cbwr:
        return cbwr_cost(args.steps)
    header("thread policy: demo masked training step, idle and beside a CPU-bound competitor")
    print(f"{'setting':<34} {'threads':>7} {'idle s/step':>12} {'busy s/step':>12} {'busy / idle':>12}")
    for label, policy in (("torch defaults (active wait)", False), ("policy (passive wait, chosen)", True)):
        idle = step_time("demo", 16, args.steps, policy)
        busy = with_competitor(lambda: step_time("demo", 16, args.steps, policy))
        print(f"{label:<34} {idle['threads']:>7} {idle['median']:>12.4f} {busy['median']:>12.4f} "
              f"{busy['median'] / idle['median']:>12.2f}")
    print("\n# idle step time by thread count (passive wait)")
    print(f"{'shape':<15} {'1 thread':>10} {'2 threads':>10} {'policy picks':>13}")
    for name, batch in (("demo", 16), ("replicate-cpu", 32)):
        one, two = (step_time(name, batch, args.steps, True, threads=n)["median"] for n in (1, 2))
        pick = step_time(name, batch, 3, True)["threads"]
        print(f"{name:<15} {one:>10.4f} {two:>10.4f} {pick:>13}")
    if args.study:
        idle = study_time()
        busy = with_competitor(study_time)
        print(f"\n# demo study from nothing (connectomes study configs/demo.yaml)\n"
              f"idle {idle:.0f} s, beside a competitor {busy:.0f} s, busy / idle {busy / idle:.2f}")


def cbwr_cost(steps: int, rounds: int = 3) -> None:
    """replicate-cpu's masked step under MKL's strict mode and its default kernels, alternated ``rounds`` times."""
    header("MKL strict reproducibility (MKL_CBWR=AUTO,STRICT) against the default kernels: replicate-cpu step")
    print(f"{'threads':>7} {'default s/step':>15} {'strict s/step':>14} {'strict / default':>17}")
    for threads in (1, 2):
        got: dict[str, list[float]] = {"AUTO": [], "AUTO,STRICT": []}
        for _ in range(rounds):
            for mode in got:
                got[mode].append(step_time("replicate-cpu", 32, steps, True, threads=threads, cbwr=mode)["median"])
        d, s = min(got["AUTO"]), min(got["AUTO,STRICT"])
        print(f"{threads:>7} {d:>15.4f} {s:>14.4f} {s / d:>17.3f}")


if __name__ == "__main__":
    main()
