"""The in-memory broker: the default, for a single node.

Everything lives in this process, so it cannot span nodes: run one server, or
use the Redis backend. Delivery is synchronous: `publish` hands the message to
the sink before it returns, which keeps a single node's fan-out free of any
extra hop.
"""

from __future__ import annotations

from hubbub.broker import Broker, Sink
from hubbub.protocol import splice_offset


class MemoryBroker(Broker):
    """Per-room counters and a set of subscribed rooms."""

    def __init__(self) -> None:
        self._sink: Sink | None = None
        self._offsets: dict[str, int] = {}
        self._subscribed: set[str] = set()

    async def start(self, sink: Sink) -> None:
        self._sink = sink

    async def close(self) -> None:
        self._sink = None

    async def publish(self, room: str, head: bytes, tail: bytes) -> int:
        offset = self._offsets.get(room, 0) + 1
        self._offsets[room] = offset
        if self._sink is not None and room in self._subscribed:
            self._sink(room, offset, splice_offset(head, offset, tail))
        return offset

    async def subscribe(self, room: str) -> None:
        self._subscribed.add(room)

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    async def last_offset(self, room: str) -> int:
        return self._offsets.get(room, 0)
