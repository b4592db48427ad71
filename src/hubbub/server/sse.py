"""Server-Sent Events: protocol v1 over `GET /sse` (down) and `POST /sse/send` (up).

For clients on networks that refuse the WebSocket `Upgrade`, and for readers without an SDK (the
browser's `EventSource`, `curl`). A stream is one more adapter over the transport-neutral core
`Connection` (`SseConnection`): the same outbox bounded in bytes, the same hub registration, rooms,
cleanup and logs as a WebSocket. What differs is below the outbox: the frames the core writes (one
WebSocket text frame per event, concatenated) are turned into SSE events by `SseWriter` on their
way to the socket; the encoding of one fan-out write is made once and shared by every SSE reader of
it (`_translate`'s cache), a multi-room stream only adding its own `id:` line.

`SseDoor` is the front door's stage for both routes: `GET /sse` passes the checks of `/ws` (Host,
Origin, credentials: ticket, token, the connect proxy, `name`; the token's rooms; `authorize_join`)
and joins its rooms (resumed from `Last-Event-ID`) before the answer starts, so a refusal is a 4xx
with its reason; `POST /sse/send` feeds envelopes to the stream's session as WebSocket frames are.
The wire contract: docs/protocol.md, "SSE transport of protocol v1".
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from hubbub.auth.logins import Outcome
from hubbub.backends.broker import BrokerUnavailable
from hubbub.core import builtins
from hubbub.core.connection import Connection
from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.envelope import MAX_DEPTH, nesting_exceeds
from hubbub.protocol.events import ROOM_RULE, valid_room
from hubbub.protocol.http import Head, Request, Response, Route
from hubbub.protocol.session import State, Verdict
from hubbub.server.frontdoor import Arrival, FrontDoor
from hubbub.server.proxy_hold import forwarded_headers, peer_address

if TYPE_CHECKING:
    from hubbub.auth.logins import Authenticator
    from hubbub.core.hub import Hub
    from hubbub.integration.app_proxy import AppProxy
    from hubbub.server.handshake import Handshake

__all__ = [
    "BATCH_MAX",
    "POSTS_IN_FLIGHT",
    "RETRY_MS",
    "SseConnection",
    "SseDoor",
    "SseWriter",
    "format_resume_id",
    "parse_resume_id",
]

log = logging.getLogger("hubbub.server.sse")

RETRY_MS = 2000
"""The `retry:` hint: milliseconds `EventSource` waits before it reconnects."""
BATCH_MAX = 32
"""Envelopes one `POST /sse/send` may carry (a JSON array); the body may be this many times
`--max-message-size`."""
SESSION_HEADER = "x-hubbub-session"
"""The header of `POST /sse/send` naming the stream (the `session` of its `hello`)."""
BODY_TIMEOUT = 10.0
"""Seconds a `POST /sse/send` body has to arrive in full (else 408)."""
POSTS_IN_FLIGHT = 4
"""`POST /sse/send` requests of one stream being read or handled at once; more are 429, unread. What
one stream's up-channel may make the server hold is so bounded: 4 bodies of at most 32 x
`--max-message-size` (a client that wants its events in order sends one request at a time anyway)."""
_PING = b": ping\n\n"
_TEXT = "text/plain; charset=utf-8"
_OPEN = State.OPEN


# ---- the resume id ------------------------------------------------------------


def parse_resume_id(text: str) -> dict[str, int] | None:
    """The rooms and last offsets of a resume id (`a=12,b=5`); None when it is not one.

    Room names cannot hold `=` or `,`, so the id needs no escaping. An empty id resumes nothing.
    """
    found: dict[str, int] = {}
    if not text.strip():
        return found
    for part in text.split(","):
        room, sep, number = part.strip().partition("=")
        if not sep or not valid_room(room) or not number.isascii() or not number.isdigit() or len(number) > 18:
            return None
        found[room] = int(number)
    return found


def format_resume_id(offsets: dict[str, int]) -> str:
    """The resume id of `offsets` (room to last offset delivered), as `parse_resume_id` reads it."""
    return ",".join(f"{room}={offset}" for room, offset in offsets.items())


# ---- WebSocket frames to SSE events ---------------------------------------------


class _Envelope(msgspec.Struct):
    type: str
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))


class _Where(msgspec.Struct):
    room: str
    offset: int


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_WHERE = msgspec.json.Decoder(_Where)
_WHOLE = frozenset({"ack", "error"})
"""Events whose `data` is the whole envelope: their `id` matches the request they answer."""

_Item = bytes | tuple[str, int, bytes, bytes]
"""One event of a write: complete bytes (the same for every stream), or a `new_message` as
(room, offset, its `data:` part, the complete event of a single-room stream)."""


def _text_payloads(data: bytes) -> Iterator[memoryview]:
    """The payloads of the text frames in `data` (server frames: complete, unmasked, concatenated)."""
    view = memoryview(data)
    pos = 0
    end = len(data)
    while pos + 2 <= end:
        first = data[pos]
        length = data[pos + 1] & 0x7F
        start = pos + 2
        if length == 126:
            length = int.from_bytes(view[pos + 2 : pos + 4], "big")
            start = pos + 4
        elif length == 127:
            length = int.from_bytes(view[pos + 2 : pos + 10], "big")
            start = pos + 10
        pos = start + length
        if first & 0x0F == 0x1:
            yield view[start:pos]


def _one_line(body: bytes) -> bytes:
    """JSON on one line: a raw line break can only be whitespace between tokens, never inside a string."""
    if b"\n" in body or b"\r" in body:
        return body.replace(b"\r", b" ").replace(b"\n", b" ")
    return body


def _event(kind: str, data: bytes, event_id: str | None = None) -> bytes:
    """One SSE event, its data on one line."""
    line = b"id: " + event_id.encode() + b"\n" if event_id is not None else b""
    return b"event: " + kind.encode() + b"\n" + line + b"data: " + _one_line(data) + b"\n\n"


def _translate(data: bytes) -> tuple[_Item, ...]:
    """The SSE events of one write of frames (see `_Item`)."""
    items: list[_Item] = []
    for payload in _text_payloads(data):
        try:
            envelope = _ENVELOPE.decode(payload)
        except msgspec.DecodeError:  # hubbub encodes every frame it writes; belt and braces
            continue
        kind = envelope.type
        body = bytes(payload) if kind in _WHOLE else bytes(envelope.payload)
        if kind == "new_message":
            try:
                where = _WHERE.decode(body)
            except msgspec.DecodeError:
                items.append(_event(kind, body))
                continue
            part = b"data: " + _one_line(body) + b"\n\n"
            single = b"event: new_message\nid: " + f"{where.room}={where.offset}".encode() + b"\n" + part
            items.append((where.room, where.offset, part, single))
        else:
            items.append(_event(kind, body))
    return tuple(items)


class _Translated:
    """One write of frames as SSE: its events, and when they are all one room's messages (as a fan-out
    write is), the whole write as a single-room stream gets it, with the room and its last offset."""

    __slots__ = ("items", "last", "room", "single")

    def __init__(self, items: tuple[_Item, ...]) -> None:
        self.items = items
        self.room: str | None = None
        self.last = 0
        self.single = b""
        messages = [item for item in items if not isinstance(item, bytes)]
        rooms = {room for room, _, _, _ in messages}
        if len(rooms) == 1:
            self.room = rooms.pop()
            self.last = max(offset for _, offset, _, _ in messages)
            self.single = b"".join(item if isinstance(item, bytes) else item[3] for item in items)


_cache: list[Any] = [None, _Translated(())]
"""[the last write translated, its `_Translated`]: every SSE member of a room gets the same bytes object
from one fan-out flush, so its events are encoded once per publish, for the first SSE reader only."""


# ---- the stream -----------------------------------------------------------------


class SseWriter:
    """What the core `Connection` takes for its raw transport: frames in, SSE events out.

    Until `start`, what is written is held (the joins' replays, while `GET /sse` still may be refused);
    `start` writes the response head and the `hello` first.
    """

    __slots__ = ("_conn", "_held", "_held_bytes", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._conn: SseConnection | None = None
        self._held: list[bytes] | None = []
        self._held_bytes = 0

    def write(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            return
        if data is _cache[0]:
            translated: _Translated = _cache[1]
        else:
            translated = _Translated(_translate(data))
            _cache[0] = data
            _cache[1] = translated
        offsets = conn.offsets
        room = translated.room
        if room is not None and len(offsets) == 1 and room in offsets:  # a single-room stream: shared bytes
            offsets[room] = translated.last
            chunk = translated.single
        else:
            chunk = self._own(translated.items, conn)
        held = self._held
        if held is None:
            # The outbox bounds frames; an event may be far larger than its frame (a multi-room resume id:
            # up to 17 kB for a 200-byte message), so what the transport holds is bounded here, in events.
            transport = self._transport
            if transport.get_write_buffer_size() + len(chunk) > conn.hub.settings.send_queue_bytes:
                conn._overflow()  # a slow consumer, as an outbox that overflows: dropped, this write not made
                return
            transport.write(chunk)
            return
        self._held_bytes += len(chunk)
        if self._held_bytes <= conn.hub.settings.send_queue_bytes:
            held.append(chunk)  # past the bound, counted only: the stage refuses the stream 503 once the joins end

    @staticmethod
    def _own(items: tuple[_Item, ...], conn: SseConnection) -> bytes:
        """The events of a write as this stream gets them: each `new_message` with the stream's resume id."""
        offsets = conn.offsets
        out: list[bytes] = []
        for item in items:
            if isinstance(item, bytes):
                out.append(item)
                continue
            room, offset, part, single = item
            offsets[room] = offset
            if len(offsets) == 1:
                out.append(single)
            else:
                out.append(b"event: new_message\nid: " + conn.resume_id().encode() + b"\n" + part)
        return out[0] if len(out) == 1 else b"".join(out)

    def start(self, head: bytes) -> None:
        """Write `head` (the response head, `retry:`, `hello`, ...), then what was held; write through from now."""
        held = self._held or []
        self._held = None
        self._transport.write(b"".join([head, *held]))

    @property
    def held_bytes(self) -> int:
        """Bytes written before the start; at most `--send-queue-bytes` of them are held (live messages of
        a room joined first come in while a later join waits, for as long as it waits)."""
        return self._held_bytes

    # the rest of the transport, as the core uses it
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def abort(self) -> None:
        self._transport.abort()

    def close(self) -> None:
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        """Nothing to pause: a stream reads nothing (the up-channel answers 429 instead)."""

    def resume_reading(self) -> None:
        """See `pause_reading`."""


class SseWire:
    """The core's `Wire` for a stream: a close ends the response, a ping is a comment line."""

    __slots__ = ("_conn", "_gone", "_writer", "started")

    def __init__(self, writer: SseWriter, conn: SseConnection) -> None:
        self._writer = writer
        self._conn = conn
        self._gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.started = False
        """Whether the response began (before, the stage answers a refusal itself)."""

    def send_close(self, code: Any = None, reason: Any = None, /) -> None:
        if self.started:
            self._writer.close()  # the end of the response: what is buffered goes first (the core arms the abort)

    def send_ping(self) -> None:
        """The heartbeat: a comment line, unless writes wait (then the write deadline judges the reader).

        A stream cannot answer a ping; the TCP connection is its liveness (the write deadline,
        `TCP_USER_TIMEOUT`), so the ping counts as answered."""
        conn = self._conn
        session = conn.session
        session.ping_sent = None
        session.last_seen = time.monotonic()
        if self.started and not conn._paused and not conn._out:
            self._writer._transport.write(_PING)

    def disconnect(self) -> None:
        self._writer.close()

    async def wait_disconnected(self) -> None:
        await asyncio.shield(self._gone)

    def lost(self) -> None:
        """The socket is gone."""
        if not self._gone.done():
            self._gone.set_result(None)
        conn = self._conn
        conn.transport_lost(conn.close_code if conn.state is State.CLOSING else None)

    # the front door's calls for the stream it carries
    def pause_writing(self) -> None:
        self._conn.pause_writing()

    def resume_writing(self) -> None:
        self._conn.resume_writing()


class SseConnection(Connection):
    """A client reading over SSE: the core connection, with the stream's resume id and its session secret."""

    __slots__ = ("_streams", "joined", "offsets", "posting", "secret")

    def __init__(self, hub: Hub, identity: str | None, remote: str, streams: dict[str, SseConnection]) -> None:
        super().__init__(hub, identity, remote)
        self.offsets: dict[str, int] = {}
        """Each room's last offset delivered (or joined at): what the resume id lists."""
        self.joined: dict[str, dict[str, Any]] = {}
        """The ack payload of each join (offset, recovered), for the `hello` of the rooms of `GET /sse`."""
        self.posting: deque[float] = deque()
        """The read deadlines of this stream's `POST /sse/send` requests in progress (`POSTS_IN_FLIGHT`)."""
        self.secret = secrets.token_urlsafe(24)
        """Names this stream to `POST /sse/send` (192 random bits); never logged."""
        self._streams = streams

    def resume_id(self) -> str:
        """The stream's resume id: the last offset of every room it is in."""
        rooms = self.rooms
        return ",".join(f"{room}={offset}" for room, offset in self.offsets.items() if room in rooms)

    def ack(self, payload: Any = None) -> None:
        # A join's ack (the room not joined yet, its offset known): the room enters the resume id at
        # the offset the join starts from; a replay or live message moves it on.
        if isinstance(payload, dict):
            room = payload.get("room")
            offset = payload.get("offset")
            if isinstance(room, str) and isinstance(offset, int) and room not in self.rooms:
                self.offsets[room] = offset
                self.joined[room] = payload
        super().ack(payload)

    def leave(self, room: str) -> bool:
        left = super().leave(room)
        self.offsets.pop(room, None)
        self.joined.pop(room, None)  # a join over the up-channel, never read by a `hello`: not kept past the room
        return left

    def _detach(self) -> None:
        if self._attached:
            self._streams.pop(self.secret, None)
        super()._detach()


# ---- the front door's stage ------------------------------------------------------


class SseDoor:
    """`GET /sse` and `POST /sse/send` (and its CORS preflight) below picows (module docstring)."""

    reads_requests = True

    def __init__(
        self,
        hub: Hub,
        handshake: Handshake,
        allowed: Callable[[dict[str, list[str]]], bool],
        *,
        auth: Authenticator | None = None,
        proxy: AppProxy | None = None,
    ) -> None:
        self.hub = hub
        self._handshake = handshake
        self._allowed = allowed
        self._auth = auth
        self._proxy = proxy
        self.streams: dict[str, SseConnection] = {}
        """The live streams by their secret."""
        s = hub.settings
        self.send_route = Route(
            self._send, _refuse, s.max_message_size * BATCH_MAX, BODY_TIMEOUT, keep_alive=True, admit=self._admit_send
        )

    def judge(self, door: FrontDoor, arrival: Arrival) -> bool:
        start = arrival.start
        if start[:8] == b"GET /sse":
            head = arrival.head
            if head is None or head.path != "/sse":
                return False
            door.hold(self._open(door, head), cancel_if_lost=True, last=True)
            return True
        if start[:8] not in (b"POST /ss", b"OPTIONS ") or arrival.line not in _SEND_LINES:
            return False
        head = arrival.head
        if head is None:
            return False
        if head.method == "OPTIONS":
            door.answer(self._preflight(head))
            return True
        door.take(self.send_route, head, arrival.rest)
        return True

    # ---- GET /sse ---------------------------------------------------------------

    async def _open(self, door: FrontDoor, head: Head) -> None:
        """Check, identify, join, then start the stream; or answer the refusal (nothing left behind)."""
        try:
            refused = await self._refusal(door, head)
        except asyncio.CancelledError:  # the server stops: a client still waiting gets an answer, not silence
            if not door.closed:
                door.answer(_refuse_status(HTTPStatus.SERVICE_UNAVAILABLE, "the server is shutting down"))
            raise
        if refused is not None and not door.closed:
            door.answer(refused)

    async def _refusal(self, door: FrontDoor, head: Head) -> Response | None:
        """The refusal of a `GET /sse`, or None once the stream has started (or the client left)."""
        hub = self.hub
        if not self._allowed(head.headers) or _cross_site_without_origin(head):
            hub.metrics.handshakes_rejected.labels("origin").inc()
            log.info("handshake.rejected", extra={"reason": "host_or_origin", "remote": door.remote, "path": "/sse"})
            return _refuse_status(HTTPStatus.FORBIDDEN, "host or origin not allowed")
        query = parse_qs(urlsplit(head.target).query, keep_blank_values=True)
        wanted: list[str] = []
        for value in query.get("rooms", []):
            wanted += [room for room in value.split(",") if room]
        resume_text = head.one("last-event-id")
        if resume_text is None:
            resume_text = query.get("last_event_id", [""])[0]
        resume = parse_resume_id(resume_text)
        if resume is None:
            return _refuse_status(HTTPStatus.BAD_REQUEST, "bad Last-Event-ID: send rooms as a=12,b=5")
        wanted += list(resume)  # rooms joined later over the up-channel come back too
        for room in wanted:
            if not valid_room(room):
                return _refuse_status(HTTPStatus.BAD_REQUEST, f"bad room name {room[:64]!r}: {ROOM_RULE}")
        wanted = list(dict.fromkeys(wanted))
        if len(wanted) > hub.room_table.max_rooms:
            limit = hub.room_table.max_rooms
            return _refuse_status(HTTPStatus.UNPROCESSABLE_ENTITY, f"a stream may be in at most {limit} rooms")
        identified = await self._identify(door, head, query)
        if isinstance(identified, Response):
            return identified
        conn = identified
        for room in wanted:
            if conn.grant is not None and not conn.grant.may_join(room):
                return _refuse_status(HTTPStatus.FORBIDDEN, f"your credentials do not allow room {room!r}")
        transport = door.transport
        if door.closed or transport is None:
            return None
        writer = SseWriter(transport)  # type: ignore[arg-type]
        writer._conn = conn
        wire = SseWire(writer, conn)
        conn.attach(wire, writer)
        if conn.state is not _OPEN:  # an on_connect hook refused it, or the server is stopping
            conn.transport_lost(None)
            return _refuse_status(HTTPStatus.FORBIDDEN, "the application refused this connection")
        self.streams[conn.secret] = conn
        try:
            refused = await self._join(conn, wanted, resume)
        except BaseException:  # cancelled: the client left, or the server stops
            conn.transport_lost(None)
            raise
        if refused is None and writer.held_bytes > hub.settings.send_queue_bytes:
            hub._slow_consumer(conn)
            refused = _refuse_status(HTTPStatus.SERVICE_UNAVAILABLE, "the replay is too large: try again later")
        if refused is None and conn.state is not _OPEN:  # closed while joining (the server API, a hook)
            refused = _refuse_status(HTTPStatus.SERVICE_UNAVAILABLE, "the connection was closed before it started")
        if refused is not None or door.closed:
            conn.transport_lost(None)
            return refused
        wire.started = True
        writer.start(self._stream_head(head, conn, wanted, resume))
        door.stream(wire)
        return None

    async def _join(self, conn: SseConnection, wanted: list[str], resume: dict[str, int]) -> Response | None:
        """Join the stream's rooms as `join_room` would (namespace rules, the join proxy, the
        `authorize_join` hook: `builtins.admit`); the refusal of one."""
        for room in wanted:
            try:
                since = resume.get(room)
                info = await builtins.admit(conn, room, since)
                await conn.join(room, since, info)
            except EventError as exc:
                return _refuse_status(_STATUS.get(exc.code, HTTPStatus.FORBIDDEN), str(exc.message))
            except Exception:  # an application's hook failed: logged, as a handler's failure is
                log.exception("sse.join_failed", extra={"conn": conn.id, "room": room})
                return _refuse_status(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
            if conn.state is not _OPEN:
                return None
        return None

    async def _identify(self, door: FrontDoor, head: Head, query: dict[str, list[str]]) -> SseConnection | Response:
        """Who the stream is: a ticket's user, the connect proxy's admission, or `Handshake.identify`."""
        make: Callable[[str | None], Connection] = lambda name: SseConnection(  # noqa: E731
            self.hub, name, door.remote, self.streams
        )
        tickets = query.get("ticket", []) + query.get("otp", [])
        user = None
        admitted = None
        if tickets and self._auth is not None:
            try:
                result = await self._auth.take(door.peer, tickets[0])
            except BrokerUnavailable:
                return _refuse_status(HTTPStatus.SERVICE_UNAVAILABLE, "ticket store unreachable")
            if isinstance(result, Outcome):
                return _refuse_status(HTTPStatus(result.value), "ticket unknown, used or expired: log in again")
            user = result
        elif self._proxy is not None and not any(name in query for name in ("ticket", "otp", "token")):
            proxy = self._proxy
            if not proxy.reserve(door.peer):
                return _refuse_status(HTTPStatus.SERVICE_UNAVAILABLE, "the application did not answer: try again later")
            try:
                first = {name: values[0] for name, values in query.items()}
                answer = await proxy.connect(
                    peer_address(door.transport), first, forwarded_headers(head.headers, proxy.headers)
                )
            finally:
                proxy.release(door.peer)
            if isinstance(answer, HTTPStatus):
                return _refuse_status(answer, "the application refused this connection")
            admitted = answer
        if user is None and admitted is None:  # a provider's token whose key a fetch may bring waits for it
            await self._handshake.keys_for(query.get("token", [None])[0])
        identified = self._handshake.identify(query, user, admitted, door.remote, make, path="/sse")
        if isinstance(identified, tuple):
            status, reason = identified
            return Response(status, reason, _TEXT, close=True)
        assert isinstance(identified, SseConnection)
        return identified

    def _stream_head(self, head: Head, conn: SseConnection, wanted: list[str], resume: dict[str, int]) -> bytes:
        """The response head, `retry:`, the `hello`, and a `room_reset` per room that could not be resumed."""
        extra = ""
        origin = head.one("origin")
        if origin is not None:  # allowed (checked): a page of another origin may read the stream
            extra = f"Access-Control-Allow-Origin: {origin}\r\n{_CREDENTIALS}Vary: Origin\r\n"
        response = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            f"X-Accel-Buffering: no\r\n{extra}Connection: close\r\n\r\n"
        ).encode("latin-1")
        rooms: dict[str, dict[str, Any]] = {}
        resets: list[bytes] = []
        for room in wanted:
            joined = conn.joined.get(room, {})
            offset = joined.get("offset", conn.offsets.get(room, 0))
            recovered = bool(joined.get("recovered", True))
            rooms[room] = {"offset": offset, "recovered": recovered}
            if room in resume and not recovered:
                resets.append(
                    _event("room_reset", msgspec.json.encode({"room": room, "since": resume[room], "offset": offset}))
                )
        conn.joined.clear()
        hello = _event("hello", msgspec.json.encode({"session": conn.secret, "rooms": rooms}))
        return b"".join([response, f"retry: {RETRY_MS}\n\n".encode(), hello, *resets])

    # ---- POST /sse/send ---------------------------------------------------------

    def _admit_send(self, head: Head, peer: str) -> Response | None:
        if not self._allowed(head.headers):
            return _refuse_status(HTTPStatus.FORBIDDEN, "host or origin not allowed")
        session = head.one(SESSION_HEADER)
        if not session:  # not a stream that ended: a client that never said which
            reason = "no X-Hubbub-Session header: send the session of your stream's hello event"
            return _with_cors(head, _refuse_status(HTTPStatus.BAD_REQUEST, reason))
        conn = self.streams.get(session)
        if conn is None:
            return _with_cors(head, _refuse_status(HTTPStatus.NOT_FOUND, "no such stream: open /sse again"))
        now = time.monotonic()
        posting = conn.posting
        while posting and posting[0] <= now:
            posting.popleft()  # a body that never came: past its read deadline, it holds nothing
        if len(posting) >= POSTS_IN_FLIGHT:
            message = f"at most {POSTS_IN_FLIGHT} requests of one stream at a time"
            return _with_cors(head, _refuse_status(HTTPStatus.TOO_MANY_REQUESTS, message))
        posting.append(now + BODY_TIMEOUT + 1.0)
        return None

    async def _send(self, request: Request) -> Response:
        head = request.head
        conn = self.streams.get(head.one(SESSION_HEADER) or "")
        if conn is not None and conn.posting:
            conn.posting.popleft()  # this request's place (the oldest: they are alike)
        if conn is None or conn.state is not _OPEN:
            return _with_cors(
                head, _refuse_status(HTTPStatus.NOT_FOUND, "no such stream: open /sse again", close=False)
            )
        texts = _envelopes(request.body)
        if texts is None:
            return _with_cors(
                head,
                _refuse_status(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"at most {BATCH_MAX} envelopes a request"),
            )
        if any(len(text) > self.hub.settings.max_message_size for text in texts):
            message = f"an envelope is over {self.hub.settings.max_message_size} bytes"
            return _with_cors(head, _refuse_status(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message, close=False))
        session = conn.session
        # 429 refuses the whole request, unhandled, so that a client may send it again after a pause: over
        # the frame budget (one a request), or while events wait behind a slow handler (more would queue)
        verdict = session.request(time.monotonic())
        if verdict is Verdict.CLOSE:
            conn.carry_out_close()  # flooded again and again: the stream ends (the 1008 of /ws)
        if verdict is not Verdict.ALLOW or conn._reading_paused:
            return _with_cors(head, _flooded())
        for text in texts:  # each event under the rate limits of /ws: `rate_limited` errors on the stream
            if conn.state is not _OPEN:
                break
            verdict = session.text(time.monotonic())
            if verdict is Verdict.ALLOW:
                conn.receive_text(text)
            elif verdict is Verdict.REFUSE:
                conn.refuse(text.encode())
            else:
                conn.carry_out_close()
        return _with_cors(head, Response(HTTPStatus.ACCEPTED, b"", _TEXT))

    def _preflight(self, head: Head) -> Response:
        """`OPTIONS /sse/send`: a page of an allowed origin may post with the session header."""
        origin = head.one("origin")
        if origin is None or not self._allowed(head.headers):
            return _refuse_status(HTTPStatus.FORBIDDEN, "host or origin not allowed")
        headers = (
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),  # its cookies go, as they do with a WebSocket
            ("Access-Control-Allow-Methods", "POST"),
            ("Access-Control-Allow-Headers", "Content-Type, X-Hubbub-Session"),
            ("Access-Control-Max-Age", "600"),
            ("Vary", "Origin"),
        )
        return Response(HTTPStatus.NO_CONTENT, b"", _TEXT, close=True, headers=headers)


_SEND_LINES = ((b"POST", b"/sse/send"), (b"OPTIONS", b"/sse/send"))

_STATUS = {
    ErrorCode.FORBIDDEN: HTTPStatus.FORBIDDEN,
    ErrorCode.LIMIT_EXCEEDED: HTTPStatus.UNPROCESSABLE_ENTITY,
    ErrorCode.RATE_LIMITED: HTTPStatus.TOO_MANY_REQUESTS,
    ErrorCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorCode.BAD_PAYLOAD: HTTPStatus.BAD_REQUEST,
}
"""The status refusing `GET /sse` for the error a join of its rooms met."""

_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])


def _envelopes(body: bytes) -> list[str] | None:
    """The envelopes of a `POST /sse/send` body, as the texts a WebSocket frame would carry; None:
    more than `BATCH_MAX`. A body that is not a JSON array is one envelope (bad JSON is the
    session's to answer, `bad_json`, as on `/ws`)."""
    # too deep for a batch (the array one level more than an envelope): one text, the session's to refuse
    # as /ws refuses such a frame; decoding it here would recurse past Python's limit (RecursionError)
    if body.lstrip()[:1] == b"[" and not nesting_exceeds(body, MAX_DEPTH + 1):
        try:
            items = _ARRAY.decode(body)
        except msgspec.DecodeError:
            return [body.decode("utf-8", "replace")]
        if len(items) > BATCH_MAX:
            return None
        return [bytes(item).decode("utf-8", "replace") for item in items]
    return [body.decode("utf-8", "replace")]


def _cross_site_without_origin(head: Head) -> bool:
    """A browser's request made by a page of another site with no `Origin` to judge (an `<img>` or a
    `<script>` pointing at `/sse`: no-cors requests carry none, but do carry the user's cookies, which
    the connect proxy would admit as that user). Browsers say so in `Sec-Fetch-Site`; a same-origin
    `EventSource` sends no `Origin` either but `same-origin`, and a client that is no browser sends neither."""
    if head.one("origin") is not None:
        return False  # the Origin rule of /ws judges it
    return head.one("sec-fetch-site") not in (None, "same-origin", "none")


def _flooded() -> Response:
    return _refuse_status(HTTPStatus.TOO_MANY_REQUESTS, "slow down: too many events", close=False)


_CREDENTIALS = "Access-Control-Allow-Credentials: true\r\n"
"""An allowed page of another origin sends its cookies (the connect proxy's), as a WebSocket would."""


def _with_cors(head: Head, response: Response) -> Response:
    """`response`, readable by the (allowed: checked before) page of another origin that sent `head`."""
    origin = head.one("origin")
    if origin is None:
        return response
    allow = (("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true"), ("Vary", "Origin"))
    headers = (*response.headers, *allow)
    return Response(response.status, response.body, response.content_type, response.close, headers)


def _refuse(head: Head, status: HTTPStatus, message: str) -> Response:
    """The reader's refusals (400, 408, 411, 413, 500), as the route words them."""
    return _refuse_status(status, message)


def _refuse_status(status: HTTPStatus, message: str, *, close: bool = True) -> Response:
    return Response(status, f"{message}\n".encode(), _TEXT, close=close)
