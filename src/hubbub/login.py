"""HTTP for authentication, below picows: `POST /login`, and `/ws` handshakes held for their ticket.

picows (2.3) reads only `GET` requests without a body: `_parse_http_request`
answers any other method, and any non-zero `Content-Length`, with its own
400 before the application sees the request. So `POST /login` cannot be a
route of `server.py`. The frame pacer (`hubbub.pacer`) already sees every
request head before picows does; `AuthPacer` looks at it there:

- `POST /login`: the pacer keeps the socket, reads the body
  (`Content-Length`, at most `MAX_BODY` bytes, within `BODY_TIMEOUT`), answers
  it itself (`Authenticator.login`) and closes. picows never sees it.
- `GET /ws?ticket=T` (or `otp=T`): reading pauses while the ticket is taken
  from its store (Redis is a network round trip, and picows' route callback
  cannot wait); an unknown, spent or expired ticket is answered 401 here, a
  good one lets picows have the request with its user known to the route.
- anything else goes to picows as before, untouched.

Credentials come as JSON `{"username": U, "password": P}` whatever the
`Content-Type` (a browser's `fetch` with a string body sends `text/plain`,
which also spares it a CORS preflight), or as HTTP Basic.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from hubbub.auth import Authenticator, Outcome
from hubbub.broker import BrokerUnavailable
from hubbub.pacer import FramePacer
from hubbub.tickets import StoreFull

log = logging.getLogger("hubbub.login")

MAX_BODY = 4096
"""Largest login body read; larger is answered 413 unread."""
BODY_TIMEOUT = 10.0
"""Seconds a login body has to arrive in full; later is answered 408."""
MAX_FIELD = 1024
"""Longest username or password considered (argon2 would hash any length)."""


class Credentials(msgspec.Struct, forbid_unknown_fields=False):
    username: str
    password: str


_DECODER = msgspec.json.Decoder(Credentials)


def answer(status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    """A whole HTTP/1.1 response that closes the connection."""
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def parse_head(head: bytes) -> tuple[str, str, dict[str, list[str]]] | None:
    """Method, target and headers (lowercased names) of a request head; None if it is not one."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return parts[0], parts[1], headers


def credentials(headers: dict[str, list[str]], body: bytes) -> tuple[str, str] | None:
    """The username and password of a login: Basic if the request has it, else the JSON body."""
    authorization = headers.get("authorization", [])
    if len(authorization) == 1:
        scheme, _, encoded = authorization[0].partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, sep, password = decoded.partition(":")
            return (user, password) if sep else None
    try:
        login = _DECODER.decode(body)
    except msgspec.DecodeError:
        return None
    return login.username, login.password


def ticket_of(target: str) -> str | None:
    """The `ticket` (or `otp`) a `/ws` target carries, if any ("" for a present but empty one)."""
    url = urlsplit(target)
    if url.path != "/ws" or not url.query:
        return None
    query = parse_qs(url.query, keep_blank_values=True)
    values = query.get("ticket", []) + query.get("otp", [])
    return values[0] if values else None


class AuthPacer(FramePacer):
    """A frame pacer that answers `POST /login` and holds `/ws` handshakes for their ticket."""

    def __init__(
        self,
        inner: Any,
        auth: Authenticator,
        peer: str,
        spawn: Callable[[Any], Any],
        allowed: Callable[[dict[str, list[str]]], bool],
    ) -> None:
        """`allowed`: the server's `Host` and `Origin` rules, for the requests picows never sees."""
        super().__init__(inner)
        self._auth = auth
        self._allowed = allowed
        self._peer = peer
        self._spawn = spawn
        self._body: bytearray | None = None
        self._body_size = 0
        self._headers: dict[str, list[str]] = {}
        self._body_timer: asyncio.TimerHandle | None = None
        self.user: str | None = None
        """The ticket's user while picows routes this connection's request."""

    # ---- the request head ----------------------------------------------------

    def _request_head(self, head: memoryview, rest: memoryview) -> bool:
        parsed = parse_head(bytes(head))
        if parsed is None:
            return True  # picows answers malformed requests
        method, target, headers = parsed
        if method == "POST" and urlsplit(target).path == "/login":
            if not self._allowed(headers):  # DNS rebinding and foreign pages: as for /ws
                self._reply(HTTPStatus.FORBIDDEN, b"host or origin not allowed\n")
            else:
                self._start_login(headers, rest)
            return False
        if method == "GET":
            ticket = ticket_of(target)
            if ticket is not None:
                self._hold_for_ticket(ticket, bytes(head), bytes(rest))
                return False
        return True

    def _through_handshake(self, data: memoryview) -> memoryview:
        if self._body is not None:  # the rest of a login body
            self._add_body(data)
            return memoryview(b"")
        return super()._through_handshake(data)

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(answer(status, body, content_type))
            transport.close()
        self._closed = True

    # ---- POST /login ---------------------------------------------------------

    def _start_login(self, headers: dict[str, list[str]], rest: memoryview) -> None:
        lengths = headers.get("content-length", [])
        if "transfer-encoding" in headers or len(lengths) > 1:
            self._reply(HTTPStatus.BAD_REQUEST, b"send the body with one Content-Length\n")
            return
        try:
            size = int(lengths[0]) if lengths else 0
        except ValueError:
            size = -1
        if size < 0:
            self._reply(HTTPStatus.BAD_REQUEST, b"bad Content-Length\n")
            return
        if size > MAX_BODY:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"login body too large\n")
            return
        self._headers = headers
        self._body_size = size
        self._body = bytearray()
        self._body_timer = asyncio.get_running_loop().call_later(BODY_TIMEOUT, self._body_late)
        self._add_body(rest)

    def _body_late(self) -> None:
        self._body_timer = None
        self._body = None
        self._reply(HTTPStatus.REQUEST_TIMEOUT, b"login body incomplete\n")

    def _add_body(self, data: memoryview) -> None:
        body = self._body
        assert body is not None
        body += data
        if len(body) < self._body_size:
            return
        self._body = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if self._transport is not None:
            self._transport.pause_reading()  # one request per connection: the rest is not read
        self._spawn(self._login(bytes(body[: self._body_size])))

    async def _login(self, body: bytes) -> None:
        found = credentials(self._headers, body)
        if found is None:
            self._reply(HTTPStatus.BAD_REQUEST, b'send {"username": ..., "password": ...} or HTTP Basic\n')
            return
        name, password = found
        if len(name) > MAX_FIELD or len(password) > MAX_FIELD:
            self._reply(HTTPStatus.BAD_REQUEST, b"username or password too long\n")
            return
        try:
            result = await self._auth.login(self._peer, name, password)
        except (StoreFull, BrokerUnavailable):
            log.warning("login.store_unavailable", extra={"peer": self._peer})
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, b"try again later\n")
            return
        if isinstance(result, Outcome):
            self._reply(HTTPStatus(result.value), _REASONS[result])
            return
        reply = {"ticket": result, "otp": result, "expires_in": self._auth.ttl}
        self._reply(HTTPStatus.OK, msgspec.json.encode(reply), "application/json")

    # ---- GET /ws?ticket= -----------------------------------------------------

    def _hold_for_ticket(self, ticket: str, head: bytes, rest: bytes) -> None:
        if self._transport is not None:
            self._transport.pause_reading()
        self._spawn(self._take(ticket, head, rest))

    async def _take(self, ticket: str, head: bytes, rest: bytes) -> None:
        try:
            result = await self._auth.take(self._peer, ticket)
        except BrokerUnavailable:
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, b"ticket store unreachable\n")
            return
        if self._closed:
            return  # the client left meanwhile
        if isinstance(result, Outcome):
            self._reply(HTTPStatus(result.value), _TICKET_REASONS[result])
            return
        self._upgraded = True
        self.user = result
        try:
            self._feed(memoryview(head))
        finally:
            self.user = None
        if rest and not self._closed:
            self._walk(memoryview(rest))
        transport = self._transport
        if transport is not None and not transport.is_closing() and not self._held and not self._app_paused:
            transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().connection_lost(exc)


_REASONS = {
    Outcome.DENIED: b"wrong username or password\n",
    Outcome.LIMITED: b"too many failed logins, try again in a minute\n",
    Outcome.BUSY: b"too many logins at once, try again later\n",
}
_TICKET_REASONS = {
    Outcome.DENIED: b"ticket unknown, used or expired: log in again\n",
    Outcome.LIMITED: b"too many bad tickets, try again in a minute\n",
    Outcome.BUSY: b"too many handshakes at once, try again later\n",
}
