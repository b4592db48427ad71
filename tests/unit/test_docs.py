"""The docs point at the tests that prove each rule: every such pointer must run when pasted.

docs/lifecycle.md and friends are a reference for learning: "Proof:
`tests/integration/test_lifecycle.py::test_...`". A reader copies that into
`python -m pytest` and expects it to run exactly the test that proves the
rule, so every test cited in prose in README.md and docs/ (sub-folders
included) must be a full pytest node id from the repository root: the file
under `tests/`, `::`, and the name of a test defined there (a class's test as
`::TestX::test_y`, a parametrized case as `::test_y[case]`). Not a pattern
(`test_oversized_*`), not a path relative to `tests/`, not a bare file, not a
bare test name. Inside fenced code blocks a command may run a whole file; the
file must still exist.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
# Anything that looks like a test file, with whatever follows it up to a space or a quote.
CITATION = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*test_\w+\.py)((?:::[^\s`'\",;)]*)?)")
NODE_ID = re.compile(r"tests/(?:[\w-]+/)*test_\w+\.py(?:::[A-Za-z_]\w*){1,2}(?:\[[^\]\s]+\])?")
BARE_NAME = re.compile(r"`(test_[\w*]+)`")


def _where(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


def citations() -> list[tuple[str, str, bool]]:
    """(doc, citation, in_code) for every test cited in the docs, prose and code blocks apart."""
    found: list[tuple[str, str, bool]] = []
    for doc in DOCS:
        text = doc.read_text()
        blocks = [m.group(0) for m in FENCE.finditer(text)]
        prose = FENCE.sub("", text)
        for match in CITATION.finditer(prose):
            found.append((_where(doc), match.group(1) + match.group(2), False))
        for block in blocks:
            for match in CITATION.finditer(block):
                found.append((_where(doc), match.group(1) + match.group(2), True))
    return found


def defined_tests(path: Path) -> set[str]:
    """Node-id tails a file defines: `test_x` at module level and `TestY::test_x` in classes."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test"):
                    names.add(f"{node.name}::{item.name}")
    return names


def problem(citation: str, in_code: bool) -> str | None:
    """Why a citation would not run when pasted into pytest, or None when it would."""
    path, _, name = citation.partition("::")
    if not path.startswith("tests/"):
        return "is not a path from the repository root (tests/...)"
    file = ROOT / path
    if not file.is_file():
        return "names a file that does not exist"
    if not name:
        return None if in_code else "names a file, not a test (write tests/...py::test_name)"
    if not NODE_ID.fullmatch(citation):
        return "is not a pytest node id (no patterns: name one test)"
    if name.split("[")[0] not in defined_tests(file):
        return "names a test that is not defined in that file"
    return None


def test_the_docs_cite_tests() -> None:
    assert len([c for c in citations() if not c[2]]) >= 100  # the pattern still finds the docs' citations


@pytest.mark.parametrize(("doc", "citation", "in_code"), citations())
def test_every_citation_runs_when_pasted(doc: str, citation: str, in_code: bool) -> None:
    why = problem(citation, in_code)
    assert why is None, f"{doc} cites {citation!r}, which {why}"


def test_no_test_is_named_without_its_file() -> None:
    for doc in DOCS:
        bare = BARE_NAME.findall(FENCE.sub("", doc.read_text()))
        assert not bare, f"{_where(doc)} names {bare} without a file: write tests/...py::{bare[0]}"


@pytest.mark.parametrize(
    ("citation", "in_code", "ok"),
    [
        ("tests/unit/test_docs.py::test_no_test_is_named_without_its_file", False, True),
        ("tests/unit/test_docs.py::test_every_citation_runs_when_pasted[x]", False, True),
        ("tests/unit/test_docs.py", True, True),
        ("tests/unit/test_docs.py", False, False),
        ("unit/test_docs.py::test_no_test_is_named_without_its_file", False, False),
        ("tests/unit/test_docs.py::test_no_*", False, False),
        ("tests/unit/test_docs.py::test_that_does_not_exist", False, False),
        ("tests/unit/test_nothing_here.py::test_x", False, False),
    ],
)
def test_the_checker_tells_good_citations_from_bad(citation: str, in_code: bool, ok: bool) -> None:
    assert (problem(citation, in_code) is None) is ok


# ---- links between the pages -----------------------------------------------------------------------

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PENDING = {"docs/integration.md", "docs/api.md", "clients/js/README.md", "docs/reference/config.md"}
"""Pages linked before another branch writes them; checked like any other once present."""


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation but `-` and `_` dropped, spaces to `-`."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found: set[str] = set()
    for match in re.finditer(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M):
        base = slug(match.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links() -> list[tuple[str, str]]:
    return [(_where(doc), m.group(1)) for doc in DOCS for m in LINK.finditer(FENCE.sub("", doc.read_text()))]


@pytest.mark.parametrize(("doc", "target"), [link for link in links() if "://" not in link[1]])
def test_every_relative_link_leads_somewhere(doc: str, target: str) -> None:
    path, _, anchor = target.partition("#")
    page = (ROOT / doc).parent / path if path else ROOT / doc
    where = str(page.resolve().relative_to(ROOT)) if page.resolve().is_relative_to(ROOT) else str(page)
    if where in PENDING and not page.exists():
        pytest.skip(f"{where} comes with another branch")
    assert page.exists(), f"{doc} links {target}, which does not exist"
    if anchor and page.suffix == ".md":
        assert anchor in anchors(page), f"{doc} links {target}: no such heading in {where}"


def test_slugs_are_githubs() -> None:
    assert slug("Measured (this project's 2-core VM, 2026-11-25)") == "measured-this-projects-2-core-vm-2026-11-25"
    assert slug("### `get_history` pages".lstrip("# ")) == "get_history-pages"
