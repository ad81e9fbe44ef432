"""The report's statistics on a hand-made run folder of evaluation JSONs: n and selection per metric,
floor rows, seed-paired and item-paired comparisons (pairing by item id), Holm within the primary and
secondary families."""

import json
import math

import numpy as np
import pytest

from connectomes.analysis import figures, report, results, stats, tables
from connectomes.core.integrity import sealed
from connectomes.evals.context import context_for
from connectomes.evals.registry import tasks
from connectomes.pipeline.config import dump_config, load_config

ARMS = ("connectome", "dense")
SELECTION = {"selection": "seeded uniform sample", "seed": 0, "n": 8, "of": 10042}
IDS = list(range(100, 108))


def metric(task: str, label: str):
    return next(m for m in tasks()[task].metrics if m.label == label)


def hellaswag(correct: list[int], ids=IDS) -> dict:
    return {"acc": {"value": sum(correct) / len(correct), "n": len(correct)}, "item_ids": list(ids),
            "selection": SELECTION, "items": len(correct), "correct": {"acc": list(correct)}}


def eval_run(tmp_path, seeds: str, tasks: str, step_tasks: str):
    """A run folder holding only config.yaml (arms connectome and dense, these seeds and tasks), and the
    evaluation request its results must carry to count as current."""
    cfg = load_config(None, [f"runs_dir={tmp_path}", "name=r", "develop.arms=connectome,dense", f"develop.seeds={seeds}",
                             "develop.train.iters=10", "develop.train.warmup_iters=2", "develop.train.warmdown_iters=2",
                             f"eval.tasks={tasks}", f"eval.step_tasks={step_tasks}"])
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(cfg))
    return run, context_for(cfg).request()


def write_eval(run, arm, seed, step, tasks, request):
    p = run / "eval" / arm / f"seed_{seed}" / f"step_{step:06d}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    # made under the config's request (current) and sealed, as the runner writes it
    p.write_text(json.dumps(sealed({"step": step, "tasks": tasks, **request})))


# dense answers items 100..107 with these outcomes (6, 5, 4 of 8 right); the connectome all right
DENSE = [[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0]]
VAL = {"connectome": [2.0, 1.5, 1.0], "dense": [3.0, 3.5, 4.0]}  # differences -1, -2, -3
UNTRAINED = [0, 1, 0, 0, 1, 1, 0, 1]  # step 0: both arms, the same outcome per item id


@pytest.fixture
def rd(tmp_path):
    run, request = eval_run(tmp_path, "0,1,2", "val_loss,hellaswag", "val_loss")
    for s in range(3):
        for arm in ARMS:
            final = [1] * 8 if arm == "connectome" else DENSE[s]
            write_eval(run, arm, s, 10, {"val_loss": {"loss": VAL[arm][s], "tokens": 2048}, "hellaswag": hellaswag(final)}, request)
        # step 0: the connectome's JSON lists the items in reverse order; pairing must follow the ids
        write_eval(run, "dense", s, 0, {"val_loss": {"loss": 5.5, "tokens": 2048}, "hellaswag": hellaswag(UNTRAINED)}, request)
        write_eval(run, "connectome", s, 0, {"val_loss": {"loss": 5.5, "tokens": 2048},
                                             "hellaswag": hellaswag(UNTRAINED[::-1], ids=IDS[::-1])}, request)
    return results.RunResults(run)


def test_headline_rows_state_n_and_selection(rd):
    rows = tables.headline_table(rd)
    assert rows[2] == ("| val loss (nats) | 2,048 tokens: the first of the val split, the training curves' windows | "
                       "1.5000 ± 0.2887 | 3.5000 ± 0.2887 |")
    assert rows[3] == ("| HellaSwag acc | 8 of 10,042 items, seeded uniform sample, seed 0 | 1.0000 ± 0.0000 | "
                       "0.6250 ± 0.0722 |")
    assert len(rows) == 4  # acc_norm_token and acc_norm_char have no values here: no rows


def test_floor_rows_show_chance_and_the_untrained_model(rd):
    rows = tables.floor_table(rd)
    assert rows[2] == "| val loss (nats) | — | 5.5000 ± 0.0000 → 1.5000 ± 0.2887 | 5.5000 ± 0.0000 → 3.5000 ± 0.2887 |"
    assert rows[3] == "| HellaSwag acc | 0.25 | 0.5000 ± 0.0000 → 1.0000 ± 0.0000 | 0.5000 ± 0.0000 → 0.6250 ± 0.0722 |"


def test_bootstrap_pairs_items_by_id_not_position(rd):
    a, b = tables.paired_items(rd, "connectome", "dense", "hellaswag", metric("hellaswag", "HellaSwag acc"), 0)
    assert np.array_equal(a, b) and a.shape == (3, 8)  # by position the reversed list would disagree on 6 of 8
    r = stats.paired_bootstrap(a, b, n_boot=500)
    assert r["mean_diff"] == 0 and r["ci"] == [0.0, 0.0] and r["p"] == 1.0


def test_comparisons_one_test_per_hypothesis_and_holm(rd):
    """The loss by the seed-paired t, the accuracy only by the bootstrap over seeds and items (its seed t would
    test the same hypothesis twice in one family)."""
    rows = tables.comparisons(rd, n_boot=2000)
    assert [(r["metric"], r["test"]) for r in rows] == [
        ("val loss (nats)", "paired t over 3 seeds"), ("HellaSwag acc", "paired bootstrap, 8 items × 3 seeds")]
    vl, acc_b = rows
    # df 2: P(T > t) = (1 - t / sqrt(t^2 + 2)) / 2; val loss t = -2 / (1 / sqrt 3)
    p_vl = 1 - 12 ** 0.5 / 14 ** 0.5
    assert vl["diff"] == -2 and vl["p"] == pytest.approx(p_vl, rel=1e-9) and vl["dz"] == pytest.approx(-2)
    assert vl["mdd"] == pytest.approx(stats.minimum_detectable_difference(1.0, 3))
    # the item-level bootstrap on the grids matched by id (ids sorted; here already in order)
    want = stats.paired_bootstrap(np.ones((3, 8)), np.array(DENSE, dtype=float), n_boot=2000, seed=0)
    assert (acc_b["diff"], acc_b["ci"], acc_b["p"], acc_b["mdd"]) == (0.375, want["ci"], want["p"], None)
    # two families of one test each: Holm leaves both p-values as they are
    assert [r["family"] for r in rows] == ["primary", "secondary"]
    assert [r["p_holm"] for r in rows] == [vl["p"], acc_b["p"]]
    table = tables.comparison_table(rows)
    assert table[0] == ("| metric | A − B | test | difference [95% CI] | d_z [95% CI] | p | family | "
                        "p (Holm, within family) | min. detectable |")
    assert table[2].startswith("| val loss (nats) | Connectome − NoConnectome | paired t over 3 seeds | "
                               "-2.0000 [")
    assert math.isclose(float(table[2].split("|")[6]), p_vl, rel_tol=1e-3)
    assert [line.split("|")[7].strip() for line in table[2:]] == ["primary", "secondary"]
    assert math.isclose(float(table[2].split("|")[8]), p_vl, rel_tol=1e-3)
    assert table[3].split("|")[3].strip() == "paired bootstrap, 8 items × 3 seeds"
    assert tables.families_note(rd, rows) == (
        "Primary metric (eval.primary = `val_loss.loss`): **val loss (nats)**. Its arm comparisons are one Holm "
        "family (1 p-values), every other comparison a second, secondary family (1 p-values); the family column says "
        "which family each p-value was adjusted in. " + tables.ONE_TEST)


def test_an_accuracy_without_item_outcomes_falls_back_to_the_seed_t(rd, monkeypatch):
    monkeypatch.setattr(tables, "item_outcomes", lambda result, metric: None)  # results from before item ids
    rows = tables.comparisons(rd, n_boot=200)
    acc = [r for r in rows if r["metric"] == "HellaSwag acc"]
    assert [r["test"] for r in acc] == ["paired t over 3 seeds"]
    # accuracy t = 0.375 / (0.125 / sqrt 3), df 2
    assert acc[0]["p"] == pytest.approx(1 - 27 ** 0.5 / 29 ** 0.5, rel=1e-9)


def test_a_declared_primary_metric_takes_the_primary_family(rd):
    import yaml

    cfg = yaml.safe_load((rd.dir / "config.yaml").read_text())
    cfg["eval"]["primary"] = "hellaswag.acc"
    (rd.dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    rd = results.RunResults(rd.dir)
    rows = tables.comparisons(rd, n_boot=2000)
    assert [r["family"] for r in rows] == ["secondary", "primary"]
    assert [r["p_holm"] for r in rows] == [r["p"] for r in rows]  # one test in each family
    assert "**HellaSwag acc**" in tables.families_note(rd, rows)
    text = report.write_report(rd.dir).read_text()
    assert "Primary metric (eval.primary = `hellaswag.acc`): **HellaSwag acc**." in text
    assert "p (Holm, within family)" in text


def test_a_primary_metric_the_run_does_not_evaluate_leaves_one_secondary_family(rd):
    import yaml

    cfg = yaml.safe_load((rd.dir / "config.yaml").read_text())
    cfg["eval"]["tasks"] = cfg["eval"]["step_tasks"] = ["hellaswag"]  # no val loss: the default primary is absent
    (rd.dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    rd = results.RunResults(rd.dir)
    rows = tables.comparisons(rd, n_boot=200)
    assert {r["family"] for r in rows} == {"secondary"} and len(rows) == 1
    assert tables.families_note(rd, rows) == (
        "Primary metric (eval.primary = `val_loss.loss`): not evaluated in this run, so there is no primary family; "
        "p (Holm) adjusts all 1 p-values as one secondary family. " + tables.ONE_TEST)


@pytest.mark.parametrize("overrides,message", [
    (["eval.primary=val_loss.los"], r"eval.primary = 'val_loss.los' is not one of .*fmri.best_r, .*val_loss.loss"),
    (["eval.tasks=val_loss", "eval.step_tasks=val_loss", "eval.primary=hellaswag.acc"],
     r"eval.primary = 'hellaswag.acc' is not a metric of the evaluated tasks \(eval.tasks, eval.step_tasks\); "
     r"valid choices: val_loss.loss$"),
])
def test_eval_primary_is_checked_against_the_registry_and_the_evaluated_tasks(overrides, message):
    from connectomes.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_eval_primary_at_its_default_leaves_the_resolved_config_and_its_hash_alone():
    assert "primary" not in dump_config(load_config(None))
    assert load_config(None).eval.primary == "val_loss.loss"
    assert "primary: reading_times.baseline_regression.delta_r2" in dump_config(
        load_config(None, ["eval.primary=reading_times.baseline_regression.delta_r2"]))


def test_report_md_has_the_floor_comparison_and_selection_sections(rd):
    text = report.write_report(rd.dir).read_text()
    for heading in ("## Headline numbers (final inner-loop step)", "## Floors", "## Comparisons between arms"):
        assert heading in text
    assert "| HellaSwag acc | 8 of 10,042 items, seeded uniform sample, seed 0 |" in text
    assert "## Encoding scores" not in text  # no fmri or langloc results in this folder


def test_encoding_table_shows_cv_spread_and_alpha_edges(rd):
    for arm, r0 in (("connectome", 0.10), ("dense", 0.04)):
        for s in range(3):
            entry = {"r": r0 + 0.01 * s, "se": 0.002 * (s + 1), "alpha_edge": {"lowest": s, "highest": 1, "folds": 25}}
            fmri = {"roi": "lang_LH_netw", "per_layer": [{"layer": 0, "r": 0.0, "se": 0.0, "alpha_edge": {}},
                                                          {"layer": 1, **entry}],
                    "best_layer": 1, "best_r": entry["r"], "items": 1000, "partitions": 5, "folds": 5}
            p = rd.dir / "eval" / arm / f"seed_{s}" / "step_000010.json"
            res = json.loads(p.read_text())
            res["tasks"]["fmri"] = fmri
            p.write_text(json.dumps(sealed(res)))
    rd = results.RunResults(rd.dir)
    rows = tables.encoding_table(rd)
    # r: mean ± s.e. over seeds of the per-seed means over partitions; s.e. over partitions averaged; edges summed
    assert rows[2] == "| fMRI best layer (lang_LH_netw) | Connectome | 0.1100 ± 0.0058 | 0.0040 | 3 / 3 of 75 |"
    assert rows[3] == "| fMRI best layer (lang_LH_netw) | NoConnectome | 0.0500 ± 0.0058 | 0.0040 | 3 / 3 of 75 |"
    assert tasks()["fmri"].describe(rd.task_result("dense", 0, 10, "fmri"), tasks()["fmri"].metrics[0]) == \
        "all 1,000 sentences, repeated 5×5-fold CV"
    assert figures.save(figures.draw_layers(rd, "fmri", []), rd.dir / "fmri.png").stat().st_size > 10_000


def test_old_results_without_a_selection_say_so():
    hs, fm = tasks()["hellaswag"], tasks()["fmri"]
    assert hs.describe({"acc": {"value": 0.3}, "items": 200}, hs.metrics[1]) == "200 items, selection not recorded"
    assert fm.describe({"best_r": 0.1}, fm.metrics[0]) == "not recorded"
    assert fm.encoding({"per_layer": [{"r": 0.1}], "best_layer": 0}) == []


def test_results_made_with_another_sample_seed_or_val_budget_are_left_out(rd):
    import yaml

    cfg = yaml.safe_load((rd.dir / "config.yaml").read_text())
    cfg["eval"]["sample_seed"] = 1
    (rd.dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    left = results.RunResults(rd.dir).left_out
    assert len(left) == 12 and all("sample_seed" in why for _, why in left)
    cfg["eval"]["sample_seed"], cfg["develop"]["train"]["eval_tokens"] = 0, 4096
    cfg["evolve"]["train"]["eval_tokens"] = 4096
    (rd.dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    left = results.RunResults(rd.dir).left_out  # val_loss.tokens is in the request's options
    assert len(left) == 12 and all("options" in why for _, why in left)


def test_results_table_is_every_number_with_its_unit_and_staleness(rd):
    import connectomes

    df = connectomes.results(rd.dir)
    assert list(df.columns) == ["shape", "lineage", "generation", "tokens", "corpus", "evolved_on", "arm", "seed", "step", "task", "metric",
                                "value", "n", "selection", "source", "stale", "status", "why"]
    # 2 arms x 3 seeds x 2 steps x (val loss + HellaSwag acc); no metrics.jsonl in this folder
    assert len(df) == 24 and not df["stale"].any() and set(df["source"]) == {"eval"} and set(df.status) == {"current"}
    row = df[(df.arm == "dense") & (df.seed == 2) & (df.step == 10) & (df.metric == "HellaSwag acc")].iloc[0]
    assert row.value == 0.5 and row.n == 8 and row.selection == "8 of 10,042 items, seeded uniform sample, seed 0"
    assert df[(df.arm == "connectome") & (df.task == "val_loss") & (df.step == 10)].value.tolist() == VAL["connectome"]
    assert set(df.generation.dropna()) == {5} and df[df.arm == "dense"].generation.isna().all()
    # a result made with another sample seed is kept in the table, flagged, and left out of the report's numbers
    p = rd.dir / "eval" / "dense" / "seed_0" / "step_000010.json"
    p.write_text(json.dumps(sealed(dict(json.loads(p.read_text()), sample_seed=9))))
    df = connectomes.results(rd.dir)
    assert df.stale.sum() == 2 and set(df[df.stale].arm) == {"dense"} and set(df[df.stale].step) == {10}
    assert results.RunResults(rd.dir).metric("dense", 0, 10, "val_loss", tasks()["val_loss"].metrics[0]) is None


def test_every_figure_is_drawn_saved_under_its_name_and_embedded_by_one_path(tmp_path):
    """figures.figure_lines: a figure is saved as <name>.png and embedded under its caption as the section's
    Embed lays it out; one that draws nothing leaves no file and is named as absent (or left out)."""
    def line():
        fig, ax = figures.plt_module().subplots()
        ax.plot([0, 1], [1, 0])
        return fig

    figs = [figures.Figure("drawn", "A line.", line), figures.Figure("empty", "Nothing.", lambda: None)]
    assert figures.figure_lines(figs, tmp_path) == [
        "### A line.", "", "![drawn](drawn.png)", "", "- Nothing. *(not drawn: no results for it in this run)*"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drawn.png"]
    records = figures.draw_figures(figs, tmp_path)
    assert records == [{"name": "drawn", "caption": "A line.", "file": "drawn.png"},
                       {"name": "empty", "caption": "Nothing.", "file": None}]
    bold = figures.Embed(("**{caption}**", "![{name}]({path})"))
    assert figures.embed_lines(records, bold, "sub") == ["**A line.**", "![drawn](sub/drawn.png)"]
