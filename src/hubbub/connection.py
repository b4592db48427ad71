"""One client connection: its reader, its single writer, its bounded outbox, its end.

The lifecycle, in the Gorilla hub's terms (docs/lifecycle.md tells it at length):

* **Reader.** picows calls `on_ws_frame` for every frame the socket yields;
  that is the read pump. It reassembles fragments, enforces the read limit and
  UTF-8, and hands each whole message to the hub at once: a plain-function
  handler (send_message, leave_room) runs right there, with no task and no
  coroutine. An `async def` handler (join_room, ...) is awaited in a reader
  task, and the messages that arrive meanwhile wait in an inbox and are
  handled after it, in order; when the inbox is long the socket stops being
  read (TCP backpressure), so a flooding client cannot grow memory. The task
  ends when the inbox is empty, so an idle connection holds none.
* **Writer.** Everything that wants to reach the client -- acks, errors,
  replies -- calls `send_frame` with a complete, pre-built frame. That only
  appends bytes to the outbox and, the first time in a flush, puts the
  connection on the fan-out's list of writers; the flush calls `_write`,
  which joins the pending frames into one `write`. Room messages skip even
  that: the flush writes each room's batch straight to every member whose
  outbox is empty (`hubbub.fanout`). No await and no task wake-up per frame.
* **Bounded outbox.** Bytes queued but not handed to the kernel are counted.
  While the transport is above its high-water mark nothing more is handed to
  it; once the outbox would pass `send_queue_bytes`, the connection is dropped
  (close 1013, then RST). A slow client never slows anyone else. Before any
  of that, the kernel's send buffer takes what it can: `send_buffer` sets it
  (256 KiB by default, which Linux doubles), because left to its autotuning
  Linux lets it reach 4 MiB per socket, memory no limit of ours counts.
* **One end.** `_detach` removes the connection from the hub exactly once,
  whoever notices first: the reader (peer closed, protocol error), the writer
  (overflow), the heartbeat (no pong), or the server (shutdown). After it,
  nothing is queued or written. Closing is polite but never waits on a dead
  peer: close frame, wait at most `close_timeout` for the peer's, then abort.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from hubbub.codes import CloseCode
from hubbub.frames import text_frame
from hubbub.protocol import EventId, encode_ack, encode_event
from hubbub.ratelimit import TokenBucket
from hubbub.reassembly import Reassembler, Violation

if TYPE_CHECKING:
    from hubbub.hub import Hub

log = logging.getLogger("hubbub.connection")

_TEXT = WSMsgType.TEXT
_CONTINUATION = WSMsgType.CONTINUATION
_BINARY = WSMsgType.BINARY
_CLOSE = WSMsgType.CLOSE
_PING = WSMsgType.PING
_LINGER_RST = struct.pack("ii", 1, 0)


class State(enum.Enum):
    """Where a connection is in its life. Transitions only go forward."""

    CONNECTING = "connecting"
    """The upgrade is accepted; picows has not called `on_ws_connected` yet."""
    OPEN = "open"
    """In the hub: reading, writing, receiving fan-out."""
    CLOSING = "closing"
    """Out of the hub; our close frame is sent and the peer's is awaited."""
    CLOSED = "closed"
    """The transport is gone."""


class Connection(WSListener):
    """A client as handlers see it: `identity`, `rooms`, `send`, `ack`, `close`."""

    # Slots, not a __dict__: fan-out reads a few of these per recipient per
    # message, and a slot is the fastest attribute Python has.
    __slots__ = (
        "_abort_handle",
        "_assembler",
        "_current_id",
        "_inbox",
        "_limit",
        "_out",
        "_out_bytes",
        "_paused",
        "_queued",
        "_raw",
        "_reader",
        "_reading_paused",
        "_replied",
        "_transport",
        "bucket",
        "close_code",
        "hub",
        "id",
        "identity",
        "last_seen",
        "ping_sent",
        "remote",
        "rooms",
        "state",
    )
    _ids = 0

    def __init__(self, hub: Hub, identity: str | None, remote: str = "") -> None:
        super().__init__()
        Connection._ids += 1
        self.id = Connection._ids
        self.hub = hub
        self.identity = identity
        """The name fixed at the handshake (query `name` or a credential), else None."""
        self.remote = remote
        self.rooms: set[str] = set()
        self.state = State.CONNECTING
        self.close_code: int | None = None
        self.last_seen = time.monotonic()
        self.ping_sent: float | None = None
        self._transport: WSTransport | None = None
        self._raw: Any = None
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._limit = hub.settings.send_queue_bytes
        self._queued = False
        self._paused = False
        self._assembler = Reassembler(hub.settings.max_message_size)
        self._inbox: deque[str] = deque()
        self._reading_paused = False
        self._reader: asyncio.Task[None] | None = None
        self._abort_handle: asyncio.TimerHandle | None = None
        settings = hub.settings
        self.bucket: TokenBucket | None = None
        """Spam protection (`--rate-limit`); None when there is no limit."""
        if settings.rate_limit > 0:
            burst = settings.rate_burst or 2 * settings.rate_limit
            self.bucket = TokenBucket(settings.rate_limit, burst, now=time.monotonic())
        self._current_id: EventId | None = None
        self._replied = False

    # ---- picows callbacks: the read side -------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._transport = transport
        self._raw = transport.underlying_transport
        self._raw.set_write_buffer_limits(high=min(self._limit, 256 * 1024))
        if self.hub.settings.send_buffer:
            # Bytes the kernel holds for a client that does not read count
            # against no limit of ours; capping them makes the drop come sooner.
            sock = self._raw.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.hub.settings.send_buffer)
        self.state = State.OPEN
        self.hub.register(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.last_seen = time.monotonic()
        self.ping_sent = None
        kind = frame.msg_type
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            # No extension is negotiated, so a reserved bit is a protocol error.
            self.close(CloseCode.PROTOCOL_ERROR, "reserved bits set without an extension")
            return
        if kind is _TEXT and frame.fin and not self._assembler.in_progress:
            if self.state is State.OPEN:
                try:
                    text = frame.get_payload_as_utf8_text()
                except UnicodeDecodeError:
                    self.close(CloseCode.INVALID_DATA, "text frame is not valid UTF-8")
                    return
                self._receive(text)
        elif kind is _TEXT or kind is _BINARY or kind is _CONTINUATION:
            self._on_fragment(frame)
        elif kind is _CLOSE:
            self._on_peer_close(frame)
        elif kind is _PING and self._transport is not None and self.state is State.OPEN:
            self._transport.send_pong(frame.get_payload_as_bytes())

    def _on_fragment(self, frame: WSFrame) -> None:
        """A frame of a fragmented (or binary) message: the reassembler decides."""
        chunk = frame.get_payload_as_bytes()
        try:
            if frame.msg_type is _CONTINUATION:
                message = self._assembler.continue_(chunk, frame.fin)
            else:
                message = self._assembler.start(chunk, frame.fin, binary=frame.msg_type is _BINARY)
        except Violation as violation:
            self.close(violation.code, violation.reason)
            return
        if message is None:
            return
        if message.text is None:
            self._receive_binary(message.data)
        elif self.state is State.OPEN:
            self._receive(message.text)

    def _receive_binary(self, data: bytes) -> None:
        """hubbub speaks text only (PROTOCOL.md): a binary message closes with 1003."""
        self.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported")

    def _receive(self, text: str) -> None:
        """Handle a whole text message now, or queue it behind an async handler still running."""
        if self._reader is None:
            pending = self.hub.handle(self, text)
            if pending is not None:  # an async handler: await it, and hold back what follows
                self._reader = asyncio.get_running_loop().create_task(self._read_on(pending))
            return
        self._inbox.append(text)
        if len(self._inbox) >= self.hub.settings.inbox_high_water and not self._reading_paused:
            self._reading_paused = True
            self._raw.pause_reading()

    def _on_peer_close(self, frame: WSFrame) -> None:
        code = _as_int(frame.get_close_code())
        if frame.payload_size >= 2 and not valid_peer_close_code(code):
            self.close(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
            return
        if self.state is State.OPEN:
            # The peer starts the closing handshake: echo its code, then hang up.
            self.close_code = code if code else CloseCode.NO_STATUS
            self._detach()
            transport = self._transport
            assert transport is not None
            transport.send_close(_ECHOABLE.get(code, WSCloseCode.OK))
            transport.disconnect()
        elif self.state is State.CLOSING and self._transport is not None:
            # The peer answered our close frame: the server closes TCP first.
            self._transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.close_code is None:
            handshake = transport.close_handshake
            sent = handshake.sent if handshake is not None else None
            self.close_code = _as_int(sent.code) if sent is not None else CloseCode.ABNORMAL_CLOSURE
        self._detach()
        self.state = State.CLOSED
        if self._abort_handle is not None:
            self._abort_handle.cancel()
            self._abort_handle = None

    async def _read_on(self, pending: Coroutine[Any, Any, None] | None) -> None:
        """The reader task: await an async handler, then handle what queued meanwhile, in order.

        It exists only while an async handler runs or messages wait behind one;
        once the inbox is empty it ends, and messages are handled as they are
        read again. A connection that only sends plain-function events never
        has a task.
        """
        inbox = self._inbox
        handle = self.hub.handle
        try:
            while pending is not None:
                await pending
                pending = None
                while pending is None and inbox and self.state is State.OPEN:
                    text = inbox.popleft()
                    if self._reading_paused and len(inbox) <= self.hub.settings.inbox_high_water // 2:
                        self._reading_paused = False
                        self._raw.resume_reading()
                    pending = handle(self, text)
        finally:
            if pending is not None:
                pending.close()  # never started: the connection went away first
            self._reader = None

    # ---- the write side -------------------------------------------------------

    def send_frame(self, frame: bytes) -> None:
        """Queue a complete server frame; the hub flushes it this loop turn.

        This is the only way data reaches the client. It never blocks and never
        awaits; if the outbox would overflow, the connection is dropped instead.
        """
        if self.state is not State.OPEN:
            return
        self._out.append(frame)
        self._out_bytes += len(frame)
        if self._out_bytes > self._limit:
            self._overflow()
        elif not self._queued:
            self._queued = True
            self.hub.fanout.want_write(self)

    def _write(self) -> None:
        """The writer: hand everything pending to the transport in one write."""
        self._queued = False
        if self._paused or self.state is not State.OPEN or not self._out:
            return
        out = self._out
        self._out = []
        self._out_bytes = 0
        self._raw.write(out[0] if len(out) == 1 else b"".join(out))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._out and not self._queued and self.state is State.OPEN:
            self._queued = True
            self.hub.fanout.want_write(self)

    def _overflow(self) -> None:
        self.hub.metrics.slow_dropped.inc()
        log.info(
            "conn.slow_consumer_dropped",
            extra={"conn": self.id, "user": self.identity, "queued_bytes": self._out_bytes},
        )
        self.close(CloseCode.TRY_AGAIN_LATER, "send queue overflowed", self.hub.settings.slow_close_grace)

    # ---- the API handlers use -------------------------------------------------

    def send(self, type_: str, payload: Any) -> None:
        """Send one event to this client alone."""
        self.send_frame(text_frame(encode_event(type_, payload)))

    def ack(self, payload: Any = None) -> None:
        """Answer the event being handled now, before the handler returns.

        For handlers that must send the `ack` before other events (a join that
        replays history). Without it, the router acks with the return value.
        """
        if self._current_id is not None and not self._replied:
            self._replied = True
            self.send_frame(text_frame(encode_ack(payload, self._current_id)))

    def reply_later(self, future: asyncio.Future[Any], build: Callable[[Any], Any]) -> None:
        """Answer the event being handled now when `future` completes, not before.

        The handler returns at once and the reader goes on with the next message.
        The answer is an `ack` with `build(result)` (when the event had an `id`),
        or an `error` when the future fails: never a silent drop.
        """
        event_id = self._current_id
        self._replied = True

        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if exc is None:
                if event_id is not None:
                    self.send_frame(text_frame(encode_ack(build(f.result()), event_id)))
            elif isinstance(exc, Exception):
                self.hub.answer_failure(self, exc, event_id)

        future.add_done_callback(done)

    def ping(self) -> None:
        """Send a WebSocket ping (the hub's heartbeat sweep decides when)."""
        if self.state is State.OPEN and self._transport is not None:
            self._transport.send_ping()

    def close(self, code: CloseCode = CloseCode.NORMAL_CLOSURE, reason: str = "", timeout: float | None = None) -> None:
        """Close politely: leave the hub, send a close frame, abort if the peer is silent.

        Idempotent; safe from any callback. The peer gets `timeout` seconds
        (default `close_timeout`) to answer with its own close frame.
        """
        if self.state is not State.OPEN and self.state is not State.CONNECTING:
            return
        self.close_code = int(code)
        self._detach()
        self.state = State.CLOSING
        transport = self._transport
        if transport is None:
            return
        transport.send_close(WSCloseCode(int(code)), reason.encode()[:123])
        wait = self.hub.settings.close_timeout if timeout is None else timeout
        self._abort_handle = asyncio.get_running_loop().call_later(wait, self.abort)

    def abort(self) -> None:
        """Drop the TCP connection now with an RST, discarding whatever the kernel holds."""
        self._detach()
        raw = self._raw
        if raw is None or self.state is State.CLOSED:
            return
        sock = raw.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        raw.abort()

    def _detach(self) -> None:
        """Leave the hub, exactly once: no more fan-out, writes or dispatch."""
        if self.state is State.CLOSED or self.state is State.CLOSING:
            return
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL_CLOSURE
        self.state = State.CLOSING
        self._out = []
        self._out_bytes = 0
        self._inbox.clear()
        self._assembler.reset()
        self.hub.unregister(self)
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()

    async def wait_closed(self) -> None:
        """Return once the transport is gone (immediately if it never opened)."""
        if self._transport is not None:
            await self._transport.wait_disconnected()

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.identity or 'anonymous'} {self.state.value}>"


def _as_int(code: object) -> int:
    """A close code as an int: picows hands out enum members, or ints outside its enum."""
    value = code.value if isinstance(code, WSCloseCode) else code
    assert isinstance(value, int)
    return value


def valid_peer_close_code(code: int) -> bool:
    """Whether a peer may send `code` in a close frame (RFC 6455 section 7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


_ECHOABLE = {int(code.value): code for code in WSCloseCode if code is not WSCloseCode.NO_INFO}
"""Close codes picows can send back; any other valid code is answered with 1000."""
