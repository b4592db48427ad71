"""In-memory backends, the default: broker, history and presence for a single node.

`MemoryBroker` and `MemoryPresence` keep everything in this process, so they cannot span nodes:
run one server, or use Redis. History is bounded by `history_size`, `history_ttl` and
`history_max_bytes`; a room reclaimed and used again numbers its messages above every offset it
had. How: docs/topics/backends.md.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque

from hubbub.backends.broker import Broker, Sink
from hubbub.backends.history import History, Page, page_from
from hubbub.backends.presence import Change, Expired, NodeReport, Presence
from hubbub.protocol.envelope import splice_offset

ENTRY_OVERHEAD = 160
"""Bytes a held message costs beyond its event (tuple, time, offset, bytes header, deque slot): measured."""
ROOM_OVERHEAD = 1024
"""Bytes a room holding history costs beyond its messages (its state, deque and name): measured."""
_FLOOR_SLOTS = 4096
_FLOOR_MASK = _FLOOR_SLOTS - 1


class _Room:
    """One room's state: its offset counter, held messages, and whether this node is subscribed."""

    __slots__ = ("base", "entries", "name", "offset", "queued", "reclaimed", "size", "subscribed", "ttl")

    def __init__(self, name: str, offset: int, size: int, ttl: float) -> None:
        self.name = name
        self.size = size
        """Messages this room keeps (`history_size`, its namespace's or the broker's)."""
        self.ttl = ttl
        """Seconds a message of this room is kept (`history_ttl`, its namespace's or the broker's)."""
        self.base = offset
        """Where this life of the room started numbering (its floor)."""
        self.offset = offset
        """The offset of the room's latest message (its floor, before its first)."""
        self.entries: deque[tuple[float, int, bytes]] = deque()
        """`(time published, offset, event)`, oldest first."""
        self.subscribed = False
        self.queued = False
        """Whether the room has an entry in the broker's queue of oldest messages."""
        self.reclaimed = False


class MemoryBroker(Broker, History):
    """Per-room counters, history and subscriptions in this process, history bounded in total bytes."""

    synchronous = True

    def __init__(
        self, history_size: int = 1000, history_ttl: float = 3600.0, history_max_bytes: int = 67_108_864
    ) -> None:
        self._sink: Sink | None = None
        self._rooms: dict[str, _Room] = {}
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._max_bytes = history_max_bytes
        self._held = 0
        self._oldest: list[tuple[float, int, _Room]] = []
        """A heap of rooms by when their oldest held message expires (never later than it), for expiry and
        eviction: with one TTL for every room, the order of their oldest messages."""
        self._tickets = itertools.count()
        self._floors = [0] * _FLOOR_SLOTS
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def held_bytes(self) -> int:
        """What history holds now, as counted against `history_max_bytes`."""
        return self._held

    @property
    def room_count(self) -> int:
        """Rooms with state: subscribed, or holding history."""
        return len(self._rooms)

    async def start(self, sink: Sink) -> None:
        self._sink = sink
        if (self._history_size or self.history_for is not None) and self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        self._sink = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None

    async def publish(self, room: str, head: bytes, tail: bytes) -> int:
        return self.publish_now(room, head, tail)

    def publish_now(self, room: str, head: bytes, tail: bytes) -> int:
        """Number, keep and deliver a message: the hot path, once per message (not per recipient).

        What it costs beyond the old per-room history: adding to a byte count,
        and, only when a room had no history, queueing it for eviction.
        """
        state = self._rooms.get(room)
        if state is None:
            state = self._open(room)
        offset = state.offset = state.offset + 1
        event = splice_offset(head, offset, tail)
        if state.size:
            entries = state.entries
            now = time.monotonic()
            if not entries:
                self._held += ROOM_OVERHEAD
                if not state.queued:
                    self._queue(state, now + state.ttl)
            entries.append((now, offset, event))
            self._held += len(event) + ENTRY_OVERHEAD
            if len(entries) > state.size:
                self._held -= len(entries.popleft()[2]) + ENTRY_OVERHEAD
            if self._held > self._max_bytes:
                self._evict()
        elif not state.subscribed:
            self._reclaim(state)
        if state.subscribed and self._sink is not None:
            self._sink(room, offset, event)
        return offset

    async def broadcast(self, room: str, event: bytes) -> None:
        state = self._rooms.get(room)
        if self._sink is not None and state is not None and state.subscribed:
            self._sink(room, 0, event)

    async def subscribe(self, room: str) -> None:
        state = self._rooms.get(room)
        if state is None:
            state = self._open(room)
        state.subscribed = True

    async def unsubscribe(self, room: str) -> None:
        state = self._rooms.get(room)
        if state is not None:
            state.subscribed = False
            if not state.entries:
                self._reclaim(state)

    async def last_offset(self, room: str) -> int:
        state = self._rooms.get(room)
        return state.offset if state is not None else self._floor(room)

    async def since(self, room: str, offset: int, limit: int) -> Page:
        return page_from(self._entries(room), await self.last_offset(room), offset, limit)

    async def latest(self, room: str, limit: int) -> Page:
        return page_from(self._entries(room), await self.last_offset(room), None, limit)

    def _entries(self, room: str) -> list[tuple[int, bytes]]:
        state = self._rooms.get(room)
        if state is None or not state.entries:
            return []
        entries, oldest = state.entries, time.monotonic() - state.ttl
        while entries and entries[0][0] < oldest:  # the sweep may not have come by yet
            self._drop_oldest(state)
        return [(offset, event) for _, offset, event in entries]

    # ---- rooms' lives -------------------------------------------------------

    def _open(self, room: str) -> _Room:
        size, ttl = (self._history_size, self._history_ttl) if self.history_for is None else self.history_for(room)
        state = self._rooms[room] = _Room(room, self._floor(room), size, ttl)
        return state

    def _slots(self, room: str) -> tuple[int, int]:
        h = hash(room)
        return h & _FLOOR_MASK, (h >> 12) & _FLOOR_MASK

    def _floor(self, room: str) -> int:
        """Where `room` starts numbering: above every offset it had before it was reclaimed (0 if never)."""
        a, b = self._slots(room)
        return min(self._floors[a], self._floors[b])

    def _reclaim(self, state: _Room) -> None:
        """Forget a room with no subscriber and no history, raising its floor past its last offset.

        A life in which nothing was published leaves the floor as it was: no
        client can hold an offset of it.
        """
        del self._rooms[state.name]
        state.reclaimed = True
        if state.offset > state.base:
            for slot in self._slots(state.name):
                self._floors[slot] = max(self._floors[slot], state.offset + 1)

    # ---- bounds ---------------------------------------------------------------

    def _queue(self, state: _Room, oldest: float) -> None:
        heapq.heappush(self._oldest, (oldest, next(self._tickets), state))
        state.queued = True

    def _drop_oldest(self, state: _Room) -> None:
        _, _, event = state.entries.popleft()
        self._held -= len(event) + ENTRY_OVERHEAD
        if not state.entries:
            self._held -= ROOM_OVERHEAD

    def _next_due(self) -> _Room | None:
        """Pop the room queued first; return it if its oldest message is the one it was queued for.

        A room's place in the queue is never later than its oldest message
        (messages only leave from the front), so a room found to be queued
        too early is queued again where it belongs, and one that was
        reclaimed or emptied meanwhile is settled.
        """
        queued_at, _, state = heapq.heappop(self._oldest)
        state.queued = False
        if state.reclaimed:
            return None
        if not state.entries:
            self._settle(state)
            return None
        if state.entries[0][0] + state.ttl > queued_at:
            self._queue(state, state.entries[0][0] + state.ttl)
            return None
        return state

    def _settle(self, state: _Room) -> None:
        """After messages left a room: queue it by its new oldest one, or reclaim it if nothing holds it."""
        if state.entries:
            if not state.queued:
                self._queue(state, state.entries[0][0] + state.ttl)
        elif not state.subscribed and not state.reclaimed:
            self._reclaim(state)

    def _evict(self) -> None:
        """Drop the oldest messages of all rooms until history fits in `history_max_bytes`."""
        while self._held > self._max_bytes and self._oldest:
            state = self._next_due()
            if state is not None:
                self._drop_oldest(state)
                self._settle(state)

    def expire(self, now: float | None = None) -> None:
        """Drop every message older than its room's `history_ttl` and reclaim the rooms this leaves empty."""
        now = time.monotonic() if now is None else now
        while self._oldest and self._oldest[0][0] < now:
            state = self._next_due()
            if state is not None:
                entries, cutoff = state.entries, now - state.ttl
                while entries and entries[0][0] < cutoff:
                    self._drop_oldest(state)
                self._settle(state)

    async def _sweep_forever(self) -> None:
        """Enforce the TTL without waiting for a read: a few times per TTL, at least once a second."""
        period = max(0.01, min(1.0, self._history_ttl / 4))
        if self.history_for is not None:
            period = 0.25  # rooms' TTLs differ: a quarter second late at most, whatever the shortest
        while True:
            await asyncio.sleep(period)
            self.expire()


class MemoryPresence(Presence):
    """Presence of this node's connections; nothing expires because nothing is remote."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, set[str]]] = {}
        self._nodes: dict[str, tuple[float, int, int]] = {}
        self._info: dict[str, dict[str, bytes]] = {}
        """Each room's public info by name, for the names that have one."""
        self._stats: dict[str, tuple[float, bytes]] = {}

    async def start(self, on_expired: Expired) -> None:
        return None

    async def close(self) -> None:
        self._rooms.clear()
        self._info.clear()

    async def add(self, room: str, name: str, key: str, info: bytes | None = None) -> Change:
        names = self._rooms.setdefault(room, {})
        keys = names.setdefault(name, set())
        keys.add(key)
        if info is not None:
            self._info.setdefault(room, {})[name] = info
        else:
            self._forget_info(room, name)
        if len(keys) != 1:
            return Change.NONE
        return Change.ROOM if len(names) == 1 else Change.MEMBER

    def _forget_info(self, room: str, name: str) -> None:
        infos = self._info.get(room)
        if infos is not None and infos.pop(name, None) is not None and not infos:
            del self._info[room]

    async def infos(self, room: str) -> dict[str, bytes]:
        return dict(self._info.get(room, {}))

    async def remove(self, room: str, name: str, key: str) -> Change:
        names = self._rooms.get(room)
        keys = names.get(name) if names else None
        if names is None or keys is None or key not in keys:
            return Change.NONE
        keys.discard(key)
        if keys:
            return Change.NONE
        del names[name]
        self._forget_info(room, name)
        if names:
            return Change.MEMBER
        del self._rooms[room]
        return Change.ROOM

    async def members(self, room: str) -> list[tuple[str, int]]:
        return sorted((name, len(keys)) for name, keys in self._rooms.get(room, {}).items())

    async def count(self, room: str) -> int:
        return len(self._rooms.get(room, ()))

    async def rooms(self, limit: int | None = None) -> list[tuple[str, int]]:
        if limit is not None and len(self._rooms) > limit:
            return [(room, len(self._rooms[room])) for room in heapq.nsmallest(limit, self._rooms)]
        return sorted((room, len(names)) for room, names in self._rooms.items())

    async def report_node(self, node: str, connections: int, rooms: int, ttl: float) -> None:
        self._nodes[node] = (time.monotonic() + ttl, connections, rooms)

    async def entries(self, room: str, limit: int) -> list[tuple[str, str]]:
        found = sorted((name, key) for name, keys in self._rooms.get(room, {}).items() for key in keys)
        return found[:limit]

    async def report_stats(self, node: str, stats: bytes, ttl: float) -> None:
        self._stats[node] = (time.monotonic() + ttl, stats)

    async def node_stats(self) -> dict[str, bytes]:
        now = time.monotonic()
        return {node: stats for node, (until, stats) in self._stats.items() if until > now}

    async def nodes(self) -> list[NodeReport]:
        now = time.monotonic()
        for node in [node for node, (until, _, _) in self._nodes.items() if until <= now]:
            del self._nodes[node]
        return sorted((node, connections, rooms) for node, (_, connections, rooms) in self._nodes.items())
