"""`connectomes eval` for a person (issue 33): a summary table, not JSON, unless --json or --out; the val-loss
budget the study reports the step with; an arm folder answered with its steps."""

import json

from test_reliability_ii import STEP

from connectomes.cli import main
from connectomes.evals.context import step_val_loss_options, val_loss_options
from connectomes.pipeline.run import existing_run


def test_eval_of_a_step_prints_a_summary_with_the_studys_val_loss_budget(finished_study, capsys):
    assert main(["eval", str(finished_study / STEP), "--tasks", "val_loss"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    tokens = existing_run(finished_study).cfg.develop.train.eval_tokens
    assert lines[0].split() == ["checkpoint", "metric", "value", "n,", "selection"]
    assert lines[1].startswith(f"{(finished_study / STEP).name}  val loss (nats)  ")
    assert f"{tokens - tokens % 32:,} tokens: the first of the val split" in lines[1]  # whole windows of 32
    assert lines[2] == ("val loss: as the study reports this step: its training's eval budget, the first tokens of "
                        "the val split")
    assert lines[3] == "results not written: --out FILE writes them, --json prints them"
    assert "{" not in out


def test_eval_json_is_printed_only_when_asked(finished_study, tmp_path, capsys):
    assert main(["eval", str(finished_study / STEP), "--tasks", "val_loss", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["tasks"]["val_loss"]["tokens"] > 0
    out = tmp_path / "r.json"
    assert main(["eval", str(finished_study / STEP), "--tasks", "val_loss", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["tasks"]["val_loss"]["loss"] == res["tasks"]["val_loss"]["loss"]
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {out}"


def test_the_budget_is_the_studys_one_definition(finished_study):
    cfg = existing_run(finished_study).cfg
    options, _ = step_val_loss_options(finished_study / STEP)
    assert options == val_loss_options(cfg.develop.train) == {"val_loss.tokens": cfg.develop.train.eval_tokens}
    assert step_val_loss_options(finished_study / "config.yaml")[0] == {}


def test_eval_of_an_arm_folder_lists_its_steps(finished_study, capsys):
    arm = finished_study / "develop" / "dense"
    assert main(["eval", str(arm), "--tasks", "val_loss"]) == 2
    err = capsys.readouterr().err
    steps = sorted(p.relative_to(arm) for p in arm.glob("seed_*/steps/step_*"))
    assert f"error: {arm} is not a step but a folder of {len(steps)} steps: " in err
    assert ", ".join(map(str, steps)) in err and "pass one, e.g." in err
