"""Presence changes gathered per room and announced as their net effect, at most once per interval.

A room's members would otherwise hear one `member_joined` or `member_left`
per change: a room of N members churning at C changes a second costs N x C
frames a second. Gathered for an interval, each identity's changes reduce to
what differs from what the room last heard -- a leave and a rejoin, or a join
and a leave, inside one interval announce nothing -- so a room's announcements
per interval are at most one per identity in it, whatever the rate of change.

`PresenceDiff` is the bookkeeping alone (plain values, no clock, no I/O);
`hubbub.core.membership.Roster` owns the timer and publishes what it takes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Announcement:
    """One net change to announce: `name` is now in the room (`joined`) or has left it."""

    name: str
    joined: bool
    info: bytes | None = None
    """A joined identity's public info (compact JSON), as its latest join gave it."""


@dataclass(slots=True)
class _Pending:
    before: bool
    """Whether the room last heard `name` as present (the state before this interval's first change)."""
    present: bool
    info: bytes | None


class PresenceDiff:
    """The net presence changes of every room since the last `take`."""

    __slots__ = ("_rooms",)

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, _Pending]] = {}

    def record(self, room: str, name: str, joined: bool, info: bytes | None = None) -> bool:
        """`name` joined (its first connection) or left (its last) `room`; True when nothing was pending
        before this change (the caller then schedules a flush)."""
        was_empty = not self._rooms
        pending = self._rooms.setdefault(room, {})
        entry = pending.get(name)
        if entry is None:
            # The first change of the interval: before it the room heard the opposite.
            pending[name] = _Pending(before=not joined, present=joined, info=info)
        else:
            entry.present = joined
            entry.info = info if joined else None
        return was_empty

    @property
    def pending(self) -> bool:
        """Whether any change is waiting for a `take`."""
        return bool(self._rooms)

    def take(self) -> list[tuple[str, list[Announcement]]]:
        """Every room's net changes, rooms and names in the order of their first change; then start afresh.

        A name whose changes cancel out is left out, and so is a room with none left.
        """
        rooms, self._rooms = self._rooms, {}
        out: list[tuple[str, list[Announcement]]] = []
        for room, pending in rooms.items():
            changes = [
                Announcement(name, entry.present, entry.info)
                for name, entry in pending.items()
                if entry.present != entry.before
            ]
            if changes:
                out.append((room, changes))
        return out


def next_flush(now: float, interval: float) -> float:
    """The first multiple of `interval` after `now` (wall-clock seconds).

    Every node flushes on the same boundaries, so that changes of one interval
    are published, on whichever node, before those of the next.
    """
    return (math.floor(now / interval) + 1) * interval
