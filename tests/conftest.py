import os
from pathlib import Path

import pytest
import torch

from connectomes.config import default_data_root

# Tiny models: one thread avoids OpenMP overhead that makes small matmuls far slower on 2 shared cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data folder, for tests that need its content (tokenizer files, evaluation sets, the corpus)."""
    root = default_data_root()
    if root is None or not root.is_dir():
        pytest.skip("shared data folder not found (set CONNECTOMES_DATA)")
    return root


# Tests that need text but not the real corpus use the package's own synthetic generator
# (connectomes.data.synthetic), so they run in a checkout without the data folder.


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """The synthetic corpus prepared once per session (bytes tokenizer, seed 0); tests only read it."""
    from connectomes.config import DataConfig
    from connectomes.data.prepare import open_prepared, prepare_data

    out = tmp_path_factory.mktemp("synthetic") / "data"
    cfg = DataConfig(source="synthetic", tokenizer="bytes", large_tokens=400_000, small_tokens=60_000, val_tokens=30_000, seed=0)
    prepare_data(cfg, out, progress=False)
    return open_prepared(out)


@pytest.fixture(scope="session")
def synthetic_texts() -> list[str]:
    """300 synthetic documents (seed 0), for tests that train a tokenizer on text."""
    from connectomes.data.synthetic import synthetic_document

    return [synthetic_document(0, i) for i in range(300)]
