"""`connectomes anatomy` on a real (tiny) two-lineage run with a trained BPE tokenizer: the JSON, the figures,
any generation, what it says when generation 0's weights are gone, its one-line errors, and the report's
Anatomy section."""

import json

import pytest

from connectomes.analysis.anatomy.target import FILE, AnatomyTarget, token_frequency, token_names
from connectomes.analysis.report import write_report
from connectomes.cli import main
from connectomes.core.layout import RunLayout
from connectomes.data import prepare as prepare_module
from connectomes.pipeline.study import open_run, stage_evolve

from test_study import tiny


@pytest.fixture(scope="module")
def two_lineages(tmp_path_factory):
    """Two lineages of 3 generations on synthetic text under a bpe-300 tokenizer (evolve only: anatomy needs no arm)."""
    cfg = tiny(tmp_path_factory.mktemp("anatomy"), "an", "evolve.seeds=0,1", "evolve.generations=3",
               "data.tokenizer=bpe-300", "develop.seeds=0")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prepare_module, "BPE_TRAIN_CHARS", 200_000)  # bpe-300 needs little text
        run = open_run(cfg, progress=False)
    for s in (0, 1):
        stage_evolve(run, progress=False, lineage=s)
    return run.dir


def test_the_verb_writes_json_and_figures_for_every_lineage_and_the_pair(two_lineages, capsys):
    assert main(["anatomy", str(two_lineages), "--draws", "99"]) == 0
    out = capsys.readouterr().out
    assert "lineage 0 vs lineage 1: Jaccard" in out and "anatomy of generation 2" in out
    folder = two_lineages / "report" / "anatomy"
    result = json.loads((folder / FILE).read_text())
    assert set(result["lineages"]) == {"lineage 0", "lineage 1"} and len(result["pairs"]) == 1
    assert result["tokenizer"] == "bpe-300" and result["draws"] == 99 and not result["notes"]
    lin = result["lineages"]["lineage 0"]
    assert [s["generation"] for s in lin["generations"]] == [1, 2]
    assert all(s["were_alive"] == s["alive"] for s in lin["generations"])
    assert lin["magnitudes"]["construction_violations"] == 0 and lin["magnitudes"]["final_survivors"] > 0
    assert lin["codec"]["agree"] == lin["codec"]["n"] == len(lin["tensors"])
    wte = next(t for t in lin["tensors"] if t["kind"] == "wte")
    assert wte["shape"] == [320, 64] and len(wte["rows"]["alive"]) == 320  # 300 ids padded to a multiple of 64
    names = [t["token"] for t in lin["tokens"]["wte"]["most"]]
    assert all(n.startswith(("'", '"')) for n in names)  # decoded BPE pieces, not ids
    every, _ = token_names(AnatomyTarget.open(two_lineages).layout, 320)
    assert every[310] == "<unused id 310>" and lin["tokens"]["wte"]["ids_unseen"] >= 20
    meta = json.loads((two_lineages / "data/meta.json").read_text())
    assert sum(result["frequency"]) == meta["splits"]["large"]["tokens"]
    drawn = [f for f in result["figures"] if f["file"]]
    assert {f["name"] for f in drawn} >= {"degrees_lineage_0", "tokens_lineage_1", "heads_lineage_0",
                                          "magnitudes_lineage_1", "lineages_lineage_0_lineage_1"}
    assert all((folder / f["file"]).stat().st_size > 1000 for f in drawn)


def test_an_earlier_generation_goes_to_its_own_folder(two_lineages, capsys):
    assert main(["anatomy", str(two_lineages), "--generation", "0", "--draws", "99"]) == 0
    result = json.loads((two_lineages / "report/anatomy_gen_00" / FILE).read_text())
    assert result["generation"] == 0 and result["lineages"]["lineage 1"]["generations"] == []
    dens = result["lineages"]["lineage 0"]["density"]
    assert 0.79 < dens < 0.81


def test_missing_generation0_weights_are_named_not_faked(two_lineages, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(two_lineages, copy, ignore=shutil.ignore_patterns("report"))
    shutil.rmtree(copy / "lineages/seed_1/evolve/gen_00/steps")
    assert main(["anatomy", str(copy), "--draws", "99", "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / FILE).read_text())
    why = result["lineages"]["lineage 1"]["magnitudes"]["missing"]
    assert "gen_00/steps/step_XXXXXX/model.safetensors" in why
    assert "missing" not in result["lineages"]["lineage 0"]["magnitudes"]


@pytest.mark.parametrize("args,message", [(["--generation", "3"], "outside this run's generations 0..2"),
                                          (["--draws", "5"], "too few"), ])
def test_bad_input_is_one_line_and_exit_2(two_lineages, capsys, args, message):
    assert main(["anatomy", str(two_lineages), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    assert main(["anatomy", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_token_helpers_on_bytes_data(synthetic_data):
    layout = RunLayout(synthetic_data.dir.parent, data_dir=synthetic_data.dir)
    names, why = token_names(layout, 256)
    assert why is None and names[0x41] == "0x41 'A'" and names[0x0a] == "0x0a"
    counts, why = token_frequency(layout)
    assert why is None and counts.sum() == synthetic_data.split_tokens("large")
    counts, why = token_frequency(RunLayout(synthetic_data.dir.parent, data_dir=synthetic_data.dir / "absent"))
    assert counts is None and "does not exist" in why


def test_the_report_shows_the_anatomy_and_reuses_current_files(two_lineages):
    run = AnatomyTarget.open(two_lineages)
    path = run.default_out() / FILE
    if not path.exists():
        assert main(["anatomy", str(two_lineages), "--draws", "99"]) == 0
    before = path.stat().st_mtime_ns
    text = write_report(two_lineages).read_text()
    assert "## Anatomy of the connectome" in text and "#### lineage 0 vs lineage 1" in text
    assert "![degrees_lineage_0](anatomy/degrees_lineage_0.png)" in text
    # signs kept across generations are counted, not tested against a fair coin (they restart from their sign);
    # the lineages' shared signs are tested against the agreement their own sign balances give
    kept = next(line for line in text.splitlines() if line.startswith("- **Across generations:**"))
    assert "(p " not in kept and "no test: each generation restarts from its survivors' signs" in kept
    assert "sign agreement vs null from balances (p)" in text and "from each lineage's own sign balance per tensor" in text
    assert "trained weight (null 0.5)" not in text and "against 0.5" not in text
    assert path.stat().st_mtime_ns == before  # current: read, not recomputed
    path.unlink()
    fresh = write_report(two_lineages).read_text()
    assert "## Anatomy of the connectome" in fresh and path.exists()
    assert write_report(two_lineages).read_text() == fresh  # computed now or read back: the same report


def test_each_model_shape_is_analysed_at_its_own_shape_and_never_paired_across_shapes(tmp_path, capsys):
    run = open_run(tiny(tmp_path, "sh", "model.shapes=1x64,2x64", "evolve.generations=1", "develop.seeds=0"),
                   progress=False)
    for ev in AnatomyTarget.open(run.dir).lineages():
        stage_evolve(run, progress=False, shape=ev.shape)
    assert main(["anatomy", str(run.dir), "--draws", "99"]) == 0
    result = json.loads((run.dir / "report/anatomy" / FILE).read_text())
    assert set(result["lineages"]) == {"shape 1x64", "shape 2x64"} and result["pairs"] == []
    layers = {k: sorted({t["layer"] for t in v["tensors"] if t["layer"] is not None}) for k, v in result["lineages"].items()}
    assert layers == {"shape 1x64": [0], "shape 2x64": [0, 1]}
    assert "shape 2x64:" in capsys.readouterr().out
