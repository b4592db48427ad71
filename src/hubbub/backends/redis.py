"""Redis backends: several nodes share rooms, offsets, history and presence (`--broker redis://...`).

`RedisBroker` publishes with one script per message (offset, history, `PUBLISH`), watches its
subscription with a heartbeat and fills gaps from history after a reconnect; `redis_backends` makes
the broker and its presence on one client. A Redis that cannot be reached raises
`BrokerUnavailable`. How and why: docs/topics/backends.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hubbub.backends.broker import Broker, BrokerUnavailable, Sink
from hubbub.backends.history import History, Page, page_from
from hubbub.backends.presence import Presence
from hubbub.backends.redis_pool import STARTUP_TIMEOUT, Health, abandon, close_quickly, connect_redis, one_line
from hubbub.backends.redis_presence import RedisPresence
from hubbub.protocol.redaction import redact

log = logging.getLogger("hubbub.redis")

_SEEN_BITS = 1 << 22
"""Size of the filter of room names that have lived (a bitmap of 512 KiB)."""

_PUBLISH = f"""
local offset = redis.call('INCR', KEYS[1])
if offset == 1 then
  local h = redis.sha1hex(KEYS[1])
  local a = redis.call('SETBIT', KEYS[4], tonumber(string.sub(h, 1, 6), 16) % {_SEEN_BITS}, 1)
  local b = redis.call('SETBIT', KEYS[4], tonumber(string.sub(h, 7, 12), 16) % {_SEEN_BITS}, 1)
  if a == 1 and b == 1 then
    local now = redis.call('TIME')
    offset = tonumber(now[1]) * 1000000 + tonumber(now[2]) + 1
    redis.call('SET', KEYS[1], string.format('%d', offset))
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local text = string.format('%d', offset)
local event = ARGV[1] .. text .. ARGV[2]
local size = tonumber(ARGV[3])
if size > 0 then
  redis.call('RPUSH', KEYS[2], ARGV[5] .. ':' .. text .. ':' .. event)
  redis.call('LTRIM', KEYS[2], -size, -1)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
if ARGV[6] == '1' then redis.call('PUBLISH', KEYS[3], text .. ':' .. event) end
return offset
"""


class RedisBroker(Broker, History):
    """Cross-node pub/sub, offsets and history on one Redis server."""

    redis_fanout = True
    """Whether messages travel through Redis pub/sub (False when another bus carries them)."""

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
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._prefix = prefix
        self._redis: aioredis.Redis = connect_redis(url)
        # Publishing has a client of its own: a publish that timed out may have run, so it is not sent again.
        self._publisher: aioredis.Redis = connect_redis(url, retry_timeouts=False, max_connections=2)
        self._publish = self._publisher.register_script(_PUBLISH)
        self._health = Health()
        self._sink: Sink | None = None
        self._wanted: set[str] = set()
        self._last: dict[str, int] = {}
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._queue: list[tuple[list[str], list[bytes | int], asyncio.Future[int]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._beat_sent = 0.0
        self._beat_seen = 0.0
        self._ok = False
        self._closed = False

    # ---- keys -------------------------------------------------------------

    def _channel(self, room: str) -> str:
        return f"{self._prefix}room:{room}"

    def _room_of(self, channel: str) -> str:
        return channel[len(self._prefix) + len("room:") :]

    @property
    def _control_channel(self) -> str:
        return f"{self._prefix}control"

    @property
    def _beat_channel(self) -> str:
        return f"{self._prefix}node:{self._node}"

    # ---- life -------------------------------------------------------------

    @property
    def presence_client(self) -> tuple[aioredis.Redis, Health]:
        """The client (and its health) that this node's presence shares, so `/healthz` covers presence too."""
        return self._redis, self._health

    async def start(self, sink: Sink) -> None:
        """Connect and subscribe; `BrokerUnavailable` (and nothing left running) if Redis does not answer in time."""
        self._sink = sink
        try:
            await self._reach(self._url, "Redis", self._connect_pubsub)
        except BaseException:
            await close_quickly(self)
            raise
        self._reader = asyncio.get_running_loop().create_task(self._read_forever())

    async def _reach(self, url: str, what: str, connect: Callable[[], Awaitable[object]], last_error: str = "") -> None:
        """Await `connect()` for at most `STARTUP_TIMEOUT`; a failure is one line naming what was not reached.

        `last_error` names an attribute where a client that retries by itself
        (nats-py) left its last error, to say why it was still trying.
        """
        attempt = asyncio.ensure_future(connect())
        try:
            done, _ = await asyncio.wait({attempt}, timeout=STARTUP_TIMEOUT)
        except asyncio.CancelledError:  # a signal during start-up
            await abandon(attempt)
            raise
        if not done:
            await abandon(attempt)
            why = getattr(self, last_error, "") if last_error else ""
            detail = f" (last error: {why})" if why else ""
            raise BrokerUnavailable(
                f"cannot reach {what} at {redact(url)}: no answer within {STARTUP_TIMEOUT:g} s{detail}"
            ) from None
        exc = attempt.exception()
        if isinstance(exc, Exception):  # whatever the client raises: refused, unknown host, bad password, ...
            raise BrokerUnavailable(f"cannot reach {what} at {redact(url)}: {one_line(exc)}") from None
        if exc is not None:
            raise exc

    async def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError, RuntimeError):
                await self._pubsub.aclose()
        for client in (self._publisher, self._redis):
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    @property
    def healthy(self) -> bool:
        """The subscription hears its heartbeat, and the last command on the pool succeeded."""
        return self._ok and time.monotonic() - self._beat_seen < 3.0 and self._health.ok

    # ---- the contract -----------------------------------------------------

    async def publish(self, room: str, head: bytes, tail: bytes) -> int:
        """Queue the publish script; publishes go out in call order, batched per round trip.

        All publishes of a node travel in one pipeline at a time on one
        connection, so Redis runs them in the order they were called (a
        client's messages keep their order) and a busy node pays one round trip
        per batch, not per message.
        """
        keys = [
            f"{self._prefix}offset:{room}",
            f"{self._prefix}history:{room}",
            self._channel(room),
            f"{self._prefix}rooms-seen",
        ]
        ttl_ms, now_ms = int(self._history_ttl * 1000), int(time.time() * 1000)
        args: list[bytes | int] = [head, tail, self._history_size, ttl_ms, now_ms, 1 if self.redis_fanout else 0]
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, args, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_batches())
        return await future

    async def _send_batches(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for keys, args, _ in batch:
                        await self._publish(keys=keys, args=args, client=pipe)
                    results = await pipe.execute()
            except (RedisError, OSError) as exc:
                self._health.ok = False
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(BrokerUnavailable(one_line(exc)))
                continue
            self._health.ok = True
            for (_, _, future), offset in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(int(offset))

    async def broadcast(self, room: str, event: bytes) -> None:
        with self._health.command():
            await self._redis.publish(self._channel(room), b"0:" + event)

    async def send_control(self, message: bytes) -> None:
        """PUBLISH on the cluster's control channel, which every node's subscription hears."""
        with self._health.command():
            await self._redis.publish(self._control_channel, message)

    async def subscribe(self, room: str) -> None:
        self._wanted.add(room)
        with self._health.command():
            await self._pubsub.subscribe(self._channel(room))
            self._last[room] = await self.last_offset(room)

    async def unsubscribe(self, room: str) -> None:
        self._wanted.discard(room)
        await asyncio.sleep(0)
        if room not in self._wanted:  # a join may have wanted it back meanwhile
            self._last.pop(room, None)
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(self._channel(room))

    async def last_offset(self, room: str) -> int:
        with self._health.command():
            value = await self._redis.get(f"{self._prefix}offset:{room}")
        return int(value or 0)

    async def _entries(self, room: str) -> tuple[list[tuple[int, bytes]], int]:
        with self._health.command():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.lrange(f"{self._prefix}history:{room}", 0, -1)
                pipe.get(f"{self._prefix}offset:{room}")
                raw, latest = await pipe.execute()
        oldest = time.time() * 1000 - self._history_ttl * 1000
        entries = []
        for item in raw:
            sent, offset, event = item.split(b":", 2)
            if int(sent) >= oldest:
                entries.append((int(offset), event))
        return entries, int(latest or 0)

    async def since(self, room: str, offset: int, limit: int) -> Page:
        entries, latest = await self._entries(room)
        if latest == 0 and offset == 0 and await self._lived(room):
            return Page(0, [], False)  # it expired: whatever it said after 0 is gone
        return page_from(entries, latest, offset, limit)

    async def _lived(self, room: str) -> bool:
        """Whether a room with no offset now may have had one (the publish script's filter of names)."""
        key = f"{self._prefix}offset:{room}"
        with self._health.command():
            async with self._redis.pipeline(transaction=False) as pipe:
                for bit in _seen_bits(key):
                    pipe.getbit(f"{self._prefix}rooms-seen", bit)
                bits = await pipe.execute()
        return all(bits)

    async def latest(self, room: str, limit: int) -> Page:
        entries, latest = await self._entries(room)
        return page_from(entries, latest, None, limit)

    # ---- the subscription, watched ----------------------------------------

    async def _connect_pubsub(self) -> None:
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._redis.ping()  # the pool's connections too, not only the subscription's
        channels = (self._beat_channel, self._control_channel, *(self._channel(r) for r in self._wanted))
        await self._pubsub.subscribe(*channels)
        self._ok = True
        self._beat_seen = time.monotonic()

    async def _read_forever(self) -> None:
        """Read the subscription; when it breaks, reconnect with backoff and refill the gaps."""
        while not self._closed:
            try:
                await self._read_until_broken()
            except (RedisError, OSError, TimeoutError, RuntimeError) as exc:
                if self._ok:
                    log.warning("redis.subscription_lost", extra={"error": str(exc) or type(exc).__name__})
                self._ok = False
            await self._reconnect()

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closed:
            await asyncio.sleep(random.uniform(0, min(5.0, 0.1 * 2**attempt)))  # full jitter
            attempt += 1
            try:
                if self._pubsub is not None:
                    with contextlib.suppress(RedisError, OSError, RuntimeError):
                        await self._pubsub.aclose()
                await self._connect_pubsub()
                for room in list(self._wanted):
                    latest = await self.last_offset(room)
                    if latest < self._last.get(room, 0):  # Redis came back empty, or the room expired
                        log.warning("redis.offsets_reset", extra={"room": room, "was": self._last[room]})
                        self._last[room] = latest
                    await self._fill_gap(room)
            except (RedisError, OSError, TimeoutError, BrokerUnavailable):
                continue
            log.info("redis.subscription_restored", extra={"rooms": len(self._wanted)})
            return

    async def _read_until_broken(self) -> None:
        pubsub = self._pubsub
        while True:
            now = time.monotonic()
            if now - self._beat_sent >= 1.0:
                self._beat_sent = now
                await self._redis.publish(self._beat_channel, b"beat")
                self._health.ok = True  # the pool answers
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
            await self._deliver(self._room_of(channel), int(offset_text), event)

    async def _deliver(self, room: str, offset: int, event: bytes) -> None:
        """Hand a message to the sink in order: fill a gap from history first, drop repeats."""
        if self._sink is None or room not in self._wanted:
            return
        if offset == 0:
            self._sink(room, 0, event)
            return
        last = self._last.get(room, 0)
        if offset <= last:
            return
        if offset > last + 1:
            await self._fill_gap(room, until=offset - 1)
        self._last[room] = offset
        self._sink(room, offset, event)

    async def _fill_gap(self, room: str, until: int | None = None) -> None:
        """Deliver from history what this node missed of `room` (after a reconnect, or a gap)."""
        last = self._last.get(room)
        if last is None or self._sink is None:
            return
        page = await self.since(room, last, self._history_size or 1)
        for offset, event in page.messages:
            if until is not None and offset > until:
                break
            if offset > self._last.get(room, 0):
                self._last[room] = offset
                self._sink(room, offset, event)


def _seen_bits(offset_key: str) -> tuple[int, int]:
    """The two bits of the filter of names that the publish script sets for a room (the same arithmetic)."""
    digest = hashlib.sha1(offset_key.encode()).hexdigest()
    return int(digest[0:6], 16) % _SEEN_BITS, int(digest[6:12], 16) % _SEEN_BITS


def redis_backends(
    url: str, node_id: str, history_size: int, history_ttl: float, presence_ttl: float
) -> tuple[RedisBroker, Presence]:
    """The broker (with history) and the presence of one node on `url`."""
    broker = RedisBroker(url, node_id, history_size, history_ttl)
    client, health = broker.presence_client
    return broker, RedisPresence(url, node_id, presence_ttl, client=client, health=health)
