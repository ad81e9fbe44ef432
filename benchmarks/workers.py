"""A study's wall time with its units spread over worker processes against one process with the same
cores as threads (`connectomes study --workers W CONFIG runtime.threads=T`), and whether the runs' outputs
are the same bytes.

Each mode WxT runs the study from nothing, one after another, in the same run folder (paths are recorded
in the outputs), which is then renamed to the mode's name. The outputs compared are every file the study
computes (connectomes.pipeline.outputs: weights, masks, connectomes, records, metrics, evaluations, JSON
without its timing fields). With --compare, no study runs: the run folders given are compared, made at
different paths: each folder's path and its runs folder's read as the same placeholders, and the digests
taken over text that holds them (the resolved config's, a connectome header's, a step folder's digest of
its state.json) left out, since they differ with the path alone; every tensor, metric and record is still
compared in full.

Usage: python benchmarks/workers.py CONFIG [--modes 2x1,1x2] [--runs-dir DIR] [KEY=VALUE ...]
       python benchmarks/workers.py --compare RUN_A RUN_B [...]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import header
from connectomes.pipeline.outputs import differences

def run_mode(config: str, workers: int, threads: int, runs_dir: Path, overrides: list[str]) -> tuple[Path, float]:
    cmd = [sys.executable, "-m", "connectomes", "study", "--workers", str(workers), config,
           f"runtime.threads={threads}", f"runs_dir={runs_dir}", *overrides]
    print(f"# running: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"the study failed ({done.returncode}):\n{done.stderr[-2000:]}")
    (folder,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return folder, wall


def mode(text: str) -> tuple[int, int]:
    try:
        w, t = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"mode {text!r} is not WORKERSxTHREADS, e.g. 2x1") from None
    return w, t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", nargs="?", help="study config (YAML)")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides for every mode")
    ap.add_argument("--modes", type=lambda s: [mode(m) for m in s.split(",")], default=[(2, 1), (1, 2)],
                    help="comma-separated WORKERSxTHREADS, run in this order (default 2x1,1x2)")
    ap.add_argument("--runs-dir", type=Path, help="where the runs go (default: a temporary folder, removed after)")
    ap.add_argument("--compare", nargs="+", type=Path, metavar="RUN", help="compare these finished run folders; run nothing")
    args = ap.parse_args()
    header("study wall time: worker processes against threads")
    if args.compare:
        n, diff = differences(args.compare, moved=True)
        print(f"{n} files compared across {len(args.compare)} runs, their paths and the digests of path-holding text "
              "left out: " + ("identical" if not diff else f"{len(diff)} differ: {diff[:20]}"))
        sys.exit(1 if diff else 0)
    if not args.config:
        ap.error("give a CONFIG to run, or --compare RUN_A RUN_B")
    with tempfile.TemporaryDirectory(prefix="workers-bench-") as tmp:
        base = args.runs_dir or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        rows, folders = [], []
        for w, t in args.modes:
            scratch = base / "run"
            if scratch.exists():
                sys.exit(f"{scratch} exists: give an empty --runs-dir")
            folder, wall = run_mode(args.config, w, t, scratch, args.overrides)
            final = base / f"{w}x{t}"
            scratch.rename(final)
            folders.append(final / folder.name)
            rows.append((w, t, wall))
        n, diff = differences(folders)
        print("\n| workers x threads | wall s | wall min | wall / first mode's |\n|---|---|---|---|")
        for w, t, wall in rows:
            print(f"| {w} x {t} | {wall:.0f} | {wall / 60:.1f} | {wall / rows[0][2]:.2f} |")
        print(f"\n{n} output files compared: " + ("byte-identical" if not diff else f"{len(diff)} differ: {diff[:20]}"))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
