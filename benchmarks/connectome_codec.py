"""Connectome file encode/decode time and bits/weight for a gpt2-124m-shaped connectome (issue #3).

The connectome is built the way evolve builds one: six rounds of exact per-tensor magnitude pruning
(20% of the alive weights each) of random N(0,1) weights, so every tensor ends at density 0.8^6.
Reported against the i.i.d. Shannon bound H(d) + d bits/weight and the paper's ~16 MB estimate.
Usage: python benchmarks/connectome_codec.py [--preset gpt2-124m]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _machine import header
from connectomes.connectome import Connectome, dense_masks, magnitude_prune
from connectomes.connectome_file import load_connectome, save_connectome
from connectomes.model import GPT, preset


def build(name: str) -> Connectome:
    with torch.device("meta"):
        shapes = {n: p.shape for n, p in GPT(preset(name)).named_parameters()}

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            for n, s in shapes.items():
                self.register_parameter(n.replace(".", "__"), torch.nn.Parameter(torch.randn(s, generator=g), requires_grad=False))

    m = Holder()
    masks = dense_masks(m)
    for _ in range(6):
        masks = magnitude_prune(m, masks, 0.2)
    conn = Connectome.from_model(m, masks, {"generation": 6})
    return Connectome({k.replace("__", "."): v for k, v in conn.ternary.items()}, conn.meta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="gpt2-124m")
    args = ap.parse_args()
    header("connectome file codecs")
    t0 = time.perf_counter()
    conn = build(args.preset)
    st = conn.stats()["total"]
    N = st["numel"]
    print(f"{args.preset}: {N:,} weights, density {st['density']:.4f}, built in {time.perf_counter() - t0:.0f} s")
    print(f"i.i.d. bound: {st['entropy_bits']:.4f} bits/weight (even signs), {st['entropy_bits_measured_signs']:.4f} "
          f"(measured sign balance) = {st['entropy_bits'] * N / 8e6:.2f} MB; paper's estimate ~16 MB")
    print(f"{'codec':<10} {'MB':>8} {'bits/w':>8} {'vs bound':>9} {'encode s':>9} {'decode s':>9}")
    with tempfile.TemporaryDirectory() as d:
        for codec, name in (("packed", "c.safetensors"), ("ans", "c.cnx")):
            path = Path(d) / name
            t0 = time.perf_counter()
            save_connectome(conn, path, codec=codec)
            enc = time.perf_counter() - t0
            t0 = time.perf_counter()
            back = load_connectome(path)
            dec = time.perf_counter() - t0
            assert back.equal(conn)
            bits = path.stat().st_size * 8 / N
            print(f"{codec:<10} {path.stat().st_size / 1e6:>8.2f} {bits:>8.4f} {bits / st['entropy_bits']:>9.4f} {enc:>9.2f} {dec:>9.2f}")


if __name__ == "__main__":
    main()
