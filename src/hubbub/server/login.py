"""The front door's stages for `--users`: `POST /login`, and `/ws` handshakes held for their ticket.

`Login` answers a login with a ticket (or 400, 401, 403, 408, 413, 429, 503); `TicketHold` takes a
`/ws?ticket=T`'s ticket from its store and answers 401 (429, 503) for one unknown, spent or
expired, or lets picows have the request with the ticket's user; without `--users`, `LoginOff`
answers `POST /login` 404. Credentials are JSON `{"username", "password"}` or HTTP Basic. Why
below picows: docs/topics/front-door.md.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import msgspec

from hubbub.auth.logins import Authenticator, Outcome, Refusal
from hubbub.backends.broker import BrokerUnavailable
from hubbub.backends.tickets import StoreFull
from hubbub.protocol.http import Head, Request, Response, Route
from hubbub.server.frontdoor import Arrival, FrontDoor

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


class Login:
    """`POST /login`: the `Host` and `Origin` rules of `/ws`, then the body read and a ticket answered."""

    reads_requests = True

    def __init__(self, auth: Authenticator, allowed: Callable[[dict[str, list[str]]], bool]) -> None:
        """`allowed`: the server's `Host` and `Origin` rules, for the requests picows never sees."""
        self._auth = auth
        self._allowed = allowed
        self.route = Route(self._login, _refuse_login, MAX_BODY, BODY_TIMEOUT, keep_alive=False)
        """How a login is read and answered."""

    def judge(self, door: FrontDoor, arrival: Arrival) -> bool:
        if arrival.start[:4] == b"GET ":
            return False
        head = arrival.head
        if head is None or head.method != "POST" or head.path != "/login":
            return False
        if not self._allowed(head.headers):
            door.answer(_refuse(HTTPStatus.FORBIDDEN, "host or origin not allowed"))  # as for /ws
            return True
        door.take(self.route, head, arrival.rest)
        return True

    async def _login(self, request: Request) -> Response:
        found = credentials(request.head.headers, request.body)
        if found is None:
            return _refuse(HTTPStatus.BAD_REQUEST, 'send {"username": ..., "password": ...} or HTTP Basic')
        name, password = found
        if len(name) > MAX_FIELD or len(password) > MAX_FIELD:
            return _refuse(HTTPStatus.BAD_REQUEST, "username or password too long")
        try:
            result = await self._auth.login(request.peer, name, password)
        except (StoreFull, BrokerUnavailable):
            log.warning("login.store_unavailable", extra={"peer": request.peer})
            return _refuse(HTTPStatus.SERVICE_UNAVAILABLE, "try again later")
        if isinstance(result, Refusal):
            wait = (("Retry-After", str(result.retry_after)),) if result.retry_after else ()
            return Response(HTTPStatus(result.outcome.value), _REASONS[result.outcome], _TEXT, True, wait)
        reply = {"ticket": result, "otp": result, "expires_in": self._auth.ttl}
        return Response(HTTPStatus.OK, msgspec.json.encode(reply), "application/json", close=True)


class TicketHold:
    """`GET /ws?ticket=T`: held while the ticket is taken from its store; then picows has it with the
    ticket's user, or it is refused here."""

    reads_requests = False

    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth

    def judge(self, door: FrontDoor, arrival: Arrival) -> bool:
        if arrival.start[:4] != b"GET ":
            return False
        head = arrival.head
        if head is None:
            return False
        ticket = ticket_of(head.target)
        if ticket is None:
            return False
        # copies: `view` and `rest` are views of the read buffer every connection shares
        door.hold(self._take(door, ticket, arrival.raw, bytes(arrival.rest)))
        return True

    async def _take(self, door: FrontDoor, ticket: str, head: bytes, rest: bytes) -> None:
        try:
            result = await self._auth.take(door.peer, ticket)
        except BrokerUnavailable:
            _reply(door, HTTPStatus.SERVICE_UNAVAILABLE, b"ticket store unreachable\n")
            return
        if door.closed:
            return  # the client left meanwhile
        if isinstance(result, Outcome):
            _reply(door, HTTPStatus(result.value), _TICKET_REASONS[result])
            return
        door.pass_on(head, rest, user=result)


_LOGIN_OFF_BODY = b"no logins here: the server is not started with --users FILE\n"
_LOGIN_OFF = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
    b"Cache-Control: no-store\r\nConnection: close\r\n\r\n%s" % (len(_LOGIN_OFF_BODY), _LOGIN_OFF_BODY)
)


class LoginOff:
    """Without `--users`: `POST /login` is answered 404, saying logins are off."""

    reads_requests = False

    def judge(self, door: FrontDoor, arrival: Arrival) -> bool:
        if arrival.start[:4] == b"GET ":
            return False
        if arrival.line != (b"POST", b"/login"):
            return False
        door.refuse(_LOGIN_OFF)
        return True


def _reply(door: FrontDoor, status: HTTPStatus, body: bytes) -> None:
    door.answer(Response(status, body, _TEXT, close=True))


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
