"""`FrontDoor`: the protocol of every accepted socket, a pipeline of stages in front of picows.

Each request head is judged by the `Pipeline`'s stages in order; a stage passes it on or takes it
(answers it, reads and answers it through a `hubbub.protocol.http.Route`, or holds it and then
lets picows have it). What no stage takes goes to picows. Claimed requests are read under
per-connection bounds: `HEAD_TIMEOUT`, `IDLE_TIMEOUT`, a route's `max_body` (413) and
`body_timeout` (408), no chunked bodies (411), one request at a time. `GetOnly`, the last stage,
answers 405 to a method picows would garble. Once a connection is upgraded its reads take the
frame pacer's path alone. The pipeline, each stage and what it refuses: docs/topics/front-door.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

from hubbub.core.connection import peer_address
from hubbub.protocol.http import (
    Head,
    Request,
    Response,
    Route,
    decimal,
    encode_response,
    parse_head,
    plain_request_line,
)
from hubbub.server.pacer import FramePacer

if TYPE_CHECKING:
    from hubbub.integration.app_proxy import Admission

__all__ = [
    "HEAD_TIMEOUT",
    "IDLE_TIMEOUT",
    "Arrival",
    "FrontDoor",
    "GetOnly",
    "Pipeline",
    "Spawn",
    "Stage",
    "Stream",
]

log = logging.getLogger("hubbub.server.frontdoor")

HEAD_TIMEOUT = 10.0
"""Seconds a new connection has to send its first request head (picows' handshake timeout, too)."""
IDLE_TIMEOUT = 30.0
"""Seconds a kept-alive connection may wait, after an answer, before its next request head is complete."""

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]
"""Runs a coroutine as a task owned by the server (awaited, or cancelled, at its stop)."""

_UNSET: Any = object()


class Arrival:
    """A request head that came, as the stages judge it: its bytes, and what they parse to (once)."""

    __slots__ = ("_head", "_line", "_raw", "rest", "start", "view")

    def __init__(self, view: memoryview, rest: memoryview) -> None:
        self.view = view
        """The head, up to its blank line: a view of the read buffer every connection shares (copy to keep)."""
        self.rest = rest
        """The bytes of the same read after the head (a view, as `view`)."""
        self.start = bytes(view[:8])
        """The head's first 8 bytes: enough for a stage to let a plain `GET` by without parsing."""
        self._raw: bytes | None = None
        self._head: Head | None = _UNSET
        self._line: tuple[bytes, bytes] | None = _UNSET

    @property
    def raw(self) -> bytes:
        """The head's bytes (a copy, made once)."""
        if self._raw is None:
            self._raw = bytes(self.view)
        return self._raw

    @property
    def head(self) -> Head | None:
        """The parsed head (`parse_head`), or None when it is not one: picows answers those."""
        if self._head is _UNSET:
            self._head = parse_head(self.raw)
        return self._head

    @property
    def line(self) -> tuple[bytes, bytes] | None:
        """Method and path of a well-formed head (`plain_request_line`); None leaves it to picows."""
        if self._line is _UNSET:
            self._line = plain_request_line(self.raw)
        return self._line


class Stream(Protocol):
    """A response that stays open (`FrontDoor.stream`): told when the socket's writes pause and when it is gone."""

    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def lost(self) -> None: ...


class Stage(Protocol):
    """One step of the front door: judges a request head, and takes it or passes it on."""

    reads_requests: bool
    """Whether the stage may `take` requests (read their bodies): the door then starts picows late."""

    def judge(self, door: FrontDoor, arrival: Arrival) -> bool:
        """True when the stage took the request (answered it, or holds it); False passes it to the next."""
        ...


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The stages of one server's front door, in order, and the task owner their work runs under."""

    stages: tuple[Stage, ...]
    spawn: Spawn
    reads_requests: bool = field(init=False)
    """Whether any stage reads requests (see `Stage.reads_requests`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reads_requests", any(stage.reads_requests for stage in self.stages))

    @property
    def names(self) -> tuple[str, ...]:
        """The stages' class names, in order: what the pipeline is, for tests and diagnostics."""
        return tuple(type(stage).__name__ for stage in self.stages)


_NOT_GET_BODY = b"method not allowed: this server answers GET here (the WebSocket at /ws, pages, /healthz)\n"
_NOT_GET = (
    b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n%s"
    % (len(_NOT_GET_BODY), _NOT_GET_BODY)
)


class GetOnly:
    """The last stage: a well-formed request that is not a `GET` gets 405 with `Allow: GET`.

    picows answers any other method with its own 400 ("Unsupported HTTP method: b'POST'"). A
    malformed head is left to picows' 400.
    """

    reads_requests = False

    def judge(self, door: FrontDoor, arrival: Arrival) -> bool:
        if arrival.start[:4] == b"GET ":
            return False
        line = arrival.line
        if line is None or line[0] == b"GET":
            return False
        door.refuse(_NOT_GET)
        return True


class FrontDoor(FramePacer):
    """The protocol of one accepted socket: the pipeline's stages, then picows behind the frame pacer.

    Stages act on the connection through `take`, `hold`, `pass_on`, `answer` and `refuse`.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        picows: Callable[[FrontDoor], Any],
        peer: str,
        on_lost: Callable[[], None],
    ) -> None:
        """`picows`: makes picows' protocol for this door (its route callback may read `user` and
        `admitted`); `peer`: the client's address as the listener counts it; `on_lost`: called once
        the connection is lost (the listener's slot given back)."""
        self._stages = pipeline.stages
        self._reads = pipeline.reads_requests
        self._spawn = pipeline.spawn
        self.peer = peer
        """The client's address as the listener counts it: routes' `Request.peer`, per-address bounds."""
        self._on_lost = on_lost
        self.user: str | None = None
        """A ticket's user, while picows routes the request a stage let through (`pass_on`)."""
        self.admitted: Admission | None = None
        """The application's admission, while picows routes the request a stage let through (`pass_on`)."""
        self._inner_started = False
        self._timer: asyncio.TimerHandle | None = None
        self._holding: asyncio.Task[None] | None = None
        """A hold's task that the client's leaving cancels (`hold`)."""
        self._route: Route | None = None
        self._head: Head | None = None
        self._body: bytearray | None = None
        self._body_size = 0
        self._busy = False
        self._pending = memoryview(b"")
        """Bytes that came after the request being answered (pipelining): a view of bytes this door owns."""
        self._walking: object = None
        """The bytes object `_next` is judging requests from: a view of it needs no copy to be kept."""
        self._stream: Stream | None = None
        """The response that has the connection for good (`stream`): an SSE stream."""
        self._dropping = False
        """What the client sends is read and dropped: its last request is held (`hold(last=True)`) or streamed."""
        self._writes_paused = False
        """The transport's write buffer is over its high-water mark: a client that does not read its
        answers gets no more of them (its next request is neither read nor judged) until it drains."""
        super().__init__(picows(self))

    # ---- what stages do with the connection ----------------------------------

    @property
    def transport(self) -> asyncio.BaseTransport | None:
        """The socket's transport, once connected."""
        return self._transport  # type: ignore[no-any-return]

    @property
    def remote(self) -> str:
        """The client's address, `host:port`, for the log ("" before the socket is connected)."""
        transport = self._transport
        return peer_address(transport.get_extra_info("peername")) if transport is not None else ""

    @property
    def closed(self) -> bool:
        """Whether nothing more is read: the connection is lost, closed, or past a close frame."""
        return self._closed

    def take(self, route: Route, head: Head, rest: memoryview) -> None:
        """Read the request of `head` (its body starts in `rest`) and answer it with `route`."""
        self._cancel_timer()
        self._read(route, head, rest)

    def hold(
        self, work: Coroutine[Any, Any, None], *, cancel_if_lost: bool = False, last: bool = False
    ) -> asyncio.Task[None]:
        """Stop reading while `work` runs (it ends with `pass_on` or `answer`); the head timer stops.

        `cancel_if_lost`: the client's leaving cancels `work` (else `work` sees `closed`). `last`: this is
        the connection's last request (`work` ends with `answer` or `stream`, never `pass_on`): reading
        goes on, so that a client that leaves is noticed at once, and what it sends is dropped.
        """
        self._cancel_timer()
        if last:
            self._dropping = True
        elif self._transport is not None:
            self._transport.pause_reading()
        task = self._spawn(work)
        if cancel_if_lost:
            self._holding = task
            task.add_done_callback(self._hold_ended)
        return task

    def _hold_ended(self, task: asyncio.Task[None]) -> None:
        if self._holding is task:
            self._holding = None

    def pass_on(self, head: bytes, rest: bytes, user: str | None = None, admitted: Admission | None = None) -> None:
        """Let picows have a held request (`head`, then the bytes after it), with `user` or `admitted`
        known to its route callback while it routes; reading resumes."""
        self._upgraded = True
        self.user = user
        self.admitted = admitted
        try:
            self._pass_head(memoryview(head))
        finally:
            self.user = None
            self.admitted = None
        if rest and not self._closed:
            self._walk(memoryview(rest))
        transport = self._transport
        if transport is not None and not transport.is_closing() and not self._held and not self._app_paused:
            transport.resume_reading()

    def stream(self, stream: Stream) -> None:
        """Give the connection to a held request's open-ended response (`GET /sse`): from now on it is
        told of the transport's write pauses and loss; what the client sends is read and discarded (so
        that its leaving is noticed at once), never judged as a request."""
        self._stream = stream
        self._dropping = True
        self._cancel_timer()
        self._holding = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def answer(self, response: Response) -> None:
        """Write `response` and close the connection after it."""
        self._write(encode_response(response, keep_alive=False))
        self._close()

    def refuse(self, answer: bytes) -> None:
        """Write `answer` (a whole HTTP response) and close; picows never sees the request."""
        self._closed = True
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(answer)
            transport.close()

    # ---- the connection's life ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if self._reads:
            self._arm(HEAD_TIMEOUT, self._idle)
        else:
            self._inner_started = True
            self._inner.connection_made(transport)

    def _start_inner(self) -> None:
        """Give picows the connection: a request is coming its way."""
        self._inner_started = True
        self._cancel_timer()
        self._inner.connection_made(self._transport)

    def _pass_head(self, data: memoryview) -> None:
        if not self._inner_started:
            self._start_inner()
        self._feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            stream, self._stream = self._stream, None
            if stream is not None:
                self._closed = True
                stream.lost()
            holding, self._holding = self._holding, None
            if holding is not None:
                holding.cancel()
            self._cancel_timer()
            self._pending = memoryview(b"")
            if self._inner_started:
                super().connection_lost(exc)
            else:
                self._closed = True
        finally:
            self._on_lost()

    def eof_received(self) -> bool | None:
        if not self._inner_started:
            return None  # the transport closes itself
        return super().eof_received()

    def pause_writing(self) -> None:
        if self._stream is not None:
            self._stream.pause_writing()
        elif self._inner_started:
            super().pause_writing()
        else:
            self._writes_paused = True

    def resume_writing(self) -> None:
        if self._stream is not None:
            self._stream.resume_writing()
        elif self._inner_started:
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
            self.answer(
                self._route.refuse(self._head, HTTPStatus.REQUEST_TIMEOUT, "the request body did not arrive in time")
            )

    # ---- reading ------------------------------------------------------------

    def _through_handshake(self, data: memoryview) -> memoryview:
        if self._dropping:  # the last request's client has nothing more to say: read (to see it leave), dropped
            return memoryview(b"")
        if self._body is not None:  # the rest of a body
            self._add_body(data)
            return memoryview(b"")
        if self._busy or self._writes_paused:  # a read that came with the request being handled
            self._pending = memoryview(bytes(self._pending) + bytes(data))
            return memoryview(b"")
        return super()._through_handshake(data)

    def _request_head(self, head: memoryview, rest: memoryview) -> bool:
        """The pipeline: each stage in turn may take the request; picows gets what none takes."""
        arrival = Arrival(head, rest)
        return not any(stage.judge(self, arrival) for stage in self._stages)

    def _read(self, route: Route, head: Head, rest: memoryview) -> None:
        """Start reading a claimed request's body."""
        self._route = route
        self._head = head
        lengths = head.headers.get("content-length", [])
        if "transfer-encoding" in head.headers:
            self.answer(route.refuse(head, HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length"))
            return
        size = decimal(lengths[0]) if len(lengths) == 1 else 0 if not lengths else None
        if size is None:
            self.answer(route.refuse(head, HTTPStatus.BAD_REQUEST, "bad Content-Length"))
            return
        refused = route.admit(head, self.peer) if route.admit is not None else None
        if refused is not None:
            self.answer(refused)
            return
        if size > route.max_body:
            self.answer(
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
        self._spawn(self._serve(self._route, Request(self._head, bytes(body[:size]), self.peer)))

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
            self.answer(response)
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

    def _close(self) -> None:
        self._cancel_timer()
        self._body = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()
        self._closed = True
