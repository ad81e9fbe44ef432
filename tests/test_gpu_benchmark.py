"""benchmarks/gpu.py --cpu-smoke: the CUDA benchmark's code runs end to end on CPU at tiny shapes,
so the script a GPU session runs is known to work before device time is spent on it."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_cpu_smoke(tmp_path):
    out = tmp_path / "gpu.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), str(out), "--cpu-smoke"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    variants = [(r["compile"], r["masked"]) for r in res["train"]]
    assert variants == [(False, False), (False, True), (True, False), (True, True)]
    for r in res["train"]:
        assert r["tokens_per_s"] > 0 and 0 < r["mfu"] and r["model"] == "smoke"
    assert res["all_pruned_exactly_zero"] is True
    assert [r["pruned_exactly_zero"] for r in res["train"] if r["masked"]] == [True, True]
    hs = res["hellaswag"]
    assert hs.get("items") == 8 or "skipped" in hs  # data-less CI skips the HellaSwag pass


def test_gpu_benchmark_refuses_to_run_without_cuda(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), str(tmp_path / "x.json")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr


def test_paper_lite_short_run_cpu_smoke(tmp_path, data_root):
    """benchmarks/gpu_paper_lite.py end to end at a tiny CPU shape: the study runs and the masked develop steps
    are checked for pruned weights exactly 0.0 (the script a GPU session runs under torchrun)."""
    out = tmp_path / "lite.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_paper_lite.py"), str(out), "--cpu-smoke",
                           "--steps", "20", "--runs", str(tmp_path / "runs"), "--data-root", str(data_root)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["pruned_exactly_zero"] is True and res["masked_steps_checked"] >= 2  # connectome and random arms
    assert res["runs"]
