"""Items/s of HellaSwag and MMLU (cloze) scoring for the demo and gpt2-124m model shapes, and the
time of a full pass (HellaSwag validation: 10,042 items; MMLU test: 14,042) extrapolated from an
evenly spaced subset of items (so that short and long items are both represented), issue #4.
Random weights: throughput does not depend on what the model learned.

The machine may be shared: the demo shape is timed --repeats times and the fastest run reported;
the gpt2-124m shape once (it takes minutes on a CPU).

Usage: python benchmarks/eval_throughput.py [--items 200] [--items-124m 12] [--repeats 3] [--batch-size 16]
                                            [--shapes demo,gpt2-124m] [--device cpu]
"""

import argparse
import time

import torch

from _machine import header
from connectomes.core.inputs import default_data_root
from connectomes.data.tokenizers import load_tokenizer
from connectomes.evals.context import build_context
from connectomes.evals.registry import hellaswag, mmlu
from connectomes.evals.scoring import ScoringLM
from connectomes.model.gpt import GPT, preset

SHAPES = (("demo", "bytes"), ("gpt2-124m", "gpt2"))


def spread(items: list, n: int) -> list:
    """n items evenly spaced over the whole list."""
    n = min(n, len(items))
    return [items[k * len(items) // n] for k in range(n)]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200, help="items per task for the demo shape")
    ap.add_argument("--items-124m", type=int, default=12, help="items per task for the gpt2-124m shape")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of the demo shape (fastest reported)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shapes", default=",".join(s for s, _ in SHAPES))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if min(args.items, args.items_124m, args.repeats, args.batch_size) < 1:
        ap.error("--items, --items-124m, --repeats and --batch-size must be at least 1")
    shapes = [(s, t) for s, t in SHAPES if s in args.shapes.split(",")]
    header("evaluation throughput (random weights; full passes extrapolated from evenly spaced subsets)")
    root = default_data_root()
    hs, _ = hellaswag.load_items(hellaswag.find_file(build_context(data_root=root)))
    mm = list(mmlu.load_split(root / "mmlu", "test").questions)
    print(f"{'shape':<10} {'params':>7} {'window':>6} {'task':<10} {'items':>5} {'s':>7} {'items/s':>8} {'full pass (extrap.)':>20}  runs")
    for shape, tok_name in shapes:
        torch.manual_seed(0)
        tok = load_tokenizer(tok_name)
        model = GPT(preset(shape, vocab_size=256 if tok_name == "bytes" else 50304))
        lm = ScoringLM(model, tok, device=args.device, batch_size=args.batch_size)
        n, repeats = (args.items, args.repeats) if shape == "demo" else (args.items_124m, 1)
        tasks = (("hellaswag", hs, lambda xs: hellaswag.score_items(lm, xs)),
                 ("mmlu cloze", mm, lambda xs: mmlu.run_cloze(lm, xs)))
        for label, pool, score in tasks:
            subset = spread(pool, n)
            score(subset[:2])  # warm-up: allocator, kernels
            dt = min(timed(lambda: score(subset)) for _ in range(repeats))
            full = len(pool) * dt / len(subset)
            print(f"{shape:<10} {model.num_params() / 1e6:>6.1f}M {lm.max_length:>6} {label:<10} {len(subset):>5} "
                  f"{dt:>7.1f} {len(subset) / dt:>8.2f} {full / 60:>12.1f} min ({len(pool)})  best of {repeats}", flush=True)


if __name__ == "__main__":
    main()
