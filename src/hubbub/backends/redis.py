"""Redis backends: several nodes share rooms, offsets, history and presence (`--broker redis://...`).

`RedisBroker` carries messages on Redis pub/sub: its `RedisStore` publishes each one with one script
(offset, history, `PUBLISH`), and its `OrderedDelivery` fills gaps from history after the
subscription, watched with a heartbeat, reconnects. `redis_backends` makes the broker and its
presence on one client. A Redis that cannot be reached raises `BrokerUnavailable`. How and why:
docs/topics/backends.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hubbub.backends.broker import Broker, BrokerUnavailable, Sink
from hubbub.backends.history import History, Page
from hubbub.backends.ordering import OrderedDelivery
from hubbub.backends.presence import Presence
from hubbub.backends.redis_pool import Health, close_quickly, reach
from hubbub.backends.redis_presence import RedisPresence
from hubbub.backends.redis_store import RedisStore, StoredHistory

log = logging.getLogger("hubbub.redis")


class RedisBroker(StoredHistory, Broker, History):
    """Cross-node pub/sub, offsets and history on one Redis server."""

    def __init__(
        self,
        url: str,
        node_id: str,
        history_size: int = 1000,
        history_ttl: float = 3600.0,
        prefix: str = "hubbub:",
    ) -> None:
        self._url = url
        self._node = node_id
        self._store = RedisStore(url, history_size, history_ttl, prefix, fanout=True)
        self._order = OrderedDelivery(self._store, history_size)
        self._deliver = self._order.deliver
        self._redis = self._store.client
        self._room_start = len(prefix) + len("room:")
        self._control_channel = f"{prefix}control"
        self._beat_channel = f"{prefix}node:{node_id}"
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._beat_sent = 0.0
        self._beat_seen = 0.0
        self._ok = False
        self._closed = False

    # ---- life -------------------------------------------------------------

    @property
    def presence_client(self) -> tuple[aioredis.Redis, Health]:
        """The client (and its health) that this node's presence shares, so `/healthz` covers presence too."""
        return self._redis, self._store.health

    async def start(self, sink: Sink) -> None:
        """Connect and subscribe; `BrokerUnavailable` (and nothing left running) if Redis does not answer in time."""
        self._order.sink = sink
        try:
            await reach(self._url, "Redis", self._connect_pubsub)
        except BaseException:
            await close_quickly(self)
            raise
        self._reader = asyncio.get_running_loop().create_task(self._read_forever())

    async def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await self._pubsub.aclose()
        await self._store.close()

    @property
    def healthy(self) -> bool:
        """The subscription hears its heartbeat, and the last command on the pool succeeded."""
        return self._ok and time.monotonic() - self._beat_seen < 3.0 and self._store.health.ok

    # ---- the contract -----------------------------------------------------

    async def publish(self, room: str, head: bytes, tail: bytes) -> int:
        """Number, keep and `PUBLISH` in one script; publishes go out in call order, batched per round trip."""
        return await self._store.publish(room, head, tail)

    async def broadcast(self, room: str, event: bytes) -> None:
        with self._store.health.command():
            await self._redis.publish(self._store.channel(room), b"0:" + event)

    async def send_control(self, message: bytes) -> None:
        """PUBLISH on the cluster's control channel, which every node's subscription hears."""
        with self._store.health.command():
            await self._redis.publish(self._control_channel, message)

    async def subscribe(self, room: str) -> None:
        self._order.wanted.add(room)
        with self._store.health.command():
            await self._pubsub.subscribe(self._store.channel(room))
            self._order.last[room] = await self._store.last_offset(room)

    async def unsubscribe(self, room: str) -> None:
        self._order.wanted.discard(room)
        await asyncio.sleep(0)
        if self._order.forget(room):  # unless a join wanted it back meanwhile
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(self._store.channel(room))

    async def last_offset(self, room: str) -> int:
        return await self._store.last_offset(room)

    async def since(self, room: str, offset: int, limit: int) -> Page:
        return await self._store.since(room, offset, limit)

    async def latest(self, room: str, limit: int) -> Page:
        return await self._store.latest(room, limit)

    # ---- the subscription, watched ----------------------------------------

    async def _connect_pubsub(self) -> None:
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._redis.ping()  # the pool's connections too, not only the subscription's
        rooms = (self._store.channel(r) for r in self._order.wanted)
        await self._pubsub.subscribe(self._beat_channel, self._control_channel, *rooms)
        self._ok = True
        self._beat_seen = time.monotonic()

    async def _read_forever(self) -> None:
        """Read the subscription; when it breaks, reconnect with backoff and refill the gaps."""
        while not self._closed:
            try:
                await self._read_until_broken()
            except (RedisError, OSError, TimeoutError, RuntimeError, BrokerUnavailable) as exc:
                if self._ok:
                    log.warning("redis.subscription_lost", extra={"error": str(exc) or type(exc).__name__})
                self._ok = False
            await self._reconnect()

    async def _reconnect(self) -> None:
        attempt = 0
        last = self._order.last
        while not self._closed:
            await asyncio.sleep(random.uniform(0, min(5.0, 0.1 * 2**attempt)))  # full jitter
            attempt += 1
            try:
                if self._pubsub is not None:
                    with contextlib.suppress(RedisError, OSError, RuntimeError):
                        await self._pubsub.aclose()
                await self._connect_pubsub()
                for room in list(self._order.wanted):
                    latest = await self._store.last_offset(room)
                    if latest < last.get(room, 0):  # Redis came back empty, or the room expired
                        log.warning("redis.offsets_reset", extra={"room": room, "was": last[room]})
                        last[room] = latest
                    await self._order.fill_gap(room)
            except (RedisError, OSError, TimeoutError, BrokerUnavailable):
                continue
            log.info("redis.subscription_restored", extra={"rooms": len(self._order.wanted)})
            return

    async def _read_until_broken(self) -> None:
        pubsub = self._pubsub
        while True:
            now = time.monotonic()
            if now - self._beat_sent >= 1.0:
                self._beat_sent = now
                await self._redis.publish(self._beat_channel, b"beat")
                self._store.health.ok = True  # the pool answers
            if now - self._beat_seen > 3.0:
                raise TimeoutError("no heartbeat through the bus for 3 s")
            message = await pubsub.get_message(timeout=0.25)
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"].decode()
            if channel == self._beat_channel:
                self._beat_seen = time.monotonic()
                self._ok = True
                continue
            if channel == self._control_channel:
                if self.control_sink is not None:
                    self.control_sink(message["data"])
                continue
            offset_text, _, event = message["data"].partition(b":")
            await self._deliver(channel[self._room_start :], int(offset_text), event)


def redis_backends(
    url: str, node_id: str, history_size: int, history_ttl: float, presence_ttl: float
) -> tuple[RedisBroker, Presence]:
    """The broker (with history) and the presence of one node on `url`."""
    broker = RedisBroker(url, node_id, history_size, history_ttl)
    client, health = broker.presence_client
    return broker, RedisPresence(url, node_id, presence_ttl, client=client, health=health)
