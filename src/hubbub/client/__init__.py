"""What a program uses to talk to a hub: the Python client, its errors, dialing, the server-API
client, the terminal chat and the load generator.

It imports only `hubbub.protocol` of the other layers: a client program never loads the server,
the core or prometheus_client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hubbub._lazy import lazy_names

_EXPORTS = {
    "Client": "hubbub.client.client",
    "connect": "hubbub.client.client",
    "RequestFailed": "hubbub.client.client",
    "ClientState": "hubbub.client.client",
    "InvalidURL": "hubbub.client.errors",
    "HubUnreachable": "hubbub.client.errors",
    "HandshakeRefused": "hubbub.client.errors",
    "ApiClient": "hubbub.client.api",
    "AsyncApiClient": "hubbub.client.api",
    "ApiError": "hubbub.client.api",
    "BadRequest": "hubbub.client.api",
    "Unauthorized": "hubbub.client.api",
    "NotFound": "hubbub.client.api",
    "Unavailable": "hubbub.client.api",
}

__all__ = [
    "ApiClient",
    "ApiError",
    "AsyncApiClient",
    "BadRequest",
    "Client",
    "ClientState",
    "HandshakeRefused",
    "HubUnreachable",
    "InvalidURL",
    "NotFound",
    "RequestFailed",
    "Unauthorized",
    "Unavailable",
    "connect",
]

if TYPE_CHECKING:  # for type checkers only; loaded on first use below
    from hubbub.client.api import (
        ApiClient,
        ApiError,
        AsyncApiClient,
        BadRequest,
        NotFound,
        Unauthorized,
        Unavailable,
    )
    from hubbub.client.client import Client, ClientState, RequestFailed, connect
    from hubbub.client.errors import HandshakeRefused, HubUnreachable, InvalidURL


__getattr__, __dir__ = lazy_names("hubbub.client", _EXPORTS, globals())
