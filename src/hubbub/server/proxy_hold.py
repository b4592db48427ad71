"""The front door's stage for `--connect-proxy`: `/ws` handshakes held while the application is asked.

`ConnectProxyHold` pauses a handshake that carries no credential of hubbub's own, asks
`AppProxy.connect`, and either refuses it (401, 403, 503) or lets picows have it with the app's
admission; past `--proxy-max-waiting` (in all, or one address's share) it answers 503 unasked.
Why and how: docs/topics/front-door.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hubbub.auth.tokens import TOKEN_SUBPROTOCOL_PREFIX
from hubbub.integration.app_proxy import AppProxy
from hubbub.protocol.http import Response
from hubbub.server.frontdoor import Arrival, FrontDoor

_CREDENTIALS = ("ticket", "otp", "token")
"""Query parameters that carry a credential of hubbub's own: a handshake with one is not the app's to judge."""
_REFUSALS = {
    HTTPStatus.UNAUTHORIZED: b"the application did not recognize you: log in to it first\n",
    HTTPStatus.FORBIDDEN: b"the application refused this connection\n",
    HTTPStatus.SERVICE_UNAVAILABLE: b"the application did not answer: try again later\n",
}


def peer_address(transport: Any) -> str:
    """`ip:port` of the client (`[ip]:port` for IPv6), or `ip` alone when the port is unknown."""
    peer = transport.get_extra_info("peername") if transport is not None else None
    if not isinstance(peer, tuple) or not peer:
        return ""
    host = str(peer[0])
    if len(peer) < 2:
        return host
    return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"


def forwarded_headers(headers: dict[str, list[str]], names: tuple[str, ...]) -> dict[str, str]:
    """The allow-listed headers of a request, by their configured names; repeated ones joined."""
    found: dict[str, str] = {}
    for name in names:
        values = headers.get(name.lower())
        if values:
            found[name] = ("; " if name.lower() == "cookie" else ", ").join(values)
    return found


class ConnectProxyHold:
    """Holds credential-less `/ws` handshakes for the application's answer (module docstring)."""

    reads_requests = False

    def __init__(self, proxy: AppProxy, allowed: Callable[[dict[str, list[str]]], bool]) -> None:
        """`allowed`: the server's `Host` and `Origin` rules (a request that fails them is picows' to refuse)."""
        self._proxy = proxy
        self._allowed = allowed

    def judge(self, door: FrontDoor, arrival: Arrival) -> bool:
        if arrival.start[:7] != b"GET /ws":
            return False
        head = arrival.head
        if head is None:
            return False
        url = urlsplit(head.target)
        query = parse_qs(url.query, keep_blank_values=True)
        if url.path != "/ws" or not self._for_app(query, head.headers):
            return False
        proxy = self._proxy
        address = door.peer
        if not proxy.reserve(address):
            _refuse(door, HTTPStatus.SERVICE_UNAVAILABLE)
            return True
        client = peer_address(door.transport)
        first = {name: values[0] for name, values in query.items()}
        forwarded = forwarded_headers(head.headers, proxy.headers)
        # copies: `view` and `rest` are views of the read buffer every connection shares (hubbub.server.pacer)
        work = self._admit(door, client, first, forwarded, arrival.raw, bytes(arrival.rest))
        task = door.hold(work, cancel_if_lost=True)  # a client that leaves frees its place
        task.add_done_callback(lambda _: proxy.release(address))
        return True

    def _for_app(self, query: dict[str, list[str]], headers: dict[str, list[str]]) -> bool:
        """Whether the app judges this `/ws` request: a WebSocket handshake, allowed here, without a credential."""
        if "websocket" not in ",".join(headers.get("upgrade", [])).lower():
            return False  # not a handshake: picows answers it
        if any(name in query for name in _CREDENTIALS):
            return False
        if TOKEN_SUBPROTOCOL_PREFIX in ",".join(headers.get("sec-websocket-protocol", [])):
            return False
        return self._allowed(headers)

    async def _admit(
        self, door: FrontDoor, client: str, query: dict[str, str], headers: dict[str, str], head: bytes, rest: bytes
    ) -> None:
        """Ask the app; refuse, or let picows have the request with the admission known."""
        try:
            result = await self._proxy.connect(client, query, headers)
        except asyncio.CancelledError:
            _refuse(door, HTTPStatus.SERVICE_UNAVAILABLE)  # shutdown: the held client gets an answer, not silence
            raise
        if door.closed:
            return  # the client left meanwhile
        if isinstance(result, HTTPStatus):
            _refuse(door, result)
            return
        door.pass_on(head, rest, admitted=result)


def _refuse(door: FrontDoor, status: HTTPStatus) -> None:
    """Answer the held handshake with `status` and close (nothing more is read)."""
    if not door.closed:
        door.answer(Response(status, _REFUSALS[status], "text/plain; charset=utf-8", close=True))
