"""reading_times: word/token alignment, surprisal in bits, sentence starts, Natural Stories loading."""

import csv
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from connectomes.data.tokenizers import load_tokenizer
from connectomes.core.errors import DataError
from connectomes.evals.context import EvalContext
from connectomes.evals.tasks import reading_times
from connectomes.evals.alignment_data import load_natural_stories
from connectomes.evals.scoring import ScoringLM
from connectomes.model.gpt import GPT, GPTConfig



def tiny_lm(tokenizer="bytes", block=64):
    tok = load_tokenizer(tokenizer)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=block))
    return ScoringLM(model, tok, batch_size=32)


def owners_of(tokenizer, words):
    text, spans = reading_times.join_words(words)
    ids, token_spans = tokenizer.encode_with_offsets(text)
    owners = reading_times.assign_tokens(token_spans, spans)
    pieces = [[] for _ in words]
    for i, w in zip(ids, owners):
        pieces[w].append(tokenizer.decode([i]))
    return owners, pieces


# ---------------------------------------------------------------- alignment on hand-made cases


def test_join_words_records_each_words_span():
    text, spans = reading_times.join_words(["If", "you", "were."])
    assert text == "If you were."
    assert spans == [(0, 2), (3, 6), (7, 12)]


def test_bytes_space_goes_to_the_word_it_introduces():
    owners, pieces = owners_of(load_tokenizer("bytes"), ["a", "bc.", "'d'"])
    assert owners == [0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert pieces == [["a"], [" ", "b", "c", "."], [" ", "'", "d", "'"]]


def test_gpt2_punctuation_quotes_and_split_words(data_root):  # gpt2 BPE file from the data folder
    words = ["If", "you'd", "see", "\"mountains.\"", "Unbelievable!", "—"]
    owners, pieces = owners_of(load_tokenizer("gpt2"), words)
    assert pieces == [["If"], [" you", "'d"], [" see"], [' "', "mount", "ains", '."'],
                      [" Un", "bel", "iev", "able", "!"], [" —"]]
    assert owners == sorted(owners)


def test_gpt2_characters_split_across_byte_tokens_stay_with_their_word(data_root):  # gpt2 BPE file from the data folder
    # tiktoken gives a byte token inside a multi-byte character a one-character span
    owners, _ = owners_of(load_tokenizer("gpt2"), ["a", "🦙x", "𝔘", "b"])
    assert owners == [0, 1, 1, 1, 1, 2, 2, 2, 2, 3]


def test_token_spans_around_spaces():
    spans = [(0, 2), (3, 5), (6, 8)]  # "ab cd ef"
    # a token that swallows the following space stays with its word; a leading-space token goes forward
    assert reading_times.assign_tokens([(0, 3), (3, 5), (5, 8)], spans) == [0, 1, 2]
    assert reading_times.assign_tokens([(0, 2), (2, 3), (3, 5), (5, 6), (6, 8)], spans) == [0, 1, 1, 2, 2]
    # a token spanning two words goes to the later one when its midpoint is on the space: "ab" keeps nothing
    assert reading_times.assign_tokens([(0, 5), (5, 8)], spans) == [1, 2]
    assert reading_times.assign_tokens([(0, 6), (6, 8)], spans) == [1, 2]  # midpoint 3: inside "cd"


class MergingTokenizer:
    """Stand-in for a tokenizer with a token across a word boundary: "ab cd" is one token."""

    name = "merging"

    def encode_with_offsets(self, text):
        assert text == "ab cd ef"
        return [1, 2, 3], [(0, 5), (5, 6), (6, 8)]


def test_word_without_tokens_has_no_surprisal():
    class LM:
        tokenizer = MergingTokenizer()

        def token_logprobs(self, ids):
            return np.log([0.5, 0.25])

    bits, tokens_of = reading_times.word_surprisals(LM(), ["ab", "cd", "ef"])
    assert tokens_of == [[], [0], [1, 2]]
    assert math.isnan(bits[0]) and math.isnan(bits[1])  # no tokens; holds the first token
    assert bits[2] == pytest.approx(1.0 + 2.0)  # -log2(0.5) - log2(0.25)


def test_word_surprisal_is_the_sum_of_its_tokens_in_bits(data_root):  # gpt2 BPE file from the data folder
    lm = tiny_lm("gpt2", block=64)
    words = ["The", "Unbelievable", "cat", "sat", "down."]
    bits, tokens_of = reading_times.word_surprisals(lm, words)
    ids = lm.tokenizer.encode(" ".join(words))
    with torch.no_grad():
        logp = F.log_softmax(lm.model(torch.tensor([ids]))[0].double(), dim=-1)
    nats = [-float(logp[t - 1, ids[t]]) for t in range(1, len(ids))]
    assert len(tokens_of[1]) == 4  # " Un" "bel" "iev" "able"
    assert math.isnan(bits[0])
    for w in range(1, len(words)):
        assert bits[w] == pytest.approx(sum(nats[t - 1] for t in tokens_of[w]) / math.log(2), rel=1e-5)


# ---------------------------------------------------------------- sentence starts


def test_sentence_initial_detection():
    words = ["It", "rained.", "Then", "\"Stop!\"", "She", "left.)", "'Why?'", "he", "asked.", "'No!'", "Fine", "ok"]
    assert reading_times.sentence_initial(words) == [
        True, False, True, False, True, False, True, False, False, True, True, False]


def test_sentence_starts_on_natural_stories(data_root):
    words = [w.word for w in load_natural_stories(data_root / "naturalstories").words if w.story == 2]
    init = reading_times.sentence_initial(words)
    starts = [words[i] for i in range(len(words)) if init[i]]
    assert starts[0] == words[0]
    assert all(s[0].isupper() or s[0] in "'\"" for s in starts)
    for i in range(1, len(words)):  # a lower-case word after a closing question quote continues the sentence
        if words[i - 1].endswith("?'") and words[i][0].islower():
            assert not init[i]


# ---------------------------------------------------------------- the corpus


def test_every_natural_stories_word_gets_its_own_gpt2_tokens(data_root):
    tok = load_tokenizer("gpt2")
    words = load_natural_stories(data_root / "naturalstories").words
    assert len(words) == 10256
    for story in range(1, 11):
        ws = [w.word for w in words if w.story == story]
        text, spans = reading_times.join_words(ws)
        ids, token_spans = tok.encode_with_offsets(text)
        owners = reading_times.assign_tokens(token_spans, spans)
        assert len(owners) == len(ids) and owners == sorted(owners)
        assert set(owners) == set(range(len(ws))), f"story {story}: a word without tokens"
        for (s, e), w in zip(token_spans, owners):  # a token lies in its word or the space before it
            assert spans[w][0] - 1 <= s and e <= spans[w][1], (story, ws[w], text[s:e])


def test_the_2016_wordinfo_differs_only_in_story_3(data_root):
    # README: the 2016 file is the HEAD file before the story-3 realignment (812 rows differ); the
    # other rows differ only in printed precision
    head = load_natural_stories(data_root / "naturalstories").words
    old = load_natural_stories(data_root / "naturalstories", "processed_wordinfo_2016-05-18.tsv").words
    assert [(w.story, w.zone, w.word) for w in head] == [(w.story, w.zone, w.word) for w in old]
    differ = [a.story for a, b in zip(head, old) if a.rt != pytest.approx(b.rt, rel=1e-9)]
    assert set(differ) == {3} and len(differ) == 812


def test_reading_times_end_to_end_scores_every_word_whatever_the_limit(synthetic_eval_root, tmp_path):
    lm = tiny_lm("bytes", block=64)  # stories are far longer than 64 bytes: the sliding window is used
    res = reading_times.run(lm, EvalContext(data_root=synthetic_eval_root, limit=5, out_dir=tmp_path))
    assert res["words"] == 320 and res["stories"] == [1]
    assert res["dropped"] == {"story_first_token": 1, "no_tokens": 0}
    assert res["all_words"]["n"] == 319
    assert res["no_sentence_initial"]["n"] == 320 - res["sentence_initial_words"]  # the first word is both
    assert set(res["data_sha256"]) == {"all_stories.tok", "processed_wordinfo.tsv"}
    with open(tmp_path / "reading_times_words.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 320 and rows[0]["word"] == "If" and rows[0]["surprisal_bits"] == "nan"
    rows = [r for r in rows if r["surprisal_bits"] != "nan"]
    s = np.array([float(r["surprisal_bits"]) for r in rows])
    rt = np.array([float(r["rt_ms"]) for r in rows])
    assert res["all_words"]["r"] == pytest.approx(np.corrcoef(s, rt)[0, 1], abs=1e-5)
    keep = np.array([r["sentence_initial"] == "0" for r in rows])
    assert res["no_sentence_initial"]["r"] == pytest.approx(np.corrcoef(s[keep], rt[keep])[0, 1], abs=1e-5)


def test_a_story_prefix_gives_the_whole_story_surprisals(synthetic_eval_root):
    lm = tiny_lm("bytes", block=64)
    words = [w for w in load_natural_stories(synthetic_eval_root / "naturalstories").words if w.story == 1]
    full = reading_times.score_stories(lm, words[:120])
    part = reading_times.score_stories(lm, words[:80])
    np.testing.assert_allclose([r["surprisal_bits"] for r in part], [r["surprisal_bits"] for r in full[:80]],
                               rtol=1e-5)


# ---------------------------------------------------------------- bad data


def write(folder, tok_rows, info_rows):
    (folder / "all_stories.tok").write_text("word\tzone\titem\n" + "".join(f"{r}\n" for r in tok_rows))
    info = "word\tzone\titem\tmeanItemRT\n" + "".join(f"{r}\n" for r in info_rows)
    (folder / "processed_wordinfo.tsv").write_text(info)


def test_mismatched_words_are_refused(tmp_path):
    write(tmp_path, ["If\t1\t1"], ["When\t1\t1\t300"])
    with pytest.raises(DataError, match="disagree at story 1 zone 1: 'When' vs 'If'"):
        load_natural_stories(tmp_path)


def test_row_count_mismatch_is_refused(tmp_path):
    write(tmp_path, ["If\t1\t1"], ["If\t1\t1\t300", "you\t2\t1\t280"])
    with pytest.raises(DataError, match="has 2 rows but .*all_stories.tok has 1 words"):
        load_natural_stories(tmp_path)


def test_malformed_rt_names_file_and_line(tmp_path):
    write(tmp_path, ["If\t1\t1", "you\t2\t1"], ["If\t1\t1\t300", "you\t2\t1\tNA"])
    with pytest.raises(DataError, match=r"processed_wordinfo.tsv:3: meanItemRT 'NA' is not a number"):
        load_natural_stories(tmp_path)


def test_missing_files_and_columns(tmp_path):
    with pytest.raises(DataError, match="all_stories.tok is missing"):
        load_natural_stories(tmp_path)
    write(tmp_path, ["If\t1\t1"], ["If\t1\t1\t300"])
    with pytest.raises(DataError, match="reading_times.file"):
        load_natural_stories(tmp_path, "nope.tsv")
    (tmp_path / "processed_wordinfo.tsv").write_text("word\tzone\titem\nIf\t1\t1\n")
    with pytest.raises(DataError, match="lacks the column.* meanItemRT"):
        load_natural_stories(tmp_path)


def test_an_edited_file_is_read_again(tmp_path):
    write(tmp_path, ["If\t1\t1"], ["If\t1\t1\t300"])
    assert load_natural_stories(tmp_path).words[0].rt == 300
    write(tmp_path, ["If\t1\t1"], ["If\t1\t1\t301.5"])
    assert load_natural_stories(tmp_path).words[0].rt == 301.5
