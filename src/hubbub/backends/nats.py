"""NATS as the bus between nodes, with Redis as the store (`--broker nats://... --store redis://...`).

`NatsBroker` carries messages on NATS while offsets, history and presence stay in Redis; a node
that sees a gap in a room's offsets fills it from history, so members see one order. NATS that
does not answer within `STARTUP_TIMEOUT` at start-up raises `BrokerUnavailable`. How:
docs/topics/backends.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError

from hubbub.backends.broker import BrokerUnavailable, Sink
from hubbub.backends.redis import RedisBroker
from hubbub.backends.redis_pool import close_quickly, one_line

log = logging.getLogger("hubbub.nats")

CONTROL_SUBJECT = "hubbub.core.control"
"""Where control messages (`Broker.send_control`) travel: every node subscribes to it."""


class NatsBroker(RedisBroker):
    """Fan-out over NATS core subjects; offsets and history in Redis."""

    redis_fanout = False

    def __init__(self, nats_url: str, store_url: str, node_id: str, history_size: int, history_ttl: float) -> None:
        super().__init__(store_url, node_id, history_size, history_ttl)
        self._nats_url = nats_url
        self._nc: Any = None
        self._subs: dict[str, Any] = {}
        self._beat_task: asyncio.Task[None] | None = None
        self._nats_error = ""

    def _subject(self, room: str) -> str:
        return f"hubbub.room.{room}"

    async def start(self, sink: Sink) -> None:
        """Reach the Redis store, then NATS, each within `STARTUP_TIMEOUT`; else `BrokerUnavailable`, nothing left."""
        self._sink = sink
        try:
            await self._reach(self._url, "the Redis store", self._redis.ping)
            await self._reach(self._nats_url, "NATS", self._connect_nats, last_error="_nats_error")
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
        await super().close()

    async def publish(self, room: str, head: bytes, tail: bytes) -> int:
        offset = await super().publish(room, head, tail)  # offset and history, in Redis
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
        self._wanted.add(room)
        if room in self._subs:
            return
        try:
            self._subs[room] = await self._nc.subscribe(self._subject(room), cb=self._on_message)
            self._last[room] = await self.last_offset(room)
        except NatsError as exc:
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from None

    async def unsubscribe(self, room: str) -> None:
        self._wanted.discard(room)
        await asyncio.sleep(0)
        sub = self._subs.get(room)
        if room not in self._wanted and sub is not None:
            del self._subs[room]
            self._last.pop(room, None)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

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
            with contextlib.suppress(BrokerUnavailable), self._health.command():
                await self._redis.ping()

    async def _disconnected(self) -> None:
        if self._ok and not self._closed:
            log.warning("nats.disconnected")
        self._ok = False

    async def _reconnected(self) -> None:
        log.info("nats.reconnected", extra={"rooms": len(self._wanted)})
        for room in list(self._wanted):
            with contextlib.suppress(BrokerUnavailable):
                await self._fill_gap(room)
