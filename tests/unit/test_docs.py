"""The docs point at the tests that prove each rule: every such pointer must lead somewhere.

docs/lifecycle.md and friends are a reference for learning: "Proof:
`integration/test_lifecycle.py::test_...`". A renamed or deleted test would
leave a reader at a dead end, so every `file.py::test_name` (a `*` pattern
allowed) every bare test file and every bare `test_name` named in README.md and docs/ is checked here.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
POINTER = re.compile(r"`((?:[\w.-]+/)*test_\w+\.py)(?:::([\w*]+))?`")
BARE = re.compile(r"`(test_[\w*]+)`")  # a test named without its file, next to one that has it


def pointers() -> list[tuple[str, str, str | None]]:
    found = []
    for doc in DOCS:
        for match in POINTER.finditer(doc.read_text()):
            found.append((doc.name, match.group(1), match.group(2)))
    return found


def resolve(path: str) -> list[Path]:
    """A pointer's file: `tests/x/test_y.py`, `x/test_y.py`, or `test_y.py` anywhere under tests/."""
    if "/" not in path:
        return sorted(TESTS.rglob(path))
    relative = path.removeprefix("tests/")
    candidate = TESTS / relative
    return [candidate] if candidate.is_file() else []


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def test_the_docs_point_at_tests() -> None:
    assert len(pointers()) >= 20  # the pattern still finds the docs' pointers


@pytest.mark.parametrize(("doc", "path", "name"), pointers())
def test_every_pointer_leads_to_a_test(doc: str, path: str, name: str | None) -> None:
    files = resolve(path)
    assert files, f"{doc} names {path}, which does not exist"
    if name is not None:
        names = set().union(*(defined_tests(f) for f in files))
        assert fnmatch.filter(names, name), f"{doc} names {path}::{name}, which is not a test there"


def test_every_bare_test_name_exists() -> None:
    everywhere = set().union(*(defined_tests(f) for f in TESTS.rglob("test_*.py")))
    for doc in DOCS:
        for name in BARE.findall(doc.read_text()):
            assert fnmatch.filter(everywhere, name), f"{doc.name} names {name}, which is not a test"
