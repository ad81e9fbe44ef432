"""Files the toolkit writes take the user's umask (0o666 less it), as a plain open() would: safetensors
writes through a private 0o600 temporary file, which colleagues sharing a cluster folder could not read."""

import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from connectomes.core.atomic import atomic_write, current_umask
from connectomes.io.export import export_hf

from test_hf import _step


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_current_umask_reads_without_changing_it(umask):
    assert current_umask() == umask
    assert os.umask(umask) == umask  # unchanged by the read


def test_step_folders_exports_and_atomic_files_follow_the_umask(tmp_path, umask):
    want = 0o666 & ~umask
    _, step = _step(tmp_path)
    files = [p for p in step.iterdir() if p.is_file()]
    assert files and {p.name: mode(p) for p in files} == {p.name: want for p in files}
    out = export_hf(step, tmp_path / "hf")
    assert {p.name: mode(p) for p in out.iterdir() if p.is_file()} == {p.name: want for p in out.iterdir() if p.is_file()}
    single = atomic_write(tmp_path / "c.safetensors", lambda tmp: save_file({"a": torch.zeros(2)}, str(tmp)))
    assert mode(single) == want
