"""The runtime policy: thread counts chosen for the machine and the model without changing a number, the
OpenMP wait policy set before torch loads, the runtime section outside a run's identity, and compiled CPU
steps that are bit-identical run to run and across a resume (though not to eager ones)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from connectomes.core.config import result_neutral
from connectomes.core.errors import ConfigError
from connectomes.core.runtime import WEIGHTS_PER_THREAD, choose_threads
from connectomes.pipeline.config import load_config
from connectomes.pipeline.run import open_run, recorded_config

from test_study import tiny
from test_train import _run, _weights, _cfg

ROOT = Path(__file__).resolve().parents[1]


def test_threads_follow_the_setting_the_cores_the_workers_and_the_model():
    assert choose_threads(3, weights=10) == 3  # a number is taken as given
    assert choose_threads("auto", cores=16) == 16
    assert choose_threads("auto", cores=16, workers=4) == 4
    assert choose_threads("auto", cores=3, workers=4) == 1
    assert choose_threads("auto", cores=16, weights=WEIGHTS_PER_THREAD) == 1  # a small model: one thread
    assert choose_threads("auto", cores=16, weights=3 * WEIGHTS_PER_THREAD + 1) == 4
    assert choose_threads("auto", cores=2, weights=10**9) == 2


@pytest.mark.parametrize("value", ["0", "many", "-2", "1.5"])
def test_a_bad_thread_setting_is_refused_by_name(value):
    with pytest.raises(ConfigError, match=r"runtime.threads = .*use auto or a whole number of threads >= 1"):
        load_config(None, [f"runtime.threads={value}"])


TRAIN_IN = r"""
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from connectomes.model.gpt import GPT, GPTConfig
from connectomes.training.config import TrainConfig
from connectomes.training.optim import build_optimizer
from connectomes.training.loop import DeviceSetup, train_step
torch.manual_seed(0)
cfg = GPTConfig(vocab_size=256, n_layer=4, n_head=4, n_embd=128, block_size=128)  # replicate-cpu's shape
m = GPT(cfg)
opt = build_optimizer(m, TrainConfig(), "cpu")
g = torch.Generator().manual_seed(0)
for _ in range(2):  # its batch: 32 x 128 tokens, large enough that MKL splits the products' reductions by thread
    x = torch.randint(0, 256, (32, 128), generator=g)
    train_step(m, m, opt, x, x, micro=32, rt=DeviceSetup(device=torch.device("cpu")))
print(hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in m.parameters())).hexdigest())
"""


def _train_digest(threads: int, **env_extra) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_CBWR")}
    env.update(PYTHONPATH=str(ROOT / "src"), **env_extra)
    return subprocess.run([sys.executable, "-c", TRAIN_IN, str(threads)], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_thread_count_does_not_change_the_weights():
    """What makes choosing threads safe: training replicate-cpu's shape with 1 and 2 intra-op threads gives the same
    bits (the package sets MKL's strict reproducibility mode; with MKL's default kernels it does not, below)."""
    digests = {n: _train_digest(n) for n in (1, 2)}
    assert digests[1] == digests[2] and len(digests[1]) == 64


def test_without_the_strict_mode_the_thread_count_changes_the_weights():
    """The mode is what the guarantee rests on: a user's MKL_CBWR wins, and MKL's default kernels differ by thread
    count at this shape (were this ever to pass without the mode, the mode would be dead weight)."""
    import torch

    if "mkl" not in torch.__config__.show().lower() or torch.get_num_threads() < 1 or (os.cpu_count() or 1) < 2:
        pytest.skip("needs torch built with MKL and two cores")
    assert _train_digest(1, MKL_CBWR="AUTO") != _train_digest(2, MKL_CBWR="AUTO")


def test_the_cli_sets_passive_waiting_and_one_blas_thread_before_torch_and_numpy_load():
    probe = ("import os, sys\nimport connectomes.__main__ as entry\nassert 'torch' not in sys.modules\n"
             "assert 'numpy' not in sys.modules\n"
             "try:\n    entry.main(['status', '/nonexistent/run'])\nexcept SystemExit:\n    pass\n"
             "import numpy, threadpoolctl\n"
             "blas = {p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas'}\n"
             "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules, sorted(blas))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                             "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT / "src")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["PASSIVE", "True", "[1]"]
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's choices win
    env["OPENBLAS_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["ACTIVE", "True", "[2]"]


def test_runtime_settings_are_outside_the_runs_identity(tmp_path):
    cfg = tiny(tmp_path, "rt")
    run = open_run(cfg, progress=False)
    assert "runtime" not in run.info["config"] and run.info["config"] == recorded_config(cfg)
    assert result_neutral("runtime.threads") and result_neutral("runtime.workers") and not result_neutral("train.lr")
    again = open_run(tiny(tmp_path, "rt", "runtime.threads=2", "runtime.workers=3"), progress=False)  # no refusal
    assert again.info["config_hash"] == run.info["config_hash"]


def test_compiled_cpu_steps_are_bit_identical_run_to_run_and_across_a_resume(prepared, tmp_path):
    cfg = _cfg(compile=True)
    assert _run(prepared, tmp_path / "a", cfg).finished
    assert _run(prepared, tmp_path / "b", cfg).finished
    part = _run(prepared, tmp_path / "c", cfg, stop_at=10)
    assert not part.finished
    assert _run(prepared, tmp_path / "c", cfg).finished
    w = {k: _weights(tmp_path / k / "steps/step_000020") for k in "abc"}
    assert all(torch.equal(w["a"][n], w[k][n]) for k in "bc" for n in w["a"])
    logs = {k: (tmp_path / k / "metrics.jsonl").read_text() for k in "abc"}
    assert logs["a"] == logs["b"] == logs["c"]
    # compiled and eager kernels differ in the last bits, which is why train.compile is part of the run's identity
    from connectomes.training.loop import run_hash

    assert run_hash(_cfg(compile=True)) != run_hash(_cfg(compile=False))


@pytest.fixture(scope="module")
def prepared(synthetic_data):
    return synthetic_data
