"""No two public classes of the package share a name: an import, a traceback or a doc names one class."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections import defaultdict

import hubbub

MIRRORED = {"hubbub.textbook.server": {"Client"}}
"""Names the textbook takes on purpose from the Go it mirrors (gorilla's and the tutorial's `Client`);
nothing imports the textbook, so no traceback of hubbub's shows its class."""


def test_no_two_public_classes_share_a_name() -> None:
    where: dict[str, set[str]] = defaultdict(set)
    for info in pkgutil.walk_packages(hubbub.__path__, "hubbub."):
        if info.name.endswith(".__main__"):  # it runs the CLI
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name in MIRRORED.get(module.__name__, ()):
                continue
            if inspect.isclass(value) and value.__module__ == module.__name__ and not name.startswith("_"):
                where[name].add(module.__name__)
    shared = {name: sorted(modules) for name, modules in where.items() if len(modules) > 1}
    assert not shared, f"public classes sharing a name (rename one so each says what it is): {shared}"
