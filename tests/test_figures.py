"""Figures a reader can read (issue 33): every figure a report draws goes through analysis.figures.save, where
this test checks it through matplotlib's objects: every panel has its axis labels, and several colours come
with a legend. The demo's own report (test_demo.py) runs the same check on every figure it draws."""

import pytest

from connectomes.analysis import figures


class Seen:
    """Every figure saved while it is installed, with what a reader could not read in it."""

    def __init__(self, monkeypatch):
        self.problems, self.names = {}, []
        real = figures.save

        def save(fig, path):
            self.names.append(path.name)
            found = figures.unreadable(fig)
            if found:
                self.problems[path.name] = found
            return real(fig, path)

        monkeypatch.setattr(figures, "save", save)


@pytest.fixture
def seen(monkeypatch):
    return Seen(monkeypatch)


def test_the_check_finds_a_missing_label_and_a_missing_legend():
    plt = figures.plt_module()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], color="C0")
    ax.plot([0, 1], [1, 0], color="C1")
    ax.set_xlabel("step")
    assert figures.unreadable(fig) == ["'': no y label", "'': 2 colours and no legend"]
    ax.set_ylabel("loss (nats)")
    ax.plot([0, 1], [0.5, 0.5], color="gray")  # a grey reference line needs no legend entry
    assert figures.unreadable(fig) == ["'': 2 colours and no legend"]
    ax.legend(["a", "b"])
    assert figures.unreadable(fig) == []
    plt.close(fig)


def test_a_grid_of_panels_wraps():
    fig, axes = figures.panel_grid(7, 3, 3)
    assert len(axes) == 7 and len([a for a in fig.axes if a.get_visible()]) == 7
    assert fig.get_size_inches().tolist() == [12.0, 6.0]  # 2 rows of 4, not one row of 7
    figures.plt_module().close(fig)


def test_every_figure_of_a_finished_study_is_readable(finished_study, tmp_path, seen):
    import shutil

    from connectomes.analysis.report import write_report

    run = tmp_path / "r"
    shutil.copytree(finished_study, run)
    write_report(run)
    assert "val_loss.png" in seen.names and "connectome.png" in seen.names
    assert seen.problems == {}
