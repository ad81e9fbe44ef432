"""Where each measure leaves its floor: BLiMP, the BLiMP supplement, reading times (r and ΔR² over the
length + frequency baseline), Zorro, lexical decision and the word-learning set's mean surprisal scored on a study's untrained model (the NoConnectome arm at step 0) and on
its generation-0 model (dense, trained on the large split: the best model the study trains), beside chance.

Each model is scored through the CLI (`connectomes eval STEP --tasks ... --limit ...`), in a fresh process,
with the run's own prepared data for the word frequencies. A finished run is only read.
Usage: python benchmarks/floors.py RUN [RUN ...] [--limit 0] [--tasks a,b] [--out-dir DIR]
(--limit takes one number or task=N pairs, as `connectomes eval --limit` does)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _machine import header
from connectomes.analysis.results import dig
from connectomes.evals.registry import tasks

TASKS = ("blimp", "blimp_supplement", "reading_times", "zorro", "lexical_decision", "word_learning")


def last_step(folder: Path) -> Path:
    steps = sorted((folder / "steps").glob("step_*"))
    if not steps:
        raise SystemExit(f"no step folders in {folder / 'steps'}: is the run finished?")
    return steps[-1]


def models(run: Path) -> list[tuple[str, Path]]:
    """(label, step folder): the untrained dense model and generation 0's final step (first lineage)."""
    evolve = run / "evolve" if (run / "evolve").is_dir() else sorted((run / "lineages").glob("*"))[0] / "evolve"
    out = []
    untrained = run / "develop" / "dense" / "seed_0" / "steps" / "step_000000"
    if untrained.is_dir():
        out.append(("untrained (NoConnectome step 0, seed 0)", untrained))
    gen0 = last_step(evolve / "gen_00")
    out.append((f"generation 0 ({gen0.name}, dense, large split)", gen0))
    return out


def score(step: Path, run: Path, limit: str, out: Path, names: list[str]) -> dict:
    cmd = [sys.executable, "-m", "connectomes", "eval", str(step), "--tasks", ",".join(names), "--limit", limit,
           "--prepared", str(run / "data"), "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--limit", default="0", help="items per sampled task (0 = all: 67,000 BLiMP and 5,218 supplement pairs)")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks (default: all of these)")
    ap.add_argument("--out-dir", type=Path, help="keep each evaluation's JSON here")
    args = ap.parse_args()
    names = [t for t in args.tasks.split(",") if t]
    header(f"floors: {', '.join(names)} on untrained and generation-0 models (limit {args.limit})")
    specs = tasks()
    metrics = [(name, m) for name in names for m in specs[name].metrics]
    print("| run | model | " + " | ".join(m.label for _, m in metrics) + " |")
    print("|---|---|" + "---|" * len(metrics))
    print("| | chance | " + " | ".join("" if m.chance is None else f"{m.chance:g}" for _, m in metrics) + " |")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out_dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for run in args.runs:
            for i, (label, step) in enumerate(models(run)):
                result = score(step, run, args.limit, folder / f"{run.name}_{i}.json", names)["tasks"]
                cells = []
                for name, m in metrics:
                    v = dig(result.get(name, {}), m.path)
                    cells.append("—" if v is None else f"{v:.4f}")
                print(f"| {run.name} | {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
