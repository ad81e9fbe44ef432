"""Progress output for people and for logs.

Every long stage (a training run, data preparation, an evaluation) prints a start line and an end line
naming its unit with the elapsed time, on a terminal and in a log alike. Between them a terminal shows
tqdm's redrawn bar; a log file or a pipe gets plain lines (no carriage returns) at most every
LOG_INTERVAL_S seconds and never a bar at 0%, so a batch job's log stays readable. :func:`where` names
what the bars inside it work on (an arm, seed and step), so an evaluation's task bars say which model
they score.
"""

from __future__ import annotations

import contextlib
import sys
import time
from functools import cache

LOG_INTERVAL_S = 30.0
# A study worker shares the terminal with others: plain lines, each naming the worker (configure()).
_style = {"lines": False, "prefix": ""}
_where: list[str] = []  # the labels of the enclosing where() blocks, outermost first


def configure(*, lines: bool, prefix: str = "") -> None:
    """Plain lines (no redrawn bar) and a prefix on every bar of this process."""
    _style.update(lines=lines, prefix=prefix)


@contextlib.contextmanager
def where(label: str):
    """Name what the bars and stages inside this block work on (e.g. "connectome seed 0", "step 120")."""
    _where.append(label)
    try:
        yield
    finally:
        _where.pop()


def label(desc: str) -> str:
    """``desc`` as a line names it: the process's prefix, then the enclosing :func:`where` labels."""
    return _style["prefix"] + desc + (f" [{', '.join(_where)}]" if _where else "")


def say(text: str) -> None:
    """One line on stderr (a start or end line; a stage's note)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def elapsed(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def plural(unit: str, n: float | None) -> str:
    return unit if n == 1 else {"story": "stories", "tok": "tokens"}.get(unit, unit + "s")


@contextlib.contextmanager
def stage(desc: str, what: str = ""):
    """A start line (``desc: start, what``) and, when the block ends without an error, an end line with the
    elapsed time; the block may set the yielded dict's "detail" to say more on that line."""
    name, t0, end = label(desc), time.perf_counter(), {"detail": ""}
    say(f"{name}: start{', ' + what if what else ''}")
    yield end
    detail = f" ({end['detail']})" if end["detail"] else ""
    say(f"{name}: done in {elapsed(time.perf_counter() - t0)}{detail}")


class _Lines:
    """A stream for tqdm that turns each redraw into one line; clearing redraws become nothing."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


@cache
def _bar_class():
    from tqdm.auto import tqdm

    class Bar(tqdm):
        """tqdm with an end line at close: how far it got, in how long, and its last postfix (loss, val)."""

        def close(self):
            end = getattr(self, "_end", None)
            self._end = None  # close() runs again from __exit__ and __del__
            if end is None:
                return super().close()
            name, unit, inner = end
            n, total, post, took = self.n, self.total, self.postfix, time.perf_counter() - self._t0
            super().close()
            if inner and took < LOG_INTERVAL_S:  # a quick part of a stage: the stage's own lines say it
                return None
            verb = "done" if total is None or n >= total else "stopped"
            count = f"{n:,}" + (f"/{total:,}" if total is not None else "")
            say(f"{name}: {verb}, {count} {plural(unit, total or n)} in {elapsed(took)}" + (f" ({post})" if post else ""))
            return None

    return Bar


def bar(total: int | None, desc: str, unit: str, *, initial: int = 0, disable: bool = False, inner: bool = False,
        **kw):
    """A bar on stderr with a start and an end line; the bar itself disappears when done (``leave=False``). An
    ``inner`` bar is one part of a :func:`stage` that prints its own lines (an evaluation's tasks): no start
    line, and an end line only when it took LOG_INTERVAL_S or more."""
    name = label(desc)
    if not disable and not inner:
        left = f"{total - initial:,} of {total:,}" if initial and total is not None else f"{total:,}" if total else "?"
        say(f"{name}: start, {left} {plural(unit, total)}")
    stream = sys.stderr
    if stream.isatty() and not _style["lines"]:
        b = _bar_class()(total=total, desc=name, unit=unit, initial=initial, disable=disable, leave=False,
                         dynamic_ncols=True, file=stream, **kw)
    else:  # delay: no line at 0%, the first after LOG_INTERVAL_S
        b = _bar_class()(total=total, desc=name, unit=unit, initial=initial, disable=disable, leave=False, ascii=True,
                         ncols=100, mininterval=LOG_INTERVAL_S, delay=max(LOG_INTERVAL_S, 1e-9), file=_Lines(stream),
                         **kw)
    if not disable:
        b._end, b._t0 = (name, unit, inner), time.perf_counter()
    return b


def iterate(items, desc: str, unit: str, *, disable: bool = False, inner: bool = False):
    """``items`` with a bar over them (see :func:`bar`)."""
    items = list(items)
    with bar(len(items), desc, unit, disable=disable, inner=inner) as b:
        for item in items:
            yield item
            b.update(1)
