"""Tokens/s of `prepare` (GPT-2 BPE, the shared corpus) with 1 and N tokenising workers, in one run,
and a check that every worker count wrote the same bytes.
Wall time includes reading and hashing the corpus and writing shards, as `connectomes prepare` does.
Usage: python benchmarks/prepare_throughput.py [--workers 1,2] [--tokens 4000000]
"""

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

from _machine import header
from connectomes.data.config import DataConfig
from connectomes.core.inputs import default_data_root
from connectomes.data.prepare import prepare_data


def folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.name != "meta.json":
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default=f"1,{min(os.cpu_count() or 1, 8)}")
    ap.add_argument("--tokens", type=int, default=4_000_000, help="tokens over the three splits")
    args = ap.parse_args()
    root = default_data_root()
    if root is None or not (root / "corpus").is_dir() or not (root / "gpt2" / "gpt2.tiktoken").is_file():
        raise SystemExit("needs the shared data folder (corpus/ and gpt2/gpt2.tiktoken): set CONNECTOMES_DATA")
    header("prepare throughput")
    n = args.tokens
    print(f"{'workers':>7} {'wall s':>8} {'tokens/s':>12} {'speed-up':>9}  digest")
    base = None
    for w in [int(x) for x in args.workers.split(",")]:
        cfg = DataConfig(source="local", tokenizer="gpt2", gpt2_bpe_file=str(root / "gpt2" / "gpt2.tiktoken"),
                         val_tokens=n // 20, small_tokens=n // 10, large_tokens=n - n // 20 - n // 10, seed=0, workers=w)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            prepare_data(cfg, Path(tmp) / "d", data_root=root, progress=False)
            dt = time.perf_counter() - t0
            digest = folder_digest(Path(tmp) / "d")
        base = base or dt
        print(f"{w:>7} {dt:>8.2f} {n / dt:>12,.0f} {base / dt:>9.2f}  {digest}")


if __name__ == "__main__":
    main()
