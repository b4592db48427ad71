"""Calls to the application over the socket: the methods of the `rpc` event (docs/apps.md, docs/integration.md).

A client sends `{"type": "rpc", "payload": {"method": M, "data": D}, "id": ...}`. The method is looked
up first among the ones an `--app` registered in-process (`@hub.rpc("name")`), then handed to the RPC
proxy (`--rpc-proxy`, the server sets `Methods.proxy`); with neither, the answer is `bad_payload`
(no such method: the payload names nothing this server can call). The `ack` carries `{"data": X}`.
The handler is `hubbub.core.builtins.rpc`.

The call is awaited in the connection's reader, as the publish proxy's is: a client's events stay in
order, one call at a time per connection, and a slow method slows only its caller. Each call is one
client message, so it spends the client's rate limit like any other. An answer is held to
`--max-message-size`, as what a client sends is: a bigger one is `unavailable`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from hubbub.protocol.events import METHOD_MAX

# The connection is `Any` here: `hubbub.core.connection` refers to `Methods`, so this module cannot refer back.
Method = Callable[[Any, Any], Any]
"""An in-process method: `method(conn, data) -> answer` (JSON-encodable), a plain function or `async def`,
`conn` being the caller's `Connection`. Raising `EventError` (e.g. `ErrorCode.FORBIDDEN`) answers that code."""

ProxyCall = Callable[[Any, str, msgspec.Raw], Awaitable[msgspec.Raw]]
"""The RPC proxy: `(conn, method, data) -> the app's answer data`, or `EventError`."""


class Methods:
    """The methods a node answers: the app's own, by name, then the proxy for every other name."""

    def __init__(self) -> None:
        self.local: dict[str, Method] = {}
        """In-process methods, by name (`Hub.rpc`)."""
        self.proxy: ProxyCall | None = None
        """The RPC proxy, for a name not in `local` (the server sets it with `--rpc-proxy`)."""

    def add(self, name: str, method: Method) -> None:
        """Register `method` under `name`; a name registered twice is a mistake (`ValueError`)."""
        if not isinstance(name, str) or not 1 <= len(name) <= METHOD_MAX:
            raise ValueError(f"an rpc method name is a string of 1 to {METHOD_MAX} characters, not {name!r}")
        if name in self.local:
            raise ValueError(f"an rpc method {name!r} is already registered")
        self.local[name] = method
