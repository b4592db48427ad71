"""The package's modules import one way: no cycles, not even through type-only imports.

A cycle ties modules into one tangle that can only be read, tested and
changed together. This reads every module's imports
(including those under `if TYPE_CHECKING:`) and fails on any cycle, naming it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hubbub

PACKAGE = Path(hubbub.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hubbub"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("hubbub"))
    return {name for name in found if name in modules}


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    # A package's __init__ re-exports; importing `hubbub` itself is not a dependency on everything.
    return {name: _imports(path, modules) - {name, "hubbub"} for name, path in paths.items() if name != "hubbub"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_session_core_imports_no_io() -> None:
    """The sans-I/O modules import neither asyncio nor sockets, nor any module that does."""
    core = ["session", "protocol", "events", "router", "codes", "reassembly", "heartbeat", "ratelimit", "frames"]
    graph = _graph()
    for name in core:
        source = (PACKAGE / f"{name}.py").read_text()
        tree = ast.parse(source)
        imported = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & {"asyncio", "socket", "picows", "uvloop"}, (name, imported)
        assert graph[f"hubbub.{name}"] <= {f"hubbub.{m}" for m in core} | {
            "hubbub.errors",
            "hubbub.core.metrics",
        }, (name, graph[f"hubbub.{name}"])
