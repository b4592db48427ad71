"""Fan-out, the hot path: published frames become one write per connection per flush.

`Fanout` appends each room message's frame to its room's segment and, `write_delay` after the
first, writes each segment's bytes to every member in one write (through the outbox when one is
waiting or the transport is full). Why it is built so, and what it costs: docs/topics/fanout.md.
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
