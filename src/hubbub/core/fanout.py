"""Fan-out: published frames become one write per connection per flush.

This is the hot path of the server, so here is what each step costs and why.

* A message published to a room is framed once (`frames.text_frame`) and the
  frame is appended to the room's *segment* for this loop turn: one list
  append, whatever the number of members. The first message of a turn also
  snapshots the members (a C-level tuple copy), so that someone who joins
  later in the same turn does not get messages from before their join.
* Joining or leaving a room *seals* its segment; the next message opens a new
  one with the new membership.
* A flush runs `write_delay` seconds after the first frame of a batch (2 ms
  by default; 0 means the next loop turn). On loopback a `write` costs about
  10 us of kernel time whatever its size, so waiting a moment to put more
  messages into each write halves the CPU per delivery and, under load, the
  tail latency too (docs/performance.md has the numbers).
* At flush time, `_flush` joins each segment's frames into one `bytes`
  (the same object for every member: a server frame is the same bytes for
  every client) and hands it to each member's transport, in one `write`.
  A member with frames already waiting in its outbox (an ack, a reply) or
  whose transport is full gets it through its outbox instead, behind what is
  there, so order holds and the outbox bound applies. This loop reads the
  connection's state directly instead of calling a method per member: at ten
  thousand recipients per message, a Python call each is what it would cost.

* Members are written in the room's delivery order, and whoever sent to the
  room last is at its end (`Hub.publish_nowait`): the sender already knows
  its message, and a client that paces itself on its own echo is then paced
  by the whole fan-out rather than running ahead of it and filling queues.

So the per-recipient work is one check and one write per *flush*, not per
message; the per-message work is one append. Frames for a single connection
(acks, errors, replies) go to its outbox and are written in the same flush,
ahead of that turn's room frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hubbub.protocol.session import State

if TYPE_CHECKING:
    from hubbub.core.connection import Connection
    from hubbub.core.metrics import HotCounter

_OPEN = State.OPEN


class Fanout:
    """Per-turn segments of room frames, the list of connections to write, and the flush."""

    def __init__(self, delivered: HotCounter, write_delay: float = 0.0) -> None:
        self._delivered = delivered
        self._delay = write_delay
        self._segments: list[tuple[tuple[Connection, ...], list[bytes]]] = []
        self._open: dict[str, list[bytes]] = {}
        self._writers: list[Connection] = []
        self._scheduled = False

    def room_frame(self, room: str, members: Iterable[Connection], frame: bytes) -> None:
        """Queue `frame` for every current member of `room` (the broker's sink calls this)."""
        frames = self._open.get(room)
        if frames is not None:
            frames.append(frame)
            return
        self._open[room] = [frame]
        self._segments.append((tuple(members), self._open[room]))
        self._schedule()

    def seal(self, room: str) -> None:
        """The membership of `room` changed: later frames start a new segment."""
        self._open.pop(room, None)

    def want_write(self, conn: Connection) -> None:
        """`conn` has frames in its outbox; it writes them in this turn's flush."""
        self._writers.append(conn)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop = asyncio.get_running_loop()
            if self._delay > 0:
                loop.call_later(self._delay, self._flush)
            else:
                loop.call_soon(self._flush)

    def _flush(self) -> None:
        segments = self._segments
        if segments:
            self._segments = []
            self._open.clear()
            delivered = 0
            for members, frames in segments:
                data = frames[0] if len(frames) == 1 else b"".join(frames)
                for conn in members:
                    if conn.session.state is _OPEN and not conn._out and not conn._paused:
                        conn._raw.write(data)
                    else:
                        conn.send_frame(data)  # queued behind its outbox, or dropped if it is closed
                delivered += len(members) * len(frames)
            self._delivered.inc(delivered)
        writers = self._writers
        self._writers = []
        for conn in writers:
            conn._write()
        self._scheduled = False
