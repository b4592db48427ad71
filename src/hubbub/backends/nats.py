"""NATS as the bus between nodes, with Redis as the store (`--broker nats://... --store redis://...`).

`NatsBroker` carries messages on NATS while offsets, history and presence stay in Redis (its
`RedisStore`); its `OrderedDelivery` fills a gap in a room's offsets from history, so members see one
order. NATS that does not answer within `STARTUP_TIMEOUT` at start-up raises `BrokerUnavailable`.
How: docs/topics/backends.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError

from hubbub.backends.broker import Broker, BrokerUnavailable, Sink
from hubbub.backends.history import History, Page
from hubbub.backends.ordering import OrderedDelivery
from hubbub.backends.redis_pool import Health, close_quickly, one_line, reach
from hubbub.backends.redis_store import RedisStore, StoredHistory

log = logging.getLogger("hubbub.nats")

CONTROL_SUBJECT = "hubbub.core.control"
"""Where control messages (`Broker.send_control`) travel: every node subscribes to it."""


class NatsBroker(StoredHistory, Broker, History):
    """Fan-out over NATS core subjects; offsets and history in Redis."""

    def __init__(
        self,
        nats_url: str,
        store_url: str,
        node_id: str,
        history_size: int,
        history_ttl: float,
        prefix: str = "hubbub:",
    ) -> None:
        """`prefix` starts every key of the Redis store, as with `RedisBroker`."""
        self._nats_url = nats_url
        self._store_url = store_url
        self._node = node_id
        # The script does not PUBLISH on Redis: NATS carries the messages.
        self._store = RedisStore(store_url, history_size, history_ttl, prefix, fanout=False)
        self._order = OrderedDelivery(self._store, history_size)
        self._deliver = self._order.deliver
        self._nc: Any = None
        self._subs: dict[str, Any] = {}
        self._beat_task: asyncio.Task[None] | None = None
        self._nats_error = ""
        self._beat_seen = 0.0
        self._ok = False
        self._closed = False

    def _subject(self, room: str) -> str:
        return f"hubbub.room.{room}"

    # ---- life -------------------------------------------------------------

    @property
    def presence_client(self) -> tuple[aioredis.Redis, Health]:
        """The store's client (and its health) that this node's presence shares, so `/healthz` covers it too."""
        return self._store.client, self._store.health

    async def start(self, sink: Sink) -> None:
        """Reach the Redis store, then NATS, each within `STARTUP_TIMEOUT`; else `BrokerUnavailable`, nothing left."""
        self._order.sink = sink
        try:
            await reach(self._store_url, "the Redis store", self._store.client.ping)
            await reach(self._nats_url, "NATS", self._connect_nats, why=lambda: self._nats_error)
        except BaseException:
            await close_quickly(self)
            raise
        self._ok = True
        self._beat_seen = time.monotonic()
        self._beat_task = asyncio.get_running_loop().create_task(self._beat())

    async def _connect_nats(self) -> None:
        nc = NatsClient()
        self._nc = nc  # before connecting: close() must reach a client that is still trying
        await nc.connect(
            self._nats_url,
            name=f"hubbub-{self._node}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,  # type: ignore[arg-type]  # annotated int, used as seconds by asyncio.sleep
            connect_timeout=2,
            error_cb=self._error,
            reconnected_cb=self._reconnected,
            disconnected_cb=self._disconnected,
            allow_reconnect=True,
        )
        await nc.subscribe(f"hubbub.node.{self._node}", cb=self._on_beat)
        await nc.subscribe(CONTROL_SUBJECT, cb=self._on_control)
        await nc.flush()  # the server has the subscriptions: a control message sent from now on reaches this node

    async def _error(self, exc: Exception) -> None:
        """nats-py reports every failed (re)connect attempt here; `_disconnected` already said the bus is down."""
        self._nats_error = one_line(exc)
        log.debug("nats.error", extra={"error": self._nats_error})

    async def close(self) -> None:
        self._closed = True
        if self._beat_task is not None:
            self._beat_task.cancel()
            await asyncio.gather(self._beat_task, return_exceptions=True)
        if self._nc is not None:
            nc, self._nc = self._nc, None
            with contextlib.suppress(Exception):  # a client that never connected cannot drain
                async with asyncio.timeout(2.0):
                    await (nc.drain() if nc.is_connected else nc.close())
        await self._store.close()

    @property
    def healthy(self) -> bool:
        """NATS carries the heartbeat, and the last command on the store succeeded."""
        return self._ok and time.monotonic() - self._beat_seen < 3.0 and self._store.health.ok

    # ---- the contract -----------------------------------------------------

    async def publish(self, room: str, head: bytes, tail: bytes) -> int:
        """Number and keep the message in Redis (one script), then send it on the room's subject."""
        offset = await self._store.publish(room, head, tail)
        event = head + str(offset).encode() + tail
        await self._send(self._subject(room), str(offset).encode() + b":" + event)
        return offset

    async def broadcast(self, room: str, event: bytes) -> None:
        await self._send(self._subject(room), b"0:" + event)

    async def send_control(self, message: bytes) -> None:
        """Publish on the control subject, which every node subscribes to."""
        await self._send(CONTROL_SUBJECT, message)

    async def _on_control(self, msg: Any) -> None:
        if self.control_sink is not None:
            self.control_sink(msg.data)

    async def _send(self, subject: str, data: bytes) -> None:
        if self._nc is None or not self._nc.is_connected:
            raise BrokerUnavailable("not connected to NATS")
        try:
            await self._nc.publish(subject, data)
        except NatsError as exc:
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from None

    async def subscribe(self, room: str) -> None:
        self._order.wanted.add(room)
        if room in self._subs:
            return
        try:
            self._subs[room] = await self._nc.subscribe(self._subject(room), cb=self._on_message)
            self._order.last[room] = await self._store.last_offset(room)
        except NatsError as exc:
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from None

    async def unsubscribe(self, room: str) -> None:
        self._order.wanted.discard(room)
        await asyncio.sleep(0)
        sub = self._subs.get(room)
        if sub is not None and self._order.forget(room):  # unless a join wanted it back meanwhile
            del self._subs[room]
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def last_offset(self, room: str) -> int:
        return await self._store.last_offset(room)

    async def since(self, room: str, offset: int, limit: int) -> Page:
        return await self._store.since(room, offset, limit)

    async def latest(self, room: str, limit: int) -> Page:
        return await self._store.latest(room, limit)

    # ---- the bus, watched -------------------------------------------------

    async def _on_message(self, msg: Any) -> None:
        room = msg.subject[len("hubbub.room.") :]
        offset_text, _, event = msg.data.partition(b":")
        try:
            await self._deliver(room, int(offset_text), event)
        except BrokerUnavailable as exc:
            log.warning("nats.gap_fill_failed", extra={"room": room, "error": str(exc)})

    async def _on_beat(self, msg: Any) -> None:
        self._beat_seen = time.monotonic()
        self._ok = True

    async def _beat(self) -> None:
        """Every second: a heartbeat through NATS, and a ping of the store (which `healthy` then reflects)."""
        while not self._closed:  # a cancellation a client library swallowed still ends it
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                if self._nc is not None and self._nc.is_connected:
                    await self._nc.publish(f"hubbub.node.{self._node}", b"beat")
            with contextlib.suppress(BrokerUnavailable), self._store.health.command():
                await self._store.client.ping()

    async def _disconnected(self) -> None:
        if self._ok and not self._closed:
            log.warning("nats.disconnected")
        self._ok = False

    async def _reconnected(self) -> None:
        log.info("nats.reconnected", extra={"rooms": len(self._order.wanted)})
        for room in list(self._order.wanted):
            with contextlib.suppress(BrokerUnavailable):
                await self._order.fill_gap(room)
