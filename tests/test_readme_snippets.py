"""The Python snippets of the README and of an exported folder's model card run as written: each is
extracted from its code block and run in a fresh interpreter where the paths it names exist (a step folder
at the README's path, its export at the README's folder). A snippet that made transformers ask "run the
custom code? [y/N]" would stop a person at a prompt; here (no terminal) the question still reaches the
output, so its absence is checked."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from connectomes.io.export import export_hf

from test_hf import _step

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Do you wish to run the custom code"
STEP = "runs/demo/develop/tokens_8192/connectome/seed_0/steps/step_000160"
HF = "hf/demo-connectome"


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, re.M | re.S)


def run_snippet(code: str, cwd: Path, scratch: Path) -> str:
    """Run ``code`` as a script in ``cwd``, offline, with no terminal, transformers' copied remote code kept in
    ``scratch``; returns its output (it must succeed)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(scratch / "hf_modules"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code + "\nprint('logits', tuple(logits.shape) if 'logits' in dir() else None)"],
                          cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert PROMPT not in out, out
    return proc.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding the README's step folder (a small bytes-tokenizer model) and its export."""
    tmp = tmp_path_factory.mktemp("snippets")
    _, step = _step(tmp / "build")
    shutil.copytree(step, tmp / STEP)
    export_hf(tmp / STEP, tmp / HF)
    return tmp


def test_the_readme_names_the_two_snippets():
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert len(blocks) == 2 and STEP in blocks[0] and HF in blocks[1]


def test_the_readme_step_folder_snippet_runs_as_written(workdir):
    code = python_blocks((ROOT / "README.md").read_text())[0]
    assert "logits (1, 18, 256)" in run_snippet(code, workdir, workdir)  # "The cat sat on the": 18 bytes


def test_the_readme_transformers_snippet_runs_as_written(workdir):
    pytest.importorskip("transformers")
    code = python_blocks((ROOT / "README.md").read_text())[1]
    run_snippet(code, workdir, workdir)


def test_the_model_card_snippet_runs_as_written(workdir):
    pytest.importorskip("transformers")
    card = (workdir / HF / "README.md").read_text()
    (code,) = python_blocks(card)
    assert f"FOLDER = {str((workdir / HF).resolve())!r}" in code
    assert "logits (1, 18, 256)" in run_snippet(code, ROOT, workdir)  # from anywhere: FOLDER is the absolute path


def test_the_prompt_check_can_fail(workdir):
    """Without trust_remote_code for the tokenizer, transformers asks; the check above would see it."""
    pytest.importorskip("transformers")
    code = ("from transformers import AutoTokenizer\n"
            f"AutoTokenizer.from_pretrained({HF!r})\n")
    with pytest.raises(AssertionError, match=PROMPT):
        run_snippet(code, workdir, workdir)
