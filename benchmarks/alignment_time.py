"""Wall time of each alignment task (reading_times, fmri, langloc) on this CPU, for the demo preset
(bytes tokenizer) and the gpt2-124m shape (GPT-2 tokenizer), random weights (issue #5).

The demo model runs every task in full. The 124M model runs fmri and langloc in full and
reading_times on the first story only (--stories), scaled by the corpus' token count to a full-corpus
estimate (marked "extrapolated"): its cost is the sliding-window forward passes, linear in tokens.
Usage: python benchmarks/alignment_time.py [--skip-124m] [--threads N]
"""

import argparse
import time

import torch
from threadpoolctl import threadpool_limits

from _machine import header
from connectomes.core.inputs import default_data_root
from connectomes.data.tokenizers import load_tokenizer
from connectomes.evals.context import build_context
from connectomes.evals.registry import fmri, langloc, reading_times
from connectomes.evals.alignment_data import load_natural_stories
from connectomes.evals.scoring import ScoringLM
from connectomes.model.gpt import GPT, preset


def corpus_tokens(tok, words, stories) -> int:
    return sum(len(tok.encode(" ".join(w.word for w in words if w.story == s))) for s in stories)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-124m", action="store_true")
    ap.add_argument("--stories", type=int, default=1, help="Natural Stories stories timed for the 124M model")
    ap.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (1: the machine is shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)  # numpy/scipy BLAS too: the ridge fits
    header("alignment task wall time (random weights)")
    root = default_data_root()
    words = load_natural_stories(root / "naturalstories").words
    print(f"{'shape':<10} {'task':<14} {'items':>6} {'measured':>9} {'full task':>10}")
    shapes = [("demo", "bytes")] + ([] if args.skip_124m else [("gpt2-124m", "gpt2")])
    for shape, tok_name in shapes:
        tok = load_tokenizer(tok_name)
        torch.manual_seed(0)
        lm = ScoringLM(GPT(preset(shape, vocab_size=max(tok.vocab_size, preset(shape).vocab_size))), tok,
                       batch_size=16)
        for name, task in (("reading_times", reading_times), ("fmri", fmri), ("langloc", langloc)):
            limit, scale = 0, 1.0
            if name == "reading_times" and shape != "demo":
                stories = list(range(1, args.stories + 1))
                limit = sum(1 for w in words if w.story in stories)
                scale = corpus_tokens(tok, words, range(1, 11)) / corpus_tokens(tok, words, stories)
            t0 = time.perf_counter()
            res = task.run(lm, build_context(data_root=root, limit=limit, batch_size=16))
            dt = time.perf_counter() - t0
            items = res.get("words") or res.get("items") or res["stimuli"]["sentences"] * 2
            note = " extrapolated" if scale != 1.0 else ""
            print(f"{shape:<10} {name:<14} {items:>6} {dt:>8.1f}s {dt * scale:>9.1f}s{note}", flush=True)


if __name__ == "__main__":
    main()
