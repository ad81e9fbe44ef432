"""Items/s of HellaSwag and MMLU (cloze) scoring on this CPU for the demo and gpt2-124m shapes, and the
time of a full HellaSwag validation pass (10,042 items) extrapolated from a timed subset (issue #4).
Random weights: throughput does not depend on what the model learned.
Usage: python benchmarks/eval_throughput.py [--items 200] [--items-124m 16]
"""

import argparse
import time

import torch

from _machine import header
from connectomes.config import default_data_root
from connectomes.data.tokenizers import load_tokenizer
from connectomes.evals import EvalContext, hellaswag, mmlu
from connectomes.evals.scoring import ScoringLM
from connectomes.model import GPT, preset


def timed(task, lm, ctx) -> float:
    t0 = time.perf_counter()
    task.run(lm, ctx)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--items-124m", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    header("evaluation throughput")
    root = default_data_root()
    print(f"{'shape':<12} {'tokenizer':<9} {'task':<10} {'items':>6} {'items/s':>8} {'full HellaSwag pass':>20}")
    for name, tok, n in (("demo", "bytes", args.items), ("gpt2-124m", "gpt2", args.items_124m)):
        torch.manual_seed(0)
        tk = load_tokenizer(tok)
        lm = ScoringLM(GPT(preset(name, vocab_size=256 if tok == "bytes" else 50304)), tk, batch_size=args.batch_size)
        for label, task, opts in (("hellaswag", hellaswag, {}), ("mmlu cloze", mmlu, {"mmlu.forms": ["cloze"]})):
            ctx = EvalContext(data_root=root, limit=n, batch_size=args.batch_size, options=opts)
            timed(task, lm, EvalContext(data_root=root, limit=2, batch_size=args.batch_size, options=opts))  # warm caches
            dt = timed(task, lm, ctx)
            full = f"{10042 * dt / n / 60:.1f} min (extrap.)" if task is hellaswag else ""
            print(f"{name:<12} {tok:<9} {label:<10} {n:>6} {n / dt:>8.1f} {full:>20}")


if __name__ == "__main__":
    main()
