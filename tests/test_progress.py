"""Progress output: a redrawn bar on a terminal, plain lines in a log (no carriage returns)."""

import io

from connectomes.core import progress


class Log(io.StringIO):
    def isatty(self):
        return False


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_plain_lines_at_most_every_interval(monkeypatch):
    log = Log()
    monkeypatch.setattr("sys.stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)
    with progress.bar(5, "train", "step") as b:
        for _ in range(5):
            b.update(1)
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith("train:   0%") and lines[-1].startswith("train: 100%") and "5/5" in lines[-1]
    assert all(line.startswith("train:") for line in lines)


def test_a_log_stays_quiet_within_the_interval(monkeypatch):
    log = Log()
    monkeypatch.setattr("sys.stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 3600.0)
    assert list(progress.iterate(range(1000), "eval", "item")) == list(range(1000))
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eval:   0%|") and lines[0].endswith("| 0/1000 [00:00<?, ?item/s]")


def test_a_terminal_gets_the_redrawn_bar(monkeypatch):
    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    with progress.bar(3, "prepare", "tok") as b:
        b.update(3)
    assert "\r" in term.getvalue()
