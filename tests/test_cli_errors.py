"""User mistakes at the command line: one sentence, non-zero exit, nothing good overwritten."""


import pytest

from connectomes.cli import main


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_missing_data_folder(tmp_path, capsys):
    rc = main(["prepare", f"runs_dir={tmp_path}", "name=x", f"data.path={tmp_path / 'no_such_folder'}"])
    assert rc == 2
    assert "no_such_folder" in _err(capsys)


def test_missing_config_file(tmp_path, capsys):
    assert main(["prepare", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in _err(capsys)


def test_unknown_eval_task(tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--tasks", "val_loss,squad"]) == 2
    assert "squad" in _err(capsys)


def test_eval_of_missing_checkpoint(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope"), "--tasks", "val_loss"]) == 2
    assert "does not exist" in _err(capsys)


def test_inspect_of_a_non_connectome(tmp_path, capsys):
    p = tmp_path / "junk.safetensors"
    p.write_bytes(b"\x00" * 64)
    assert main(["inspect", str(p)]) == 2
    assert "junk.safetensors" in _err(capsys)


def test_corrupt_shard_stops_training_and_keeps_the_prepared_data(tmp_path, capsys):
    args = [f"runs_dir={tmp_path}", "name=x", "data.source=synthetic", "data.large_tokens=50000",
            "data.small_tokens=20000", "data.val_tokens=8192", "train.iters=4", "train.warmup_iters=1",
            "train.warmdown_iters=2", "train.batch_size=4", "train.micro_batch_size=4", "model.block_size=32"]
    assert main(["prepare", *args]) == 0
    shard = sorted((tmp_path / "x" / "data").glob("large_*.bin"))[0]
    shard.write_bytes(shard.read_bytes()[:-100])  # truncated
    meta_before = (tmp_path / "x" / "data" / "meta.json").read_text()
    assert main(["train", *args]) == 2
    err = _err(capsys)
    assert shard.name in err
    assert (tmp_path / "x" / "data" / "meta.json").read_text() == meta_before


@pytest.mark.parametrize("limit, message", [
    ("hellaswag=5,mmlu=-1", "eval.limit.mmlu = '-1' must be >= 0"),
    ("hellaswg=5", "unknown config key 'eval.limit.hellaswg'; valid keys in eval.limit: blimp, blimp_supplement, "
                   "hellaswag, lexical_decision, mmlu, word_learning, zorro"),
    ("a,b=3", "'a,b=3': give one number, or task=N pairs such as blimp=100,blimp_supplement=100,hellaswag=100,"
                "lexical_decision=100,mmlu=100,word_learning=100,zorro=100"),
])
def test_eval_limit_is_checked_like_the_config_key(tmp_path, capsys, limit, message):
    with pytest.raises(SystemExit) as e:
        main(["eval", str(tmp_path), "--limit", limit])
    assert e.value.code == 2
    assert f"argument --limit: {message}" in _err(capsys)


def test_eval_limit_per_task_reaches_the_tasks():
    from connectomes.cli import build_parser

    args = build_parser().parse_args(["eval", "x", "--limit", "hellaswag=7,mmlu=3"])
    assert args.limit == {"blimp": 0, "blimp_supplement": 0, "hellaswag": 7, "lexical_decision": 0, "mmlu": 3,
                         "word_learning": 0, "zorro": 0}
    assert build_parser().parse_args(["eval", "x", "--limit", "5"]).limit == {
        "blimp": 5, "blimp_supplement": 5, "hellaswag": 5, "lexical_decision": 5, "mmlu": 5, "word_learning": 5,
        "zorro": 5}


@pytest.mark.parametrize("argv", [["develop", "--arm", "connectome", "--seed", str(2**66)],
                                  ["develop", "--arm", "dense", "--seed", "-1"],
                                  ["anatomy", "runs/none", "--seed", str(2**63)],
                                  ["connectome", "runs/none", "--lineage", str(2**66)],
                                  ["eval", "none", "--sample-seed", str(2**66)]])
def test_a_seed_outside_the_range_is_refused_before_any_work(argv, capsys):
    """One range for every seed flag (core.config.Seed), checked as the command line is read: 2**66 once ran
    seed_start for minutes."""
    import time

    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert time.perf_counter() - t0 < 5 and e.value.code == 2
    err = _err(capsys)
    assert f"{argv[-2]}: " in err and "must be >= 0 and < 2**63: a seed is a whole number below 2**63" in err


def test_the_largest_seed_is_read_exactly(capsys):
    from connectomes.cli import build_parser

    args = build_parser().parse_args(["develop", "--arm", "dense", "--seed", str(2**63 - 1)])
    assert args.seed == 2**63 - 1  # through a float it would round up to 2**63, out of range


def test_develop_help_says_what_a_seed_varies_per_arm(capsys):
    with pytest.raises(SystemExit):
        main(["develop", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "dense, its initialisation and its data" in out
    assert "random, mask_only, rewired, rows_kept, cols_kept and transplant:*, their draw and the data" in out
    assert "connectome, sign_flipped, lowrank:*, inherit and inherit_dense, the data only" in out
    assert "develop.seeds" in out and "the others, the data only (with develop.sizes the seed's own subset" in out


def test_develop_help_lists_every_arm_with_what_it_keeps(capsys):
    from connectomes.connectome import arms

    with pytest.raises(SystemExit):
        main(["develop", "--help"])
    out = capsys.readouterr().out
    for name in [*arms.ARMS, "transplant:mlp", "lowrank:4"]:
        line = next(line for line in out.splitlines() if line.split()[:1] == [name])
        assert f"keeps {arms.get(name).keeps}; redraws {arms.get(name).redraws}" in " ".join(line.split())
