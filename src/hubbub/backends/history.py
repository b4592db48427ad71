"""The History contract: what a room said recently, for resume-by-offset and `get_history`.

History is bounded by size (messages per room) and age, and the memory
backend also by bytes across all rooms. It stores each message as the encoded
`new_message` event, the same bytes that went out live, so replaying it costs
no encoding. A resume asks for everything after an offset; `complete` says
whether history still reached back that far.

A room whose state was dropped (no subscriber and no history left in the
memory backend; expired in Redis) starts its next life numbering above every
offset it had before, so an offset a client holds is never reused: a resume
with it gets `complete` False (`recovered: false`), never a room's new
messages taken for ones the client has seen. `since` above the room's latest
offset is therefore incomplete too: the room that offset came from is gone.

Backends: the memory broker (one node) and the Redis broker keep history as
part of publishing, so a message is in history exactly when it has an offset.
A page can be as large as `history_size` messages of `max_message_size`
each; `page_within` cuts it to what a connection's send queue can take.
"""

from __future__ import annotations

import abc
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


class History(abc.ABC):
    """Read access to a room's recent messages."""

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
