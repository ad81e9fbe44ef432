"""BLiMP pairs/s for the demo, replicate-cpu and gpt2-124m model shapes (issue 19: a full 67,000-pair pass at
the replicate-cpu shape in at most 2 minutes on 2 cores), through the task's own path: the pairs read by
``evals/tasks/blimp``, a seeded sample stratified by paradigm, ``minimal_pairs.run_pairs`` (each distinct
sentence once, windows past the context, batches sorted by length). Random weights: throughput does not depend
on what the model learned.

Each shape is timed at every thread count of --threads; the fastest of --repeats runs is reported, with its
wall time, the process's CPU time (on a machine shared with other jobs the CPU time says what the work itself
costs) and the 67,000-pair pass extrapolated from the sample. ``--full`` also scores all 67,000 pairs once at
the replicate-cpu shape and times that. The load average before each run is printed: other jobs on the
machine slow every figure. Idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE), as under the CLI.

Usage: python benchmarks/blimp_throughput.py [--pairs 6700] [--pairs-124m 67] [--threads 1,2] [--repeats 2]
                                             [--shapes demo,replicate-cpu,gpt2-124m] [--batch-size 16] [--full]
"""

import argparse
import os
import time

from connectomes.core.runtime import passive_wait

passive_wait()  # as the CLI does: idle OpenMP threads sleep (OpenMP reads this once, when torch loads)

import torch  # noqa: E402

from _machine import header  # noqa: E402
from connectomes.core.inputs import default_data_root  # noqa: E402
from connectomes.data.tokenizers import load_tokenizer  # noqa: E402
from connectomes.evals.minimal_pairs import run_pairs  # noqa: E402
from connectomes.evals.sampling import sample  # noqa: E402
from connectomes.evals.scoring import ScoringLM  # noqa: E402
from connectomes.evals.tasks.blimp import load_pairs  # noqa: E402
from connectomes.model.gpt import GPT, preset  # noqa: E402

SHAPES = (("demo", "bytes"), ("replicate-cpu", "bytes"), ("gpt2-124m", "gpt2"))


def timed(fn) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def row(shape: str, threads: int, n: int, wall: float, cpu: float, note: str) -> str:
    full = 67000 * wall / n
    return (f"{shape:<14} {threads:>7} {n:>6} {wall:>8.2f} {cpu:>8.2f} {n / wall:>8.1f} {n / cpu:>10.1f} "
            f"{full / 60:>9.2f} min  load {os.getloadavg()[0]:.2f}  {note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=6700, help="pairs for the demo and replicate-cpu shapes (stratified)")
    ap.add_argument("--pairs-124m", type=int, default=67, help="pairs for the gpt2-124m shape")
    ap.add_argument("--threads", default="1,2", help="intra-op thread counts to time, comma-separated")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per shape and thread count (fastest reported)")
    ap.add_argument("--shapes", default=",".join(s for s, _ in SHAPES))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--full", action="store_true", help="also score all 67,000 pairs at the replicate-cpu shape")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if min(args.pairs, args.pairs_124m, args.repeats, args.batch_size, *threads) < 1:
        ap.error("--pairs, --pairs-124m, --repeats, --batch-size and --threads must be at least 1")
    header("BLiMP throughput (random weights; the task's own scoring path)")
    pairs, _, _ = load_pairs(default_data_root() / "blimp")
    print(f"{'shape':<14} {'threads':>7} {'pairs':>6} {'wall s':>8} {'CPU s':>8} {'pairs/s':>8} {'pairs/CPU-s':>10} "
          f"{'67k pass (extrap.)':>13}")
    for shape, tok_name in [(s, t) for s, t in SHAPES if s in args.shapes.split(",")]:
        torch.manual_seed(0)
        tok = load_tokenizer(tok_name)
        lm = ScoringLM(GPT(preset(shape)), tok, batch_size=args.batch_size)
        n = args.pairs_124m if shape == "gpt2-124m" else args.pairs
        ids, _ = sample([p.group for p in pairs], n, 0)
        subset = [pairs[i] for i in ids]
        repeats = 1 if shape == "gpt2-124m" else args.repeats
        for t in threads:
            torch.set_num_threads(t)
            run_pairs(lm, subset[:20])  # warm-up: allocator, kernels
            wall, cpu = min((timed(lambda: run_pairs(lm, subset)) for _ in range(repeats)), key=lambda x: x[0])
            print(row(shape, t, len(subset), wall, cpu, f"best of {repeats}"), flush=True)
            if args.full and shape == "replicate-cpu":
                wall, cpu = timed(lambda: run_pairs(lm, pairs))
                print(row(shape, t, len(pairs), wall, cpu, "FULL PASS, measured"), flush=True)


if __name__ == "__main__":
    main()
