"""`hubbub serve --app MODULE:ATTR`: find the application's `Hub`.

As uvicorn does, the current directory goes first on `sys.path`, then
`MODULE` is imported and `ATTR` (dotted for a nested attribute) looked up.
It is a `Hub`, or a function (any callable) returning one: called with the
command line's `Settings` when it takes a positional argument, else with
none. Either way the CLI then hands the hub its `Settings` and backends
(`Hub.configure`), so every `serve` flag applies to the app too.

Every failure is a `ConfigError` with a one-line message (the CLI prints it
and exits 2): no colon, no such module, an import that fails inside the app,
no such attribute, not a Hub, a factory that raises or returns something else.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from typing import Any

from hubbub.core.hub import Hub
from hubbub.core.settings import Settings
from hubbub.errors import ConfigError


def load_app(spec: str, settings: Settings) -> Hub:
    """The `Hub` that `spec` (`MODULE:ATTR`) names; `ConfigError` with one line otherwise."""
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise ConfigError(f"--app must be MODULE:ATTR, like myapp:hub, not {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(f"--app: no module named {module_name!r} (looked in {cwd} first)") from None
        raise ConfigError(f"--app: importing {module_name!r} failed: {_one_line(exc)}") from None
    except Exception as exc:  # the app's own error at import: one line, where it happened
        raise ConfigError(f"--app: importing {module_name!r} failed: {_one_line(exc)}") from None
    found: Any = module
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigError(f"--app: module {module_name!r} has no attribute {attr!r}") from None
    if isinstance(found, Hub):
        return found
    if not callable(found):
        raise ConfigError(f"--app: {spec} is a {type(found).__name__}, not a Hub or a function returning one")
    try:
        made = found(settings) if _takes_argument(found) else found()
    except Exception as exc:
        raise ConfigError(f"--app: {spec}() failed: {_one_line(exc)}") from None
    if not isinstance(made, Hub):
        raise ConfigError(f"--app: {spec}() returned a {type(made).__name__}, not a Hub")
    return made


def _takes_argument(factory: Any) -> bool:
    """Whether `factory` can be called with one positional argument (the settings)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in positional or p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)


def _one_line(exc: BaseException) -> str:
    """`Type: message (file:line)` of the innermost frame, on one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}{where}"
