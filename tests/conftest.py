import os
from pathlib import Path

import pytest
import torch

from connectomes.config import default_data_root

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = default_data_root()
    if root is None or not root.is_dir():
        pytest.skip("shared data folder not found (set CONNECTOMES_DATA)")
    return root
