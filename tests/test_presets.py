"""The study presets ship inside the package: a bare name runs or prints one from any folder (as from an
installed wheel), a file of that name wins, and the checkout's configs/ is the packaged folder, not a copy."""

from pathlib import Path

import pytest

from connectomes.cli import main
from connectomes.core.presets import preset_names, presets_dir, resolve_config_path
from connectomes.pipeline.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_configs_is_the_packaged_folder_not_a_copy():
    assert (ROOT / "configs").resolve() == presets_dir().resolve() == (ROOT / "src/connectomes/configs").resolve()
    assert {"demo", "replicate-cpu", "paper-124m"} <= set(preset_names())


def test_a_bare_name_is_the_packaged_preset_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no configs/ here, as outside the repository
    assert load_config("demo") == load_config(presets_dir() / "demo.yaml") == load_config("demo.yaml")
    assert main(["study", "demo", "--plan"]) == 0
    assert "evolve" in capsys.readouterr().out


def test_a_file_of_that_name_wins_over_the_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("demo").write_text("name: mine\n")
    assert resolve_config_path("demo") == Path("demo") and load_config("demo").name == "mine"
    assert resolve_config_path("sub/demo") == Path("sub/demo")  # a path is never a preset


def test_config_show_prints_the_preset_and_list_names_them(capsys):
    assert main(["config", "show", "replicate-cpu"]) == 0
    assert capsys.readouterr().out == (presets_dir() / "replicate-cpu.yaml").read_text()
    assert main(["config", "list"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n{n} " in "\n" + out for n in preset_names())


@pytest.mark.parametrize("argv", [["config", "show", "nosuch"], ["study", "nosuch", "--plan"]])
def test_an_unknown_preset_names_the_real_ones(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "nosuch" in err and "demo, multiplier-cpu, paper-124m" in err
