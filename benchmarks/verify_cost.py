"""Cost of checking a step folder against its manifest (connectomes.checkpoint.verify_step) for a
gpt2-124m-sized checkpoint: fp32 weights + masks + AdamW state, as CheckpointManager saves it.

    PYTHONPATH=src python benchmarks/verify_cost.py [--preset gpt2-124m] [--repeat 2]

Prints the folder size, the seconds per verification and MB/s (files in the page cache: the
hashing cost; a cold read is bounded by the disk instead)."""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from connectomes.training.checkpoint import save_step, verify_step
from connectomes.connectome.masks import ParamMask
from connectomes.model.gpt import GPT, PRESETS, GPTConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="gpt2-124m")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    model = GPT(GPTConfig(**PRESETS[a.preset]))
    opt = torch.optim.AdamW(model.parameters())
    trainer = {"optimizer": opt.state_dict(), "rng": {"cpu": torch.get_rng_state()}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_step(Path(tmp) / "step_000001", model, {"step": 1}, trainer=trainer)
        mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            verify_step(folder)
            s = time.perf_counter() - t0
            print(f"{a.preset}: {mb:.0f} MB verified in {s:.2f} s = {mb / s:.0f} MB/s")


if __name__ == "__main__":
    main()
