"""Lexical decision: the pseudo-word generator (its rules on a small list; its fixed output for the default seed
on the real data folder, slow) and the task on real words (BLiMP and Zorro records copied to tmp) with the
frequency bands of a prepared synthetic corpus, checked against a hand computation under the unigram model and
against a plain forward pass per item."""

import math
import re
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from connectomes.data.shards import read_shard
from connectomes.evals import pseudowords as pw
from connectomes.evals.context import EvalContext
from connectomes.evals.registry import get_task
from connectomes.evals.runner import evaluate
from connectomes.data.tokenizers import load_tokenizer
from connectomes.evals.tasks.lexical_decision import band
from connectomes.model.gpt import GPT, GPTConfig

from test_blimp import make_eval_root, uniform_model, unigram_logprob, unigram_model
from test_zorro import make_zorro_root

WORDS = sorted(set("""the cat sat on mat dog ran fast slow hand land sand band stand grand plant slant chant
    bright light night sight might fight right tight flight sleep sweep steep creep keep jump lump bump pump stump
    water later table cable stable rabbit habit carrot parrot garden pardon window winter""".split()))


def check(pairs, words, lexicon):
    stats = pw.Bigrams.of(words)
    assert [w for w, _ in pairs] == [w for w in words if w in dict(pairs)]  # word order kept
    fakes = [p for _, p in pairs]
    assert len(set(fakes)) == len(fakes)
    for w, p in pairs:
        assert p not in lexicon and p not in words and p != w
        assert len(p) == len(w)
        assert [(k, len(s)) for k, s in pw.segments(p)] == [(k, len(s)) for k, s in pw.segments(w)]  # its skeleton
        assert stats.legal(p) and abs(stats.statistic(p) - stats.statistic(w)) <= pw.TOLERANCE


def test_generator_keeps_length_skeleton_and_bigrams_and_never_makes_a_word():
    lexicon = {"dat", "cog", "lat", "sight"} | set(WORDS)  # "dat": a corpus word the generator must avoid
    pairs, unmatched = pw.generate(WORDS, lexicon, seed=0)
    check(pairs, WORDS, lexicon)
    assert len(pairs) + len(unmatched) == len(WORDS) and len(pairs) >= len(WORDS) * 3 // 4
    assert pw.generate(WORDS, lexicon, seed=0) == (pairs, unmatched)  # reproducible
    assert pw.generate(WORDS, lexicon, seed=1)[0] != pairs
    # a word's pseudo-word is drawn from its own stream: other words do not change it (bar the no-duplicates rule)
    alone = pw.pseudo_for("garden", 0, pw._pools(WORDS), pw.Bigrams.of(WORDS), lexicon, set())
    assert alone == dict(pairs).get("garden")


def test_segments_and_bigram_statistic_by_hand():
    assert pw.segments("street") == [("onset", "str"), ("nucleus", "ee"), ("coda", "t")]
    assert pw.segments("rhythm") == [("onset", "rh"), ("nucleus", "y"), ("coda", "thm")]  # y after a consonant
    assert pw.segments("yes") == [("onset", "y"), ("nucleus", "e"), ("coda", "s")]
    assert pw.segments("above") == [("nucleus", "a"), ("medial", "b"), ("nucleus", "o"), ("medial", "v"), ("nucleus", "e")]
    stats = pw.Bigrams.of(["cat", "cab"])  # ^c 2, ca 2, at 1, t$ 1, ab 1, b$ 1
    assert stats.statistic("cat") == pytest.approx((1 + 1 + 0 + 0) / 4)
    assert stats.statistic("cab") == stats.statistic("cat") and not stats.legal("cac") and stats.legal("cab")
    words, tokens = pw.word_list(["The cat, Tina's pet, sat .", "the dogs ran", "Mary's big-ish cat"])
    assert words == ["cat", "dogs", "pet", "ran", "sat", "the"] and "tina's" in tokens and "mary's" in tokens


@pytest.mark.slow
def test_fixed_output_for_the_default_seed(data_root):
    """The real data folder (BLiMP, Zorro, corpus/): the item list pinned by its digest and count, and every rule
    checked again from scratch here (no word of any corpus, matched length, bigrams within the tolerance)."""
    made = pw.items(data_root, 0)
    pairs = [tuple(p) for p in made["pairs"]]
    words, tokens = pw.word_list(pw.sentences(data_root))
    corpus = set()
    for p in sorted((data_root / "corpus").rglob("*")):
        if p.is_file() and p.suffix in (".txt", ".jsonl", ".md"):
            corpus.update(re.findall(r"[a-z]+", p.read_text(encoding="utf-8", errors="replace").lower()))
    check(pairs, words, tokens | corpus)
    assert made["words"] == len(words) == 2126 and len(pairs) == 2092 and len(made["unmatched"]) == 34
    assert made["sha256"] == "bd01638617a63b76be5a580cb2c41ce894387061e2d83211db8a4e3b1bcfbf02"
    assert dict(pairs)["have"] == "bave" and dict(pairs)["chicken"] == "chacken"
    gaps = [abs(pw.Bigrams.of(words).statistic(p) - pw.Bigrams.of(words).statistic(w)) for w, p in pairs[:200]]
    assert max(gaps) <= pw.TOLERANCE


# ---------------------------------------------------------------------------------------------
# the task


@pytest.fixture(scope="module")
def ld_root(tmp_path_factory, data_root):
    """A data folder with a few real BLiMP and Zorro records and a tiny corpus/ (one text, holding a word the
    generator would otherwise be free to make)."""
    root = tmp_path_factory.mktemp("ld_root")
    make_eval_root(root, data_root)
    make_zorro_root(root, data_root)
    (root / "corpus").mkdir()
    (root / "corpus" / "a.txt").write_text("Some text of a corpus.\n")
    return root


def run_ld(model, root, prepared, limit=0, seed=0) -> dict:
    ctx = EvalContext(data_root=root, prepared_dir=prepared, limit={"lexical_decision": limit}, sample_seed=seed,
                      batch_size=7)
    return evaluate(model, load_tokenizer("bytes"), ["lexical_decision"], ctx)["tasks"]["lexical_decision"]


def split_counts(prepared) -> Counter:
    """Word counts of the large split, by hand: its bytes decoded, split at whitespace and end-of-text (0)."""
    text = b"".join(bytes(read_shard(p).astype("uint8").tolist()).replace(b"\x00", b"\n")
                    for p in prepared.split_paths("large")).decode("utf-8", errors="replace")
    return Counter(pw.strip(t).lower() for t in text.split())


def test_unigram_model_margins_bands_and_counts_by_hand(ld_root, synthetic_data):
    res = run_ld(unigram_model(), ld_root, synthetic_data.dir)
    made = pw.items(ld_root, 0)
    fake = dict(made["pairs"])
    assert res["item_ids"] == sorted(res["item_ids"]) and set(res["item_ids"]) == set(fake)
    assert res["pseudowords"] == [fake[w] for w in res["item_ids"]] and res["items_sha256"] == made["sha256"]
    counts = split_counts(synthetic_data)
    assert res["counts"] == [counts[w] for w in res["item_ids"]]
    assert {b for b in res["bands"]} == {band(counts[w]) for w in res["item_ids"]} and len(res["bands"]) >= 2
    decided = 0
    for w, m, x in zip(res["item_ids"], res["margin"], res["correct"]["acc"]):
        want = unigram_logprob(f" {w} ") - unigram_logprob(f" {fake[w]} ")
        assert m == pytest.approx(want, abs=1e-4)
        # the unigram logits take 11 values, so letters that share one tie by hand; the model's fp32 sums then
        # differ by rounding only, and such pairs are not checked for their outcome
        if abs(want) > 1e-4:
            assert x == (1 if want > 0 else 0)
            decided += 1
    assert decided > 100
    assert res["acc"]["value"] == pytest.approx(sum(res["correct"]["acc"]) / res["items"])
    for b, g in res["bands"].items():
        xs = [x for w, x in zip(res["item_ids"], res["correct"]["acc"]) if band(counts[w]) == b]
        assert g["value"] == pytest.approx(sum(xs) / len(xs)) and g["n"] == g["pairs_in_band"] == len(xs)
    assert res["excluded_pseudo_in_split"] == 0 and res["frequency"]["split"] == "large"


def test_uniform_model_ties_every_pair(ld_root, synthetic_data):
    """Matched lengths: under p = 1/256 per byte both items of every pair score alike, so each counts half."""
    res = run_ld(uniform_model(), ld_root, synthetic_data.dir)
    assert res["ties"] == res["items"] > 20 and res["acc"]["value"] == 0.5
    assert all(m == pytest.approx(0.0, abs=1e-9) for m in res["margin"])


def test_random_model_agrees_with_a_plain_forward_per_item(ld_root, synthetic_data):
    cfg = GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=32, block_size=64)
    torch.manual_seed(9)
    model = GPT(cfg).eval()
    res = run_ld(model, ld_root, synthetic_data.dir, limit=12, seed=2)

    def logprob(text: str) -> float:
        ids = [0] + list(text.encode())
        with torch.no_grad():
            lp = F.log_softmax(model(torch.tensor([ids[:-1]]))[0].double(), dim=-1)
        return sum(lp[t, ids[t + 1]].item() for t in range(len(ids) - 1))

    assert res["items"] == 12 and res["selection"]["seed"] == 2 and "stratified" in res["selection"]["selection"]
    for w, p, m, x in zip(res["item_ids"], res["pseudowords"], res["margin"], res["correct"]["acc"]):
        want = logprob(f" {w} ") - logprob(f" {p} ")
        assert m == pytest.approx(want, abs=1e-4) and abs(want) > 1e-4 and x == (1 if want > 0 else 0)
    assert run_ld(model, ld_root, synthetic_data.dir, limit=12, seed=2)["item_ids"] == res["item_ids"]


def test_a_pseudo_word_found_in_the_split_is_left_out(ld_root, synthetic_data, monkeypatch):
    from connectomes.evals.tasks import lexical_decision as ld

    made = pw.items(ld_root, 0)
    real = ld.split_word_counts(synthetic_data.dir, ld.FREQ_TOKENS)
    planted = made["pairs"][0][1]
    fake = type(real)({**real.counts, planted: 3}, real.total + 3, real.source)
    monkeypatch.setattr(ld, "split_word_counts", lambda *a: fake)
    res = run_ld(uniform_model(), ld_root, synthetic_data.dir)
    assert res["excluded_pseudo_in_split"] == 1 and planted not in res["pseudowords"]
    assert res["items"] == len(made["pairs"]) - 1


def test_spec():
    spec = get_task("lexical_decision")
    assert spec.metrics[0].chance == 0.5 and spec.sampled and spec.data_dir == "." and spec.breakdowns[0].key == "bands"
    assert [band(n) for n in (0, 1, 9, 10, 99, 100, 999, 1000, 10**6)] == \
        ["0", "1-9", "1-9", "10-99", "10-99", "100-999", "100-999", "1000+", "1000+"]
    assert math.isclose(pw.TOLERANCE, 0.5)
