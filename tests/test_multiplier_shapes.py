"""Issue 21's design pieces on tiny studies: per-arm sizes, early stopping's loss as the primary multiplier
(recomputed here from the units' own files), per-lineage and pooled multipliers, and the model-shape axis."""

import json
from pathlib import Path

import pytest

from connectomes.analysis.sweep_math import data_multiplier
from connectomes.analysis.sweep_multiplier import cell
from connectomes.api import study
from connectomes.cli import main
from connectomes.core.errors import ConfigError
from connectomes.pipeline.sweep import Unit, units

from test_study import tiny

MULT = ("evolve.seeds=0,1", "develop.arms=connectome,dense", "develop.seeds=0,1", "develop.sizes=1024,4096",
        "develop.sizes_by_arm={dense: [1024, 4096, 16384]}", "develop.train.keep_best=true",
        "develop.train.iters=16", "develop.train.eval_every=2", "develop.train.warmdown_iters=8",
        "develop.train.keep_steps=0", "data.small_tokens=20000")


@pytest.fixture(scope="module")
def mult_run(tmp_path_factory):
    return study(tiny(tmp_path_factory.mktemp("mult"), "m", *MULT), progress=False)


def _curve(run_dir: Path, folder: str, field: str = "val_loss") -> list[tuple[int, float]]:
    recs = [json.loads(x) for x in (run_dir / "develop" / folder / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r[field]) for r in recs if r.get(field) is not None]


def _reported_best(run_dir: Path, folder: str) -> float:
    """The unit's early-stopping loss: the report slice's at the step chosen on the selection slice."""
    step = json.loads((run_dir / "develop" / folder / "best.json").read_text())["step"]
    return dict(_curve(run_dir, folder, "report_loss"))[step]


def test_per_arm_sizes_expand_the_dense_curve_only(tmp_path):
    cfg = tiny(tmp_path, "m", *MULT)
    us = units(cfg)
    assert sorted({u.tokens for u in us if u.arm == "dense"}) == [1024, 4096, 16384]
    assert sorted({u.tokens for u in us if u.arm == "connectome"}) == [1024, 4096]
    assert len(us) == 2 * 2 * 2 + 3 * 2  # connectome: sizes x lineages x seeds; dense: sizes x seeds
    with pytest.raises(ConfigError, match=r"develop.sizes_by_arm.dense must include 4,096"):
        tiny(tmp_path, "m", *MULT[:-1], "develop.sizes_by_arm={dense: [1024, 16384]}")
    with pytest.raises(ConfigError, match=r"develop.sizes_by_arm names 'random'"):
        tiny(tmp_path, "m", *MULT, "develop.sizes_by_arm={random: [4096]}")


def test_the_best_step_is_evaluated_and_reported(mult_run):
    for folder in ("lineage_0/tokens_1024/connectome/seed_1", "tokens_16384/dense/seed_0"):
        curve = _curve(mult_run, folder)
        best = json.loads((mult_run / "develop" / folder / "best.json").read_text())
        assert best["val_loss"] == min(v for _, v in curve) and best["step"] == min(curve, key=lambda sv: sv[1])[0]
        res = json.loads((mult_run / "eval" / folder / f"step_{best['step']:06d}.json").read_text())
        # the eval at the best step is the logged number of the report slice, not the one it was chosen on
        assert res["tasks"]["val_loss"]["loss"] == dict(_curve(mult_run, folder, "report_loss"))[best["step"]]
    md = (mult_run / "report/report.md").read_text()
    best = json.loads((mult_run / "develop/tokens_16384/dense/seed_0/best.json").read_text())
    row = next(line for line in md.splitlines() if line.startswith("| NoConnectome | 0 | — | — | 16,384 |"))
    assert row.split(" | ")[8].strip(" |") == str(best["step"])  # the unit table's best-step column


def test_multiplier_rows_equal_sweep_math_on_the_units_best_losses(mult_run):
    """The report's primary multiplier is on early stopping's loss (the report slice at the kept step); recomputed
    from metrics.jsonl: the dense curve at its own sizes (three: fitted), the connectome as two lineages x two
    seeds, pooled and per lineage."""
    best = lambda folder: _reported_best(mult_run, folder)  # noqa: E731
    dense_sizes, conn_sizes = [1024, 4096, 16384], [1024, 4096]
    dense = [[best(f"tokens_{n}/dense/seed_{s}") for s in (0, 1)] for n in dense_sizes]
    per_lineage = [[[best(f"lineage_{lin}/tokens_{n}/connectome/seed_{s}") for s in (0, 1)] for n in conn_sizes]
                   for lin in (0, 1)]
    want = data_multiplier(dense_sizes, dense, per_lineage, connectome_sizes=conn_sizes)
    md = (mult_run / "report/report.md").read_text()
    assert "| tokens | multiplier [95% CI] | straight line | lineage 0 [95% CI] | lineage 1 [95% CI] | " \
           "t over lineage means (1 df) |" in md
    assert want.fit is None or f"(weighted least squares, analysis.sweep_math): {want.fit.text()}" in md
    for m in want.rows:
        lins = " | ".join(cell(r, r.ci, m.span) for r in m.lineages)
        assert f"| {m.tokens:,} | {cell(m, m.ci, m.span)} | {cell(m.line, None, m.span)} | {lins} | " in md
    assert "hierarchical bootstrap over 2 lineages × 2 seeds and 2 dense seeds" in md
    assert (mult_run / "report/data_efficiency.png").exists()


SHAPES = ("model.shapes=1x64,2x64", "develop.arms=connectome,random,dense", "develop.seeds=0",
          "evolve.generations=2")


def test_each_shape_evolves_its_own_lineage_and_its_units_develop_at_its_shape(tmp_path):
    cfg = tiny(tmp_path, "s", *SHAPES)
    assert {u.shape for u in units(cfg)} == {"1x64", "2x64"} and Unit("dense", 0, shape="2x64") in units(cfg)
    run_dir = study(cfg, progress=False)
    for shape, layers in (("1x64", 1), ("2x64", 2)):
        state = json.loads((run_dir / f"lineages/shape_{shape}/evolve/gen_00/pruned/state.json").read_text())
        assert state["model_config"]["n_layer"] == layers and state["model_config"]["n_embd"] == 64
        dense = json.loads((run_dir / f"develop/shape_{shape}/dense/seed_0/steps/step_000010/state.json").read_text())
        assert dense["model_config"]["n_layer"] == layers
    import connectomes

    df = connectomes.results(run_dir)  # each shape's rows are its own
    for shape in ("1x64", "2x64"):
        rel = f"eval/shape_{shape}/dense/seed_0/step_000010.json"
        loss = json.loads((run_dir / rel).read_text())["tasks"]["val_loss"]["loss"]
        row = df[(df["shape"] == shape) & (df.arm == "dense") & (df.step == 10) & (df.task == "val_loss")
                 & (df.source == "eval")]
        assert row.value.tolist() == [loss]
    md = (run_dir / "report/report.md").read_text()
    assert "### Model shapes" in md and "| 2x64 |" in md and (run_dir / "report/shapes.png").exists()
    # one lineage per shape: its spread is over seeds and said to be; the paired comparisons table or why not
    assert "| 1 × 1 | " in md and ("| A (shape, generation) | B (shape, generation) |" in md
                                   or "*(no paired shape comparison: " in md)
    with pytest.raises(ConfigError, match=r"model.shapes entry '3x50': width 50 is not a multiple of the head width 32"):
        tiny(tmp_path, "s", "model.shapes=3x50")


def test_plan_lists_every_unit_of_both_shipped_configs(capsys):
    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("multiplier-cpu", "shapes-cpu"):
        from connectomes.pipeline.config import load_config

        cfg = load_config(root / f"{name}.yaml")
        assert main(["study", str(root / f"{name}.yaml"), "--plan", "--gpu", "h100"]) == 0
        out = capsys.readouterr().out
        for u in units(cfg):
            assert f"develop {u.label} " in out
