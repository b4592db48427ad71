"""hubbub: a real-time event hub over WebSockets, after the Gorilla hub pattern.

The library API: build a `Hub`, register handlers for your own event types
with `@hub.on(type, Schema)`, and serve it with `Server`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from hubbub.codes import CloseCode, ErrorCode
from hubbub.config import Settings
from hubbub.connection import Connection
from hubbub.errors import ConfigError, EventError, HubbubError
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
    "Server",
    "Settings",
    "__version__",
    "serve",
]
