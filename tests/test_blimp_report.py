"""BLiMP and its supplement in the report, on a hand-made run folder of evaluation JSONs: the tables by field,
phenomenon and file beside chance, step 0 and the published references read from the data folder; the
per-paradigm figure; the item-paired comparisons on the pairs' outcomes (ties as halves)."""

import json

import pytest

from connectomes.analysis import breakdowns, figures, report, results, tables
from connectomes.core.integrity import sealed
from connectomes.evals.minimal_pairs import by_group, macro, summary
from connectomes.evals.registry import tasks
from connectomes.pipeline.config import load_config

from test_report_stats import eval_run

# one paradigm per field, two pairs each
PARADIGMS = {"anaphor_gender_agreement": ("morphology", "anaphor_agreement"), "adjunct_island": ("syntax", "island_effects"),
             "existential_there_object_raising": ("syntax_semantics", "control_raising"),
             "superlative_quantifiers_1": ("semantics", "quantifiers")}
IDS = [f"{u}:{k}" for u in PARADIGMS for k in (0, 1)]
FINAL = {"connectome": [1, 1, 1, 0.5, 1, 1, 0, 1], "dense": [1, 0, 1, 0, 0, 1, 0, 0.5]}  # one seed's; seeds flip one pair
UNTRAINED = [0, 1, 0.5, 0, 1, 0, 1, 0]


def blimp_result(outcomes: list[float], data_dir: str) -> dict:
    paradigms = by_group([i.split(":")[0] for i in IDS], outcomes)
    for u, (field, term) in PARADIGMS.items():
        paradigms[u].update(field=field, phenomenon=term)

    def grouped(k: int) -> dict:
        members: dict[str, dict] = {}
        for u, labels in PARADIGMS.items():
            members.setdefault(labels[k], {})[u] = paradigms[u]
        return {g: macro(m) for g, m in sorted(members.items())}

    acc = macro(paradigms)
    return {"acc": acc, "acc_pooled": summary(outcomes), "ties": acc["ties"], "paradigms": paradigms,
            "fields": grouped(0), "phenomena": grouped(1), "items": len(IDS), "item_ids": IDS,
            "correct": {"acc": outcomes}, "selection": {"selection": "seeded stratified sample", "seed": 0, "n": 8,
                                                        "of": 67000, "unit": "pairs"}, "data_dir": data_dir}


def supplement_result(outcomes: list[float]) -> dict:
    ids = ["hypernym:0", "hypernym:1", "hypernym:2", "turn_taking:0"]
    files = by_group([i.split(":")[0] for i in ids], outcomes)
    return {"acc": macro(files), "acc_pooled": summary(outcomes), "files": files, "ties": summary(outcomes)["ties"],
            "items": 4, "item_ids": ids, "correct": {"acc_pooled": outcomes},
            "selection": {"selection": "seeded stratified sample", "seed": 0, "n": 4, "of": 5218, "unit": "pairs"}}


@pytest.fixture
def rd(tmp_path, data_root):
    run, request = eval_run(tmp_path, "0,1,2", "val_loss,blimp,blimp_supplement", "val_loss")
    for arm in ("connectome", "dense"):
        for s in range(3):
            for step, outcomes in ((0, UNTRAINED), (10, [1 - x if k == s else x for k, x in enumerate(FINAL[arm])])):
                p = run / "eval" / arm / f"seed_{s}" / f"step_{step:06d}.json"
                p.parent.mkdir(parents=True, exist_ok=True)
                res = {"val_loss": {"loss": 3.0, "tokens": 2048},
                       "blimp": blimp_result(outcomes, str(data_root / "blimp")),
                       "blimp_supplement": supplement_result(outcomes[:4])}
                p.write_text(json.dumps(sealed({"step": step, "tasks": res, **request})))
    return results.RunResults(run)


def test_field_table_has_chance_step_0_and_the_references(rd):
    rows = breakdowns.breakdown_table(rd, "blimp", tasks()["blimp"].breakdowns[0])
    assert rows[0] == ("| field | n | chance | 5-gram | LSTM | Transformer-XL | GPT-2 large | human (paper) | "
                       "Connectome step 0 → final | NoConnectome step 0 → final |")
    # morphology = anaphor_gender_agreement: step 0 (0 + 1) / 2; the connectome's pairs 1, 1 with seed 0 flipping the first
    refs = breakdowns.references(rd, "blimp")
    morph = refs["GPT-2 large"]["fields"]["morphology"]
    assert rows[2].startswith(f"| morphology | 2 | 0.50 | {refs['5-gram']['fields']['morphology']:.3f} | ")
    assert f"| {morph:.3f} | — | 0.5000 ± 0.0000 → 0.6667 ± 0.1667 |" in rows[2]
    assert rows[-1].startswith("| **overall** (BLiMP acc) | 8 | 0.50 | 0.612 | 0.698 | 0.696 | 0.830 | 0.886 | 0.4375 ± 0.0000 → ")
    assert len(rows) == 2 + 4 + 1
    phenomena = breakdowns.breakdown_table(rd, "blimp", tasks()["blimp"].breakdowns[1])
    assert phenomena[2].startswith(f"| anaphor_agreement | 2 | 0.50 | {refs['5-gram']['phenomena']['anaphor_agreement']:.3f} |")


def test_supplement_table_by_file_with_mean_and_no_references(rd):
    rows = breakdowns.breakdown_table(rd, "blimp_supplement", tasks()["blimp_supplement"].breakdowns[0])
    assert rows[0] == "| file | n | chance | Connectome step 0 → final | NoConnectome step 0 → final |"
    assert rows[2].startswith("| hypernym | 3 | 0.50 | 0.5000 ± 0.0000 → ")
    # overall: the mean of the files' accuracies (hypernym 1/2 at step 0, turn_taking 0)
    assert rows[-1].startswith("| **overall** (BLiMP supplement acc (mean of files)) | 4 | 0.50 | 0.2500 ± 0.0000 → ")


def test_comparisons_pair_the_outcomes_item_by_item(rd):
    rows = tables.comparisons(rd, n_boot=200)
    tests = [(r["metric"], r["test"]) for r in rows]
    assert ("BLiMP acc", "paired bootstrap, 8 items × 3 seeds") in tests
    assert ("BLiMP supplement acc (pooled)", "paired bootstrap, 4 items × 3 seeds") in tests
    # the mean over files is not the mean over pairs: it is compared over seeds only
    assert ("BLiMP supplement acc (mean of files)", "paired t over 3 seeds") in tests
    assert not any(m == "BLiMP supplement acc (mean of files)" and t.startswith("paired bootstrap") for m, t in tests)
    # one test per hypothesis: an accuracy with item outcomes gets the bootstrap and no seed t beside it
    assert not any(m in ("BLiMP acc", "BLiMP supplement acc (pooled)") and t.startswith("paired t") for m, t in tests)
    boot = next(r for r in rows if r["metric"] == "BLiMP acc" and r["test"].startswith("paired bootstrap"))
    # ties count half: the outcome grids' mean difference over 3 seeds x 8 pairs
    a = [[1 - x if k == s else x for k, x in enumerate(FINAL["connectome"])] for s in range(3)]
    b = [[1 - x if k == s else x for k, x in enumerate(FINAL["dense"])] for s in range(3)]
    assert boot["diff"] == pytest.approx((sum(map(sum, a)) - sum(map(sum, b))) / 24)


def test_report_has_the_tables_and_the_per_paradigm_figure(rd):
    text = report.write_report(rd.dir).read_text()
    assert "| BLiMP acc | 8 of 67,000 pairs, seeded stratified sample, seed 0 |" in text
    for heading in ("## BLiMP by field", "## BLiMP by phenomenon", "## BLiMP supplement by file"):
        assert heading in text
    assert "Published references as the task's data folder gives them" in text
    png = rd.layout.report / "blimp_paradigms.png"
    assert png.stat().st_size > 10_000 and "![blimp_paradigms](blimp_paradigms.png)" in text
    nlp = next(f for f in figures.report_figures(rd) if f.name == "nlp")
    assert nlp.caption == "BLiMP and BLiMP supplement per arm."


def test_references_absent_leave_the_table_without_them(rd, tmp_path):
    for p in (rd.dir / "eval").rglob("step_*.json"):
        res = json.loads(p.read_text())
        res["tasks"]["blimp"]["data_dir"] = str(tmp_path / "moved")
        p.write_text(json.dumps(sealed(res)))
    rd = results.RunResults(rd.dir)
    assert breakdowns.references(rd, "blimp") == {}
    assert breakdowns.breakdown_table(rd, "blimp", tasks()["blimp"].breakdowns[0])[0] == \
        "| field | n | chance | Connectome step 0 → final | NoConnectome step 0 → final |"


def test_configs_score_blimp_and_the_sweep_frontier_draws_it():
    from connectomes.analysis.results import headline_metrics

    for name, blimp, supplement in (("demo", 335, 250), ("replicate-cpu", 3350, 1000), ("sweep-cpu", 670, 250)):
        cfg = load_config(f"configs/{name}.yaml")
        assert {"blimp", "blimp_supplement"} <= set(cfg.eval.tasks), name
        assert (cfg.eval.limit["blimp"], cfg.eval.limit["blimp_supplement"]) == (blimp, supplement)
        assert blimp % 67 == 0  # every paradigm the same number of pairs: macro = pooled
    frontier = [m.label for _, m in headline_metrics(load_config("configs/sweep-cpu.yaml")) if "frontier" in m.figures]
    assert "BLiMP acc" in frontier and frontier[0] == "val loss (nats)"
