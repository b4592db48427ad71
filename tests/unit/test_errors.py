"""Every public exception of the package is a `HubbubError`, drawn in the tree of hubbub.errors' docstring."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from types import ModuleType

import hubbub
import hubbub.errors
from hubbub.errors import HubbubError

_BRANCH = re.compile(r"^    (?P<indent>[ |]*?)(?:\+-- )?(?P<name>[A-Z]\w+)\b")


def _modules() -> list[ModuleType]:
    """Every module of the package, imported (`__main__` runs the CLI, so it is left out)."""
    names = [info.name for info in pkgutil.walk_packages(hubbub.__path__, "hubbub.")]
    return [hubbub, *(importlib.import_module(name) for name in names if not name.endswith(".__main__"))]


def _public_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in _modules():
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[f"{module.__name__}.{name}"] = value
    return found


def _tree() -> dict[str, str | None]:
    """Each class drawn in the docstring, with the class drawn as its parent (None for the root)."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in (hubbub.errors.__doc__ or "").splitlines():
        match = _BRANCH.match(line)
        if match is None or (match["indent"] and "+--" not in line):
            continue
        column = match.start("name")
        while stack and stack[-1][0] >= column:
            stack.pop()
        parents[match["name"]] = stack[-1][1] if stack else None
        stack.append((column, match["name"]))
    return parents


def test_the_tree_has_one_root() -> None:
    tree = _tree()
    assert [name for name, parent in tree.items() if parent is None] == ["HubbubError"]
    assert len(tree) > 10


def test_every_public_exception_is_a_hubbub_error() -> None:
    outside = [name for name, cls in _public_exceptions().items() if not issubclass(cls, HubbubError)]
    assert not outside, f"public exceptions outside HubbubError (subclass it, or make a private one): {outside}"


def test_every_public_exception_is_drawn_under_its_parent() -> None:
    tree = _tree()
    for where, cls in _public_exceptions().items():
        assert cls.__name__ in tree, f"{where} is not drawn in hubbub.errors' docstring"
        parent = tree[cls.__name__]
        if parent is not None:
            assert cls.__bases__[0].__name__ == parent, f"{where} is drawn under {parent}, its base is {cls.__bases__}"


def test_the_tree_draws_only_classes_that_exist() -> None:
    existing = {cls.__name__ for cls in _public_exceptions().values()}
    assert set(_tree()) <= existing, set(_tree()) - existing


def test_callers_catching_standard_exceptions_still_catch_the_clients() -> None:
    from hubbub.client.errors import HandshakeRefused, HubUnreachable, InvalidURL

    assert issubclass(InvalidURL, ValueError)
    assert issubclass(HubUnreachable, ConnectionError)
    assert issubclass(HandshakeRefused, ConnectionRefusedError)
    refused = HandshakeRefused(503, "full")
    assert "HTTP 503" in str(refused) and refused.status == 503 and isinstance(refused, HubbubError)
