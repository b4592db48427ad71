"""HTTP/1.1 requests with bodies, read below picows and answered by async handlers.

`HttpPacer` reads the requests a `Route` claims (`POST /login`, `/api/...`), which picows cannot
read, under per-connection bounds: `HEAD_TIMEOUT`, `IDLE_TIMEOUT`, a route's `max_body` (413) and
`body_timeout` (408), one request at a time. Unclaimed requests go to picows untouched. How and
why: docs/topics/front-door.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from hubbub.server.pacer import FramePacer

log = logging.getLogger("hubbub.server.http")

HEAD_TIMEOUT = 10.0
"""Seconds a new connection has to send its first request head (picows' handshake timeout, too)."""
IDLE_TIMEOUT = 30.0
"""Seconds a kept-alive connection may wait, after an answer, before its next request head is complete."""
MAX_DIGITS = 18
"""Most significant digits `decimal` reads: every count hubbub takes fits, and `int()` never meets its own
limit (4300 digits, a ValueError) nor spends time on a number a client made long."""


def decimal(text: str) -> int | None:
    """`text` as a non-negative integer when it is ASCII digits only (leading zeros aside, at most
    `MAX_DIGITS` of them); else None.

    `str.isdigit` alone is not that: it is true for `²` and other digits `int()` refuses, which
    made a `Content-Length: ²` (Latin-1 0xB2) a traceback.
    """
    if not text or not text.isascii() or not text.isdigit():
        return None
    significant = text.lstrip("0")
    if len(significant) > MAX_DIGITS:
        return None
    return int(significant or "0")


@dataclass(frozen=True, slots=True)
class Head:
    """A parsed request head; header names are lowercased, each with its values in order."""

    method: str
    target: str
    version: str
    headers: dict[str, list[str]]

    @property
    def path(self) -> str:
        """The target's path, without its query."""
        return urlsplit(self.target).path

    def one(self, name: str) -> str | None:
        """The header's value when it is present exactly once, else None."""
        values = self.headers.get(name, [])
        return values[0] if len(values) == 1 else None

    @property
    def keep_alive(self) -> bool:
        """Whether the client wants the connection kept after the answer (RFC 9112 9.3)."""
        tokens = {t.strip().lower() for value in self.headers.get("connection", []) for t in value.split(",")}
        if self.version == "HTTP/1.1":
            return "close" not in tokens
        return "keep-alive" in tokens


def parse_head(head: bytes) -> Head | None:
    """The request line and headers of a request head; None if it is not one."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers.setdefault(name.lower(), []).append(value.strip())
    return Head(parts[0], parts[1], parts[2], headers)


@dataclass(frozen=True, slots=True)
class Request:
    """A whole request, as a route's handler gets it."""

    head: Head
    body: bytes
    peer: str
    """The client's address (`host:port`), for logs and per-client bounds."""


@dataclass(frozen=True, slots=True)
class Response:
    """A route's answer; `close` ends the connection after it whatever the client wanted."""

    status: HTTPStatus
    body: bytes
    content_type: str = "application/json"
    close: bool = False
    headers: tuple[tuple[str, str], ...] = ()


def encode_response(response: Response, keep_alive: bool) -> bytes:
    """The answer's bytes: status line, headers (never cached) and body."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers)
    head = (
        f"HTTP/1.1 {response.status.value} {response.status.phrase}\r\nContent-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\nCache-Control: no-store\r\n{extra}"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("latin-1") + response.body


@dataclass(frozen=True, slots=True)
class Route:
    """How one kind of request is read and answered."""

    handle: Callable[[Request], Awaitable[Response]]
    """The handler: an answer for every request (its exceptions become `refuse(500)`)."""
    refuse: Callable[[Head, HTTPStatus, str], Response]
    """The route's wording of a refusal the reader decides (400, 408, 411, 413, 500) of a request."""
    max_body: int
    body_timeout: float
    keep_alive: bool = True
    """Whether the connection may serve further requests after this one."""
    admit: Callable[[Head, str], Response | None] | None = None
    """Judges the head before the body is read: an answer refuses the request at once (and closes
    the connection), unread, so that a client without credentials never makes the server hold a body."""


Claim = Callable[[Head], "Route | None"]
"""Which route reads a request, judged on its head; None lets picows have it."""


class HttpPacer(FramePacer):
    """A frame pacer that reads and answers the requests its `claim` takes (see the module docstring)."""

    def __init__(self, inner: Any, claim: Claim, peer: str, spawn: Callable[[Any], Any]) -> None:
        """`spawn` runs a handler's coroutine as a task owned by the server (awaited at its stop)."""
        super().__init__(inner)
        self._claim = claim
        self._peer = peer
        self._spawn = spawn
        self._inner_started = False
        self._timer: asyncio.TimerHandle | None = None
        self._route: Route | None = None
        self._head: Head | None = None
        self._body: bytearray | None = None
        self._body_size = 0
        self._busy = False
        self._pending = memoryview(b"")
        """Bytes that came after the request being answered (pipelining): a view of bytes this pacer owns."""
        self._walking: object = None
        """The bytes object `_next` is judging requests from: a view of it needs no copy to be kept."""
        self._writes_paused = False
        """The transport's write buffer is over its high-water mark: a client that does not read its
        answers gets no more of them (its next request is neither read nor judged) until it drains."""

    # ---- the connection's life ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._arm(HEAD_TIMEOUT, self._idle)

    def _start_inner(self) -> None:
        """Give picows the connection: a request is coming its way."""
        self._inner_started = True
        self._cancel_timer()
        self._inner.connection_made(self._transport)

    def _feed(self, data: memoryview) -> None:
        if not self._inner_started:
            self._start_inner()
        super()._feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._pending = memoryview(b"")
        if self._inner_started:
            super().connection_lost(exc)
        else:
            self._closed = True

    def eof_received(self) -> bool | None:
        if not self._inner_started:
            return None  # the transport closes itself
        return super().eof_received()

    def pause_writing(self) -> None:
        if self._inner_started:
            super().pause_writing()
        else:
            self._writes_paused = True

    def resume_writing(self) -> None:
        if self._inner_started:
            super().resume_writing()
        elif self._writes_paused:
            self._writes_paused = False
            if not self._busy and self._body is None:
                self._next()

    # ---- timers -------------------------------------------------------------

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle(self) -> None:
        """No (complete) request head in time: close without an answer, as an idle keep-alive ends."""
        self._timer = None
        if self._busy or self._inner_started:
            return
        self._close()

    def _body_late(self) -> None:
        self._timer = None
        self._body = None
        if self._route is not None and self._head is not None:
            self._answer(
                self._route.refuse(self._head, HTTPStatus.REQUEST_TIMEOUT, "the request body did not arrive in time")
            )

    # ---- reading ------------------------------------------------------------

    def _through_handshake(self, data: memoryview) -> memoryview:
        if self._body is not None:  # the rest of a body
            self._add_body(data)
            return memoryview(b"")
        if self._busy or self._writes_paused:  # a read that came with the request being handled
            self._pending = memoryview(bytes(self._pending) + bytes(data))
            return memoryview(b"")
        return super()._through_handshake(data)

    def _request_head(self, head: memoryview, rest: memoryview) -> bool:
        parsed = parse_head(bytes(head))
        if parsed is None:
            return True  # picows answers malformed requests
        route = self._claim(parsed)
        if route is None:
            return True
        self._cancel_timer()
        self._read(route, parsed, rest)
        return False

    def _read(self, route: Route, head: Head, rest: memoryview) -> None:
        """Start reading a claimed request's body."""
        self._route = route
        self._head = head
        lengths = head.headers.get("content-length", [])
        if "transfer-encoding" in head.headers:
            self._answer(route.refuse(head, HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length"))
            return
        size = decimal(lengths[0]) if len(lengths) == 1 else 0 if not lengths else None
        if size is None:
            self._answer(route.refuse(head, HTTPStatus.BAD_REQUEST, "bad Content-Length"))
            return
        refused = route.admit(head, self._peer) if route.admit is not None else None
        if refused is not None:
            self._answer(refused)
            return
        if size > route.max_body:
            self._answer(
                route.refuse(head, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is over {route.max_body} bytes")
            )
            return
        expect = head.one("expect")
        if expect is not None and expect.lower() == "100-continue" and size and len(rest) < size:
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._body_size = size
        self._body = bytearray()
        self._arm(route.body_timeout, self._body_late)
        self._add_body(rest)

    def _add_body(self, data: memoryview) -> None:
        body = self._body
        assert body is not None and self._route is not None and self._head is not None
        size = self._body_size
        need = size - len(body)
        body += data[:need]
        if len(body) < size:
            return
        self._body = None
        self._cancel_timer()
        # what a pipelining client sent after it: kept as a view when it is already ours (the rest of
        # `_pending`), copied once when it is the shared read buffer. Never a copy per request: a read of
        # thousands of tiny pipelined requests would cost its size times their number.
        rest = data[need:]
        self._pending = rest if rest.obj is self._walking else memoryview(bytes(rest))
        self._busy = True
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()
        self._spawn(self._serve(self._route, Request(self._head, bytes(body[:size]), self._peer)))

    # ---- answering ----------------------------------------------------------

    async def _serve(self, route: Route, request: Request) -> None:
        try:
            response = await route.handle(request)
        except Exception:
            log.exception("http.handler_failed", extra={"path": request.head.path})
            response = route.refuse(request.head, HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        finally:
            self._busy = False
        if self._closed:
            return  # the client left meanwhile
        if not (route.keep_alive and request.head.keep_alive and not response.close):
            self._answer(response)
            return
        self._write(encode_response(response, keep_alive=True))
        self._route = self._head = None
        self._arm(IDLE_TIMEOUT, self._idle)
        if not self._writes_paused:  # else when the client has read enough (`resume_writing`)
            self._next()

    def _next(self) -> None:
        """After an answer: judge the next request if it came already, else read again."""
        pending, self._pending = self._pending, memoryview(b"")
        if pending:  # the next request came already: judge it as a read
            self._walking = pending.obj
            try:
                rest = self._through_handshake(pending)
            finally:
                self._walking = None
            if rest and not self._closed:
                self._walk(rest)
        transport = self._transport
        idle = not self._busy and not self._held and not self._app_paused and not self._writes_paused
        if idle and not self._closed and transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _answer(self, response: Response) -> None:
        """Write `response` and close the connection after it."""
        self._write(encode_response(response, keep_alive=False))
        self._close()

    def _close(self) -> None:
        self._cancel_timer()
        self._body = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()
        self._closed = True
