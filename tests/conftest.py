import json
import os
from pathlib import Path

# Tiny models: one thread avoids OpenMP overhead that makes small matmuls far slower on 2 shared cores.
# Pinned through the environment (before torch loads) so the CLI's thread policy, which yields to a user's
# OMP_NUM_THREADS, keeps it, and so do the worker processes tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from connectomes.core.inputs import default_data_root  # noqa: E402

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
    from connectomes.data.config import DataConfig
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


def gpt2_format_ranks(texts: list[str], merges: int = 300) -> dict[bytes, int]:
    """A stand-in for gpt2.tiktoken (whose content cannot ship with the package): GPT-2's 256 byte tokens
    in GPT-2's order, the token pieces GPT-2 has inside multi-byte characters (b" \\xe2\\x80", b" \\xf0\\x9f"),
    ``merges`` merges learnt on ``texts`` after GPT-2's pre-tokenisation, and filler up to GPT-2's 50256
    ranks that no UTF-8 text can reach (every filler holds b"\\xff"). Same format, same loading path,
    same behaviour; not GPT-2's ids."""
    from collections import Counter

    import regex

    from connectomes.data.tokenizers import GPT2_PATTERN

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    order = printable + [b for b in range(256) if b not in printable]
    ranks = {bytes([b]): i for i, b in enumerate(order)}
    for piece in (b"\xe2\x80", b" \xe2\x80", b"\xf0\x9f", b" \xf0\x9f"):
        ranks[piece] = len(ranks)
    words = Counter(tuple(bytes([b]) for b in w.encode()) for t in texts for w in regex.findall(GPT2_PATTERN, t))
    for _ in range(merges):
        pairs: Counter = Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                pairs[a, b] += n
        (a, b), _n = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        ranks.setdefault(a + b, len(ranks))
        merged = Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == (a, b):
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    k = 0
    while len(ranks) < 50256:
        ranks[b"\xff" + str(k).encode()] = len(ranks)
        k += 1
    return ranks


@pytest.fixture(scope="session")
def synthetic_corpus_root(tmp_path_factory, synthetic_texts) -> Path:
    """A data folder with the real corpus's layout and quirks and synthetic content, for tests of prepare's
    behaviour (not of the real corpus): corpus/novels/ (12 .txt files with a UTF-8 BOM and CRLF line ends),
    corpus/imdb/imdb_train_{neg,pos}.jsonl (150 rows each, {"id", "label", "rating", "text"} with <br /> tags
    and some U+2028 and non-ASCII text) and gpt2/gpt2.tiktoken (gpt2_format_ranks, a stand-in for GPT-2's file)."""
    import base64

    from connectomes.data.synthetic import synthetic_document

    root = tmp_path_factory.mktemp("corpus_root")
    novels, imdb = root / "corpus" / "novels", root / "corpus" / "imdb"
    novels.mkdir(parents=True)
    imdb.mkdir()
    for i in range(12):
        text = "\n\n".join(synthetic_document(1, 1000 * i + k) for k in range(8))
        (novels / f"Author_Title{i:02d}_18{50 + i}.txt").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    for j, label in enumerate(("neg", "pos")):
        with open(imdb / f"imdb_train_{label}.jsonl", "w", encoding="utf-8") as f:
            for i in range(150):
                text = synthetic_document(2 + j, i).strip().replace("\n\n", "<br /><br />")
                if i % 7 == 0:
                    text += " Caf\u00e9 na\u00efve \u201cquoted\u201d\u2028line two \U0001F642."
                f.write(json.dumps({"id": f"train/{label}/{i}_{i % 10}", "label": label, "rating": i % 10, "text": text},
                                   ensure_ascii=False) + "\n")  # raw U+2028, as in the real files
    (root / "gpt2").mkdir()
    ranks = gpt2_format_ranks(synthetic_texts)
    (root / "gpt2" / "gpt2.tiktoken").write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in ranks.items()))
    return root


@pytest.fixture(scope="session")
def gpt2_standin(synthetic_corpus_root) -> Path:
    """The stand-in gpt2.tiktoken (see gpt2_format_ranks): a tokenizer with GPT-2's format and behaviour."""
    return synthetic_corpus_root / "gpt2" / "gpt2.tiktoken"


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory) -> Path:
    """One finished small study (test_reliability's SMALL: every stage, two generations, a connectome arm
    and a dense one); tests copy it before changing anything (test_reliability_ii.copy_run)."""
    from test_reliability import small

    from connectomes.api import study

    return study(small(tmp_path_factory.mktemp("finished")), progress=False)
