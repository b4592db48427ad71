"""HTTP for `--users`, below picows: `POST /login`, and `/ws` handshakes held while their ticket is taken.

`AuthPacer` answers a login with a ticket (or 401, 429, 503) and answers a `/ws?ticket=T` whose
ticket is unknown, spent or expired with 401; a good ticket's user is known to the route when
picows routes the request. Credentials are JSON `{"username", "password"}` or HTTP Basic.
Why below picows: docs/topics/front-door.md.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from hubbub.auth.logins import Authenticator, Outcome, Refusal
from hubbub.backends.broker import BrokerUnavailable
from hubbub.backends.tickets import StoreFull
from hubbub.server.http import Claim, Head, HttpPacer, Request, Response, Route
from hubbub.server.http import parse_head as http_head

log = logging.getLogger("hubbub.server.login")

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


def parse_head(head: bytes) -> tuple[str, str, dict[str, list[str]]] | None:
    """Method, target and headers (lowercased names) of a request head; None if it is not one."""
    parsed = http_head(head)
    return None if parsed is None else (parsed.method, parsed.target, parsed.headers)


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


class AuthPacer(HttpPacer):
    """An HTTP pacer that answers `POST /login` and holds `/ws` handshakes for their ticket.

    Requests of other routes (`claim`: the server API) are read and answered as `HttpPacer` does.
    """

    def __init__(
        self,
        inner: Any,
        auth: Authenticator,
        peer: str,
        spawn: Callable[[Any], Any],
        allowed: Callable[[dict[str, list[str]]], bool],
        claim: Claim | None = None,
    ) -> None:
        """`allowed`: the server's `Host` and `Origin` rules, for the requests picows never sees."""
        super().__init__(inner, self._claim_login, peer, spawn)
        self._auth = auth
        self._allowed = allowed
        self._other = claim
        self._login_route = Route(self._login, _refuse_login, MAX_BODY, BODY_TIMEOUT, keep_alive=False)
        self.user: str | None = None
        """The ticket's user while picows routes this connection's request."""

    def _claim_login(self, head: Head) -> Route | None:
        if head.method == "POST" and head.path == "/login":
            return self._login_route
        return self._other(head) if self._other is not None else None

    # ---- the request head ----------------------------------------------------

    def _request_head(self, head: memoryview, rest: memoryview) -> bool:
        parsed = http_head(bytes(head))
        if parsed is None:
            return True  # picows answers malformed requests
        if parsed.method == "POST" and parsed.path == "/login" and not self._allowed(parsed.headers):
            self._answer(_refuse(HTTPStatus.FORBIDDEN, "host or origin not allowed"))  # as for /ws
            return False
        if parsed.method == "GET":
            ticket = ticket_of(parsed.target)
            if ticket is not None:
                self._cancel_timer()
                self._hold_for_ticket(ticket, bytes(head), bytes(rest))
                return False
        return super()._request_head(head, rest)

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self._answer(Response(status, body, content_type, close=True))

    # ---- POST /login ---------------------------------------------------------

    async def _login(self, request: Request) -> Response:
        found = credentials(request.head.headers, request.body)
        if found is None:
            return _refuse(HTTPStatus.BAD_REQUEST, 'send {"username": ..., "password": ...} or HTTP Basic')
        name, password = found
        if len(name) > MAX_FIELD or len(password) > MAX_FIELD:
            return _refuse(HTTPStatus.BAD_REQUEST, "username or password too long")
        try:
            result = await self._auth.login(self._peer, name, password)
        except (StoreFull, BrokerUnavailable):
            log.warning("login.store_unavailable", extra={"peer": self._peer})
            return _refuse(HTTPStatus.SERVICE_UNAVAILABLE, "try again later")
        if isinstance(result, Refusal):
            wait = (("Retry-After", str(result.retry_after)),) if result.retry_after else ()
            return Response(HTTPStatus(result.outcome.value), _REASONS[result.outcome], _TEXT, True, wait)
        reply = {"ticket": result, "otp": result, "expires_in": self._auth.ttl}
        return Response(HTTPStatus.OK, msgspec.json.encode(reply), "application/json", close=True)

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


_TEXT = "text/plain; charset=utf-8"


def _refuse_login(head: Head, status: HTTPStatus, message: str) -> Response:
    """`_refuse`, as the HTTP reader calls it."""
    return _refuse(status, message)


def _refuse(status: HTTPStatus, message: str) -> Response:
    """A refusal of `POST /login`: plain text, and the connection closes."""
    return Response(status, f"{message}\n".encode(), _TEXT, close=True)


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
