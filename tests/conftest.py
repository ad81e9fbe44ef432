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


@pytest.fixture(scope="session")
def synthetic_eval_root(tmp_path_factory) -> Path:
    """A data folder with the real files' formats and small synthetic content: tuckute2024/ (120 sentences,
    the six language ROIs), langloc/ (24 sentences, 24 non-word lists) and naturalstories/ (one 320-word
    story that starts with "If", as story 1 does). For tests of the tasks' mechanics, not of the real data."""
    import random

    import numpy as np

    from connectomes.data.synthetic import TOPICS, synthetic_sentence

    root = tmp_path_factory.mktemp("eval_data")
    rng, values = random.Random(0), np.random.default_rng(0)

    def words(n: int) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            out += synthetic_sentence(rng, rng.choice(sorted(TOPICS))).split(" ")
        return out[:n]

    rois = ["lang_LH_AntTemp", "lang_LH_IFG", "lang_LH_IFGorb", "lang_LH_MFG", "lang_LH_PostTemp", "lang_LH_netw"]
    (root / "tuckute2024").mkdir()
    lines = [",".join(["item_id", "sentence", *rois])]
    for i in range(1, 121):
        sentence = synthetic_sentence(rng, rng.choice(sorted(TOPICS))).replace(",", "")
        lines.append(",".join([f"B.{i}", sentence, *(repr(float(v)) for v in values.normal(0.3, 0.4, len(rois)))]))
    (root / "tuckute2024" / "bold_response_LH.csv").write_text("\n".join(lines) + "\n")

    (root / "langloc").mkdir()
    letters = "bcdfghklmnprstvz"
    for k in (1, 2):
        rows = [",".join(f"stim{j}" for j in range(1, 15))]
        for i in range(1, 25):
            if i % 2:
                trial = [w.strip(".,!?").upper() for w in words(12)]
            else:
                trial = ["".join(rng.choice(letters) + rng.choice("aeiou") for _ in range(rng.randint(1, 3))).upper()
                         for _ in range(12)]
            rows.append(",".join([str(i), *trial, "S" if i % 2 else "N"]))
        (root / "langloc" / f"langloc_fmri_run1_stim_set{k}.csv").write_text("\n".join(rows) + "\n")

    (root / "naturalstories").mkdir()
    story = ["If", *words(319)]
    rts = values.uniform(250, 450, len(story))
    (root / "naturalstories" / "all_stories.tok").write_text(
        "word\tzone\titem\n" + "".join(f"{w}\t{z}\t1\n" for z, w in enumerate(story, 1)))
    (root / "naturalstories" / "processed_wordinfo.tsv").write_text(
        "word\tzone\titem\tmeanItemRT\n" + "".join(f"{w}\t{z}\t1\t{rt!r}\n" for z, (w, rt) in enumerate(zip(story, rts.tolist()), 1)))
    return root
