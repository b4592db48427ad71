"""Rooms of one node: their local members, joining with replay, and the broker subscriptions.

A room exists on a node while it has local members or someone joining it;
the broker is subscribed to it exactly then. Joining is the one membership
change that waits (subscribe, read the offset and history, record presence),
and it is written so that whatever happens during the wait -- the client
vanishes, the task is cancelled, the broker fails -- nothing is left behind:
no subscription without members, no presence entry without a connection
(`tests/integration/test_join_cleanup.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hubbub.backends.broker import Broker, BrokerUnavailable
from hubbub.backends.history import History, page_within
from hubbub.core.fanout import Fanout
from hubbub.core.membership import Roster
from hubbub.core.metrics import Metrics
from hubbub.core.replays import Replays, replay_cost
from hubbub.core.tasks import TaskOwner
from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.frames import text_frame
from hubbub.protocol.namespaces import Namespaces
from hubbub.protocol.session import State

if TYPE_CHECKING:
    from hubbub.core.connection import Connection


class Rooms:
    """Local membership of every room, in delivery order, and how members get in and out."""

    def __init__(
        self,
        broker: Broker,
        history: History,
        roster: Roster,
        fanout: Fanout,
        metrics: Metrics,
        tasks: TaskOwner,
        replays: Replays,
        namespaces: Namespaces,
        *,
        history_size: int,
        max_rooms: int,
        replay_bytes: int,
    ) -> None:
        self._broker = broker
        self._history = history
        self._roster = roster
        self._fanout = fanout
        self._metrics = metrics
        self._tasks = tasks
        self._replays = replays
        self._namespaces = namespaces
        """Each room's rules: its history size for a replay, and whether it has presence."""
        self._history_size = history_size
        self._max_rooms = max_rooms
        self._replay_bytes = replay_bytes
        self.members: dict[str, dict[Connection, None]] = {}
        """Each room's local members, in delivery order: a dict used as an ordered set (see `sender_last`)."""
        self._joining: dict[str, dict[Connection, list[tuple[int, bytes]]]] = {}
        self.last_sender: dict[str, Connection] = {}
        """The member at the end of each room's delivery order because it sent last (the hub reads
        it before calling `sender_last`, to spare a call per message)."""
        self._subscriptions: dict[str, asyncio.Future[None]] = {}

    @property
    def max_rooms(self) -> int:
        """Rooms one connection may be in at once (`--max-rooms-per-connection`)."""
        return self._max_rooms

    # ---- joining --------------------------------------------------------------

    async def join(
        self,
        conn: Connection,
        room: str,
        since: int | None = None,
        *,
        ack: Callable[[dict[str, Any]], None] | None = None,
        info: bytes | None = None,
    ) -> None:
        """Add `conn` to `room` and ack; with `since`, first replay what it missed.

        While the broker is subscribed, history is read and presence is
        recorded (awaits), live messages of the room are kept aside for this
        joiner. Then, with no await in between: the ack, the replayed
        messages, the kept live ones (each offset once, in order), and
        membership, so the client sees no gap and no duplicate. A connection
        already in `max_rooms` rooms gets `limit_exceeded`; a replay over the
        connection's or the node's replay budget gets `rate_limited`, and the
        join is not made (`hubbub.core.replays`).

        `ack` sends the ack in place of `conn.ack`: a join the server API asked
        for answers no request of the client's (`hubbub.core.control`). `info`: the
        member's public info in this room's presence (the join proxy's), in place of
        the connection's. A room whose namespace says `presence = false` records none.
        """
        answer = conn.ack if ack is None else ack
        if room in conn.rooms:
            answer({"room": room, "offset": await self._broker.last_offset(room)} | _recovered(since, True))
            return
        if len(conn.rooms) >= self._max_rooms:
            raise EventError(ErrorCode.LIMIT_EXCEEDED, f"a connection may be in at most {self._max_rooms} rooms")
        waiting = self._joining.setdefault(room, {})
        kept: list[tuple[int, bytes]] = []
        waiting[conn] = kept
        recorded = False
        rules = self._namespaces.rules(room)
        present = rules.presence
        try:
            await self._subscribed(room)
            latest = await self._broker.last_offset(room)
            page = await self._history.since(room, since, rules.history_size) if since is not None else None
            if page is not None:
                # The replay goes into the joiner's outbox at once: it must fit well within the
                # outbox bound, or the joiner would be dropped by its own join. Past the budget
                # only the newest are replayed, and `recovered` is false (the client reloads).
                page = page_within(page, self._replay_bytes, newest=True)
                # Paid for before anything is recorded: over budget, the join is refused whole.
                self._replays.charge(conn, replay_cost(page.messages))
            # Presence first, so that once the ack arrives `get_presence` lists the joiner
            # (its own member_joined comes at the next presence flush, as a live room message).
            if present:
                recorded = True
                await self._roster.change(room, conn, joined=True, info=info)
        except BaseException as exc:
            # Failed, or cancelled because the client went away: undo everything this join started.
            self._stop_waiting(room, conn)
            self._forget_if_empty(room)
            if recorded:
                self._roster.left(room, conn)
            if isinstance(exc, BrokerUnavailable):
                raise EventError(ErrorCode.UNAVAILABLE, f"could not join {room!r}: {exc}") from None
            raise
        self._stop_waiting(room, conn)
        if conn.state is not State.OPEN:  # it went away while joining
            self._forget_if_empty(room)
            if present:
                self._roster.left(room, conn)
            return
        if len(conn.rooms) >= self._max_rooms and room not in conn.rooms:
            # joins that overlapped (the server API's, an app's own) filled the connection meanwhile
            self._forget_if_empty(room)
            if present:
                self._roster.left(room, conn)
            raise EventError(ErrorCode.LIMIT_EXCEEDED, f"a connection may be in at most {self._max_rooms} rooms")
        if page is not None:
            latest = max(latest, page.offset)
        answer({"room": room, "offset": latest} | _recovered(since, page.complete if page else True))
        last = latest if since is None else since
        for offset, event in page.messages if page else ():
            if offset > last:
                conn.send_frame(text_frame(event))
                last = offset
        for offset, frame in kept:  # live messages that came while it joined
            if offset == 0 or offset > last:
                conn.send_frame(frame)
                self._metrics.delivered.inc()
                last = max(last, offset)
        self.members.setdefault(room, {})[conn] = None
        self.last_sender.pop(room, None)  # the joiner is at the end now
        conn.rooms.add(room)
        self._fanout.seal(room)

    def _stop_waiting(self, room: str, conn: Connection) -> None:
        waiting = self._joining.get(room)
        if waiting is not None:
            waiting.pop(conn, None)
            if not waiting:
                del self._joining[room]

    async def _subscribed(self, room: str) -> None:
        """Subscribe the broker to `room` once, however many join at the same time."""
        future = self._subscriptions.get(room)
        if future is None:
            future = self._subscriptions[room] = self._tasks.spawn(self._broker.subscribe(room), report=False)
        try:
            await asyncio.shield(future)
        except BaseException:
            if self._subscriptions.get(room) is future and future.done():
                del self._subscriptions[room]
                if not future.cancelled() and future.exception() is not None:
                    # The backend may have subscribed before it failed (reading the room's
                    # offset after SUBSCRIBE): undo that too, unless the room is wanted again.
                    self._tasks.spawn(self._unsubscribe(room))
            raise

    # ---- leaving --------------------------------------------------------------

    def leave(self, conn: Connection, room: str) -> bool:
        """Remove `conn` from `room`; False if it was not a member."""
        if room not in conn.rooms:
            return False
        conn.rooms.discard(room)
        self._drop(room, conn)
        return True

    def leave_all(self, conn: Connection) -> None:
        """Remove `conn` from every room (it is closing)."""
        for room in conn.rooms:
            self._drop(room, conn)
        conn.rooms.clear()

    def _drop(self, room: str, conn: Connection) -> None:
        members = self.members.get(room)
        if members is not None:
            members.pop(conn, None)
            if self.last_sender.get(room) is conn:
                del self.last_sender[room]  # holds no connection that has left
            self._fanout.seal(room)
            if not members:
                del self.members[room]
                self._forget_if_empty(room)
        if self._namespaces.rules(room).presence:
            self._roster.left(room, conn)

    def _forget_if_empty(self, room: str) -> None:
        """Unsubscribe from a room with no members and nobody joining."""
        if room not in self.members and room not in self._joining and room in self._subscriptions:
            future = self._subscriptions.pop(room)
            if not future.done():
                future.cancel()
            self._tasks.spawn(self._unsubscribe(room))

    async def _unsubscribe(self, room: str) -> None:
        if room in self._subscriptions or room in self.members:
            return  # wanted again since this was scheduled: a new join is subscribing
        # A broker that is gone re-subscribes, on reconnecting, only to rooms still wanted.
        with contextlib.suppress(BrokerUnavailable, ConnectionError, OSError):
            await self._broker.unsubscribe(room)

    @property
    def subscribed(self) -> frozenset[str]:
        """Rooms this node is subscribed to (for tests and metrics)."""
        return frozenset(self._subscriptions)

    # ---- publishing -----------------------------------------------------------

    def sender_last(self, room: str, origin: Connection) -> None:
        """Move `origin` to the end of `room`'s delivery order (see `Hub.publish_nowait`)."""
        if self.last_sender.get(room) is not origin:
            members = self.members.get(room)
            if members and origin in members:
                del members[origin]
                members[origin] = None
                self.last_sender[room] = origin

    def deliver(self, room: str, offset: int, event: bytes) -> None:
        """The broker's sink: frame the message once and hand it to fan-out (and to joiners)."""
        frame = text_frame(event)
        joining = self._joining.get(room)
        if joining:
            for kept in joining.values():
                kept.append((offset, frame))
        members = self.members.get(room)
        if members:
            self._fanout.room_frame(room, members, frame)


def _recovered(since: int | None, complete: bool) -> dict[str, bool]:
    """The `recovered` field of a join ack: present only when the join had `since`."""
    return {} if since is None else {"recovered": complete}
