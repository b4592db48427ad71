"""Offsets and history in Redis: what numbers a room's messages and keeps them, whichever bus carries them.

`RedisStore` publishes with one script per message (the room's next offset, its history entry and,
when Redis pub/sub is the bus, the `PUBLISH`), reads history back for `since` and `latest`, and
records in its `Health` whether its last command succeeded. Both the Redis and the NATS brokers
hold one. How and why: docs/topics/backends.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hubbub.backends.broker import BrokerUnavailable
from hubbub.backends.history import History, HistoryFor, Page, page_from
from hubbub.backends.redis_pool import Health, connect_redis, one_line

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


class RedisStore(History):
    """A cluster's room offsets and history on one Redis server, and the client that reaches it."""

    def __init__(
        self,
        url: str,
        history_size: int,
        history_ttl: float,
        prefix: str,
        *,
        fanout: bool,
    ) -> None:
        """`fanout`: whether the publish script also `PUBLISH`es each message (Redis pub/sub is the bus)."""
        self.prefix = prefix
        self.history_size = history_size
        self._history_ttl = history_ttl
        self._fanout = 1 if fanout else 0
        self.client: aioredis.Redis = connect_redis(url)
        """The pool for every command but publishing; the node's presence shares it."""
        self.health = Health()
        """Whether the last command succeeded (part of the broker's `healthy`)."""
        # Publishing has a client of its own: a publish that timed out may have run, so it is not sent again.
        self._publisher: aioredis.Redis = connect_redis(url, retry_timeouts=False, max_connections=2)
        self._publish = self._publisher.register_script(_PUBLISH)
        self._queue: list[tuple[list[str], list[bytes | int], asyncio.Future[int]]] = []
        self._sender: asyncio.Task[None] | None = None

    def channel(self, room: str) -> str:
        """The pub/sub channel of `room` (the publish script's `PUBLISH` goes there)."""
        return f"{self.prefix}room:{room}"

    async def close(self) -> None:
        """Close both clients; idempotent."""
        for client in (self._publisher, self.client):
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()

    # ---- numbering and keeping --------------------------------------------

    def publish(self, room: str, head: bytes, tail: bytes) -> asyncio.Future[int]:
        """Queue the publish script; the future is the message's offset, or fails with `BrokerUnavailable`.

        All publishes of a node travel in one pipeline at a time on one
        connection, so Redis runs them in the order they were called (a
        client's messages keep their order) and a busy node pays one round trip
        per batch, not per message.
        """
        keys = [
            f"{self.prefix}offset:{room}",
            f"{self.prefix}history:{room}",
            self.channel(room),
            f"{self.prefix}rooms-seen",
        ]
        size, ttl = (self.history_size, self._history_ttl) if self.history_for is None else self.history_for(room)
        ttl_ms, now_ms = int(ttl * 1000), int(time.time() * 1000)
        args: list[bytes | int] = [head, tail, size, ttl_ms, now_ms, self._fanout]
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((keys, args, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_batches())
        return future

    async def _send_batches(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for keys, args, _ in batch:
                        await self._publish(keys=keys, args=args, client=pipe)
                    results = await pipe.execute()
            except (RedisError, OSError) as exc:
                self.health.ok = False
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(BrokerUnavailable(one_line(exc)))
                continue
            self.health.ok = True
            for (_, _, future), offset in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(int(offset))

    # ---- reading ----------------------------------------------------------

    async def last_offset(self, room: str) -> int:
        """The offset of the latest message published to `room` (0 for none)."""
        with self.health.command():
            value = await self.client.get(f"{self.prefix}offset:{room}")
        return int(value or 0)

    async def _entries(self, room: str) -> tuple[list[tuple[int, bytes]], int]:
        with self.health.command():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.lrange(f"{self.prefix}history:{room}", 0, -1)
                pipe.get(f"{self.prefix}offset:{room}")
                raw, latest = await pipe.execute()
        ttl = self._history_ttl if self.history_for is None else self.history_for(room)[1]
        oldest = time.time() * 1000 - ttl * 1000
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
        key = f"{self.prefix}offset:{room}"
        with self.health.command():
            async with self.client.pipeline(transaction=False) as pipe:
                for bit in _seen_bits(key):
                    pipe.getbit(f"{self.prefix}rooms-seen", bit)
                bits = await pipe.execute()
        return all(bits)

    async def latest(self, room: str, limit: int) -> Page:
        entries, latest = await self._entries(room)
        return page_from(entries, latest, None, limit)


def _seen_bits(offset_key: str) -> tuple[int, int]:
    """The two bits of the filter of names that the publish script sets for a room (the same arithmetic)."""
    digest = hashlib.sha1(offset_key.encode()).hexdigest()
    return int(digest[0:6], 16) % _SEEN_BITS, int(digest[6:12], 16) % _SEEN_BITS


class StoredHistory:
    """What a broker whose history its `RedisStore` keeps (Redis, NATS) says of rooms' own history."""

    _store: RedisStore

    @property
    def history_for(self) -> HistoryFor | None:
        """Rooms' own history size and TTL (namespaces): the store's, which keeps the history."""
        return self._store.history_for

    @history_for.setter
    def history_for(self, value: HistoryFor | None) -> None:
        self._store.history_for = value
