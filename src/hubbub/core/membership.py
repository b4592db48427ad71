"""Who is in which room, cluster-wide: presence records and the events they announce.

Each connection in a room is a presence entry `(room, name, node:connection)`
in the Presence backend. An identity's first entry in a room is announced as
`member_joined` and its last as `member_left`, through the broker, so every
node's members of the room hear it once. A node that dies leaves entries
behind; they expire and whichever node notices announces the departure.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from hubbub.backends.broker import Broker, BrokerUnavailable
from hubbub.backends.presence import Change, Presence
from hubbub.core.tasks import TaskOwner
from hubbub.protocol.envelope import encode_event

if TYPE_CHECKING:
    from hubbub.core.connection import Connection
    from hubbub.core.observer import HubObserver

log = logging.getLogger("hubbub.core.membership")

ANONYMOUS = "anonymous"


class Roster:
    """Presence changes of this node's connections, announced to their rooms."""

    def __init__(
        self, presence: Presence, broker: Broker, node_id: str, tasks: TaskOwner, announce: bool = True
    ) -> None:
        self.presence = presence
        self._announce_changes = announce
        """False (`--no-presence-events`): entries are still recorded, but no member_joined/member_left is sent."""
        self._broker = broker
        self._node = node_id
        self._tasks = tasks
        self.observer: HubObserver | None = None
        """The hub's webhook dispatcher, when `--webhook` is set: told every transition the backend decided."""

    def key(self, conn: Connection) -> str:
        """The presence entry of `conn`: unique across nodes."""
        return f"{self._node}:{conn.id}"

    async def change(self, room: str, conn: Connection, joined: bool) -> None:
        """Record a membership change; announce an identity's first or last connection."""
        name = conn.identity or ANONYMOUS
        try:
            if joined:
                changed = await self.presence.add(room, name, self.key(conn), conn.info)
            else:
                changed = await self.presence.remove(room, name, self.key(conn))
            if changed and self.observer is not None:
                self.observer.membership(room, name, joined, changed is Change.ROOM)
            if changed and self._announce_changes:
                payload: dict[str, Any] = {"room": room, "name": name}
                if joined and conn.info is not None:
                    payload["info"] = msgspec.Raw(conn.info)
                event = encode_event("member_joined" if joined else "member_left", payload)
                await self._broker.broadcast(room, event)
        except (BrokerUnavailable, ConnectionError, OSError) as exc:
            log.warning("presence.failed", extra={"room": room, "user": name, "error": str(exc)})

    def left(self, room: str, conn: Connection) -> None:
        """`conn` is no longer in `room` (left, closed, or its join was undone): record it in the background.

        Removing an entry that was never added changes nothing, so this is
        safe after a join that did not get as far as its presence record.
        """
        self._tasks.spawn(self.change(room, conn, joined=False))

    def expired(self, room: str, name: str, vacated: bool = False) -> None:
        """A dead node's last connection of `name` in `room` expired (`vacated`: the room's last name):
        tell the webhooks and the room (if events are on). One node's sweep calls this, once per cluster."""
        if self.observer is not None:
            self.observer.membership(room, name, False, vacated)
        if not self._announce_changes:
            return
        event = encode_event("member_left", {"room": room, "name": name})
        self._tasks.spawn(self._announce(room, event))

    async def _announce(self, room: str, event: bytes) -> None:
        try:
            await self._broker.broadcast(room, event)
        except (BrokerUnavailable, ConnectionError, OSError) as exc:
            log.warning("presence.failed", extra={"room": room, "error": str(exc)})
