"""The documentation, checked so it stays true: every relative link resolves (to a file, and to a heading for
a ``#anchor``), every module path it or a docstring quotes imports, every test it names exists, the package
map lists every module, the README stays a front door, and the deviations table exists once."""

import importlib
import io
import re
import tokenize
import unicodedata
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "connectomes"
README_MAX_LINES = 250


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").rglob("*.md"))]


def prose(text: str) -> str:
    """The text outside fenced code blocks, with inline code spans removed: what renders as links."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        out.append("" if fenced else re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


LINK = re.compile(r"!?\[[^\]]*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")


def links(text: str) -> list[str]:
    """Every inline link and image target of a markdown text (outside code)."""
    return LINK.findall(prose(text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text in lower case, punctuation and symbols dropped (hyphens
    and underscores kept), each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = text.replace("`", "").replace("*", "").strip().lower()
    kept = [c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM"]
    return "".join(kept).replace(" ", "-")


@cache
def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file's headings; a repeated slug gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


def broken_link(source: Path, target: str) -> str | None:
    """Why a link of ``source`` does not resolve (None: it does, or it leaves the repository)."""
    if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
        return None
    path, _, anchor = target.partition("#")
    dest = (source.parent / path).resolve() if path else source
    if not dest.exists():
        return f"{path} does not exist"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"{dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest} has no heading #{anchor}"
    return None


def test_every_relative_link_resolves():
    bad = [f"{md.relative_to(ROOT)}: ({target}) {why}" for md in markdown_files() for target in links(md.read_text())
           if (why := broken_link(md, target))]
    assert not bad, "\n".join(bad)


def test_the_link_check_can_fail(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A title, with `code`\n\n## Two words\n\n## Two words\n")
    assert anchors(page) == {"a-title-with-code", "two-words", "two-words-1"}
    assert broken_link(page, "#two-words-1") is None and broken_link(page, "page.md#a-title-with-code") is None
    assert broken_link(page, "#two-word") == f"{page} has no heading #two-word"
    assert broken_link(page, "missing.md") == "missing.md does not exist"
    assert links("[a](x.md) `[b](y.md)` ![c](z.png \"t\")\n```\n[d](w.md)\n```") == ["x.md", "z.png"]
    assert slug("Interop: Hugging Face, lm-evaluation-harness") == "interop-hugging-face-lm-evaluation-harness"
    assert slug("Threads — `threads.py`") == "threads--threadspy"


# ---------------------------------------------------------------------------------------------
# module paths and named tests

DOTTED = re.compile(r"\bconnectomes(?:\.[A-Za-z_]\w*)+")


def resolves(dotted: str) -> bool:
    """Whether ``connectomes.a.b.c`` is a module, or an attribute (path) of the longest importable prefix."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for name in parts[k:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def quoted_texts():
    """(file, text) of every markdown page, and of the strings (docstrings included) and comments of src/."""
    for md in markdown_files():
        yield md, md.read_text()
    for py in sorted(PACKAGE.rglob("*.py")):
        toks = tokenize.generate_tokens(io.StringIO(py.read_text()).readline)
        yield py, "\n".join(t.string for t in toks if t.type in (tokenize.STRING, tokenize.COMMENT))


def test_every_quoted_module_path_imports():
    bad = sorted({f"{p.relative_to(ROOT)}: {m}" for p, text in quoted_texts() for m in DOTTED.findall(text)
                  if not resolves(m)})
    assert not bad, "\n".join(bad)


def test_the_module_check_can_fail():
    assert resolves("connectomes.pipeline.workers") and resolves("connectomes.results")
    assert resolves("connectomes.analysis.stats.paired_seeds")
    assert not resolves("connectomes.hf") and not resolves("connectomes.config.Config")
    assert DOTTED.findall("see connectomes.core.layout. And `connectomes.arms`") == ["connectomes.core.layout",
                                                                                     "connectomes.arms"]


NAMED_TEST = re.compile(r"\b(?:tests/)?(test_\w+\.py)(?:::(\w+))?")


def test_every_named_test_exists():
    """A page that names ``tests/test_x.py`` or ``test_x.py::test_y`` names a test file and a test in it."""
    bad = []
    for md in markdown_files():
        for file, name in NAMED_TEST.findall(md.read_text()):
            path = ROOT / "tests" / file
            if not path.exists():
                bad.append(f"{md.relative_to(ROOT)}: {file}")
            elif name and not re.search(rf"^\s*(?:async\s+)?def {name}\b", path.read_text(), re.M):
                bad.append(f"{md.relative_to(ROOT)}: {file}::{name}")
    assert not bad, "\n".join(sorted(set(bad)))


SOURCE_PATH = re.compile(r"`((?:[A-Za-z_]\w*/)+[A-Za-z_]\w*\.py)(?:::\w+)?`")


def test_every_quoted_source_file_exists():
    """A backquoted path such as `core/readers.py` or `benchmarks/gpu.py` is a file of the repository or the
    package."""
    bad = []
    for md in markdown_files():
        for rel in SOURCE_PATH.findall(md.read_text()):
            rel = rel.removeprefix("connectomes/")
            if not any((base / rel).exists() for base in (ROOT, PACKAGE, ROOT / "tests", ROOT / "benchmarks")):
                bad.append(f"{md.relative_to(ROOT)}: {rel}")
    assert not bad, "\n".join(sorted(set(bad)))


# ---------------------------------------------------------------------------------------------
# the pages themselves


def test_readme_is_a_front_door_and_the_guides_exist():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference material into docs/"
    for page in ("extending.md", "glossary.md", "method.md", "interop.md", "scale.md", "reliability.md"):
        assert (ROOT / "docs" / page).is_file(), page


def test_the_deviations_table_exists_once_in_method_md():
    header = re.compile(r"^\|\s*topic\s*\|\s*authors' code\s*\|", re.M)
    holders = [md.relative_to(ROOT).as_posix() for md in markdown_files() if header.search(md.read_text())]
    assert holders == ["docs/method.md"], holders


def package_map() -> dict[str, str]:
    """docs/extending.md's package map: {folder: its table row}, e.g. {"pipeline/": "| `pipeline/` | ..."}."""
    text = (ROOT / "docs" / "extending.md").read_text()
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `([\w/]*/)` \|.*$", text, re.M)}


def test_the_package_map_lists_every_module():
    rows = package_map()
    missing = []
    for py in sorted(PACKAGE.rglob("*.py")):
        rel = py.relative_to(PACKAGE)
        folder = "connectomes/" if len(rel.parts) == 1 else "/".join(rel.parts[:-1]) + "/"
        if py.name == "__init__.py" and folder != "connectomes/":
            continue
        if f"`{py.name}`" not in rows.get(folder, ""):
            missing.append(rel.as_posix())
    assert not missing, f"docs/extending.md's package map lacks {', '.join(missing)}"
    assert "`workers.py`" in rows["pipeline/"] and "`outputs.py`" in rows["pipeline/"]
