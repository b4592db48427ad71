"""hubbub: a real-time event hub over WebSockets, after the Gorilla hub pattern.

The library API: build a `Hub`, register handlers for your own event types
with `@hub.on(type, Schema)`, hook into connections with `@hub.on_connect`,
`@hub.on_disconnect` and `@hub.authorize_join`, and serve it with `Server`,
from a script with `hubbub.run(hub)`, or with `hubbub serve --app` (docs/apps.md).
"""

from __future__ import annotations

__version__ = "0.1.0"

from hubbub.cli import run
from hubbub.codes import CloseCode, ErrorCode
from hubbub.config import Settings
from hubbub.connection import Connection
from hubbub.errors import ConfigError, EventError, HubbubError, Refused
from hubbub.hub import Hub
from hubbub.server import Server, serve

__all__ = [
    "CloseCode",
    "ConfigError",
    "Connection",
    "ErrorCode",
    "EventError",
    "Hub",
    "HubbubError",
    "Refused",
    "Server",
    "Settings",
    "__version__",
    "run",
    "serve",
]
