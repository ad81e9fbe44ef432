"""A short paper-lite study on the GPUs of this machine: the 124M shape with GPT-2 BPE, DDP over every
visible GPU (torchrun), bf16 autocast and torch.compile, a few hundred steps per stage; then every saved
develop step of the connectome arms is checked for pruned weights exactly 0.0, and the training throughput
of each stage is read back from its metrics.jsonl. Writes a JSON summary.

The data are local (a GPU machine may have no network): a folder of text (e.g. the novels corpus) and the
GPT-2 BPE files (gpt2.tiktoken) under --data-root.

Usage:  python benchmarks/gpu_paper_lite.py OUT.json --data-root DIR [--steps 300]      (CUDA, minutes)
        python benchmarks/gpu_paper_lite.py OUT.json --cpu-smoke                        (tiny, CPU, one process)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def overrides(args, runs: Path) -> list[str]:
    """paper-lite cut to a few hundred steps per stage, on local text."""
    steps = args.steps
    common = [f"runs_dir={runs}", "name=paper-lite-short", "data.source=local", f"data.path={args.corpus}",
              "evolve.generations=2", f"evolve.train.iters={steps}", f"develop.train.iters={steps}",
              f"evolve.train.warmup_iters={steps // 10}", f"evolve.train.warmdown_iters={steps // 2}",
              f"develop.train.warmup_iters={steps // 10}", f"develop.train.warmdown_iters={steps // 2}",
              f"evolve.train.save_every={steps}", f"develop.train.save_every={steps}", "develop.train.keep_steps=0",
              "develop.seeds=0", "eval.tasks=val_loss", "eval.step_tasks=val_loss"]
    if args.cpu_smoke:
        common += ["model.preset=demo", "data.tokenizer=bytes", "data.large_tokens=200000", "data.small_tokens=40000",
                   "data.val_tokens=16384", "evolve.train.batch_size=8", "evolve.train.micro_batch_size=8",
                   "develop.train.batch_size=8", "develop.train.micro_batch_size=8", "evolve.train.eval_tokens=4096",
                   "develop.train.eval_tokens=4096", "evolve.train.compile=false", "develop.train.compile=false",
                   "evolve.train.device=cpu", "develop.train.device=cpu"]
    else:
        common += ["data.large_tokens=200000000", "data.small_tokens=20000000", "data.val_tokens=2000000",
                   "evolve.train.compile=true", "develop.train.compile=true"]
    return common


def pruned_exactly_zero(run_dir: Path) -> tuple[bool, int]:
    """(every masked weight of every saved connectome/random develop step is exactly 0.0, steps checked)."""
    ok, n = True, 0
    for step in sorted(run_dir.glob("develop/*/seed_*/steps/step_*")):
        if not (step / "masks.safetensors").exists():
            continue
        w, m = load_file(str(step / "model.safetensors")), load_file(str(step / "masks.safetensors"))
        ok &= all(bool((w[k][m[k] == 0] == 0).all()) for k in m)
        n += 1
    return ok, n


def throughput(run_dir: Path) -> dict:
    """tokens/s of each training run, from the tokens and wall clock its metrics.jsonl records imply."""
    out = {}
    for metrics in sorted(run_dir.rglob("metrics.jsonl")):
        done = run_dir / metrics.parent.relative_to(run_dir) / "done.json"
        recs = [json.loads(x) for x in metrics.read_text().splitlines()]
        tokens = max((r.get("tokens", 0) for r in recs), default=0)
        state = json.loads(done.read_text()) if done.exists() else {}
        out[str(metrics.parent.relative_to(run_dir))] = {"tokens": tokens, "final_val_loss": state.get("val_loss")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--data-root", default=os.environ.get("CONNECTOMES_DATA"))
    ap.add_argument("--corpus", default="corpus/novels", help="text folder under the data root")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--runs", default="/tmp/paper-lite-short")
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    gpus = torch.cuda.device_count()
    if not args.cpu_smoke and gpus == 0:
        sys.exit("no CUDA device: run on a GPU machine, or pass --cpu-smoke")
    env = dict(os.environ, CONNECTOMES_DATA=args.data_root or "")
    launcher = ["torchrun", "--standalone", f"--nproc_per_node={max(1, gpus)}"] if gpus else [sys.executable]
    cmd = [*launcher, "-m", "connectomes", "study", str(ROOT / "configs" / "paper-lite.yaml"),
           *overrides(args, Path(args.runs))]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env)
    run_dir = Path(args.runs) / "paper-lite-short"
    exact, checked = pruned_exactly_zero(run_dir) if proc.returncode == 0 else (False, 0)
    res = {"command": " ".join(cmd), "returncode": proc.returncode, "wall_s": round(time.time() - t0, 1), "gpus": gpus,
           "device": torch.cuda.get_device_name(0) if gpus else "cpu", "pruned_exactly_zero": exact,
           "masked_steps_checked": checked, "runs": throughput(run_dir) if proc.returncode == 0 else {}}
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "runs"}, indent=2))
    sys.exit(0 if proc.returncode == 0 and exact and checked else 1)


if __name__ == "__main__":
    main()
