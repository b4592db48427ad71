"""The hub: every live connection of a node, and the parts that serve them.

`Hub` is what an application builds: it registers handlers (`on`), hooks, and holds the
registry, rooms, presence, the keepalive sweep, dispatch and fan-out, each in its own module.
Every background task belongs to its `TaskOwner` and is awaited at shutdown. How the parts fit:
docs/topics/node.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from hubbub.backends.broker import Broker, BrokerUnavailable
from hubbub.backends.history import History
from hubbub.backends.memory import MemoryBroker, MemoryPresence
from hubbub.backends.presence import Presence
from hubbub.core import builtins as handlers
from hubbub.core.connection import Connection
from hubbub.core.control import Control
from hubbub.core.fanout import Fanout
from hubbub.core.hooks import ConnectHook, DisconnectHook, Hooks, JoinHook
from hubbub.core.keepalive import sweep
from hubbub.core.membership import ANONYMOUS, Roster
from hubbub.core.metrics import Metrics
from hubbub.core.observer import HubObserver
from hubbub.core.replays import Replays
from hubbub.core.rooms import Rooms
from hubbub.core.rpc import Method, Methods
from hubbub.core.settings import Settings
from hubbub.core.tasks import TaskOwner
from hubbub.errors import EventError
from hubbub.protocol.codes import CloseCode, ErrorCode
from hubbub.protocol.envelope import EventId, new_message_parts, utc_timestamp
from hubbub.protocol.events import Empty
from hubbub.protocol.router import Router

log = logging.getLogger("hubbub.core.hub")
P = TypeVar("P")

__all__ = ["ANONYMOUS", "Hub"]


class Hub:
    """Live connections, rooms, the event router and the broker of one node."""

    def __init__(
        self,
        settings: Settings | None = None,
        broker: Broker | None = None,
        presence: Presence | None = None,
        *,
        presence_events: bool | None = None,
    ) -> None:
        """`presence_events`: False sends no member_joined/member_left whatever the settings say
        (the app's own clients do not know them); None follows `Settings.presence_events`."""
        self.connections: set[Connection] = set()
        self.identities: dict[str, dict[Connection, None]] = {}
        """The live connections of each identity (insertion-ordered sets): what the server API's
        control messages act on, found without walking every connection (`hubbub.core.control`)."""
        self._presence_events = presence_events
        self.router = Router()
        self.tasks = TaskOwner("hub")
        """Owner of the hub's background work (presence updates, unsubscribes, the heartbeat, async hooks)."""
        self.hooks = Hooks(self.tasks)
        """The application's hooks (`on_connect`, `on_disconnect`, `authorize_join`)."""
        self.join_guard: Callable[[Connection, str], Coroutine[Any, Any, None]] | None = None
        """`Hooks.authorize` once an `authorize_join` hook is registered: `join_room` tests this one attribute."""
        self.rpc_methods = Methods()
        """The `rpc` methods: the app's own (`rpc`), then the RPC proxy the server plugs in (hubbub.core.rpc)."""
        self.join_proxy: Callable[[Connection, str, int | None], Coroutine[Any, Any, bytes | None]] | None = None
        """The join proxy's call (`AppProxy.join`, set by the server with `--join-proxy`): the member's
        info in the room, or `EventError` (`forbidden`, `unavailable`)."""
        self._builtins = set(handlers.install(self.router))
        """Built-in event types an application has not replaced yet (`on` replaces each once)."""
        self._started = False
        self._dispatch: Callable[[Connection, str], Coroutine[Any, Any, None] | None] = self.router.dispatch
        """Handle one client message (`Router.dispatch`): the router's own method, no extra call per message."""
        self.control = Control(self)
        """Control messages between nodes (the server API's disconnect, subscribe, unsubscribe) and node reports."""
        self.observer: HubObserver | None = None
        """Who is told of connections, memberships and messages (`observe`): the webhooks, or None."""
        self._build(settings or Settings(), broker, presence)

    def _build(self, settings: Settings, broker: Broker | None, presence: Presence | None) -> None:
        """Everything made from the settings; the router, hooks and task owner stay (see `configure`)."""
        self.settings = settings
        self.namespaces = settings.namespace_rules()
        """Each room's rules (`[[namespaces]]`), matched with a cache: a join or publish asks `rules(room)`."""
        self.broker = broker or MemoryBroker(settings.history_size, settings.history_ttl, settings.history_max_bytes)
        if not isinstance(self.broker, History):
            raise TypeError("the broker must also implement the History contract")
        self.history: History = self.broker
        if self.namespaces.varied_history:
            self.history.history_for = self.namespaces.history
        self.presence = presence or MemoryPresence()
        self.node_id = settings.node_id
        self.limits = settings.limits()
        """The per-connection bounds every session enforces."""
        self.metrics = Metrics(
            lambda: len(self.connections),
            lambda: len(self.room_table.members),
            lambda: self.broker.healthy,
            self.node_id,
        )
        self.router.metrics = self.metrics
        self.fanout = Fanout(self.metrics.delivered, settings.write_delay)
        announce = settings.presence_events if self._presence_events is None else self._presence_events
        self.replays = Replays(settings.replay_rate, settings.replay_rate_total, settings.send_queue_bytes // 2)
        """The replay budgets: what `join_room` with `since` and `get_history` may send, per connection and in all."""
        self.roster = Roster(
            self.presence,
            self.broker,
            self.node_id,
            self.tasks,
            announce,
            settings.presence_interval,
            settings.presence_events_max_members,
        )
        self.room_table = Rooms(
            self.broker,
            self.history,
            self.roster,
            self.fanout,
            self.metrics,
            self.tasks,
            self.replays,
            self.namespaces,
            history_size=settings.history_size,
            max_rooms=settings.max_rooms_per_connection,
            replay_bytes=settings.send_queue_bytes // 2,
        )
        self._last_sender = self.room_table.last_sender
        self.roster.observer = self.observer
        self._message_observer = self.observer.message if self.observer and self.observer.wants_messages else None
        """`HubObserver.message` when the observer wants messages, else None: the one test a publish makes."""
        self.want_write: Callable[[Connection], None] = self.fanout.want_write
        """`conn` has frames in its outbox: it writes them in this turn's flush (the fan-out's own method)."""
        self._heartbeat: asyncio.Task[None] | None = None

    def configure(self, settings: Settings, broker: Broker | None = None, presence: Presence | None = None) -> None:
        """Give a hub made elsewhere (an app's `hub = Hub()` at import) the server's settings and backends.

        `hubbub serve --app` calls this before `start`, so that every flag of
        the command line applies to the app's hub. What was made from the old
        settings (broker, presence, metrics, rooms, fan-out) is made anew;
        handlers and hooks stay. Only before `start`: a running hub has
        connections and subscriptions that belong to the old parts.
        """
        if self._started:
            raise RuntimeError("configure() is for a hub that has not started")
        self._build(settings, broker, presence)

    def observe(self, observer: HubObserver) -> None:
        """Tell `observer` of this node's connections, memberships and messages from now on (one observer:
        the server hands it the webhooks dispatcher when webhooks are configured). Only before `start`."""
        if self._started:
            raise RuntimeError("observe() is for a hub that has not started")
        self.observer = observer
        self.roster.observer = observer
        self._message_observer = observer.message if observer.wants_messages else None

    @property
    def rooms(self) -> dict[str, dict[Connection, None]]:
        """Each room's local members, in delivery order."""
        return self.room_table.members

    def uses_builtin(self, type_: str) -> bool:
        """Whether events of `type_` are still answered by hubbub's built-in handler (no `on` took it over)."""
        return type_ in self._builtins

    def on(
        self,
        type_: str,
        schema: type[P] = Empty,  # type: ignore[assignment]
    ) -> Callable[[Callable[[P, Connection], Any]], Callable[[P, Connection], Any]]:
        """Register a handler for an event type: `@hub.on("typing", Typing)`.

        The handler is a plain function or an `async def` (see `hubbub.protocol.router`).
        A built-in type (`send_message`, `join_room`, ...) may be taken over
        once: the application's handler replaces hubbub's. A second handler
        for one type is an error, as for any type.
        """

        def register(handler: Callable[[P, Connection], Any]) -> Callable[[P, Connection], Any]:
            if type_ in self._builtins:
                self._builtins.discard(type_)
                self.router.replace(type_, handler, schema)
            else:
                self.router.add(type_, handler, schema)
            return handler

        return register

    def rpc(self, name: str) -> Callable[[Method], Method]:
        """Register an in-process method for the `rpc` event: `@hub.rpc("name")`.

        The method is called as `method(conn, data)` (a plain function or an `async def`) and
        returns the answer's data, any JSON-encodable value, sent back as `ack` `{"data": X}`.
        Raising `EventError` answers that code (`forbidden` to refuse). It is tried before
        `--rpc-proxy`. One method per name.
        """

        def register(method: Method) -> Method:
            self.rpc_methods.add(name, method)
            return method

        return register

    # ---- hooks (docs/apps.md) -------------------------------------------------

    def on_connect(self, hook: ConnectHook) -> ConnectHook:
        """Decorator: `hook(conn)` runs as each connection opens; a close code returned (or
        `Refused` raised) turns it away. See `hubbub.core.hooks`."""
        _once(self.hooks.on_connect, "on_connect")
        self.hooks.on_connect = hook
        return hook

    def on_disconnect(self, hook: DisconnectHook) -> DisconnectHook:
        """Decorator: `hook(conn, code)` runs as each connection leaves the hub."""
        _once(self.hooks.on_disconnect, "on_disconnect")
        self.hooks.on_disconnect = hook
        return hook

    def authorize_join(self, hook: JoinHook) -> JoinHook:
        """Decorator: `hook(conn, room)` judges each client `join_room`; anything but True is `forbidden`."""
        _once(self.hooks.authorize_join, "authorize_join")
        self.hooks.authorize_join = hook
        self.join_guard = self.hooks.authorize
        return hook

    # ---- life of the hub ----------------------------------------------------

    async def start(self) -> None:
        """Connect the broker and start the heartbeat sweep."""
        self._started = True
        self.broker.control_sink = self.control.receive
        await self.broker.start(self.room_table.deliver)
        await self.presence.start(self.roster.expired)
        self.control.start_reports(self.presence, lambda: (len(self.connections), len(self.room_table.members)))
        if self.observer is not None:
            await self.observer.start()
        self._heartbeat = self.tasks.spawn(
            sweep(
                lambda: self.connections,
                self.settings.ping_interval,
                self.settings.ping_timeout,
                self.settings.write_timeout,
            )
        )

    async def shutdown(self) -> None:
        """Close every connection with 1001, wait briefly for them, then abort the rest.

        Then the background work their departures started (presence removals,
        unsubscribes) gets what is left of `shutdown_timeout` to finish before
        it is cancelled and awaited. The presence is closed, then the webhooks
        get at most `WEBHOOK_GRACE` of what is left to send their queue (the
        departures included), and the broker is closed last.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        everyone = list(self.connections)
        for conn in everyone:
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
        if everyone:
            await asyncio.wait(
                [asyncio.ensure_future(c.wait_closed()) for c in everyone], timeout=self.settings.shutdown_timeout
            )
        readers = [conn._reader for conn in everyone if conn._reader is not None]
        for conn in everyone:
            conn.abort()  # cancels each one's reader task, awaited here
        await asyncio.gather(*readers, return_exceptions=True)
        # One deadline for both waits, so that SIGTERM still ends the process within the timeout.
        await self.tasks.close(grace=max(0.1, deadline - loop.time()))
        await self.roster.close()
        await self.control.close()
        await self.presence.close()
        if self.observer is not None:
            # Last, so that the departures above are queued: a short grace to send them, then dropped and counted.
            await self.observer.close(grace=min(WEBHOOK_GRACE, max(0.1, deadline - loop.time())))
        await self.broker.close()

    # ---- the registry ---------------------------------------------------------

    def _register(self, conn: Connection) -> None:
        """`conn`'s WebSocket is open: it is live."""
        self.connections.add(conn)
        if conn.identity is not None:
            self.identities.setdefault(conn.identity, {})[conn] = None
        if self.observer is not None:
            self.observer.connected(conn.identity or ANONYMOUS)
        log.debug("conn.opened", extra={"conn": conn.id, "user": conn.identity, "remote": conn.remote})
        if self.hooks.on_connect is not None:
            self.hooks.connected(conn)  # last: the hook may close `conn` at once

    def _unregister(self, conn: Connection) -> None:
        """Remove `conn` from the hub and its rooms. Called once, by `_detach`."""
        self.connections.discard(conn)
        identity = conn.identity
        same = self.identities.get(identity) if identity is not None else None
        if identity is not None and same is not None:
            same.pop(conn, None)
            if not same:
                del self.identities[identity]
        code = conn.close_code or CloseCode.ABNORMAL_CLOSURE
        if self.observer is not None:
            self.observer.disconnected(conn.identity or ANONYMOUS, int(code))
        if self.hooks.on_disconnect is not None:
            self.hooks.disconnected(conn, int(code))  # before leaving: the hook still sees `conn.rooms`
        self.room_table.leave_all(conn)
        self.metrics.closes.labels(str(code)).inc()
        level = logging.DEBUG if code in _QUIET_CLOSES else logging.INFO
        log.log(
            level, "conn.closed", extra={"conn": conn.id, "user": conn.identity, "remote": conn.remote, "code": code}
        )

    def _slow_consumer(self, conn: Connection) -> None:
        """`conn`'s outbox overflowed: it is being dropped (counted and logged once)."""
        self.metrics.slow_dropped.inc()
        log.info(
            "conn.slow_consumer_dropped",
            extra={"conn": conn.id, "user": conn.identity, "remote": conn.remote, "queued_bytes": conn.queued_bytes},
        )

    # ---- membership -----------------------------------------------------------

    async def join(self, conn: Connection, room: str, since: int | None = None, info: bytes | None = None) -> None:
        """Add `conn` to `room` (see `Rooms.join`); `info`: its public info in this room's presence."""
        await self.room_table.join(conn, room, since, info=info)

    def leave(self, conn: Connection, room: str) -> bool:
        """Remove `conn` from `room`; False if it was not a member."""
        return self.room_table.leave(conn, room)

    # ---- publishing (the hot path starts here) ---------------------------------

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
        (docs/topics/fanout.md).
        """
        if origin is not None and self._last_sender.get(room) is not origin:
            self.room_table.sender_last(room, origin)
        sent = utc_timestamp()
        head, tail = new_message_parts(room, message, sender, sent)
        if not self.broker.synchronous:
            return self.tasks.spawn(self._publish(room, head, tail, message, sender, sent), report=False)
        try:
            offset = self.broker.publish_now(room, head, tail)
        except BrokerUnavailable as exc:
            raise EventError(ErrorCode.UNAVAILABLE, f"the message was not published: {exc}") from None
        self.metrics.published.inc()
        if self._message_observer is not None:
            self._message_observer(room, offset, sender, message, sent)
        return offset

    async def _publish(self, room: str, head: bytes, tail: bytes, message: Any, sender: str, sent: str) -> int:
        """Publish through a networked broker; `message`, `sender` and `sent` are for the `message` webhook."""
        try:
            offset = await self.broker.publish(room, head, tail)
        except BrokerUnavailable as exc:
            raise EventError(ErrorCode.UNAVAILABLE, f"the message was not published: {exc}") from None
        self.metrics.published.inc()
        if self._message_observer is not None:
            self._message_observer(room, offset, sender, message, sent)
        return offset

    # ---- dispatch of client events (the router's) -------------------------------

    def _answer_failure(self, conn: Connection, exc: Exception, event_id: EventId | None) -> None:
        """An `error` for a failed client event (see `Router.answer_failure`)."""
        self.router.answer_failure(conn, exc, event_id)

    def _answer_error(self, conn: Connection, code: ErrorCode, message: str, event_id: EventId | None) -> None:
        """An `error` event with `code`, counted."""
        self.router.answer_error(conn, code, message, event_id)


def _once(current: object, kind: str) -> None:
    if current is not None:
        raise ValueError(f"an {kind} hook is already registered")


WEBHOOK_GRACE = 2.0
"""Seconds at most the webhooks' queue gets at shutdown to be sent; what is left is dropped and counted."""

_QUIET_CLOSES = frozenset({1000, 1001, 1005, 1006})
