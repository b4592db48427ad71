"""Presence in Redis: every node's connections, expiring when their node goes silent.

`RedisPresence` keeps each (room, name)'s connections in Redis with an expiry its node refreshes;
every node sweeps, and each transition (a name's first or last connection, a room's first or last
name) is decided once for the cluster, inside Redis. How: docs/topics/backends.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hubbub.backends.broker import BrokerUnavailable
from hubbub.backends.presence import Change, Expired, NodeReport, Presence
from hubbub.backends.redis_pool import Health, abandon, connect_redis

log = logging.getLogger("hubbub.redis")

_PRESENCE_ADD = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
if redis.call('ZCARD', KEYS[1]) ~= 1 then return 0 end
if redis.call('SCARD', KEYS[2]) == 1 then return 2 end
return 1
"""
"""Returns a `Change`: 0 the name was there already, 1 its first connection, 2 also the room's first name."""

_PRESENCE_REMOVE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('SCARD', KEYS[2]) == 0 then return 2 end
return 1
"""
"""Returns a `Change`: 0 the name is still there, 1 its last connection went, 2 also the room's last name."""

_PRESENCE_SWEEP = """
local gone = {}
local prefix = ARGV[2]
for _, room in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local names_key = prefix .. 'names:' .. room
  local names = redis.call('SMEMBERS', names_key)
  local last = 0
  for _, name in ipairs(names) do
    local key = prefix .. 'conns:' .. room .. ':' .. name
    local removed = redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
    if redis.call('ZCARD', key) == 0 then
      redis.call('SREM', names_key, name)
      if removed > 0 then
        table.insert(gone, room); table.insert(gone, name); table.insert(gone, 0)
        last = #gone
      end
    end
  end
  if redis.call('SCARD', names_key) == 0 then
    redis.call('SREM', KEYS[1], room)
    if last > 0 then gone[last] = 1 end
  end
end
return gone
"""
"""Returns `room, name, vacated` triples: the names whose last entry expired, and whether the room is empty."""


class RedisPresence(Presence):
    """Presence entries in Redis with per-connection expiry, refreshed by their node."""

    def __init__(
        self,
        url: str,
        node_id: str,
        ttl: float = 30.0,
        prefix: str = "hubbub:presence:",
        *,
        client: aioredis.Redis | None = None,
        health: Health | None = None,
    ) -> None:
        """Presence on `url`, or on `client` (the broker's, which then owns and closes it) when given."""
        self._owns_client = client is None
        self._redis: aioredis.Redis = connect_redis(url) if client is None else client
        self._health = health or Health()
        self._node = node_id
        self._ttl = ttl
        self._prefix = prefix
        self._add = self._redis.register_script(_PRESENCE_ADD)
        self._remove = self._redis.register_script(_PRESENCE_REMOVE)
        self._sweep = self._redis.register_script(_PRESENCE_SWEEP)
        self._mine: dict[tuple[str, str, str], bytes | None] = {}
        """This node's entries, with the info each connection gave (refreshed whole, `_refresh`)."""
        self._task: asyncio.Task[None] | None = None
        self._on_expired: Expired | None = None
        self._closing = False
        """Set by `close`: the refresh loop ends at its next turn even if a cancellation was lost."""

    @property
    def healthy(self) -> bool:
        """False while the last command on the presence's client failed."""
        return self._health.ok

    def _conns(self, room: str, name: str) -> str:
        return f"{self._prefix}conns:{room}:{name}"

    def _info(self, room: str) -> str:
        """A room's public info by name: a hash that expires unless a node with info there refreshes it."""
        return f"{self._prefix}info:{room}"

    async def start(self, on_expired: Expired) -> None:
        self._on_expired = on_expired
        self._task = asyncio.get_running_loop().create_task(self._maintain())

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            # Cancelled until it ends: redis-py can turn a cancellation that lands in a read into its own
            # timeout error (a RedisError), which the loop survives; the flag ends it in any case.
            await abandon(self._task)
            await asyncio.gather(self._task, return_exceptions=True)  # ends at its next turn: `_closing`
            self._task = None
        for room, name, key in list(self._mine):
            with contextlib.suppress(BrokerUnavailable):
                await self.remove(room, name, key)
        if self._owns_client:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.aclose()

    async def add(self, room: str, name: str, key: str, info: bytes | None = None) -> Change:
        self._mine[(room, name, key)] = info
        keys = [self._conns(room, name), f"{self._prefix}names:{room}", f"{self._prefix}rooms"]
        with self._health.command():
            async with self._redis.pipeline(transaction=False) as pipe:
                await self._add(keys=keys, args=[key, time.time() + self._ttl, name, room], client=pipe)
                if info is not None:
                    pipe.hset(self._info(room), name, info)
                    pipe.pexpire(self._info(room), int(self._ttl * 2000))
                else:
                    pipe.hdel(self._info(room), name)
                change = (await pipe.execute())[0]
        return Change(int(change))

    async def remove(self, room: str, name: str, key: str) -> Change:
        self._mine.pop((room, name, key), None)
        keys = [self._conns(room, name), f"{self._prefix}names:{room}"]
        with self._health.command():
            change = Change(int(await self._remove(keys=keys, args=[key, name])))
            if change:
                await self._redis.hdel(self._info(room), name)
        return change

    async def infos(self, room: str) -> dict[str, bytes]:
        with self._health.command():
            found = await self._redis.hgetall(self._info(room))
        return {_text(name): info.encode() if isinstance(info, str) else bytes(info) for name, info in found.items()}

    async def members(self, room: str) -> list[tuple[str, int]]:
        with self._health.command():
            return await self._members(room)

    async def _members(self, room: str) -> list[tuple[str, int]]:
        now = time.time()
        names = await self._redis.smembers(f"{self._prefix}names:{room}")
        result = []
        for raw in names:
            name = raw.decode() if isinstance(raw, bytes) else raw
            count = await self._redis.zcount(self._conns(room, name), now, "+inf")
            if count:
                result.append((name, int(count)))
        return sorted(result)

    async def count(self, room: str) -> int:
        """One `SCARD` of the room's set of names."""
        with self._health.command():
            return int(await self._redis.scard(f"{self._prefix}names:{room}"))

    async def rooms(self, limit: int | None = None) -> list[tuple[str, int]]:
        """Two round trips: the set of rooms, then the size of each room's set of names. With `limit`
        and more rooms than that, the set is scanned (`SSCAN`, a few hundred at a time) only until
        `limit` are found: never the whole set in one reply."""
        key = f"{self._prefix}rooms"
        with self._health.command():
            if limit is not None and await self._redis.scard(key) > limit:
                found: set[str] = set()
                async for raw in self._redis.sscan_iter(key, count=500):
                    found.add(_text(raw))
                    if len(found) >= limit:
                        break
                rooms = sorted(found)
            else:
                rooms = sorted(_text(raw) for raw in await self._redis.smembers(key))
            async with self._redis.pipeline(transaction=False) as pipe:
                for room in rooms:
                    pipe.scard(f"{self._prefix}names:{room}")
                counts = await pipe.execute()
        return [(room, int(count)) for room, count in zip(rooms, counts, strict=True) if count]

    async def report_node(self, node: str, connections: int, rooms: int, ttl: float) -> None:
        """A key per node expiring after `ttl`, and the node in a sorted set scored by that expiry."""
        expiry = time.time() + ttl
        with self._health.command():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(f"{self._prefix}node:{node}", f"{connections}:{rooms}", px=int(ttl * 1000))
                pipe.zadd(f"{self._prefix}nodes", {node: expiry})
                pipe.zremrangebyscore(f"{self._prefix}nodes", "-inf", time.time())
                await pipe.execute()

    async def entries(self, room: str, limit: int) -> list[tuple[str, str]]:
        """One round trip for the names, one pipelined for their live connections."""
        now = time.time()
        with self._health.command():
            names = sorted(_text(raw) for raw in await self._redis.smembers(f"{self._prefix}names:{room}"))
            names = names[:limit]
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.zrangebyscore(self._conns(room, name), now, "+inf", start=0, num=limit)
                keys = await pipe.execute() if names else []
        found = sorted((name, _text(key)) for name, some in zip(names, keys, strict=True) for key in some)
        return found[:limit]

    async def report_stats(self, node: str, stats: bytes, ttl: float) -> None:
        """A key per node expiring after `ttl`, and the node in a sorted set scored by that expiry (as
        `report_node`)."""
        now = time.time()
        with self._health.command():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(f"{self._prefix}stats:{node}", stats, px=int(ttl * 1000))
                pipe.zadd(f"{self._prefix}stats", {node: now + ttl})
                pipe.zremrangebyscore(f"{self._prefix}stats", "-inf", now)
                await pipe.execute()

    async def node_stats(self) -> dict[str, bytes]:
        with self._health.command():
            live = [_text(raw) for raw in await self._redis.zrangebyscore(f"{self._prefix}stats", time.time(), "+inf")]
            values = await self._redis.mget([f"{self._prefix}stats:{name}" for name in live]) if live else []
        return {
            name: value.encode() if isinstance(value, str) else bytes(value)
            for name, value in zip(live, values, strict=True)
            if value is not None
        }

    async def nodes(self) -> list[NodeReport]:
        with self._health.command():
            live = await self._redis.zrangebyscore(f"{self._prefix}nodes", time.time(), "+inf")
            names = [_text(raw) for raw in live]
            values = await self._redis.mget([f"{self._prefix}node:{name}" for name in names]) if names else []
        found = []
        for name, value in zip(names, values, strict=True):
            if value is not None:
                connections, _, rooms = _text(value).partition(":")
                found.append((name, int(connections), int(rooms)))
        return sorted(found)

    async def _maintain(self) -> None:
        """Refresh this node's entries and sweep everyone's expired ones, four times per TTL.

        After a failure it tries again every second (at most), so that a Redis
        that comes back gets the node's entries, and `/healthz` its 200, soon.
        """
        period = self._ttl / 4
        failing = False
        while not self._closing:
            await asyncio.sleep(min(period, 1.0) if failing else period)
            try:
                with self._health.command():
                    await self._refresh()
            except BrokerUnavailable as exc:
                if not failing:
                    log.warning("presence.refresh_failed", extra={"error": str(exc)})
                failing = True
                continue
            if failing:
                log.info("presence.refresh_restored")
            failing = False

    async def _refresh(self) -> None:
        """Write this node's entries whole (so a Redis that lost them has them again), then sweep."""
        expiry = time.time() + self._ttl
        async with self._redis.pipeline(transaction=False) as pipe:
            for (room, name, key), info in list(self._mine.items()):
                pipe.zadd(self._conns(room, name), {key: expiry})
                pipe.sadd(f"{self._prefix}names:{room}", name)
                pipe.sadd(f"{self._prefix}rooms", room)
                if info is not None:
                    pipe.hset(self._info(room), name, info)
                    pipe.pexpire(self._info(room), int(self._ttl * 2000))
            await pipe.execute()
        gone = await self._sweep(keys=[f"{self._prefix}rooms"], args=[time.time(), self._prefix])
        for i in range(0, len(gone), 3):
            if self._on_expired is not None:
                self._on_expired(bytes(gone[i]).decode(), bytes(gone[i + 1]).decode(), int(gone[i + 2]) == 1)


def _text(raw: object) -> str:
    """A value from Redis as text (the client answers bytes)."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)
