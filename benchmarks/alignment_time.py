"""Wall time of each alignment task (reading_times, fmri, langloc) on this CPU for the demo and
gpt2-124m shapes (issue #5). Random weights. The 124M model is timed on subsets and extrapolated
(reading_times: 1 of 10 stories; fmri: 200 of 1,000 sentences), as marked.
Usage: python benchmarks/alignment_time.py
"""

import argparse
import time

import torch

from _machine import header
from connectomes.config import default_data_root
from connectomes.data.tokenizers import load_tokenizer
from connectomes.evals import EvalContext, fmri, langloc, reading_times
from connectomes.evals.scoring import ScoringLM
from connectomes.model import GPT, preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-124m", action="store_true")
    args = ap.parse_args()
    header("alignment task wall time")
    root = default_data_root()
    print(f"{'shape':<12} {'task':<14} {'measured':>10} {'full task':>12}")
    shapes = [("demo", "bytes", 0, 1.0)]
    if not args.skip_124m:
        shapes.append(("gpt2-124m", "gpt2", 1, None))
    for name, tok, subset, _ in shapes:
        torch.manual_seed(0)
        lm = ScoringLM(GPT(preset(name, vocab_size=256 if tok == "bytes" else 50304)), load_tokenizer(tok), batch_size=16)
        for label, task, limit, scale in (("reading_times", reading_times, 1000, 10.0), ("fmri", fmri, 200, 5.0),
                                          ("langloc", langloc, 200, None)):
            lim = limit if subset else 0
            t0 = time.perf_counter()
            task.run(lm, EvalContext(data_root=root, limit=lim, batch_size=16))
            dt = time.perf_counter() - t0
            full = dt * scale if (subset and scale) else dt
            note = " (extrap.)" if subset and scale else (" (fmri on 200)" if subset else "")
            print(f"{name:<12} {label:<14} {dt:>9.1f}s {full:>11.1f}s{note}")


if __name__ == "__main__":
    main()
