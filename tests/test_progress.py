"""Progress output: a redrawn bar on a terminal, plain lines in a log (no carriage returns)."""

import io
import re

from connectomes.core import progress


class Log(io.StringIO):
    def isatty(self):
        return False


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_a_start_line_plain_lines_and_an_end_line(monkeypatch):
    log = Log()
    monkeypatch.setattr("sys.stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    with progress.bar(5, "train", "step") as b:
        for _ in range(5):
            b.update(1)
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "train: start, 5 steps"
    assert all(line.startswith("train:") for line in lines) and not any(" 0%" in line for line in lines)
    assert re.fullmatch(r"train: done, 5/5 steps in \d+\.\d s", lines[-1]), lines[-1]


def test_a_log_stays_quiet_within_the_interval_but_for_start_and_end(monkeypatch):
    log = Log()
    monkeypatch.setattr("sys.stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 3600.0)
    assert list(progress.iterate(range(1000), "eval", "item")) == list(range(1000))
    lines = log.getvalue().splitlines()
    assert lines[0] == "eval: start, 1,000 items" and re.fullmatch(r"eval: done, 1,000/1,000 items in \d+\.\d s", lines[1])
    assert len(lines) == 2


def test_a_stopped_bar_says_where_it_stopped_and_its_last_postfix(monkeypatch):
    log = Log()
    monkeypatch.setattr("sys.stderr", log)
    with progress.bar(150, "develop dense seed 1", "step", initial=100) as b:
        b.set_postfix({"loss": "2.500"}, refresh=False)
        b.update(20)
    first, last = log.getvalue().splitlines()
    assert first == "develop dense seed 1: start, 50 of 150 steps"
    assert re.fullmatch(r"develop dense seed 1: stopped, 120/150 steps in \d+\.\d s \(loss=2.500\)", last), last


def test_where_names_the_model_an_evaluation_scores(monkeypatch):
    log = Log()
    monkeypatch.setattr("sys.stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 3600.0)
    with progress.where("connectome seed 0"), progress.where("step 120"):
        with progress.stage("eval", "2 tasks") as end:
            with progress.bar(10, "hellaswag", "req", inner=True) as b:  # quick: the stage's lines say it
                b.update(10)
            end["detail"] = "hellaswag 0.1 s"
    lines = log.getvalue().splitlines()
    assert lines[0] == "eval [connectome seed 0, step 120]: start, 2 tasks"
    assert re.fullmatch(r"eval \[connectome seed 0, step 120\]: done in \d+\.\d s \(hellaswag 0.1 s\)", lines[1])
    assert len(lines) == 2
    assert progress.label("x") == "x"  # the labels end with their blocks


def test_a_long_part_of_a_stage_says_when_it_ends(monkeypatch):
    log = Log()
    monkeypatch.setattr("sys.stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    with progress.where("dense seed 1"), progress.bar(4, "fmri sentences", "seq", inner=True) as b:
        b.update(4)
    lines = log.getvalue().splitlines()
    assert re.fullmatch(r"fmri sentences \[dense seed 1\]: done, 4/4 seqs in \d+\.\d s", lines[-1])
    assert not any("start" in line for line in lines)


def test_a_terminal_gets_the_redrawn_bar(monkeypatch):
    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    with progress.bar(3, "prepare", "tok") as b:
        b.update(3)
    text = term.getvalue()
    assert "\r" in text and text.startswith("prepare: start, 3 tokens\n") and "prepare: done, 3/3 tokens in " in text


def test_generations_are_named_one_way():
    from connectomes.core.layout import generation_name

    assert generation_name(0, 6) == "generation 0 (the 1st of 6)"
    assert generation_name(5, 6) == "generation 5 (the 6th of 6)"
    assert generation_name(5) == "generation 5 (the 6th)"
    assert [generation_name(g).split("the ")[1] for g in (1, 2, 10, 11, 12, 20, 21)] == \
        ["2nd)", "3rd)", "11th)", "12th)", "13th)", "21st)", "22nd)"]
