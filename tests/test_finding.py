"""The report's finding (analysis.finding): the headline sentence follows the statistics, whichever way they
came out, and a one-seed run says why it has no tests (issue 33)."""

import pytest

from connectomes.analysis import finding
from connectomes.analysis.finding import finding_lines
from connectomes.analysis.results import headline_metrics
from connectomes.pipeline.config import load_config
from connectomes.pipeline.plan import plan_gpt_config

CFG = load_config(None, ["develop.arms=connectome,random,dense", "develop.seeds=0,1", "eval.tasks=val_loss"])
VAL = next(m for t, m in headline_metrics(CFG) if t == "val_loss")


class FakeRun:
    """What finding_lines reads of a RunResults: arms, seeds, the config, per-arm values and generation 0."""

    def __init__(self, final: dict, start: dict, upper: float | None, seeds=(0, 1)):
        self.config, self.arms, self.seeds, self.final_step = CFG, ["connectome", "random", "dense"], list(seeds), "final"
        self.values, self.upper_bound = {"final": final, 0: start}, upper

    def metric(self, arm, seed, step, task, metric):
        return self.values[step][arm][seed] if task == "val_loss" else None


def row(diff, ci, p_holm, a="connectome", b="dense", mdd=None):
    return {"metric": VAL.label, "a": a, "b": b, "test": "paired t over 2 seeds", "diff": diff, "ci": ci, "p": p_holm,
            "p_holm": p_holm, "family": "primary", "mdd": mdd}


START = {"connectome": [4.9, 4.9], "random": [5.5, 5.5], "dense": [5.5, 5.6]}


def text(rd, rows):
    return "\n".join(finding_lines(rd, rows))


def test_a_worse_connectome_is_said_to_be_not_better_and_dense_past_the_upper_bound_is_flagged():
    rd = FakeRun({"connectome": [2.50, 2.498], "random": [2.79, 2.79], "dense": [2.47, 2.4834]}, START, upper=2.4811)
    t = text(rd, [row(+0.0223, [-0.0801, +0.1248], 0.22, mdd=0.1317)])
    assert ("**Connectome is not better than NoConnectome here**: val loss (nats) (lower is better) at the final step, 2.4990 against "
            "2.4767, a difference of +0.0223 [95% CI -0.0801, +0.1248] (paired t over 2 seeds, Holm p 0.22") in t
    assert "Connectome is past its floor (step 0 4.9000); NoConnectome is past its floor (step 0 5.5500)" in t
    assert ("**Flag:** NoConnectome (2.4767) is below the upper-bound line (generation 0, the dense model trained on "
            "the large split: 2.4811)") in t
    weights = f"{plan_gpt_config(CFG).num_weights / 1e6:.2f}M"
    assert (f"**What this run can show:** whether, for a {weights}-weight model developing on {CFG.data.small_tokens:,} tokens per "
            "unit, the arms order the way the method predicts; with 2 seeds per arm its primary test detects a true "
            "difference of 0.132 (val loss (nats)) with 80% power, and smaller ones go unseen. It cannot show") in t


def test_a_clear_lead_is_called_better_and_a_lead_within_the_noise_is_not():
    rd = FakeRun({"connectome": [2.40, 2.41], "random": [2.79, 2.79], "dense": [2.50, 2.52]}, START, upper=2.30)
    clear = text(rd, [row(-0.105, [-0.12, -0.09], 0.01)])
    assert "**Connectome is better than NoConnectome here**" in clear and "Every arm stays above" in clear
    assert "Flag" not in clear
    noisy = text(rd, [row(-0.105, [-0.3, +0.09], 0.2)])
    assert "**Connectome is not shown better than NoConnectome here** (ahead, but short of the standard)" in noisy
    worse = text(rd, [row(+0.105, [+0.09, +0.12], 0.01)])
    assert "**Connectome is worse than NoConnectome here**" in worse


def test_an_arm_that_never_left_its_floor_is_said_so():
    rd = FakeRun({"connectome": [5.0, 5.0], "random": [5.5, 5.5], "dense": [5.6, 5.6]}, START, upper=None)
    t = text(rd, [row(-0.6, [-0.7, -0.5], 0.01)])
    assert "Connectome has not left its floor (step 0 4.9000)" in t and "NoConnectome has not left its floor" in t


def test_one_seed_says_why_there_are_no_comparisons():
    rd = FakeRun({"connectome": [2.5], "random": [2.8], "dense": [2.45]},
                 {"connectome": [4.9], "random": [5.5], "dense": [5.5]}, upper=2.48, seeds=(0,))
    t = text(rd, [])
    assert ("val loss (nats) at the final step: Connectome 2.5000, NoConnectome 2.4500, one run each and untested, so this run shows "
            "no difference either way. No comparisons: this run has 1 seed per arm (develop.seeds = [0]).") in t
    assert "develop.seeds=0,1" in t


@pytest.mark.parametrize("alpha_p", [0.049, 0.051])
def test_the_verdict_follows_the_holm_threshold(alpha_p):
    rd = FakeRun({"connectome": [2.40, 2.41], "random": [2.79, 2.79], "dense": [2.50, 2.52]}, START, upper=None)
    t = text(rd, [row(-0.105, [-0.2, -0.01], alpha_p)])
    assert ("is better than" in t) == (alpha_p < finding.ALPHA)


def test_the_one_seed_report_of_a_finished_study(finished_study):
    from connectomes.analysis.report import stats_section
    from connectomes.analysis.results import RunResults

    rd = RunResults(finished_study)
    assert len(rd.seeds) == 1
    t = "\n".join(finding_lines(rd)) + "\n".join(stats_section(rd))
    assert "No comparisons: this run has 1 seed per arm" in t and "| metric | A − B |" not in t


def test_with_early_stopping_the_finding_is_read_at_the_kept_step():
    """The final step of an early-stopped unit lies `patience` evaluations past the step it kept: the finding tests
    the kept steps (results.BEST), the model the design reports."""
    rd = FakeRun({"connectome": [2.70, 2.72], "random": [2.9, 2.9], "dense": [3.0, 3.1]}, START, upper=2.48)
    rd.config = load_config(None, ["develop.arms=connectome,random,dense", "develop.seeds=0,1", "eval.tasks=val_loss",
                                   "develop.train.keep_best=true", "develop.train.eval_every=20"])
    rd.values["best"] = {"connectome": [2.60, 2.61], "random": [2.75, 2.80], "dense": [2.65, 2.68]}
    t = text(rd, None)
    assert "at the step each unit kept, 2.6050 against 2.6650, a difference of -0.0600" in t
    assert "(generation 0 on the selection slice, the arms on the report slice)" in t


def test_with_several_lineages_the_finding_also_tests_the_claim_over_lineage_means(tmp_path):
    """The headline sentence reads one lineage; the design's own test pairs connectome and dense by lineage and
    seed with a t interval over the lineage means, here checked against a hand computation from the eval files."""
    import json

    import numpy as np
    from scipy import stats
    from test_reliability import small

    from connectomes.analysis.results import RunResults
    from connectomes.api import study

    cfg = small(tmp_path, "lin", "evolve.seeds=0,1", "develop.seeds=0,1")
    run = study(cfg, progress=False)

    def loss(tag, arm, seed):
        return json.loads((run / "eval" / tag / arm / f"seed_{seed}" / "step_000006.json").read_text())["tasks"]["val_loss"]["loss"]

    means = [np.mean([loss(f"lineage_{lin}", "connectome", s) - loss("", "dense", s) for s in (0, 1)]) for lin in (0, 1)]
    half = stats.t.ppf(0.975, 1) * np.std(means, ddof=1) / np.sqrt(2)
    line = next(x for x in finding_lines(RunResults(run)) if x.startswith("Across lineages"))
    assert f"{np.mean(means):+.4f} [95% CI {np.mean(means) - half:+.4f}, {np.mean(means) + half:+.4f}]" in line
    assert "t over 2 lineages (df 1), 4 pairs" in line and "not in the Holm family" in line
