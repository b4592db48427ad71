"""hubbub: a real-time event hub over WebSockets, after the Gorilla hub pattern.

The library API: build a `Hub`, register handlers for your own event types
with `@hub.on(type, Schema)`, hook into connections with `@hub.on_connect`,
`@hub.on_disconnect` and `@hub.authorize_join`, and serve it with `Server`,
from a script with `hubbub.run(hub)`, or with `hubbub serve --app` (docs/apps.md).

The names below are loaded on first use (PEP 562): `import hubbub` alone loads
no server, core, integration or CLI, so a client program that imports
`hubbub.client` pays only for the client and the protocol.

The package's layers, one subpackage each (docs/topics/architecture.md):

    protocol     the sans-I/O core: envelope, events, codes, frames, session, router
    backends     the broker, history, presence and ticket contracts, and their backends
    auth         logins, passwords, tokens, signing
    core         the node: hub, rooms, membership, fan-out, keepalive, hooks
    integration  the server API, webhooks, the proxies to the app, loading apps
    server       sockets and HTTP: listener, the picows adapter, the front door, TLS
    client       the Python client, the server-API client, the terminal chat
    cli          the `hubbub` command
    textbook     the seed's design in one sitting, on websockets (`python -m hubbub.textbook`)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hubbub._lazy import lazy_names
from hubbub._version import __version__

_EXPORTS = {
    "CloseCode": "hubbub.protocol.codes",
    "ErrorCode": "hubbub.protocol.codes",
    "HubbubError": "hubbub.errors",
    "EventError": "hubbub.errors",
    "ConfigError": "hubbub.errors",
    "Refused": "hubbub.errors",
    "Settings": "hubbub.core.settings",
    "Namespace": "hubbub.protocol.namespaces",
    "PublishRule": "hubbub.protocol.namespaces",
    "JoinRule": "hubbub.protocol.namespaces",
    "Connection": "hubbub.core.connection",
    "Hub": "hubbub.core.hub",
    "Server": "hubbub.server.server",
    "serve": "hubbub.server.server",
    "run": "hubbub.server.run",
}

__all__ = [
    "CloseCode",
    "ConfigError",
    "Connection",
    "ErrorCode",
    "EventError",
    "Hub",
    "HubbubError",
    "JoinRule",
    "Namespace",
    "PublishRule",
    "Refused",
    "Server",
    "Settings",
    "__version__",
    "run",
    "serve",
]

if TYPE_CHECKING:  # for type checkers and editors only; nothing here is imported at run time
    from hubbub.core.connection import Connection
    from hubbub.core.hub import Hub
    from hubbub.core.settings import Settings
    from hubbub.errors import ConfigError, EventError, HubbubError, Refused
    from hubbub.protocol.codes import CloseCode, ErrorCode
    from hubbub.protocol.namespaces import JoinRule, Namespace, PublishRule
    from hubbub.server.run import run
    from hubbub.server.server import Server, serve


__getattr__, __dir__ = lazy_names("hubbub", _EXPORTS, globals())
