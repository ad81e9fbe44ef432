"""Progress bars: tqdm's redrawn bar on a terminal; on a log file or a pipe, plain lines (no
carriage returns) at most every LOG_INTERVAL_S seconds, so a batch job's log stays readable."""

from __future__ import annotations

import sys

LOG_INTERVAL_S = 30.0
# A study worker shares the terminal with others: plain lines, each naming the worker (configure()).
_style = {"lines": False, "prefix": ""}


def configure(*, lines: bool, prefix: str = "") -> None:
    """Plain lines (no redrawn bar) and a prefix on every bar of this process."""
    _style.update(lines=lines, prefix=prefix)


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


def bar(total: int | None, desc: str, unit: str, *, initial: int = 0, disable: bool = False, **kw):
    """A tqdm bar on stderr that disappears when done (``leave=False``)."""
    from tqdm.auto import tqdm

    stream = sys.stderr
    desc = _style["prefix"] + desc
    if stream.isatty() and not _style["lines"]:
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=disable, leave=False,
                    dynamic_ncols=True, file=stream, **kw)
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=disable, leave=False, ascii=True,
                ncols=100, mininterval=LOG_INTERVAL_S, file=_Lines(stream), **kw)


def iterate(items, desc: str, unit: str, *, disable: bool = False):
    """``items`` with a bar over them (see :func:`bar`)."""
    items = list(items)
    with bar(len(items), desc, unit, disable=disable) as b:
        for item in items:
            yield item
            b.update(1)
