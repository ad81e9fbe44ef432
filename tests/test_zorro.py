"""Zorro on real pairs (the first pairs of a few paradigm files, copied to tmp), checked against an independent
computation: the file's lines read here (odd line bad, even line good), each sentence scored by one plain
forward pass of [eot] + its bytes, compared by hand. The uniform model (every weight 0) scores a sentence
-len(bytes) ln 256, so a pair is right exactly when the good sentence is shorter and ties when both are as long."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from connectomes.core.errors import DataError
from connectomes.evals.registry import get_task
from connectomes.evals.sampling import allocate
from connectomes.evals.tasks import zorro
from connectomes.model.gpt import GPT, GPTConfig

from test_blimp import by_length, run_task, save_step, uniform_model

# (file, pairs): 4 phenomena, two whose names hold a hyphen
SUBSET = (("agreement_determiner_noun-across_1_adjective", 6), ("filler-gap-wh_question_object", 6),
          ("island-effects-adjunct_island", 5), ("quantifiers-superlative", 5))


@pytest.fixture(scope="module")
def zorro_root(tmp_path_factory, data_root) -> Path:
    return make_zorro_root(tmp_path_factory.mktemp("zorro_root"), data_root)


def make_zorro_root(root: Path, data_root: Path) -> Path:
    (root / "zorro" / "sentences").mkdir(parents=True)
    for name, n in SUBSET:
        lines = (data_root / "zorro" / "sentences" / f"{name}.txt").read_text().splitlines(keepends=True)
        (root / "zorro" / "sentences" / f"{name}.txt").write_text("".join(lines[:2 * n]))
    return root


def hand_pairs(root: Path) -> dict[str, tuple[str, str]]:
    """{paradigm:k: (good, bad)} read straight from the files."""
    out = {}
    for p in sorted((root / "zorro" / "sentences").glob("*.txt")):
        lines = p.read_text().splitlines()
        for k in range(len(lines) // 2):
            out[f"{p.stem}:{k}"] = (lines[2 * k + 1], lines[2 * k])
    return out


def test_random_model_agrees_with_a_plain_forward_per_sentence(zorro_root):
    """No batching, padding, windows or deduplication: one forward of [eot] + sentence per sentence."""
    cfg = GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=128)
    torch.manual_seed(7)
    model = GPT(cfg).eval()
    res = run_task(model, "zorro", zorro_root)
    pairs = hand_pairs(zorro_root)

    def logprob(text: str) -> float:
        ids = [0] + list(text.encode())
        with torch.no_grad():
            lp = F.log_softmax(model(torch.tensor([ids[:-1]]))[0].double(), dim=-1)
        return sum(lp[t, ids[t + 1]].item() for t in range(len(ids) - 1))

    assert sorted(res["item_ids"]) == sorted(pairs) and res["items"] == sum(n for _, n in SUBSET)
    per: dict[str, list[float]] = {}
    for i, m, x in zip(res["item_ids"], res["margin"], res["correct"]["acc"]):
        good, bad = pairs[i]
        want = logprob(good) - logprob(bad)
        assert m == pytest.approx(want, abs=1e-4) and abs(want) > 1e-3  # not decided by rounding
        assert x == (1 if want > 0 else 0)
        per.setdefault(i.split(":")[0], []).append(x)
    for u, xs in per.items():
        assert res["paradigms"][u]["value"] == pytest.approx(sum(xs) / len(xs)) and res["paradigms"][u]["n"] == len(xs)
    assert res["acc"]["value"] == pytest.approx(sum(sum(xs) / len(xs) for xs in per.values()) / len(per))
    assert res["acc"]["paradigms"] == 4 and res["acc_pooled"]["value"] == pytest.approx(
        sum(res["correct"]["acc"]) / res["items"])


def test_uniform_model_outcomes_by_byte_length_and_phenomena(zorro_root):
    res = run_task(uniform_model(GPTConfig(vocab_size=256, n_layer=1, n_head=2, n_embd=32, block_size=32)), "zorro",
                   zorro_root)
    pairs = hand_pairs(zorro_root)
    want = {i: by_length(g, b) for i, (g, b) in pairs.items()}
    assert dict(zip(res["item_ids"], res["correct"]["acc"])) == want
    for i, m in zip(res["item_ids"], res["margin"]):
        g, b = pairs[i]
        assert m == pytest.approx((len(b) - len(g)) * math.log(256), abs=1e-4)
    assert res["ties"] == sum(x == 0.5 for x in want.values()) > 0  # agreement pairs: "thing"/"things" differ; others tie
    assert res["windowed_sentences"] > 0  # a 32-byte window: the longer sentences are read in two, never cut
    assert set(res["phenomena"]) == {"agreement_determiner_noun", "filler-gap", "island-effects", "quantifiers"}
    assert res["paradigms"]["filler-gap-wh_question_object"]["phenomenon"] == "filler-gap"
    assert res["phenomena"]["filler-gap"]["value"] == res["paradigms"]["filler-gap-wh_question_object"]["value"]
    assert res["item_ids"][0] == "agreement_determiner_noun-across_1_adjective:0"
    assert pairs[res["item_ids"][0]] == ("look at this purple thing .", "look at this purple things .")


def test_sample_is_seeded_and_stratified_by_paradigm(zorro_root):
    a = run_task(uniform_model(), "zorro", zorro_root, limit=8, seed=3)
    sizes = dict(SUBSET)
    names = sorted(sizes)
    got = {n: sum(i.startswith(n + ":") for i in a["item_ids"]) for n in names}
    assert list(got.values()) == allocate([sizes[n] for n in names], 8)
    assert a["selection"] == {"selection": a["selection"]["selection"], "seed": 3, "n": 8, "of": 22, "unit": "pairs"}
    assert run_task(uniform_model(), "zorro", zorro_root, limit=8, seed=3)["item_ids"] == a["item_ids"]
    assert run_task(uniform_model(), "zorro", zorro_root, limit=8, seed=4)["item_ids"] != a["item_ids"]


def test_the_whole_set_and_its_phenomena(data_root):
    pairs, skipped, hashes = zorro.load_pairs(data_root / "zorro")
    assert len(pairs) == 46000 and not skipped and len(hashes) == 23
    phen = {p.group: dict(p.info)["phenomenon"] for p in pairs}
    assert len(set(phen.values())) == 13 and phen["island-effects-coordinate_structure_constraint"] == "island-effects"
    spec = get_task("zorro")
    assert spec.metrics[0].chance == 0.5 and spec.sampled and [b.key for b in spec.breakdowns] == ["phenomena", "paradigms"]


def test_damaged_files_are_refused(tmp_path):
    folder = tmp_path / "z"
    folder.mkdir()
    (folder / "case-x.txt").write_text("a b .\na c .\nd .\n")
    with pytest.raises(DataError, match="3 lines, not pairs"):
        zorro.load_pairs(folder)
    (folder / "case-x.txt").write_text("a b .\n\n")
    with pytest.raises(DataError, match=r"pair 0 \(lines 1-2\) has an empty sentence"):
        zorro.load_pairs(folder)
    pairs, skipped, _ = zorro.load_pairs(folder, skip_malformed=True)
    assert pairs == [] and len(skipped) == 1


def test_cli_eval_writes_paradigm_accuracies_ids_and_outcomes(tmp_path, zorro_root):
    step = save_step(tmp_path, uniform_model())
    out = tmp_path / "res.json"
    proc = subprocess.run([sys.executable, "-m", "connectomes", "eval", str(step), "--tasks", "zorro", "--limit", "0",
                           "--data-root", str(zorro_root), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    z = json.loads(out.read_text())["tasks"]["zorro"]
    assert dict(zip(z["item_ids"], z["correct"]["acc"])) == {i: by_length(g, b) for i, (g, b) in hand_pairs(zorro_root).items()}
    assert set(z["paradigms"]) == {n for n, _ in SUBSET} and len(z["data_sha256"]) == 4
