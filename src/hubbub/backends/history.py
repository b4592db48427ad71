"""The History contract: what a room said recently, for resume by offset and `get_history`.

History is bounded by size and age (and, in memory, by bytes across rooms) and keeps each message
as its encoded `new_message` event. `Page.complete` says whether it still reached back to the
offset asked for; an offset is never reused by a room's later life. `page_within` cuts a page to
what a send queue can take. How the backends keep it: docs/topics/backends.md.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

NEW_MESSAGE_PREFIX = b'{"type":"new_message","payload":'
"""Every stored event starts with this; what follows, less the final `}`, is its payload."""


@dataclass(frozen=True, slots=True)
class Page:
    """Messages of a room, oldest first, with the room's latest offset."""

    offset: int
    """The offset of the latest message published to the room (0 for none)."""
    messages: list[tuple[int, bytes]] = field(default_factory=list)
    """`(offset, encoded new_message event)` pairs, oldest first."""
    complete: bool = True
    """False when messages that were asked for are no longer held."""


def payload_of(event: bytes) -> bytes:
    """The raw JSON payload of a stored `new_message` event."""
    return event[len(NEW_MESSAGE_PREFIX) : -1]


HistoryFor = Callable[[str], tuple[int, float]]
"""A room's `(history_size, history_ttl)`, when they differ by room (the namespaces' `Namespaces.history`)."""


class History(abc.ABC):
    """Read access to a room's recent messages."""

    history_for: HistoryFor | None = None
    """Set by the hub when namespaces give rooms their own history size and TTL; None: the broker's own."""

    @abc.abstractmethod
    async def since(self, room: str, offset: int, limit: int) -> Page:
        """Messages with an offset above `offset`, at most `limit`, oldest first.

        `complete` is True when the page starts right after `offset` (or there is
        nothing after it), False when older messages were trimmed away.
        """

    @abc.abstractmethod
    async def latest(self, room: str, limit: int) -> Page:
        """The latest `limit` messages, oldest first."""


def page_from(entries: list[tuple[int, bytes]], latest: int, since: int | None, limit: int) -> Page:
    """Cut a page out of a room's held entries (sorted by offset), as both backends do.

    Complete when the page starts right after `since`, or `since` is the
    latest offset. A `since` above the latest offset comes from an earlier
    life of the room (or of the server): incomplete.
    """
    if since is None:
        return Page(latest, entries[-limit:] if limit else [], True)
    wanted = [(o, e) for o, e in entries if o > since]
    complete = since == latest or (bool(wanted) and wanted[0][0] == since + 1)
    return Page(latest, wanted[:limit], complete)


MESSAGE_OVERHEAD = 16
"""Bytes `page_within` counts per message beyond its event: a frame header (at most 10) or a JSON comma."""


def page_within(page: Page, max_bytes: int, *, newest: bool = True) -> Page:
    """The part of `page` that fits in `max_bytes`: its newest messages, or (`newest=False`) its oldest.

    Each message counts as its stored event plus `MESSAGE_OVERHEAD`, an upper
    bound of what it adds to a `get_history` ack or to a replay. When a
    message is left out, `complete` becomes False: the page holds less than
    was asked for.

    - Replaying a resume (`join_room` with `since`): keep the newest, so the
      replay joins the live messages without a gap, and the missing start
      is reported as `recovered: false`.
    - `get_history` with `since`: keep the oldest, so the client can ask
      again from the last offset it got; without `since`, keep the newest.

    The budget should leave room in the connection's send queue
    (`send_queue_bytes`) for the answer's envelope and live traffic: half
    of it, say. Never larger than the page it is given; the page itself if
    everything fits.
    """
    messages = page.messages
    used, kept = 0, 0
    for _, event in reversed(messages) if newest else messages:
        used += len(event) + MESSAGE_OVERHEAD
        if used > max_bytes:
            break
        kept += 1
    if kept == len(messages):
        return page
    cut = messages[len(messages) - kept :] if newest else messages[:kept]
    return Page(page.offset, cut, False)
