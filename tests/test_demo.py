"""`make demo`'s study: the demo config end to end, with every figure in the report."""

from pathlib import Path

import pytest

from connectomes.analysis import figures
from connectomes.cli import main

FIGURES = ("val_loss.png", "nlp.png", "reading_times.png", "fmri.png", "connectome.png", "frontier.png")


@pytest.mark.slow
def test_demo_study_writes_the_report_with_all_figures(tmp_path, data_root, monkeypatch):
    unreadable = {}
    real = figures.save

    def save(fig, path):  # every figure the demo draws goes through here (analysis.figures)
        if figures.unreadable(fig):
            unreadable[path.name] = figures.unreadable(fig)
        return real(fig, path)

    monkeypatch.setattr(figures, "save", save)
    assert main(["study", "configs/demo.yaml", f"runs_dir={tmp_path}"]) == 0
    report = tmp_path / "demo" / "report"
    for fig in FIGURES:
        assert (report / fig).stat().st_size > 10_000, fig
    assert unreadable == {}
    text = (report / "report.md").read_text()
    assert "Skipped evaluations" not in text and "not drawn: no results" not in text
    # the demo is data-limited and early-stopped: its finding is read at the step each unit kept, whatever it says
    finding = text.split("## Finding", 1)[1].split("\n## ", 1)[0]
    assert "at the step each unit kept" in finding and "Holm p" in finding
    assert "**What this run can show:** whether, for a 0.13M-weight model developing on 8,192 tokens per unit" in finding


def test_synthetic_fallback_without_a_data_folder(tmp_path, monkeypatch, capsys):
    """With no data folder anywhere the study still runs, on the package's synthetic corpus, and says so.
    Run from another folder with a relative runs_dir, as `make demo` writes runs/demo."""
    monkeypatch.setenv("CONNECTOMES_DATA", str(tmp_path / "absent"))
    config = Path("configs/demo.yaml").resolve()
    monkeypatch.chdir(tmp_path)
    args = ["study", str(config), "runs_dir=runs", "name=synth", "model.n_layer=1",
            "data.large_tokens=60000", "data.small_tokens=20000", "data.val_tokens=8192", "evolve.generations=1",
            "evolve.train.iters=10", "evolve.train.warmup_iters=2", "evolve.train.warmdown_iters=4",
            "develop.seeds=0", "develop.train.iters=8", "develop.train.warmup_iters=2", "develop.train.warmdown_iters=4",
            "develop.train.keep_steps=0", "evolve.train.eval_every=5", "develop.train.eval_every=4",
            "evolve.train.eval_tokens=2048", "develop.train.eval_tokens=2048"]  # two slices of the 8,192 val tokens
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "synthetic corpus" in err
    text = (tmp_path / "runs" / "synth" / "report" / "report.md").read_text()
    assert "Synthetic corpus" in text and "Skipped evaluations" in text
