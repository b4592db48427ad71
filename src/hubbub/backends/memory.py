"""In-memory backends: the default, for a single node.

Everything lives in this process, so they cannot span nodes: run one server,
or use the Redis backend. Delivery is synchronous: `publish` hands the message
to the sink before it returns, which keeps a single node's fan-out free of any
extra hop. History is kept per room, bounded by size and age.
"""

from __future__ import annotations

import time
from collections import deque

from hubbub.broker import Broker, Sink
from hubbub.history import History, Page, page_from
from hubbub.presence import Expired, Presence
from hubbub.protocol import splice_offset


class MemoryBroker(Broker, History):
    """Per-room counters, history and subscriptions in this process."""

    synchronous = True

    def __init__(self, history_size: int = 1000, history_ttl: float = 3600.0) -> None:
        self._sink: Sink | None = None
        self._offsets: dict[str, int] = {}
        self._history: dict[str, deque[tuple[float, int, bytes]]] = {}
        self._history_size = history_size
        self._history_ttl = history_ttl
        self._subscribed: set[str] = set()

    async def start(self, sink: Sink) -> None:
        self._sink = sink

    async def close(self) -> None:
        self._sink = None

    async def publish(self, room: str, head: bytes, tail: bytes) -> int:
        return self.publish_now(room, head, tail)

    def publish_now(self, room: str, head: bytes, tail: bytes) -> int:
        offset = self._offsets.get(room, 0) + 1
        self._offsets[room] = offset
        event = splice_offset(head, offset, tail)
        if self._history_size:
            held = self._history.get(room)
            if held is None:
                held = self._history[room] = deque(maxlen=self._history_size)
            held.append((time.monotonic(), offset, event))
        if self._sink is not None and room in self._subscribed:
            self._sink(room, offset, event)
        return offset

    async def broadcast(self, room: str, event: bytes) -> None:
        if self._sink is not None and room in self._subscribed:
            self._sink(room, 0, event)

    async def subscribe(self, room: str) -> None:
        self._subscribed.add(room)

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    async def last_offset(self, room: str) -> int:
        return self._offsets.get(room, 0)

    def _entries(self, room: str) -> list[tuple[int, bytes]]:
        held = self._history.get(room)
        if not held:
            return []
        oldest = time.monotonic() - self._history_ttl
        while held and held[0][0] < oldest:
            held.popleft()
        return [(offset, event) for _, offset, event in held]

    async def since(self, room: str, offset: int, limit: int) -> Page:
        return page_from(self._entries(room), self._offsets.get(room, 0), offset, limit)

    async def latest(self, room: str, limit: int) -> Page:
        return page_from(self._entries(room), self._offsets.get(room, 0), None, limit)


class MemoryPresence(Presence):
    """Presence of this node's connections; nothing expires because nothing is remote."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, set[str]]] = {}

    async def start(self, on_expired: Expired) -> None:
        return None

    async def close(self) -> None:
        self._rooms.clear()

    async def add(self, room: str, name: str, key: str) -> bool:
        keys = self._rooms.setdefault(room, {}).setdefault(name, set())
        keys.add(key)
        return len(keys) == 1

    async def remove(self, room: str, name: str, key: str) -> bool:
        names = self._rooms.get(room)
        keys = names.get(name) if names else None
        if names is None or keys is None or key not in keys:
            return False
        keys.discard(key)
        if keys:
            return False
        del names[name]
        if not names:
            del self._rooms[room]
        return True

    async def members(self, room: str) -> list[tuple[str, int]]:
        return sorted((name, len(keys)) for name, keys in self._rooms.get(room, {}).items())
