"""The Presence contract: who is in a room, on every node, by identity.

Each connection in a room is an entry `(room, name, connection key)`. The
contract reports the transitions that matter to clients: an identity's first
connection in a room (`member_joined`) and its last (`member_left`). Entries
belong to a node and must be refreshed by it; when a node dies without a word,
its entries expire within the presence TTL and whichever node notices reports
the identities that left.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

NodeReport = tuple[str, int, int]
"""`(node id, connections, rooms)`: what one node last said about itself (`Presence.report_node`)."""

Expired = Callable[[str, str], None]
"""Called with `(room, name)` when an identity's last connection in a room expired."""


class Presence(abc.ABC):
    """Cluster-wide presence with connection counts."""

    @abc.abstractmethod
    async def start(self, on_expired: Expired) -> None:
        """Begin refreshing this node's entries and sweeping expired ones."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop; this node's entries are removed or left to expire."""

    @abc.abstractmethod
    async def add(self, room: str, name: str, key: str) -> bool:
        """Record connection `key` of `name` in `room`; True if it is the name's first there."""

    @abc.abstractmethod
    async def remove(self, room: str, name: str, key: str) -> bool:
        """Forget connection `key`; True if it was the name's last in `room`."""

    @abc.abstractmethod
    async def members(self, room: str) -> list[tuple[str, int]]:
        """`(name, connections)` for every name with a live connection in `room`, sorted by name."""

    @abc.abstractmethod
    async def rooms(self) -> list[tuple[str, int]]:
        """`(room, names)` for every room with a member now, cluster-wide, sorted by room.

        `names` counts distinct identities (as `members` lists them). In Redis,
        the entries of a node that died count until the sweep removes them
        (within the presence TTL), as for `members`.
        """

    @abc.abstractmethod
    async def report_node(self, node: str, connections: int, rooms: int, ttl: float) -> None:
        """Record this node's numbers for `GET /api/info`; they vanish `ttl` seconds after the last report."""

    @abc.abstractmethod
    async def nodes(self) -> list[NodeReport]:
        """Every node whose report has not expired, sorted by id (memory: this node only)."""
