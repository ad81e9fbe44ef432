import os
from pathlib import Path

import pytest
import torch

from connectomes.config import default_data_root

# Tiny models: one thread avoids OpenMP overhead that makes small matmuls far slower on 2 shared cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = default_data_root()
    if root is None or not root.is_dir():
        pytest.skip("shared data folder not found (set CONNECTOMES_DATA)")
    return root
