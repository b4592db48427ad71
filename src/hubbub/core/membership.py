"""Who is in which room, cluster-wide: presence records and the events they announce.

Each connection in a room is a presence entry `(room, name, node:connection)`
in the Presence backend. An identity's first entry in a room is announced as
`member_joined` and its last as `member_left`, through the broker, so every
node's members of the room hear it once. A node that dies leaves entries
behind; they expire and whichever node notices announces the departure.

Announcements are not sent as each change happens: they are gathered per room
(`hubbub.core.presence_diff`) and published as their net effect on the
boundaries of `presence_interval`, so a churning room costs its members at most
one event per identity per interval. A room of more than `max_members` names
hears only `presence_count {room, count}` at each flush (a hubbub extension).
Webhooks are told every transition at once, as before: they are for the
application, which wants each one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from hubbub.backends.broker import Broker, BrokerUnavailable
from hubbub.backends.presence import Change, Presence
from hubbub.core.presence_diff import Announcement, PresenceDiff, next_flush
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
        self,
        presence: Presence,
        broker: Broker,
        node_id: str,
        tasks: TaskOwner,
        announce: bool = True,
        interval: float = 0.0,
        max_members: int = 0,
    ) -> None:
        self.presence = presence
        self._announce_changes = announce
        """False (`--no-presence-events`): entries are still recorded, but no member_joined/member_left is sent."""
        self._broker = broker
        self._node = node_id
        self._tasks = tasks
        self.observer: HubObserver | None = None
        """The hub's webhook dispatcher, when `--webhook` is set: told every transition the backend decided."""
        self._interval = interval
        """`presence_interval`: announcements are gathered this long; 0 announces each change at once."""
        self._max_members = max_members
        """`presence_events_max_members`: a larger room hears `presence_count` instead of member events."""
        self._diff = PresenceDiff()
        self._timer: asyncio.TimerHandle | None = None
        self._publisher: asyncio.Task[None] | None = None
        """The task publishing the last flush's announcements; the next flush waits for it (order)."""

    def key(self, conn: Connection) -> str:
        """The presence entry of `conn`: unique across nodes; `node:id:since` (Unix seconds), so that
        the admin dashboard tells where and since when each member is connected (`Presence.entries`)."""
        return f"{self._node}:{conn.id}:{int(conn.since)}"

    async def change(self, room: str, conn: Connection, joined: bool, info: bytes | None = None) -> None:
        """Record a membership change; announce an identity's first or last connection.

        `info`: the member's public info in this room (the join proxy's), in place of the connection's."""
        name = conn.identity or ANONYMOUS
        info = conn.info if info is None else info
        try:
            if joined:
                changed = await self.presence.add(room, name, self.key(conn), info)
            else:
                changed = await self.presence.remove(room, name, self.key(conn))
            if changed and self.observer is not None:
                self.observer.membership(room, name, joined, changed is Change.ROOM)
            if changed and self._announce_changes:
                if self._interval > 0:
                    self._gather(room, name, joined, info if joined else None)
                else:
                    await self._publish([(room, [Announcement(name, joined, info if joined else None)])])
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
        if self._interval > 0:
            self._gather(room, name, False, None)
        else:
            self._tasks.spawn(self._publish([(room, [Announcement(name, False)])]))

    # ---- gathering and publishing ---------------------------------------------

    def _gather(self, room: str, name: str, joined: bool, info: bytes | None) -> None:
        """Keep a change for the next flush, and make sure one is scheduled."""
        self._diff.record(room, name, joined, info)
        if self._timer is None and self._publisher is None:
            self._schedule()

    def _schedule(self) -> None:
        now = time.time()
        delay = next_flush(now, self._interval) - now
        self._timer = asyncio.get_running_loop().call_later(delay, self._flush)

    def _flush(self) -> None:
        """The interval's boundary: publish the net changes gathered (one task at a time, so in order)."""
        self._timer = None
        batches = self._diff.take()
        if batches:
            self._publisher = self._tasks.spawn(self._publish(batches))
            self._publisher.add_done_callback(self._published)

    def _published(self, task: asyncio.Task[None]) -> None:
        if self._publisher is task:
            self._publisher = None
        # Changes gathered while publishing wait for the next boundary (never a flush straight after).
        if self._diff.pending and self._timer is None and not task.cancelled():
            self._schedule()

    async def _publish(self, batches: list[tuple[str, list[Announcement]]]) -> None:
        """Each room's announcements, each encoded once; the broker takes them to every node's members.

        A room of more than `max_members` names gets one `presence_count` instead.
        """
        for room, changes in batches:
            try:
                if self._max_members:
                    count = await self.presence.count(room)
                    if count > self._max_members:
                        await self._broker.broadcast(
                            room, encode_event("presence_count", {"room": room, "count": count})
                        )
                        continue
                for change in changes:
                    await self._broker.broadcast(room, _event(room, change))
            except (BrokerUnavailable, ConnectionError, OSError) as exc:
                log.warning("presence.failed", extra={"room": room, "error": str(exc)})

    async def close(self) -> None:
        """Publish what is still gathered (the hub is shutting down: its departures are in it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._publisher is not None:
            await asyncio.gather(self._publisher, return_exceptions=True)
        if self._timer is not None:  # scheduled by the publisher's end
            self._timer.cancel()
            self._timer = None
        batches = self._diff.take()
        if batches:
            await self._publish(batches)


def _event(room: str, change: Announcement) -> bytes:
    """The `member_joined` or `member_left` event of one change."""
    payload: dict[str, Any] = {"room": room, "name": change.name}
    if change.joined and change.info is not None:
        payload["info"] = msgspec.Raw(change.info)
    return encode_event("member_joined" if change.joined else "member_left", payload)
