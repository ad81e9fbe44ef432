"""Connectome file encode/decode time and bits/weight for a gpt2-124m-shaped connectome (issue #3).

The connectome is built the way evolve builds one: six rounds of exact per-tensor magnitude pruning
(20% of the alive weights each) of random N(0,1) weights, so every tensor ends at density ~0.8^6.
All files are reported against the per-tensor i.i.d. Shannon bound (H(d) + d bits/weight with even
signs, and with the measured sign balance) and the paper's ~16 MB estimate (1.06 bits x 124M). The
structured codec (issue 10) codes a tensor per row or per column where that is smaller; the tensors
where it gains most are listed. ``--connectome PATH`` measures a trained connectome file instead.
Usage: python benchmarks/connectome_codec.py [--preset gpt2-124m | --connectome runs/demo/connectome.safetensors]
"""

import argparse
import json
import resource
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _machine import header
from connectomes.connectome.ternary import Connectome
from connectomes.connectome.masks import dense_masks, magnitude_prune
from connectomes.connectome.codec import PAPER_ESTIMATE_MB, load_connectome, save_connectome
from connectomes.model.gpt import GPT, preset


class RandomWeights(torch.nn.Module):
    """The preset's 2-D weight shapes filled with N(0, 1), without building the model."""

    def __init__(self, shapes: dict[str, torch.Size], seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.keys = list(shapes)
        for i, s in enumerate(shapes.values()):
            self.register_parameter(f"w{i}", torch.nn.Parameter(torch.randn(s, generator=g), requires_grad=False))


def build(name: str) -> tuple[Connectome, float]:
    with torch.device("meta"):
        shapes = {n: p.shape for n, p in GPT(preset(name)).named_parameters() if p.dim() == 2}
    m = RandomWeights(shapes)
    masks = dense_masks(m)
    t0 = time.perf_counter()
    for _ in range(6):
        masks = magnitude_prune(m, masks, 0.2)
    prune_s = (time.perf_counter() - t0) / 6
    conn = Connectome.from_model(m, masks, {"generation": 6, "source_run": "benchmark"})
    return Connectome(dict(zip(m.keys, conn.ternary.values())), conn.meta), prune_s


def contexts(conn: Connectome, path: Path) -> None:
    """How many tensors each context codes, and the tensors where the structured code gains most."""
    raw = path.read_bytes()
    tensors = json.loads(raw[16:16 + struct.unpack("<Q", raw[8:16])[0]])["tensors"]
    rows = []
    for name, info in tensors.items():
        p = np.array(info["counts"]) / info["numel"]
        bound = -info["numel"] * float((p[p > 0] * np.log2(p[p > 0])).sum())
        rows.append((32 * info["words"] / bound if bound else 1.0, name, info))
    used = {c: sum(r[2]["context"] == c for r in rows) for c in ("iid", "rows", "cols")}
    print("structured contexts: " + ", ".join(f"{c} {n}" for c, n in used.items()))
    for ratio, name, info in sorted(rows, key=lambda r: r[0])[:4]:
        print(f"  {name} {'x'.join(map(str, info['shape']))} {info['context']}: {ratio:.4f}x its i.i.d. bound")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="gpt2-124m")
    ap.add_argument("--connectome", help="measure this connectome file instead of a pruned random one")
    args = ap.parse_args()
    header("connectome file codecs")
    if args.connectome:
        conn, what = load_connectome(args.connectome), args.connectome
    else:
        conn, prune_s = build(args.preset)
        what = f"{args.preset} (one per-tensor prune of all tensors: {prune_s:.1f} s)"
    st = conn.stats()["total"]
    N = st["numel"]
    print(f"{what}: {N:,} weights in {len(conn.ternary)} tensors, density {st['density']:.4f}, "
          f"sign balance {st['sign_balance']:.4f}")
    print(f"i.i.d. bound: {st['entropy_bits']:.4f} bits/weight with even signs = {st['entropy_bits'] * N / 8e6:.2f} MB; "
          f"{st['entropy_bits_measured_signs']:.4f} with the measured sign balance = "
          f"{st['entropy_bits_measured_signs'] * N / 8e6:.2f} MB")
    print(f"paper: ~{PAPER_ESTIMATE_MB:.0f} MB (1.06 bits/weight x 124M weights; this model has {N / 1e6:.1f}M)")
    print(f"{'codec':<10} {'MB':>8} {'bits/w':>8} {'/bound':>8} {'encode s':>9} {'decode s':>9}")
    with tempfile.TemporaryDirectory() as d:
        for codec, name in (("packed", "c.safetensors"), ("ans", "c.cnx"), ("structured", "s.cnx")):
            path = Path(d) / name
            t0 = time.perf_counter()
            save_connectome(conn, path, codec=codec)
            enc = time.perf_counter() - t0
            t0 = time.perf_counter()
            back = load_connectome(path)
            dec = time.perf_counter() - t0
            assert back.equal(conn), "round trip changed the connectome"
            size = path.stat().st_size
            bits = size * 8 / N
            print(f"{codec:<10} {size / 1e6:>8.4f} {bits:>8.4f} {bits / st['entropy_bits']:>8.4f} {enc:>9.2f} {dec:>9.2f}")
        contexts(conn, Path(d) / "s.cnx")
    print(f"(file sizes include headers; encode/decode include the sha256 checks; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB)")


if __name__ == "__main__":
    main()
