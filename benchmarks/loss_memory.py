"""Peak memory of one training forward+backward at the gpt2-124m shape: the chunked loss (model.py)
against the full-logits loss it replaced (logits [B, T, V], then F.cross_entropy). Each variant runs
in its own subprocess, and the figure is the rise of ru_maxrss over the RSS just before the
forward (weights and inputs already allocated), so the two do not share an allocator's high-water mark.
Usage: python benchmarks/loss_memory.py [--batch 2]
"""

import argparse
import json
import resource
import subprocess
import sys

import torch
import torch.nn.functional as F

from _machine import header
from connectomes.model.gpt import GPT, preset


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_variant(variant: str, batch: int) -> dict:
    torch.manual_seed(0)
    cfg = preset("gpt2-124m")
    model = GPT(cfg)
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size))
    before = rss_mib()
    if variant == "full":
        logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), x.view(-1), ignore_index=-1)
    else:
        _, loss = model(x, x)
    loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"variant": variant, "rss_before_mib": before, "peak_mib": peak, "rise_mib": peak - before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--variant", choices=["full", "chunked"], help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.batch)))
        return
    header("loss memory")
    logits_mib = args.batch * 1024 * 50304 * 4 / 2**20
    print(f"gpt2-124m, batch {args.batch} x 1024, fp32; one copy of fp32 logits = {logits_mib:,.0f} MiB")
    rows = {}
    for v in ("full", "chunked"):
        out = subprocess.run([sys.executable, __file__, "--variant", v, "--batch", str(args.batch)],
                             capture_output=True, text=True, check=True)
        rows[v] = json.loads(out.stdout.strip().splitlines()[-1])
        r = rows[v]
        print(f"{v:<8} RSS before {r['rss_before_mib']:>8,.0f} MiB  peak {r['peak_mib']:>8,.0f} MiB  rise {r['rise_mib']:>8,.0f} MiB")
    print(f"rise chunked / full: {rows['chunked']['rise_mib'] / rows['full']['rise_mib']:.3f}")


if __name__ == "__main__":
    main()
