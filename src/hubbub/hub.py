"""The hub: every live connection, the rooms they are in, and local fan-out.

A connection enters the hub when its WebSocket opens and leaves it when it is
no longer usable (`Connection._detach`), never after a message. Rooms map to
their local members; the broker is subscribed to a room while it has at least
one. A published message comes back from the broker to `_deliver`, which
frames it once and hands it to `hubbub.fanout`, the hot path of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from hubbub import handlers
from hubbub.backends.memory import MemoryBroker, MemoryPresence
from hubbub.broker import Broker, BrokerUnavailable
from hubbub.codes import CloseCode, ErrorCode
from hubbub.config import Settings
from hubbub.connection import Connection, State
from hubbub.errors import EventError
from hubbub.events import Empty
from hubbub.fanout import Fanout
from hubbub.frames import text_frame
from hubbub.heartbeat import Beat, decide, sweep_period
from hubbub.history import History
from hubbub.metrics import Metrics
from hubbub.presence import Presence
from hubbub.protocol import (
    EventId,
    encode_ack,
    encode_error,
    encode_event,
    new_message_parts,
    salvage_id,
    utc_timestamp,
)
from hubbub.ratelimit import Verdict
from hubbub.router import Route, Router

log = logging.getLogger("hubbub.hub")
P = TypeVar("P")


class Hub:
    """Live connections, rooms, the event router and the broker of one node."""

    def __init__(
        self,
        settings: Settings | None = None,
        broker: Broker | None = None,
        presence: Presence | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.broker = broker or MemoryBroker(self.settings.history_size, self.settings.history_ttl)
        if not isinstance(self.broker, History):
            raise TypeError("the broker must also implement the History contract")
        self.history: History = self.broker
        self.presence = presence or MemoryPresence()
        self.node_id = self.settings.node_id
        self.router = Router()
        self.connections: set[Connection] = set()
        self.rooms: dict[str, dict[Connection, None]] = {}
        """Each room's local members, in delivery order: a dict used as an ordered set (see `publish_nowait`)."""
        self.metrics = Metrics(lambda: len(self.connections), lambda: len(self.rooms))
        self.fanout = Fanout(self.metrics.delivered, self.settings.write_delay)
        self._joining: dict[str, dict[Connection, list[tuple[int, bytes]]]] = {}
        self._last_sender: dict[str, Connection] = {}
        """The member at the end of each room's delivery order because it sent last (`publish_nowait`)."""
        self._subscriptions: dict[str, asyncio.Future[None]] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        handlers.install(self.router)

    def on(
        self,
        type_: str,
        schema: type[P] = Empty,  # type: ignore[assignment]
    ) -> Callable[[Callable[[P, Connection], Any]], Callable[[P, Connection], Any]]:
        """Register a handler for a custom event type: `@hub.on("typing", Typing)`.

        The handler is a plain function or an `async def` (see `hubbub.router`).
        """
        return self.router.on(type_, schema)

    # ---- life of the hub ----------------------------------------------------

    async def start(self) -> None:
        """Connect the broker and start the heartbeat sweep."""
        await self.broker.start(self._deliver)
        await self.presence.start(self._presence_expired)
        self._heartbeat = asyncio.get_running_loop().create_task(self._sweep())

    async def shutdown(self) -> None:
        """Close every connection with 1001, wait briefly for them, then abort the rest."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        everyone = list(self.connections)
        for conn in everyone:
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
        if everyone:
            await asyncio.wait(
                [asyncio.ensure_future(c.wait_closed()) for c in everyone], timeout=self.settings.shutdown_timeout
            )
        for conn in everyone:
            conn.abort()
        for task in list(self._background):
            task.cancel()
        await self.presence.close()
        await self.broker.close()

    # ---- membership -----------------------------------------------------------

    def register(self, conn: Connection) -> None:
        self.connections.add(conn)
        log.debug("conn.opened", extra={"conn": conn.id, "user": conn.identity, "remote": conn.remote})

    def unregister(self, conn: Connection) -> None:
        """Remove `conn` from the hub and its rooms. Called once, by `_detach`."""
        self.connections.discard(conn)
        for room in conn.rooms:
            self._drop_member(room, conn)
        conn.rooms.clear()
        code = conn.close_code or CloseCode.ABNORMAL_CLOSURE
        self.metrics.closes.labels(str(code)).inc()
        level = logging.DEBUG if code in _QUIET_CLOSES else logging.INFO
        log.log(level, "conn.closed", extra={"conn": conn.id, "user": conn.identity, "code": code})

    async def join(self, conn: Connection, room: str, since: int | None = None) -> None:
        """Add `conn` to `room` and ack; with `since`, first replay what it missed.

        While the broker is subscribed, history is read and presence is
        recorded (awaits), live messages of the room are kept aside for this
        joiner. Then, with no await
        in between: the ack, the replayed messages, the kept live ones (each
        offset once, in order), and membership, so the client sees no gap and
        no duplicate.
        """
        if room in conn.rooms:
            conn.ack({"room": room, "offset": await self.broker.last_offset(room)} | _recovered(since, True))
            return
        waiting = self._joining.setdefault(room, {})
        kept: list[tuple[int, bytes]] = []
        waiting[conn] = kept
        try:
            await self._subscribed(room)
            latest = await self.broker.last_offset(room)
            page = await self.history.since(room, since, self.settings.history_size) if since is not None else None
            # Presence first, so that once the ack arrives `get_presence` lists the joiner
            # (its own member_joined comes back through the kept live messages).
            await self._presence_change(room, conn, joined=True)
        except BrokerUnavailable as exc:
            self._stop_waiting(room, conn)
            self._forget_room_if_empty(room)
            raise EventError(ErrorCode.UNAVAILABLE, f"could not join {room!r}: {exc}") from None
        except BaseException:
            self._stop_waiting(room, conn)
            raise
        self._stop_waiting(room, conn)
        if conn.state is not State.OPEN:  # it went away while joining
            self._forget_room_if_empty(room)
            self.spawn(self._presence_change(room, conn, joined=False))
            return
        if page is not None:
            latest = max(latest, page.offset)
        conn.ack({"room": room, "offset": latest} | _recovered(since, page.complete if page else True))
        last = latest if since is None else since
        for offset, event in page.messages if page else ():
            if offset > last:
                conn.send_frame(text_frame(event))
                last = offset
        for offset, frame in kept:  # live messages that came while it joined
            if offset == 0 or offset > last:
                conn.send_frame(frame)
                self.metrics.delivered.inc()
                last = max(last, offset)
        self.rooms.setdefault(room, {})[conn] = None
        self._last_sender.pop(room, None)  # the joiner is at the end now
        conn.rooms.add(room)
        self.fanout.seal(room)

    def _stop_waiting(self, room: str, conn: Connection) -> None:
        waiting = self._joining.get(room)
        if waiting is not None:
            waiting.pop(conn, None)
            if not waiting:
                del self._joining[room]

    async def _subscribed(self, room: str) -> None:
        """Subscribe the broker to `room` once, however many join at the same time."""
        future = self._subscriptions.get(room)
        if future is None:
            future = self._subscriptions[room] = asyncio.ensure_future(self.broker.subscribe(room))
        try:
            await asyncio.shield(future)
        except BaseException:
            if self._subscriptions.get(room) is future and future.done():
                del self._subscriptions[room]
            raise

    def leave(self, conn: Connection, room: str) -> bool:
        """Remove `conn` from `room`; False if it was not a member."""
        if room not in conn.rooms:
            return False
        conn.rooms.discard(room)
        self._drop_member(room, conn)
        return True

    def _drop_member(self, room: str, conn: Connection) -> None:
        members = self.rooms.get(room)
        if members is not None:
            members.pop(conn, None)
            if self._last_sender.get(room) is conn:
                del self._last_sender[room]  # holds no connection that has left
            self.fanout.seal(room)
            if not members:
                del self.rooms[room]
                self._forget_room_if_empty(room)
        self.spawn(self._presence_change(room, conn, joined=False))

    def _forget_room_if_empty(self, room: str) -> None:
        """Unsubscribe from a room with no members and nobody joining."""
        if room not in self.rooms and room not in self._joining and room in self._subscriptions:
            del self._subscriptions[room]
            self.spawn(self.broker.unsubscribe(room))

    # ---- presence -------------------------------------------------------------

    def _presence_key(self, conn: Connection) -> str:
        return f"{self.node_id}:{conn.id}"

    async def _presence_change(self, room: str, conn: Connection, joined: bool) -> None:
        """Record a membership change; announce an identity's first or last connection."""
        name = conn.identity or ANONYMOUS
        try:
            if joined:
                changed = await self.presence.add(room, name, self._presence_key(conn))
            else:
                changed = await self.presence.remove(room, name, self._presence_key(conn))
            if changed:
                event = encode_event("member_joined" if joined else "member_left", {"room": room, "name": name})
                await self.broker.broadcast(room, event)
        except (BrokerUnavailable, ConnectionError, OSError) as exc:
            log.warning("presence.failed", extra={"room": room, "user": name, "error": str(exc)})

    def _presence_expired(self, room: str, name: str) -> None:
        """A dead node's last connection of `name` in `room` expired: tell the room."""
        event = encode_event("member_left", {"room": room, "name": name})
        self.spawn(self.broker.broadcast(room, event))

    def spawn(self, work: Awaitable[Any]) -> None:
        """Run background work owned by the hub (cancelled at shutdown)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- publishing and fan-out (the hot path) -------------------------------

    async def publish(self, room: str, message: Any, sender: str, origin: Connection | None = None) -> int:
        """Publish a `new_message` to `room` through the broker; return its offset (`origin`: see below)."""
        offset = self.publish_nowait(room, message, sender, origin)
        return offset if isinstance(offset, int) else await offset

    def publish_nowait(
        self, room: str, message: Any, sender: str, origin: Connection | None = None
    ) -> int | asyncio.Future[int]:
        """Start publishing now, in call order: the offset, or a future of it for a networked broker.

        A broker without I/O (memory) publishes right here and the offset comes
        back at once: no task, future or callback per message. A networked
        broker gets a task; a client's messages are still published in the
        order it sent them, but its next messages are read and published
        without waiting for each round trip to the broker. Failures are
        `EventError` (`unavailable`), raised or set on the future.

        `origin`, the connection that sent the message, moves to the end of
        the room's delivery order, so its own copy is written after everyone
        else's: it already knows what it said, the others do not. A client
        that paces itself on its own echo is then paced by the room's whole
        fan-out instead of running ahead of it, which keeps the queues short
        (F1: median latency 16 -> 11 ms, docs/performance.md).
        """
        if origin is not None and self._last_sender.get(room) is not origin:
            members = self.rooms.get(room)
            if members and origin in members:
                del members[origin]
                members[origin] = None
                self._last_sender[room] = origin
        head, tail = new_message_parts(room, message, sender, utc_timestamp())
        if not self.broker.synchronous:
            return asyncio.ensure_future(self._publish(room, head, tail))
        try:
            offset = self.broker.publish_now(room, head, tail)
        except BrokerUnavailable as exc:
            raise EventError(ErrorCode.UNAVAILABLE, f"the message was not published: {exc}") from None
        self.metrics.published.inc()
        return offset

    async def _publish(self, room: str, head: bytes, tail: bytes) -> int:
        try:
            offset = await self.broker.publish(room, head, tail)
        except BrokerUnavailable as exc:
            raise EventError(ErrorCode.UNAVAILABLE, f"the message was not published: {exc}") from None
        self.metrics.published.inc()
        return offset

    def _deliver(self, room: str, offset: int, event: bytes) -> None:
        """The broker's sink: frame the message once and hand it to fan-out (and to joiners)."""
        frame = text_frame(event)
        joining = self._joining.get(room)
        if joining:
            for kept in joining.values():
                kept.append((offset, frame))
        members = self.rooms.get(room)
        if members:
            self.fanout.room_frame(room, members, frame)

    # ---- dispatch of client events -----------------------------------------

    def handle(self, conn: Connection, text: str) -> Coroutine[Any, Any, None] | None:
        """Handle one client message now; return the rest to await when its handler is async.

        A plain-function handler runs to the end here, inside the read callback,
        and is answered before this returns. An `async def` handler comes back
        as a coroutine that the connection awaits in its reader task, holding
        back its later messages until it is done, so that a client's events are
        handled in the order it sent them.
        """
        self.metrics.received.inc()
        event_id: EventId | None = None
        try:
            if conn.bucket is not None:
                verdict = conn.bucket.take(time.monotonic())
                if verdict is Verdict.CLOSE:
                    conn.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded again and again")
                    return None
                if verdict is Verdict.REFUSE:
                    raise EventError(ErrorCode.RATE_LIMITED, "slow down: too many events", salvage_id(text))
            route, payload, event_id = self.router.decode(text)
            if route.is_async:
                return self._handle_async(conn, route, payload, event_id)
            conn._current_id = event_id
            conn._replied = False
            self._acknowledge(conn, event_id, route.handler(payload, conn))
        except Exception as exc:
            self.answer_failure(conn, exc, event_id)
        finally:
            conn._current_id = None
        return None

    async def _handle_async(self, conn: Connection, route: Route[Any], payload: Any, event_id: EventId | None) -> None:
        """The awaited part of `handle`, for an `async def` handler."""
        conn._current_id = event_id
        conn._replied = False
        try:
            self._acknowledge(conn, event_id, await route.handler(payload, conn))
        except Exception as exc:
            self.answer_failure(conn, exc, event_id)
        finally:
            conn._current_id = None

    @staticmethod
    def _acknowledge(conn: Connection, event_id: EventId | None, result: Any) -> None:
        """The `ack` of a handled event, with the handler's result, unless it was answered already."""
        if event_id is not None and not conn._replied:
            conn._replied = True
            conn.send_frame(text_frame(encode_ack(result, event_id)))

    def answer_failure(self, conn: Connection, exc: Exception, event_id: EventId | None) -> None:
        """An `error` event for a failed client event; a bug (not `EventError`) is logged with its traceback."""
        if isinstance(exc, EventError):
            code, message = exc.code, exc.message
            event_id = exc.event_id if exc.event_id is not None else event_id
        else:
            log.error("handler.failed", exc_info=exc, extra={"conn": conn.id, "event_id": event_id})
            code, message = ErrorCode.INTERNAL, "the handler failed"
        self.metrics.errors.labels(code.value).inc()
        conn.send_frame(text_frame(encode_error(code, message, event_id)))

    # ---- heartbeats -----------------------------------------------------------

    async def _sweep(self) -> None:
        """Ping silent peers; drop those whose pong is late (see hubbub.heartbeat)."""
        interval, timeout = self.settings.ping_interval, self.settings.ping_timeout
        period = sweep_period(interval, timeout)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            heard_lately = now - interval
            for conn in tuple(self.connections):
                if conn.ping_sent is None and conn.last_seen > heard_lately:
                    continue  # decide() would say WAIT: skipped inline, as most connections are each time
                beat = decide(now, conn.last_seen, conn.ping_sent, interval, timeout)
                if beat is Beat.PING:
                    conn.ping_sent = now
                    conn.ping()
                elif beat is Beat.DROP:
                    log.info("conn.ping_timeout", extra={"conn": conn.id, "user": conn.identity})
                    conn.close_code = CloseCode.ABNORMAL_CLOSURE
                    conn.abort()


_QUIET_CLOSES = frozenset({1000, 1001, 1005, 1006})
ANONYMOUS = "anonymous"


def _recovered(since: int | None, complete: bool) -> dict[str, bool]:
    """The `recovered` field of a join ack: present only when the join had `since`."""
    return {} if since is None else {"recovered": complete}
