"""Overrides mean what they say: a key the verb does not read is refused before anything is written, and a
finished run's config.yaml is never rewritten by a refused or no-op command (issue 33)."""

import os

import pytest
from test_reliability_ii import copy_run

from connectomes.cli import build_parser, main
from connectomes.pipeline.config import VERB_SECTIONS, check_overrides


def _stat(path):
    st = path.stat()
    return path.read_bytes(), st.st_mtime_ns


def test_a_study_refuses_train_overrides_and_leaves_the_finished_runs_config_as_it_was(finished_study, tmp_path, capsys):
    run = copy_run(finished_study, tmp_path)
    before = _stat(run / "config.yaml")
    for override in ("train.lr=1e-3", "train.log=tensorboard"):
        assert main(["study", str(tmp_path / "r.yaml"), override]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        key = override.split("=")[0]
        assert (f"error: override {key!r} is not read by `study`: a study trains with evolve.train.* and "
                "develop.train.*; train.* drives only the `train` verb; `study` reads name, runs_dir, model.*, "
                "data.*, evolve.*, develop.*, eval.*, runtime.*") in err
        assert _stat(run / "config.yaml") == before
    # the same study run again is a no-op for the record: the file is not even rewritten
    assert main(["study", str(tmp_path / "r.yaml")]) == 0
    assert _stat(run / "config.yaml") == before


@pytest.mark.parametrize("verb, override, hint", [
    ("train", "develop.train.lr=1e-3", "the `train` verb trains with train.*; develop.* drives `develop` and `study`"),
    ("train", "evolve.generations=2", "the `train` verb trains with train.*; evolve.* drives `evolve` and `study`"),
    ("train", "eval.tasks=val_loss", None),
    ("evolve", "train.lr=1e-3", "`evolve` trains with evolve.train.*; train.* drives only the `train` verb"),
    ("develop", "train.log=tensorboard", "`develop` trains with develop.train.*; train.* drives only the `train` verb"),
])
def test_each_config_verb_refuses_what_it_does_not_read(verb, override, hint, tmp_path, capsys):
    assert main([verb, f"runs_dir={tmp_path}", override, *(["--arm", "dense"] if verb == "develop" else [])]) == 2
    err = capsys.readouterr().err
    assert f"is not read by `{verb}`" in err and (hint is None or hint in err)
    assert ", ".join(s + ".*" for s in VERB_SECTIONS[verb]) in err
    assert os.listdir(tmp_path) == []  # refused before anything was written


def test_keys_a_verb_reads_pass_and_an_unknown_key_is_left_to_the_key_check():
    check_overrides("study", ["develop.train.lr=1e-3", "evolve.train.log=tensorboard", "name=x", "runtime.workers=2"])
    check_overrides("train", ["train.lr=1e-3", "model.n_layer=2", "data.tokenizer=bytes"])
    check_overrides("study", ["trian.lr=1"])  # load_config names it as an unknown key, with the valid ones


def test_every_config_verb_declares_its_sections_and_help_lists_only_those():
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    config_verbs = {name for name, p in verbs.items() if p.epilog and f"config keys `{name}` reads" in p.epilog}
    assert config_verbs == set(VERB_SECTIONS)
    study_help = verbs["study"].format_help()
    assert "  train.lr " not in study_help and "  develop.train.lr " in study_help and "e.g. train.lr" not in study_help
    assert "  train.lr " in verbs["train"].format_help()
