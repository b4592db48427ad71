"""The Presence contract: who is in a room, on every node, by identity.

Each connection in a room is an entry `(room, name, connection key)`. The
contract reports the transitions that matter to clients: an identity's first
connection in a room (`member_joined`) and its last (`member_left`). Entries
belong to a node and must be refreshed by it; when a node dies without a word,
its entries expire within the presence TTL and whichever node notices reports
the identities that left.

Each transition is decided atomically by the backend, once for the whole
cluster: its answer (a `Change`) also says when the identity was the room's
first or last, which webhooks announce as `room_occupied` / `room_vacated`.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable

NodeReport = tuple[str, int, int]
"""`(node id, connections, rooms)`: what one node last said about itself (`Presence.report_node`)."""

Expired = Callable[[str, str, bool], None]
"""Called with `(room, name, vacated)` when an identity's last connection in a room expired;
`vacated` is True when no identity is left in the room."""


class Change(enum.IntEnum):
    """What one `add` or `remove` changed, cluster-wide; false only for `NONE`, so `if change:` asks
    whether the identity joined or left."""

    NONE = 0
    """The identity has other connections in the room (or the entry was not there)."""
    MEMBER = 1
    """The identity's first connection in the room (add) or its last (remove)."""
    ROOM = 2
    """As `MEMBER`, and the identity is the room's first (the room became occupied) or its last
    (the room is vacated)."""


class Presence(abc.ABC):
    """Cluster-wide presence with connection counts."""

    @abc.abstractmethod
    async def start(self, on_expired: Expired) -> None:
        """Begin refreshing this node's entries and sweeping expired ones."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop; this node's entries are removed or left to expire."""

    @abc.abstractmethod
    async def add(self, room: str, name: str, key: str, info: bytes | None = None) -> Change:
        """Record connection `key` of `name` in `room`; `MEMBER` if it is the name's first there,
        `ROOM` if the name is also the room's first.

        `info` (compact JSON of an object, from the connect proxy) becomes the name's public info in the
        room, replacing what an earlier connection gave; None clears it.
        """

    @abc.abstractmethod
    async def remove(self, room: str, name: str, key: str) -> Change:
        """Forget connection `key`; `MEMBER` if it was the name's last in `room`, `ROOM` if the name
        was also the room's last."""

    @abc.abstractmethod
    async def members(self, room: str) -> list[tuple[str, int]]:
        """`(name, connections)` for every name with a live connection in `room`, sorted by name."""

    async def count(self, room: str) -> int:
        """How many names `room` has, cluster-wide (as `members` would list them; in Redis, a dead
        node's names count until the sweep removes them). One cheap call: the presence flush asks it
        of every room it announces to, to tell a large room (`presence_events_max_members`)."""
        return len(await self.members(room))

    @abc.abstractmethod
    async def rooms(self, limit: int | None = None) -> list[tuple[str, int]]:
        """`(room, names)` for every room with a member now, cluster-wide, sorted by room; with `limit`,
        at most that many (which ones, when there are more, is the backend's choice: memory gives the
        first by name, Redis the first its `SSCAN` finds), so that what clients made numerous (128
        rooms each) costs a bounded answer.

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

    @abc.abstractmethod
    async def entries(self, room: str, limit: int) -> list[tuple[str, str]]:
        """`(name, connection key)` of at most `limit` live connections in `room`, sorted: the key is
        `node:id:since`, so the admin dashboard tells where and since when each member is connected."""

    @abc.abstractmethod
    async def report_stats(self, node: str, stats: bytes, ttl: float) -> None:
        """Record this node's dashboard numbers (compact JSON, `hubbub.server.admin_stats`) for `ttl` seconds."""

    @abc.abstractmethod
    async def node_stats(self) -> dict[str, bytes]:
        """The last dashboard numbers of every node whose record has not expired (memory: this node only)."""

    async def infos(self, room: str) -> dict[str, bytes]:
        """The public info of the names in `room` that have one (see `add`); names without one are absent.

        Entries of names no longer in the room may linger until they expire: read it next to `members`.
        """
        return {}
