"""Issue 31: corpora per stage (data.corpora, evolve.corpus_by_seed, develop.corpora, data.val_corpora) and the
report's transfer section."""

import json
import random
import shutil

import numpy as np
import pytest
from test_reliability import small

from connectomes.api import study
from connectomes.core.errors import ConfigError, DataError
from connectomes.core.layout import RunLayout
from connectomes.data.synthetic import synthetic_document
from connectomes.pipeline import corpora
from connectomes.pipeline.config import load_config
from connectomes.pipeline.evolve import evolve_hash
from connectomes.pipeline.run import open_run
from connectomes.pipeline.sweep import Unit, units

GERMAN = "der die das Mädchen über Straße schön grün Bäume König Fräulein läuft spät früh Größe Ähre Öl".split()


def _corpus(folder, n: int, make) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"doc{i:03d}.txt").write_text(make(i), encoding="utf-8")
    return str(folder)


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """Two small corpora beside the synthetic one: German-like words (non-ASCII) and other synthetic documents."""
    root = tmp_path_factory.mktemp("corpora")
    rng = random.Random(0)
    de = _corpus(root / "de", 120, lambda i: " ".join(rng.choice(GERMAN) for _ in range(600)) + ".\n")
    other = _corpus(root / "other", 120, lambda i: synthetic_document(7, 1000 + i))
    return {"de": de, "other": other}


def transfer(tmp, texts, name="tr", *extra):
    return small(tmp, name, f"data.corpora={{de: {texts['de']}, other: {texts['other']}}}", "develop.corpora=[de,synthetic]",
                 "data.val_corpora=[other]", "evolve.seeds=[0,1]", "evolve.corpus_by_seed={1: de}",
                 "develop.arms=connectome,random,dense", *extra)


def test_each_corpus_is_prepared_and_hashed_on_its_own_and_adding_one_leaves_the_evolutions_as_they_were(tmp_path, texts):
    cfg = transfer(tmp_path, texts)
    run = open_run(cfg, progress=False)
    assert set(run.corpora) == {"synthetic", "de", "other"}
    hashes = {n: run.corpus_hash(n) for n in run.corpora}
    assert len(set(hashes.values())) == 3
    assert hashes["synthetic"] == run.data_hash
    meta = run.data_of("de").meta
    assert meta["source"]["path"] == str(tmp_path.parent / "corpora0" / "de") or meta["source"]["path"].endswith("/de")
    assert run.info["corpora"]["de"]["data_hash"] == hashes["de"]
    assert RunLayout.of(cfg).corpus_data("de") == run.data_of("de").dir
    # the data settings that choose among corpora leave every lineage on the run's own corpus as it was
    plain = small(tmp_path, "tr", "evolve.seeds=[0,1]")
    g = cfg.model.gpt_config(vocab_size=256)
    assert evolve_hash(cfg, g, 0) == evolve_hash(plain, g, 0)
    assert evolve_hash(cfg, g, 1) != evolve_hash(plain, g, 1)  # lineage 1 evolves on de
    # the run's own folder is prepared with the settings of a run of one corpus: shared data.dir folders stay reusable
    assert "corpora" not in run.data.meta["settings"]


def test_no_document_is_in_two_corpora_and_a_shared_file_is_refused_before_training(tmp_path, texts):
    cfg = transfer(tmp_path, texts)
    run = open_run(cfg, progress=False)
    sources = {n: set(d.meta["source"]["files"].values()) for n, d in run.corpora.items() if "files" in d.meta["source"]}
    assert sources["de"].isdisjoint(sources["other"])
    for d in run.corpora.values():  # within each corpus the splits are disjoint by document
        docs = [{(s, line) for s, line, _, _ in d.documents(split)} for split in ("val", "small", "large")]
        assert all(a.isdisjoint(b) for i, a in enumerate(docs) for b in docs[i + 1:])
    mixed = tmp_path / "mixed"
    shutil.copytree(texts["other"], mixed)
    shutil.copy(next(iter(sorted((tmp_path.parent).glob("corpora*/de/doc000.txt")))), mixed / "from_de.txt")
    bad = small(tmp_path, "mixed", f"data.corpora={{de: {texts['de']}, other: {mixed}}}", "develop.corpora=[de]")
    with pytest.raises(DataError, match="hold the same file"):
        study(bad, progress=False)
    assert not (RunLayout.of(bad).root / "evolve").exists() and not (RunLayout.of(bad).root / "config.yaml").exists()


def test_a_german_novel_round_trips_through_the_byte_tokenizer(data_root):
    from connectomes.data.sources import normalise
    from connectomes.data.tokenizers import load_tokenizer

    text = normalise(sorted((data_root / "corpus" / "german").glob("*.txt"))[0].read_text(encoding="utf-8"))
    assert any(c in text for c in "äöüßÄÖÜ")
    tok = load_tokenizer("bytes")
    ids = tok.encode(text)
    assert len(ids) == len(text.encode("utf-8")) > len(text)  # umlauts are two bytes each
    assert tok.decode(ids) == text


def test_a_wrong_corpus_path_is_one_clear_error_before_anything_is_written(tmp_path, capsys):
    from connectomes.cli import main

    code = main(["study", "demo", "name=bad", f"runs_dir={tmp_path}", "data.source=synthetic",
                 f"data.corpora={{de: {tmp_path / 'nowhere'}}}", "develop.corpora=[de]"])
    err = capsys.readouterr().err
    assert code != 0 and "corpus 'de'" in err and "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "bad" / "config.yaml").exists() and not (tmp_path / "bad" / "evolve").exists()


@pytest.mark.parametrize("overrides, message", [
    (["develop.corpora=[fr]"], "develop.corpora names corpus 'fr'"),
    (["evolve.seeds=[0]", "evolve.corpus_by_seed={1: de}"], "lineage 1, which is not in evolve.seeds"),
    (["data.val_corpora=[xx]"], "data.val_corpora names corpus 'xx'"),
    (["data.corpora={synthetic: /tmp}"], "the run's own corpus"),
    (["data.corpora={'a b': /tmp}"], "must be letters, digits"),
    (["data.tokenizer=bpe-300"], "data.foreign_bpe=true"),
])
def test_corpus_settings_that_cannot_work_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["data.source=synthetic", "data.corpora={de: /x/de}", *overrides])


def test_the_corpus_axis_develops_every_arm_on_every_corpus_with_dense_once_per_corpus(tmp_path, texts):
    cfg = transfer(tmp_path, texts)
    got = units(cfg)
    assert len(got) == 2 * (2 + 2 + 1)  # corpora x (connectome, random per lineage + dense)
    assert Unit("dense", 0, corpus="de") in got and Unit("connectome", 0, 1, corpus="synthetic") in got
    assert Unit("dense", 0, corpus="de").tag == ("corpus_de",)
    assert corpora.lineage_corpus(cfg, 1) == "de" and corpora.lineage_corpus(cfg, 0) is None
    lines = corpora.describe(cfg)
    assert "evolve (large split) on: synthetic (lineage 0); de (lineage 1)" in lines
    assert lines[-1] == "every unit also validated on: other"


def test_plan_names_the_corpus_of_every_stage(tmp_path, texts, capsys):
    from connectomes.cli import main

    assert main(["study", "demo", f"runs_dir={tmp_path}", "data.source=synthetic", f"data.corpora={{de: {texts['de']}}}",
                 "develop.corpora=[de,synthetic]", "evolve.seeds=[0,1]", "evolve.corpus_by_seed={1: de}", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "develop (small split) and validate (val split) on: de, synthetic" in out
    assert "lineage 1 (on de) evolve gen 0" in out and "[lineage 0, 8,192 tokens, on de]" in out


def test_bpe_corpora_are_encoded_with_the_run_s_own_tokenizer_when_allowed(tmp_path, texts):
    cfg = small(tmp_path, "bpe", "data.tokenizer=bpe-300", "data.foreign_bpe=true", f"data.corpora={{de: {texts['de']}}}",
                "develop.corpora=[de]")
    run = open_run(cfg, progress=False)
    own, de = run.data.dir / "tokenizer.json", run.data_of("de").dir / "tokenizer.json"
    assert own.read_bytes() == de.read_bytes()
    assert run.data_of("de").meta["tokenizer_training"]["copied_from"] == str(own.resolve())


def _val(run_dir, tag, arm, seed, step):
    res = json.loads((run_dir / "eval" / "/".join(tag) / arm / f"seed_{seed}" / f"step_{step:06d}.json").read_text())
    return res["tasks"]["val_loss"]


def test_a_transfer_study_resumes_exactly_and_reports_each_pair_as_computed_by_hand(tmp_path, texts):
    whole = transfer(tmp_path, texts, "whole", "develop.seeds=[0,1]")
    run_dir = study(whole, progress=False)
    stopped = transfer(tmp_path, texts, "stopped", "develop.seeds=[0,1]")
    unit = Unit("connectome", 1, 1, corpus="synthetic")  # evolved on de, developed on synthetic
    assert study(stopped, progress=False, stop=("develop", unit, 4)) is None
    other = study(stopped, progress=False)
    for u in units(whole):
        a = (run_dir / "develop" / "/".join(u.tag) / u.arm / f"seed_{u.seed}" / "metrics.jsonl").read_text()
        b = (other / "develop" / "/".join(u.tag) / u.arm / f"seed_{u.seed}" / "metrics.jsonl").read_text()
        strip = lambda t: [{k: v for k, v in json.loads(x).items() if "time" not in k and k not in ("wall_s", "tok_per_s")}
                           for x in t.splitlines()]  # noqa: E731
        assert strip(a) == strip(b), u
    # each result says which corpus it scored: its develop corpus, and data.val_corpora beside it
    v = _val(run_dir, ("lineage_1", "corpus_synthetic"), "connectome", 0, 6)
    assert v["corpus"] == "synthetic" and set(v["by_corpus"]) == {"synthetic", "other"}
    assert v["by_corpus"]["synthetic"]["loss"] == v["loss"]
    v_de = _val(run_dir, ("corpus_de",), "dense", 0, 6)
    assert v_de["corpus"] == "de" and v_de["loss"] != v["by_corpus"]["synthetic"]["loss"]
    # the transfer table's benefit over random on de for the synthetic-evolved lineage, by hand from the files
    diffs = [_val(run_dir, ("lineage_0", "corpus_de"), "random", s, 6)["loss"]
             - _val(run_dir, ("lineage_0", "corpus_de"), "connectome", s, 6)["loss"] for s in (0, 1)]
    md = (run_dir / "report" / "report.md").read_text()
    assert "## Transfer" in md
    row = next(line for line in md.splitlines() if line.startswith("| de | synthetic |"))
    assert f"{np.mean(diffs):+.3f}" in row.split("|")[4]
    assert "¹" in row  # one lineage per evolve corpus: the interval holds no lineage variance, and says so
    assert (run_dir / "report" / "transfer.png").exists()
    # `connectomes eval` on a step folder of a unit developed on de validates on de's val split, as the study did
    from connectomes.cli import main

    step = run_dir / "develop" / "corpus_de" / "dense" / "seed_0" / "steps" / "step_000006"
    out = tmp_path / "one.json"
    assert main(["eval", str(step), "--tasks", "val_loss", "--out", str(out)]) == 0
    again = json.loads(out.read_text())["tasks"]["val_loss"]
    assert again["corpus"] == "de" and again["loss"] == v_de["loss"]
