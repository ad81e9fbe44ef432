"""Config: typed sections, dotted overrides, typo errors naming the key, help for every key."""

import subprocess
import sys
from pathlib import Path

import pytest

from connectomes.cli import main
from connectomes.pipeline.config import Config, dump_config, load_config
from connectomes.core.errors import ConfigError
from connectomes.core.config import describe_fields


def test_overrides_are_typed():
    cfg = load_config(None, ["train.lr=1e-3", "evolve.generations=3", "develop.seeds=0,1,2", "train.compile=true"])
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.evolve.generations == 3
    assert cfg.develop.seeds == [0, 1, 2]
    assert cfg.train.compile is True


def test_typo_names_key_and_valid_keys():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.lrr=1"])
    assert "train.lrr" in str(e.value) and "warmup_iters" in str(e.value)


def test_typo_in_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("evolve:\n  generatons: 3\n")
    with pytest.raises(ConfigError, match="evolve.generatons"):
        load_config(p)


@pytest.mark.parametrize("override,match", [
    ("train.iters=abc", "train.iters must be an integer"),
    ("train.optimizer=sgd", "adamw, muon"),
    ("evolve.prune_fraction=1.5", "prune_fraction"),
    ("develop.arms=connectome,bogus", "bogus"),
    ("data.tokenizer=wordpiece", "data.tokenizer"),
    ("model.preset=gpt5", "gpt5"),
])
def test_bad_values(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("configs/replicate-cpu.yaml")
    p = tmp_path / "config.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg


def test_every_key_has_help():
    rows = describe_fields(Config)
    assert rows and all(help_ for *_, help_ in rows)


def test_cli_typo_is_one_line_error_with_nonzero_exit(capsys):
    assert main(["study", "configs/demo.yaml", "train.lrr=1", "--plan"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown config key 'train.lrr'") and "Traceback" not in err


def test_cli_help_lists_every_option():
    out = subprocess.run([sys.executable, "-m", "connectomes", "study", "--help"], capture_output=True, text=True).stdout
    for key, *_ in describe_fields(Config):
        assert key in out


@pytest.mark.parametrize("path", sorted(Path("configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_load(path):
    """Every shipped config passes the full validation (a merged check once made sweep-cpu.yaml fail)."""
    load_config(path)


def test_plan_gives_paper_token_and_step_counts(capsys):
    from connectomes.pipeline.plan import plan

    rows = plan(load_config("configs/paper-124m.yaml"), measure=False)
    evolve = [r for r in rows if r["stage"].startswith("evolve")]
    develop = [r for r in rows if r["stage"].startswith("develop")]
    assert len(evolve) == 6 and all(r["steps"] == 7000 and r["tokens"] == 7000 * 512 * 1024 for r in evolve)
    assert len(develop) == 12 and all(r["steps"] == 2000 and r["tokens"] == 2000 * 512 * 1024 for r in develop)
