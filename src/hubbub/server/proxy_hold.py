"""`/ws` handshakes held below picows while the application is asked about them (`--connect-proxy`).

`ProxyHold` pauses a handshake that carries no credential of hubbub's own, asks
`AppProxy.connect`, and either refuses it (401, 403, 503) or lets picows have it with the app's
admission; past `--proxy-max-waiting` (in all, or one address's share) it answers 503 unasked.
Why and how: docs/topics/front-door.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from hubbub.auth.tokens import TOKEN_SUBPROTOCOL_PREFIX
from hubbub.server.http import HttpPacer, Response, encode_response
from hubbub.server.login import parse_head
from hubbub.server.pacer import FramePacer

if TYPE_CHECKING:
    from hubbub.integration.app_proxy import Admission, AppProxy

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]

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


class ProxyHold(FramePacer):
    """A frame pacer that holds credential-less `/ws` handshakes for the app's answer (module docstring).

    Mixed in before `FramePacer` or `login.AuthPacer`; `hold_for_app` turns it on.
    """

    user: str | None = None
    """A ticket's user while picows routes the request (set by `AuthPacer` when it is mixed in)."""
    admitted: Admission | None = None
    """The app's admission while picows routes this connection's request."""
    _proxy: AppProxy | None = None
    _proxy_spawn: Spawn | None = None
    _proxy_allowed: Callable[[dict[str, list[str]]], bool] | None = None
    _proxy_address = ""
    """The client's address as the listener counts it (its share of the waiting places is bounded)."""
    _asking: asyncio.Task[None] | None = None
    """The call to the app while it runs: cancelled if the client leaves first, which frees its place."""

    def hold_for_app(
        self, proxy: AppProxy, spawn: Spawn, allowed: Callable[[dict[str, list[str]]], bool], address: str = ""
    ) -> None:
        """Ask `proxy` about the handshakes it should judge; `allowed`: the server's `Host` and `Origin` rules;
        `address`: the client's, as the listener's per-address cap counts it."""
        self._proxy = proxy
        self._proxy_spawn = spawn
        self._proxy_allowed = allowed
        self._proxy_address = address

    def _request_head(self, head: memoryview, rest: memoryview) -> bool:
        proxy = self._proxy
        if proxy is None or bytes(head[:7]) != b"GET /ws":
            return super()._request_head(head, rest)
        parsed = parse_head(bytes(head))
        if parsed is None:
            return super()._request_head(head, rest)
        _, target, headers = parsed
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True)
        if url.path != "/ws" or not self._for_app(query, headers):
            return super()._request_head(head, rest)
        address = self._proxy_address
        if not proxy.reserve(address):
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE)
            return False
        if isinstance(self, HttpPacer):
            self._cancel_timer()  # the head came: the app's answer is bounded by --proxy-timeout instead
        if self._transport is not None:
            self._transport.pause_reading()
        assert self._proxy_spawn is not None
        client = peer_address(self._transport)
        first = {name: values[0] for name, values in query.items()}
        forwarded = forwarded_headers(headers, proxy.headers)
        # copies: `head` and `rest` are views of the read buffer every connection shares (hubbub.server.pacer)
        task = self._proxy_spawn(self._admit(proxy, client, first, forwarded, bytes(head), bytes(rest)))
        task.add_done_callback(lambda _: proxy.release(address))
        self._asking = task
        return False

    def _for_app(self, query: dict[str, list[str]], headers: dict[str, list[str]]) -> bool:
        """Whether the app judges this `/ws` request: a WebSocket handshake, allowed here, without a credential."""
        if "websocket" not in ",".join(headers.get("upgrade", [])).lower():
            return False  # not a handshake: picows answers it
        if any(name in query for name in _CREDENTIALS):
            return False
        if TOKEN_SUBPROTOCOL_PREFIX in ",".join(headers.get("sec-websocket-protocol", [])):
            return False
        return self._proxy_allowed is None or self._proxy_allowed(headers)

    async def _admit(
        self, proxy: AppProxy, client: str, query: dict[str, str], headers: dict[str, str], head: bytes, rest: bytes
    ) -> None:
        """Ask the app; refuse, or let picows have the request with the admission known."""
        try:
            result = await proxy.connect(client, query, headers)
        except asyncio.CancelledError:
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE)  # shutdown: the held client gets an answer, not silence
            raise
        finally:
            self._asking = None
        if self._closed:
            return  # the client left meanwhile
        if isinstance(result, HTTPStatus):
            self._refuse(result)
            return
        self._upgraded = True
        self.admitted = result
        try:
            self._feed(memoryview(head))
        finally:
            self.admitted = None
        if rest and not self._closed:
            self._walk(memoryview(rest))
        transport = self._transport
        if transport is not None and not transport.is_closing() and not self._held and not self._app_paused:
            transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._asking is not None:
            self._asking.cancel()
            self._asking = None
        super().connection_lost(exc)

    def _refuse(self, status: HTTPStatus) -> None:
        """Answer the held handshake with `status` and close (nothing more is read)."""
        if self._closed:
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            response = Response(status, _REFUSALS[status], "text/plain; charset=utf-8", close=True)
            transport.write(encode_response(response, keep_alive=False))
            transport.close()
        self._closed = True
