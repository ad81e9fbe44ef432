"""Arms are a registry (connectome.arms.ARMS): a new arm is one entry, and every arm-indexed table and figure
of the report reads it. A toy arm registered here (the connectome with every sign inverted) must show up in
the config's choices, the report's tables, the curves figure and the sweep figures, with no other edit."""

from __future__ import annotations

import re

import matplotlib.figure
import pytest

from connectomes.connectome import arms
from connectomes.connectome.ternary import Connectome
from connectomes.core.errors import ConfigError
from connectomes.pipeline.config import load_config

TOY = arms.Arm("toy", "ToyArm", "#000000", lambda conn, seed: Connectome({k: -t for k, t in conn.ternary.items()},
                                                                         conn.meta), "-.")


@pytest.fixture
def toy_arm(monkeypatch):
    monkeypatch.setitem(arms.ARMS, "toy", TOY)
    return TOY


@pytest.fixture
def legends(monkeypatch):
    """Every saved figure's file name -> the legend labels of its axes (read as the file is written)."""
    seen: dict[str, list[str]] = {}
    real = matplotlib.figure.Figure.savefig

    def savefig(fig, fname, *a, **k):
        labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        labels += [t.get_text() for leg in fig.legends for t in leg.get_texts()]
        seen[re.sub(r"\.tmp\d+$", "", str(fname).rsplit("/", 1)[-1])] = labels  # figures are written via a temporary
        return real(fig, fname, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    return seen


def test_an_unregistered_arm_is_refused_and_a_registered_one_accepted(tmp_path, toy_arm):
    cfg = load_config(None, [f"runs_dir={tmp_path}", "develop.arms=connectome,toy,dense"])
    assert cfg.develop.arms == ["connectome", "toy", "dense"]
    with pytest.raises(ConfigError, match="'nope' is not one of connectome, random, dense, mask_only, .*, toy, transplant:<.*>, lowrank:<.*>"):
        load_config(None, [f"runs_dir={tmp_path}", "develop.arms=connectome,nope"])


def test_a_toy_arm_appears_in_every_table_and_figure_of_a_study_report(tmp_path, toy_arm, legends):
    from test_reliability import small

    from connectomes.api import study

    run = study(small(tmp_path, "toy", "develop.arms=connectome,toy,dense", "develop.seeds=0,1"), progress=False)
    md = (run / "report/report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| metric | n, selection |"))
    assert header.split("|")[3:6] == [" Connectome ", " ToyArm ", " NoConnectome "]
    floors = next(line for line in md.splitlines() if line.startswith("| metric | chance |"))
    assert "ToyArm step 0 → final" in floors
    pairs = [line for line in md.splitlines() if line.startswith("| val loss (nats) |") and " − " in line]
    assert {p.split("|")[2].strip() for p in pairs} == {"Connectome − ToyArm", "Connectome − NoConnectome",
                                                          "ToyArm − NoConnectome"}
    assert "ToyArm" in " ".join(legends["val_loss.png"])


def _row(arm, shape, gen, seed, loss, bits):
    from connectomes.pipeline.sweep import Unit

    unit = Unit(arm=arm, seed=seed, lineage=0 if bits else None, generation=gen if bits else None, tokens=None,
                shape=shape)
    return {"unit": unit, "tokens": 1000, "generation": gen, "final": loss, "best": loss, "best_step": 10,
            "bits": {"structured_file": bits, "total": bits} if bits else None}


def test_a_toy_arm_is_drawn_in_the_sweep_figures(tmp_path, toy_arm, legends):
    from connectomes.analysis.figures import save
    from connectomes.analysis.sweep_report import fig_frontier
    from connectomes.analysis.sweep_shapes import fig_shapes

    rows = [_row(arm, "2x64", g, s, 2.0 + 0.1 * i + 0.01 * s, 1e5 * (g + 1) if arm != "dense" else None)
            for i, arm in enumerate(("connectome", "toy", "random", "dense")) for g in (0, 1) for s in (0, 1)]
    save(fig_shapes(rows, "best", {}), tmp_path / "shapes.png")
    assert {"2x64 Connectome", "2x64 ToyArm", "2x64 RandomConnectome", "2x64 NoConnectome"} <= set(legends["shapes.png"])
    save(fig_frontier(rows, [], "best"), tmp_path / "frontier.png")
    assert {"Connectome", "ToyArm", "RandomConnectome"} <= set(legends["frontier.png"])
