"""The chat as the app stores it, from hubbub's `message` webhooks (`--webhook-messages`).

Webhooks are at least once and ordered per room *per node*: an event may come twice (a retry after a
lost answer), and two nodes' events of one room may cross. So the store remembers the ids it has
seen (deduplicate by `id`) and keys each message by its room and offset, which hubbub numbers
cluster-wide: a repeat overwrites itself, and reading sorts by offset whatever the arrival order.
In memory here; a real app puts the same keys in its database (a unique `(room, offset)` index).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

KEEP_PER_ROOM = 500
"""Messages kept per room (oldest dropped first): the example's memory stays bounded."""
REMEMBERED_IDS = 10_000
"""Event ids remembered for deduplication; far more than a retry's lifetime of events."""
ACTIVITY = 100
"""Membership events kept for the activity panel."""


class Seen:
    """The last `size` webhook event ids handled, to answer a repeat without handling it again."""

    def __init__(self, size: int = REMEMBERED_IDS) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        """Remember an id once its event is handled (not before: a failure must let the retry in)."""
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)


class Store:
    """Messages by room and offset, and the recent membership activity."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[int, dict[str, Any]]] = {}
        self.activity: deque[dict[str, Any]] = deque(maxlen=ACTIVITY)

    def add_message(self, room: str, offset: int, sender: str, message: Any, sent: str) -> None:
        """Keep a published message (a repeat of the same offset replaces itself)."""
        messages = self._rooms.setdefault(room, {})
        messages[offset] = {"room": room, "offset": offset, "from": sender, "message": message, "sent": sent}
        if len(messages) > KEEP_PER_ROOM:
            del messages[min(messages)]

    def messages(self, room: str, limit: int = 50) -> list[dict[str, Any]]:
        """The room's latest `limit` messages, oldest first."""
        messages = self._rooms.get(room, {})
        return [messages[offset] for offset in sorted(messages)[-limit:]]

    def add_activity(self, kind: str, room: str, user: str, time: str) -> None:
        """Keep a membership event (`member_joined`, `member_left`)."""
        self.activity.append({"type": kind, "room": room, "user": user, "time": time})
