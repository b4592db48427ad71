"""The package's layers import one way, and nothing imports in a circle.

The layers are the subpackages of `hubbub` (docs/topics/architecture.md). A
layer may use only the layers below it; "use" means what importing it loads,
transitively. Two tests hold that:

* a static one over the import graph of every module, type-only imports
  (`if TYPE_CHECKING:`) and imports inside functions included, with the
  package root in the graph: a module that imports `hubbub` itself is charged
  with everything the root names;
* a dynamic one that imports each layer's modules in a fresh interpreter and
  looks at what `sys.modules` then holds: the lazy root, the subpackages'
  `__init__` files and third-party libraries (asyncio, picows, prometheus)
  are caught there.

Beside them, no two modules may import each other, directly or through others.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import hubbub

PACKAGE = Path(hubbub.__file__).parent

ALLOWED: dict[str, set[str]] = {
    "protocol": set(),
    "backends": {"protocol"},
    "auth": {"protocol", "backends"},
    "core": {"protocol", "backends", "auth"},
    "integration": {"protocol", "backends", "auth", "core"},
    "server": {"protocol", "backends", "auth", "core", "integration"},
    "client": {"protocol"},
    "cli": {"protocol", "backends", "auth", "core", "integration", "server", "client"},
    "textbook": {"protocol"},
}
"""Each layer and the layers it may use. The contract of docs/topics/architecture.md."""

SHARED = {"hubbub.errors", "hubbub._version", "hubbub._lazy"}
"""Root modules every layer may use: the one exception tree and the version. Neither loads another layer
but the protocol's codes."""

FORBIDDEN_LIBRARIES = {
    "protocol": {"asyncio", "picows", "uvloop", "socket", "prometheus_client", "httpx"},
    "client": {"prometheus_client", "uvloop"},
    "textbook": {"picows", "uvloop", "msgspec", "prometheus_client"},
}
"""Third-party and standard modules a layer must not load: the sans-I/O core does no I/O, and a client
program pays for no server machinery; the textbook runs on websockets alone, none of the fast server's
libraries."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every hubbub module `path` names in an import, wherever the import stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hubbub":
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules
            found.update(submodules)
            if len(submodules) < len(node.names):  # a name of the module itself, not only its submodules
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "hubbub")
    return {name for name in found if name in modules}


def _graph() -> dict[str, set[str]]:
    paths = _modules()
    return {name: _imports(path, set(paths)) - {name} for name, path in paths.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def _reach(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module `start` loads, each with the module that imports it (to explain a violation)."""
    seen: dict[str, str] = {}
    todo = [start]
    while todo:
        node = todo.pop()
        for nxt in graph.get(node, ()):
            if nxt not in seen and nxt != start:
                seen[nxt] = node
                todo.append(nxt)
    return seen


def _path(via: dict[str, str], start: str, end: str) -> str:
    chain = [end]
    while chain[-1] != start:
        chain.append(via[chain[-1]])
    return " -> ".join(reversed(chain))


def test_every_module_belongs_to_a_layer_or_is_shared() -> None:
    loose = {m for m in _modules() if _layer(m) is None} - SHARED - {"hubbub", "hubbub.__main__"}
    assert not loose, f"modules outside every layer: {sorted(loose)}"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_uses_only_the_layers_below_it(layer: str) -> None:
    graph = _graph()
    allowed = ALLOWED[layer] | {layer}
    wrong = []
    for module in sorted(m for m in graph if _layer(m) == layer):
        via = _reach(graph, module)
        for used in sorted(via):
            if used in SHARED:
                continue
            if used == "hubbub" or _layer(used) not in allowed:
                wrong.append(_path(via, module, used))
    assert not wrong, f"{layer} may use {sorted(ALLOWED[layer]) or 'no other layer'}:\n" + "\n".join(wrong)


def test_the_shared_modules_use_only_the_protocol() -> None:
    graph = _graph()
    for module in sorted(SHARED):
        used = set(_reach(graph, module)) - SHARED
        assert all(_layer(m) == "protocol" for m in used), (module, sorted(used))


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == "hubbub":
                continue  # the root names everything for type checkers and loads it lazily
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node != "hubbub" and node not in state and (found := visit(node)):
            pytest.fail(" -> ".join(found))


_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def _loaded(*modules: str) -> set[str]:
    """What a fresh interpreter holds in `sys.modules` after importing `modules`."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_importing_a_layer_loads_only_what_it_may_use(layer: str) -> None:
    modules = sorted(m for m in _modules() if _layer(m) == layer)
    loaded = _loaded(*modules)
    allowed = ALLOWED[layer] | {layer}
    wrong = sorted(m for m in loaded if m.startswith("hubbub.") and m not in SHARED and _layer(m) not in allowed)
    assert not wrong, f"importing hubbub.{layer} loads {wrong}"
    libraries = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN_LIBRARIES.get(layer, set()))
    assert not libraries, f"importing hubbub.{layer} loads {libraries}"


def test_import_hubbub_loads_no_layer_until_a_name_is_used() -> None:
    assert {m for m in _loaded("hubbub") if m.startswith("hubbub.")} <= SHARED


def test_a_client_program_never_loads_the_server() -> None:
    loaded = _loaded("hubbub.client.client", "hubbub.client.api", "hubbub.client.chat")
    assert not {m for m in loaded if m.startswith(("hubbub.server", "hubbub.core", "prometheus_client"))}


def test_the_documented_names_still_resolve() -> None:
    for name in hubbub.__all__:
        assert getattr(hubbub, name) is not None, name


def test_nothing_imports_the_textbook() -> None:
    """The textbook stands beside hubbub, not under it: no layer, not even the CLI, may load it."""
    graph = _graph()
    users = sorted(
        m for m, used in graph.items() if _layer(m) != "textbook" and any(_layer(u) == "textbook" for u in used)
    )
    assert not users, f"imported by {users}"
