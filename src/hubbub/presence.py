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
    async def add(self, room: str, name: str, key: str, info: bytes | None = None) -> bool:
        """Record connection `key` of `name` in `room`; True if it is the name's first there.

        `info` (compact JSON of an object, from the connect proxy) becomes the name's public info in the
        room, replacing what an earlier connection gave; None clears it.
        """

    @abc.abstractmethod
    async def remove(self, room: str, name: str, key: str) -> bool:
        """Forget connection `key`; True if it was the name's last in `room`."""

    @abc.abstractmethod
    async def members(self, room: str) -> list[tuple[str, int]]:
        """`(name, connections)` for every name with a live connection in `room`, sorted by name."""

    async def infos(self, room: str) -> dict[str, bytes]:
        """The public info of the names in `room` that have one (see `add`); names without one are absent.

        Entries of names no longer in the room may linger until they expire: read it next to `members`.
        """
        return {}
