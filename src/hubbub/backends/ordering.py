"""In-order delivery to a node: what a networked broker does between its bus and the hub's sink.

A bus may hand a node a room's messages out of order (two nodes publishing at once over NATS), or
miss some (a subscription that broke and came back). `OrderedDelivery` remembers the last offset it
delivered per room, fills a gap from history before the message that revealed it, and drops what it
already delivered, so members see each room's messages once and in offset order. Both the Redis and
the NATS brokers hold one. How: docs/topics/backends.md.
"""

from __future__ import annotations

from hubbub.backends.broker import Sink
from hubbub.backends.history import History


class OrderedDelivery:
    """The rooms a node follows and the last offset it delivered of each; hands deliveries to the sink in order."""

    __slots__ = ("_history", "_history_size", "last", "sink", "wanted")

    def __init__(self, history: History, history_size: int) -> None:
        """`history` is where gaps are filled from; a fill asks it for at most `history_size` messages."""
        self._history = history
        self._history_size = history_size
        self.sink: Sink | None = None
        """Where deliveries go; None until the broker starts."""
        self.wanted: set[str] = set()
        """The rooms this node subscribed to (from the call on, before the bus confirms)."""
        self.last: dict[str, int] = {}
        """Per followed room, the offset delivered last (set at subscribe to the room's latest offset)."""

    async def deliver(self, room: str, offset: int, event: bytes) -> None:
        """Hand a message to the sink in order: fill a gap from history first, drop repeats.

        When the gap cannot be filled (`fill_gap` raises), the message is not delivered either.
        """
        if self.sink is None or room not in self.wanted:
            return
        if offset == 0:
            self.sink(room, 0, event)
            return
        last = self.last.get(room, 0)
        if offset <= last:
            return
        if offset > last + 1:
            await self.fill_gap(room, until=offset - 1)
        self.last[room] = offset
        self.sink(room, offset, event)

    async def fill_gap(self, room: str, until: int | None = None) -> None:
        """Deliver from history what this node missed of `room` (after a reconnect, or a gap).

        Raises what reading history raises (`BrokerUnavailable` from a store that cannot be reached).
        """
        last = self.last.get(room)
        if last is None or self.sink is None:
            return
        kept = self._history.history_for  # a namespace's own history size, when rooms differ
        size = self._history_size if kept is None else kept(room)[0]
        page = await self._history.since(room, last, size or 1)
        for offset, event in page.messages:
            if until is not None and offset > until:
                break
            if offset > self.last.get(room, 0):
                self.last[room] = offset
                self.sink(room, offset, event)

    def forget(self, room: str) -> bool:
        """Stop following `room` unless it was wanted again meanwhile; True when it is no longer followed."""
        if room in self.wanted:
            return False
        self.last.pop(room, None)
        return True
