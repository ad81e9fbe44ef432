"""What the style rules promise about the source, checked so they stay true: no unused imports or
undefined names (pyflakes), and functions short enough to read in one screen (<= 60 lines)."""

import ast
import io
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60


def test_pyflakes_finds_nothing_in_src_and_tests():
    api = pytest.importorskip("pyflakes.api")
    from pyflakes.reporter import Reporter

    out = io.StringIO()
    found = sum(api.checkPath(str(p), Reporter(out, out)) for d in ("src", "tests") for p in sorted((ROOT / d).rglob("*.py")))
    assert found == 0, out.getvalue()


def test_no_function_in_src_is_longer_than_60_lines():
    long = []
    for p in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "split these: " + ", ".join(long)
