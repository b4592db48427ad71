"""One client connection, whatever carries its frames: `Connection`, the object handlers and hooks get.

It holds what the hub knows of a client (identity, rooms, the app's `data`),
its sans-I/O `Session`, and its single writer: a bounded outbox of frame bytes
that the fan-out flush hands to the transport in one write. The transport
adapter (`hubbub.server.connection`, on picows) reads frames, asks the session
what each means and calls the methods under "what the transport adapter
calls"; this module never sees a socket library. The lifecycle rules are in
docs/lifecycle.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from hubbub.errors import EventError
from hubbub.protocol.codes import CloseCode, ErrorCode
from hubbub.protocol.envelope import EventId, encode_ack, encode_event, salvage_id
from hubbub.protocol.frames import pong_frame, text_frame
from hubbub.protocol.session import PeerClose, Session, State, Verdict

if TYPE_CHECKING:
    from hubbub.auth.tokens import Grant
    from hubbub.backends.history import History
    from hubbub.backends.presence import Presence
    from hubbub.core.replays import Replays
    from hubbub.core.rpc import Methods
    from hubbub.core.settings import Settings
    from hubbub.protocol.namespaces import Namespaces
    from hubbub.protocol.ratelimit import ByteBucket
    from hubbub.protocol.session import Limits

__all__ = ["Connection", "HubPort", "ReadGate", "Wire", "peer_address"]

_OPEN = State.OPEN
_LINGER_RST = struct.pack("ii", 1, 0)
_TCP_USER_TIMEOUT: int | None = getattr(socket, "TCP_USER_TIMEOUT", None)
"""Linux's option for how long sent data may wait unacknowledged, a shut window included (None elsewhere)."""


def peer_address(peer: object) -> str:
    """A socket's peer name as the logs write it: `host:port`, `[host]:port` for IPv6, "" when unknown."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return "" if peer is None else str(peer)


class Wire(Protocol):
    """The WebSocket transport a connection writes control frames to (picows' `WSTransport` is one).

    Data frames bypass it: they go to the raw asyncio transport in one write per flush.
    """

    # Typed loosely: picows annotates the code as its enum, but sends any int code (an app's 4000-4999).
    def send_close(self, code: Any = ..., reason: Any = ..., /) -> None: ...
    def send_ping(self) -> None: ...
    def disconnect(self) -> None: ...
    async def wait_disconnected(self) -> None: ...


class HubPort(Protocol):
    """What a connection needs from its hub: written as an interface so that
    `connection` imports nothing of `hub` (the hub implements it)."""

    settings: Settings
    limits: Limits
    history: History
    presence: Presence
    replays: Replays
    rpc_methods: Methods
    join_guard: Callable[[Connection, str], Coroutine[Any, Any, None]] | None
    join_proxy: Callable[[Connection, str, int | None], Coroutine[Any, Any, bytes | None]] | None
    namespaces: Namespaces

    def _register(self, conn: Connection) -> None: ...
    def _unregister(self, conn: Connection) -> None: ...
    def want_write(self, conn: Connection) -> None: ...
    def _dispatch(self, conn: Connection, text: str) -> Coroutine[Any, Any, None] | None: ...
    def _answer_error(self, conn: Connection, code: ErrorCode, message: str, event_id: EventId | None) -> None: ...
    def _answer_failure(self, conn: Connection, exc: Exception, event_id: EventId | None) -> None: ...
    def _slow_consumer(self, conn: Connection) -> None: ...
    async def join(self, conn: Connection, room: str, since: int | None = None, info: bytes | None = None) -> None: ...
    def leave(self, conn: Connection, room: str) -> bool: ...
    def publish_nowait(
        self, room: str, message: Any, sender: str, origin: Connection | None = None
    ) -> int | asyncio.Future[int]: ...


class ReadGate(Protocol):
    """The frame pacer's switch for pausing reads on the application's behalf."""

    def pause_for_app(self, paused: bool) -> None: ...


class Connection:
    """The session object handlers and hooks get: `identity`, `rooms`, `data`, `send`, `ack`, `join`, `leave`,
    `publish`, `close` (docs/apps.md). `state` is the protocol state; the app's own is `data`."""

    # Slots, not a __dict__: fan-out reads a few of these per recipient per
    # flush, and a slot is the fastest attribute Python has.
    __slots__ = (
        "__weakref__",  # tests and tools may watch a connection without keeping it alive
        "_abort_handle",
        "_attached",
        "_blocked_since",
        "_gate",
        "_inbox",
        "_limit",
        "_out",
        "_out_bytes",
        "_paused",
        "_queued",
        "_raw",
        "_reader",
        "_reading_paused",
        "_replay_budget",
        "_transport",
        "data",
        "grant",
        "hub",
        "id",
        "identity",
        "info",
        "remote",
        "rooms",
        "session",
        "since",
    )
    _ids = 0

    def __init__(self, hub: HubPort, identity: str | None, remote: str = "") -> None:
        Connection._ids += 1
        self.id = Connection._ids
        self.hub = hub
        self.identity = identity
        """The name fixed at the handshake (query `name` or a credential), else None."""
        self.remote = remote
        """The peer's address, `host:port`, for logs (taken from the transport at `attach` when not given)."""
        self.grant: Grant | None = None
        """With a signed token: its rooms and expiry (replaced by `refresh`); with the connect proxy: the
        app's rooms; None otherwise."""
        self.info: bytes | None = None
        """Public info shown with this identity in presence (compact JSON of an object, from the connect
        proxy); None: none."""
        self.rooms: set[str] = set()
        """The rooms this connection is in (read it; join and leave change it)."""
        self.since = time.time()
        """When the connection was made (Unix seconds), for the admin dashboard."""
        self.data: dict[str, Any] = {}
        """The application's own state for this session (hooks and handlers read and write it)."""
        self.session = Session(hub.limits, time.monotonic())
        """The protocol state: life, budgets, reassembly, the request being answered, heartbeat."""
        self._transport: Wire | None = None
        self._raw: Any = None
        self._gate: ReadGate | None = None
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._limit = hub.settings.send_queue_bytes
        self._queued = False
        self._paused = False
        self._attached = False
        self._inbox: deque[str] = deque()
        self._reading_paused = False
        self._reader: asyncio.Task[None] | None = None
        self._abort_handle: asyncio.TimerHandle | None = None
        self._blocked_since: float | None = None
        """Since when (monotonic) this connection's writes have waited to drain; None: they drained.
        Set when the transport pauses the writer, or by the heartbeat sweep when it finds bytes waiting
        in the transport; cleared when it resumes or the sweep finds it empty (the write deadline)."""
        self._replay_budget: ByteBucket | None = None
        """What this connection may still be replayed (`hubbub.core.replays`), made on its first replay."""

    @property
    def state(self) -> State:
        """Where the connection is in its life (the session's state)."""
        return self.session.state

    @property
    def close_code(self) -> int | None:
        """The code the connection ended with, once decided."""
        return self.session.close_code

    # ---- what the transport adapter calls ---------------------------------------

    def attach(self, wire: Wire, raw: Any) -> None:
        """For the transport adapter: the handshake is done; `wire` carries control frames, `raw` the data.

        The connection registers with the hub, or, when the server is already
        shutting down, closes at once with 1001.
        """
        self._transport = wire
        self._raw = raw
        if not self.remote:  # the handshake does not know the socket; the transport does
            self.remote = peer_address(raw.get_extra_info("peername"))
        raw.set_write_buffer_limits(high=min(self._limit, 256 * 1024))
        protocol = getattr(raw, "get_protocol", None)
        gate = protocol() if protocol is not None else None
        self._gate = gate if hasattr(gate, "pause_for_app") else None  # the frame pacer, when there is one
        settings = self.hub.settings
        # The kernel's send buffer (--send-buffer) is capped by the listener right after accept
        # (hubbub.server.listener), before picows logs the socket or anything is written to it.
        sock = raw.get_extra_info("socket") if settings.write_timeout else None
        if sock is not None and _TCP_USER_TIMEOUT is not None:
            # The write deadline below the transport, for bytes the sweep cannot see: the
            # kernel gives up on a peer that has taken nothing of what it holds (its window
            # shut, or nothing acked) for twice write_timeout. Twice, so that a writer the
            # sweep can see is the sweep's to drop, with 1013 and counted.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT, int(settings.write_timeout * 2000))
        if self.session.open():
            self._attached = True
            self.hub._register(self)
        else:  # closed (server shutting down) before it opened
            wire.send_close(int(CloseCode.GOING_AWAY))
            wire.disconnect()

    def receive_text(self, text: str) -> None:
        """For the transport adapter: handle a text message now, or queue it behind an async handler still running."""
        if self._reader is None:
            pending = self.hub._dispatch(self, text)
            if pending is not None:  # an async handler: await it, and hold back what follows
                self._reader = asyncio.get_running_loop().create_task(self._read_on(pending))
            return
        self._inbox.append(text)
        if len(self._inbox) >= self.hub.settings.inbox_high_water and not self._reading_paused:
            self._reading_paused = True
            self._pause_reading(True)

    def receive_binary(self, data: bytes) -> None:
        """For the transport adapter: a binary message, which closes with 1003 (hubbub speaks text only)."""
        self.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported")

    def refuse(self, data: bytes) -> None:
        """For the transport adapter: a message over the rate limit: answered `rate_limited`, not handled."""
        self.hub._answer_error(self, ErrorCode.RATE_LIMITED, "slow down: too many events", salvage_id(data))

    def change_rooms(self) -> None:
        """A client asks to join or leave a room: spend its join budget, or raise `rate_limited` (nothing done).

        The built-in `join_room` and `leave_room` call this first; an application that takes either
        over should too. Over the budget again and again, the connection is closed with 1008.
        """
        verdict = self.session.membership(time.monotonic())
        if verdict is Verdict.ALLOW:
            return
        if verdict is Verdict.CLOSE:
            self.carry_out_close()
        raise EventError(ErrorCode.RATE_LIMITED, "slow down: too many joins and leaves")

    def pong_owed(self) -> None:
        """For the transport adapter: the session owes the peer a pong: it goes out with the next write."""
        self._want_write()

    def peer_closed(self, code: int, has_code: bool, echo: int) -> None:
        """For the transport adapter: the peer sent a close frame with `code`; `echo` is the code to echo back."""
        action = self.session.peer_close(code, has_code)
        transport = self._transport
        if action is PeerClose.ECHO:
            self._detach()
            if transport is not None:
                transport.send_close(echo)
                transport.disconnect()
        elif action is PeerClose.PROTOCOL_ERROR:
            self.carry_out_close()
        elif action is PeerClose.HANG_UP and transport is not None:
            # The peer answered our close frame: the server closes TCP first.
            transport.disconnect()

    def transport_lost(self, sent_code: int | None) -> None:
        """For the transport adapter: the transport is gone (`sent_code`: the close code we sent, if any)."""
        self.session.closed(sent_code)
        self._detach()
        if self._abort_handle is not None:
            self._abort_handle.cancel()
            self._abort_handle = None

    def _pause_reading(self, paused: bool) -> None:
        if self._gate is not None:
            self._gate.pause_for_app(paused)
        elif paused:
            self._raw.pause_reading()
        else:
            self._raw.resume_reading()

    def _run_first(self, pending: Coroutine[Any, Any, None]) -> None:
        """Await `pending` (an async `on_connect` hook) in the reader task before any client message."""
        if self._reader is None and self.session.state is _OPEN:
            self._reader = asyncio.get_running_loop().create_task(self._read_on(pending))
        else:
            pending.close()

    async def _read_on(self, pending: Coroutine[Any, Any, None] | None) -> None:
        """The reader task: await an async handler, then handle what queued meanwhile, in order.

        It exists only while an async handler runs or messages wait behind one;
        once the inbox is empty it ends, and messages are handled as they are
        read again. A connection that only sends plain-function events never
        has a task.
        """
        inbox = self._inbox
        dispatch = self.hub._dispatch
        try:
            while pending is not None:
                await pending
                pending = None
                while pending is None and inbox and self.session.state is _OPEN:
                    text = inbox.popleft()
                    if self._reading_paused and len(inbox) <= self.hub.settings.inbox_high_water // 2:
                        self._reading_paused = False
                        self._pause_reading(False)
                    pending = dispatch(self, text)
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
        if self.session.state is not _OPEN:
            return
        self._out.append(frame)
        self._out_bytes += len(frame)
        if self._out_bytes > self._limit:
            self._overflow()
        elif not self._queued:
            self._queued = True
            self.hub.want_write(self)

    def _want_write(self) -> None:
        if not self._queued:
            self._queued = True
            self.hub.want_write(self)

    def _write(self) -> None:
        """The writer: hand everything pending (and the owed pong) to the transport in one write."""
        self._queued = False
        if self._paused or self.session.state is not _OPEN:
            return
        out = self._out
        if self.session.pong_owed:
            out[:0] = [pong_frame(payload) for payload in self.session.take_pongs()]
        if not out:
            return
        self._out = []
        self._out_bytes = 0
        self._raw.write(out[0] if len(out) == 1 else b"".join(out))

    def pause_writing(self) -> None:
        """For the transport adapter: the transport's buffer is full; frames wait in the outbox.

        The write deadline starts now, unless it already runs (the heartbeat sweep drops a
        connection still blocked `write_timeout` later)."""
        self._paused = True
        if self._blocked_since is None:
            self._blocked_since = time.monotonic()

    def resume_writing(self) -> None:
        """For the transport adapter: the transport drained; what waited is written."""
        self._paused = False
        self._blocked_since = None
        if (self._out or self.session.pong_owed) and self.session.state is _OPEN:
            self._want_write()

    def _overflow(self) -> None:
        self.hub._slow_consumer(self)
        self.close(CloseCode.TRY_AGAIN_LATER, "send queue overflowed", self.hub.settings.slow_close_grace)

    def write_stalled(self, now: float, deadline: float) -> bool:
        """For the heartbeat sweep: True when this connection's writes have not drained for `deadline` s.

        Drained: the transport resumed the writer, or its buffer above the kernel
        was found empty. A transport that holds bytes without having paused is
        noticed here, at the sweep (it then has `deadline` more seconds).
        """
        since = self._blocked_since
        if not self._paused:
            raw = self._raw
            if raw is None or not raw.get_write_buffer_size():
                self._blocked_since = None
                return False
        if since is None:
            self._blocked_since = now
            return False
        return now - since >= deadline

    def drop_stalled(self) -> None:
        """Drop a connection past its write deadline as a slow consumer: 1013, then the RST."""
        self.hub._slow_consumer(self)
        self.close(CloseCode.TRY_AGAIN_LATER, "writes did not drain in time", self.hub.settings.slow_close_grace)

    @property
    def queued_bytes(self) -> int:
        """Bytes in the outbox, not yet handed to the kernel."""
        return self._out_bytes

    # ---- the API handlers use -------------------------------------------------

    def send(self, type_: str, payload: Any) -> None:
        """Send one event to this client alone."""
        self.send_frame(text_frame(encode_event(type_, payload)))

    def ack(self, payload: Any = None) -> None:
        """Answer the event being handled now, before the handler returns.

        For handlers that must send the `ack` before other events (a join that
        replays history). Without it, the router acks with the return value.
        """
        event_id = self.session.answer()
        if event_id is not None:
            self.send_frame(text_frame(encode_ack(payload, event_id)))

    def reply_later(self, future: asyncio.Future[Any], build: Callable[[Any], Any]) -> None:
        """Answer the event being handled now when `future` completes, not before.

        The handler returns at once and the reader goes on with the next message.
        The answer is an `ack` with `build(result)` (when the event had an `id`),
        or an `error` when the future fails: never a silent drop.
        """
        event_id = self.session.answer()

        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if exc is None:
                if event_id is not None:
                    self.send_frame(text_frame(encode_ack(build(f.result()), event_id)))
            elif isinstance(exc, Exception):
                self.hub._answer_failure(self, exc, event_id)

        future.add_done_callback(done)

    async def join(self, room: str, since: int | None = None, info: bytes | None = None) -> None:
        """Join `room` (acked; with `since`, replaying what was missed first), as `join_room` does.

        A token's `rooms` are checked here: a room outside them is `forbidden`, nothing done.
        `info`: this connection's public info in the room's presence (the join proxy's), if not its own.
        """
        if self.grant is not None and not self.grant.may_join(room):
            raise EventError(ErrorCode.FORBIDDEN, f"your credentials do not allow room {room!r}")
        await self.hub.join(self, room, since, info)

    def leave(self, room: str) -> bool:
        """Leave `room`; False when this connection was not in it."""
        return self.hub.leave(self, room)

    def publish(self, room: str, message: Any, sender: str) -> int | asyncio.Future[int]:
        """Publish a `new_message` to `room` as this connection (its own copy comes last)."""
        return self.hub.publish_nowait(room, message, sender, origin=self)

    def ping(self) -> None:
        """Send a WebSocket ping (the hub's heartbeat sweep decides when)."""
        if self.session.state is _OPEN and self._transport is not None:
            self._transport.send_ping()

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "", timeout: float | None = None) -> None:
        """Close politely: leave the hub, send a close frame, abort if the peer is silent.

        `code` is a `CloseCode` or an application code (4000-4999). Idempotent; safe from any
        callback. The peer gets `timeout` seconds
        (default `close_timeout`) to answer with its own close frame.
        """
        if self.session.close(int(code), reason):
            self.carry_out_close(timeout)

    def carry_out_close(self, timeout: float | None = None) -> None:
        """Carry out a close the session decided: leave the hub, send the close frame, arm the abort.

        Called by `close`, and by the transport adapter when the session's verdict on a frame is a close."""
        self._detach()
        transport = self._transport
        if transport is None or self._abort_handle is not None:
            return
        code = self.session.close_code or CloseCode.NORMAL_CLOSURE
        # An application's 4000-4999 code is sent as given (tests/integration/test_apps.py), not dropped.
        transport.send_close(int(code), self.session.close_reason.encode()[:123])
        wait = self.hub.settings.close_timeout if timeout is None else timeout
        self._abort_handle = asyncio.get_running_loop().call_later(wait, self.abort)

    def abort(self) -> None:
        """Drop the TCP connection now with an RST, discarding whatever the kernel holds."""
        self.session.close(int(CloseCode.ABNORMAL_CLOSURE), "aborted")
        self._detach()
        raw = self._raw
        if raw is None or self.session.state is State.CLOSED:
            return
        sock = raw.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        raw.abort()

    def _detach(self) -> None:
        """Leave the hub, exactly once: no more fan-out, writes or dispatch."""
        if not self._attached:
            return
        self._attached = False
        self._out = []
        self._out_bytes = 0
        self._inbox.clear()
        self.hub._unregister(self)
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()

    async def wait_closed(self) -> None:
        """Return once the transport is gone (immediately if it never opened)."""
        if self._transport is not None:
            await self._transport.wait_disconnected()

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.identity or 'anonymous'} {self.session.state.value}>"
