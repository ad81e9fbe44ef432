"""plan.py: study cost in FLOPs and in GPU wall time (peak x GPUs x MFU), and the CLI's --gpu options."""

import json

import pytest

from connectomes.cli import main
from connectomes.core.errors import ConfigError
from connectomes.pipeline.config import load_config
from connectomes.pipeline.plan import DEFAULT_MFU, GPU_PEAK_BF16, gpu_flops_per_s, gpu_kind, mfu_from_benchmark, plan, plan_on


def test_gpu_peaks_and_names():
    assert GPU_PEAK_BF16 == {"a100": 312e12, "h100": 989.4e12, "h200": 989.4e12}
    assert gpu_kind("NVIDIA H100 80GB HBM3") == "h100" and gpu_kind("NVIDIA A100-SXM4-80GB") == "a100"
    assert gpu_kind("NVIDIA H200") == "h200" and gpu_kind("Tesla V100") is None
    assert gpu_flops_per_s("a100", 4, 0.5) == 312e12 * 4 * 0.5


def test_gpu_plan_arithmetic_is_flops_over_peak_times_gpus_times_mfu():
    cfg = load_config("configs/paper-124m.yaml")
    rows, where = plan_on(cfg, gpu="h100", gpus=8)
    flops = plan(cfg, measure=False)
    assert [r["flops"] for r in rows] == [r["flops"] for r in flops]
    rate = 989.4e12 * 8 * DEFAULT_MFU
    for r in rows:
        assert r["est_s"] == pytest.approx(r["flops"] / rate, rel=1e-12)
    # paper-124m: 6 x 7000 + 12 x 2000 steps of 512 x 1024 tokens at flops_per_token of the 124M shape
    fpt = flops[0]["flops"] // flops[0]["tokens"]
    assert fpt * flops[0]["tokens"] == flops[0]["flops"]
    assert rows[-1]["est_s"] == pytest.approx(fpt * 66_000 * 512 * 1024 / rate, rel=1e-12)
    assert "8 x H100" in where and "MFU 0.40" in where


def test_mfu_from_gpu_benchmark_json(tmp_path):
    p = tmp_path / "gpu.json"
    p.write_text(json.dumps({"train": [
        {"model": "gpt2-124m", "masked": False, "compile": False, "mfu": 0.30},
        {"model": "gpt2-124m", "masked": True, "compile": False, "mfu": 0.25},
        {"model": "gpt2-124m", "masked": True, "compile": True, "mfu": 0.45},
    ]}))
    assert mfu_from_benchmark(p, "gpt2-124m", compiled=True) == 0.45
    assert mfu_from_benchmark(p, "gpt2-124m", compiled=False) == 0.25
    with pytest.raises(ConfigError, match="no masked measurement for model 'gpt2-417m'"):
        mfu_from_benchmark(p, "gpt2-417m", compiled=False)
    with pytest.raises(ConfigError, match="none.json is missing; pass the JSON"):
        mfu_from_benchmark(tmp_path / "none.json", "gpt2-124m", compiled=False)
    cfg = load_config("configs/paper-124m.yaml")  # train.compile is false
    rows, where = plan_on(cfg, gpu="a100", gpus=2, mfu_json=str(p))
    assert rows[-1]["est_s"] == pytest.approx(rows[-1]["flops"] / (312e12 * 2 * 0.25), rel=1e-12)
    assert "MFU 0.25" in where


def test_bad_gpu_options_are_clear_errors(capsys):
    cfg = load_config("configs/demo.yaml")
    with pytest.raises(ConfigError, match="need --gpu"):
        plan_on(cfg, gpus=4)
    with pytest.raises(ConfigError, match="at least 1"):
        plan_on(cfg, gpu="h100", gpus=0)
    with pytest.raises(ConfigError, match="unknown GPU 'v100'"):
        gpu_flops_per_s("v100", 1, 0.4)
    assert main(["study", "configs/demo.yaml", "--plan", "--gpus", "2"]) == 2
    assert "need --gpu" in capsys.readouterr().err


def test_cli_prints_gpu_wall_time(capsys):
    assert main(["study", "configs/paper-124m.yaml", "--plan", "--gpu", "h100", "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    total = [line for line in out.splitlines() if line.startswith("total")][0]
    assert total.split()[-2:] == ["3.3", "h"]  # 37.59 EFLOP / (8 x 989.4 TFLOP/s x 0.40) = 11,874 s
    assert "8 x H100 at 989.4 TFLOP/s bf16 peak x MFU 0.40" in out


def test_paper_lite_fits_two_hours_on_one_h100_at_the_default_mfu():
    cfg = load_config("configs/paper-lite.yaml")
    assert (cfg.model.preset, cfg.data.tokenizer) == ("gpt2-124m", "gpt2")
    rows, _ = plan_on(cfg, gpu="h100", gpus=1)
    total = rows[-1]
    assert total["tokens"] == (3 * 2000 + 3 * 1000) * 256 * 1024  # 2.36B tokens
    assert total["est_s"] == pytest.approx(total["flops"] / (989.4e12 * DEFAULT_MFU), rel=1e-12)
    assert total["est_s"] <= 2 * 3600
    # one generation's tokens fit in the large split without wrapping around it
    assert cfg.data.large_tokens >= cfg.evolve.train.iters * cfg.evolve.train.batch_size * 1024


def test_the_probe_runs_a_micro_batch_and_times_cpu_seconds(monkeypatch):
    """The probe runs min(micro-batch, PROBE_BATCH) sequences (one sequence under-rates a real step) and times
    CPU seconds, so time the process spent waiting for a busy machine does not count."""
    import time as _time

    from connectomes.pipeline import plan as plan_mod

    seen = {}
    real = plan_mod.measure_flops_per_s

    def spy(gcfg, seconds=1.5, batch=1):
        seen["batch"] = batch
        return real(gcfg, seconds=0.05, batch=batch)

    monkeypatch.setattr(plan_mod, "measure_flops_per_s", spy)
    cfg = load_config(None, ["model.preset=demo", "evolve.train.micro_batch_size=4", "evolve.train.batch_size=4"])
    plan_mod.plan(cfg, vocab_size=256)
    assert seen["batch"] == 4
    # waiting is not computing: a pass that sleeps costs no CPU time, so the rate does not fall
    gcfg = plan_mod.plan_gpt_config(cfg, 256)
    base = real(gcfg, seconds=0.2, batch=2)
    slow_forward = plan_mod.GPT.forward

    def sleepy(self, *a, **k):
        _time.sleep(0.02)
        return slow_forward(self, *a, **k)

    monkeypatch.setattr(plan_mod.GPT, "forward", sleepy)
    assert real(gcfg, seconds=0.2, batch=2) > 0.5 * base
