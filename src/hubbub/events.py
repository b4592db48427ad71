"""Payload schemas of the built-in client events (PROTOCOL.md, "Client to server").

Each schema is a msgspec Struct: the router decodes a raw payload straight
into it, so a handler only ever sees a payload that already matches. Unknown
fields are ignored, which lets clients send newer optional fields to an older
server.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

ROOM_PATTERN = r"^[A-Za-z0-9_\-.:@]{1,128}\Z"
"""Ends with `\\Z`, not `$`: msgspec searches with `re`, where `$` also matches before a final newline."""
_ROOM = re.compile(ROOM_PATTERN)

Room = Annotated[str, msgspec.Meta(pattern=ROOM_PATTERN, min_length=1, max_length=128)]
"""A room name: 1 to 128 letters, digits and `_ - . : @`."""

JoinedRoom = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
"""The room of an event that needs its sender to be a member (`send_message`).

A room one is in has a valid name, so the membership test is the check; the
pattern is matched (`valid_room`) only when that test fails, to tell a bad
name (`bad_payload`) from a room not joined (`not_in_room`). This keeps a
regular expression off the path every message takes.
"""


def valid_room(name: str) -> bool:
    """Whether `name` is a valid room name (ROOM_PATTERN)."""
    return _ROOM.match(name) is not None


def invalid_room_message(field: str = "$.room") -> str:
    """The `bad_payload` message for an invalid room name, worded as the schema check words it."""
    return f"Expected `str` matching regex {ROOM_PATTERN!r} - at `{field}`"


Offset = Annotated[int, msgspec.Meta(ge=0)]

NAME_MAX = 64
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_MAX)]
"""A display name or identity."""


class JoinRoom(msgspec.Struct, frozen=True):
    """`join_room`: subscribe to `room`; with `since`, first replay what was missed."""

    room: Room
    since: Offset | None = None


class LeaveRoom(msgspec.Struct, frozen=True):
    """`leave_room`: unsubscribe from `room`; the connection stays open."""

    room: Room


class SendMessage(msgspec.Struct, frozen=True, rename={"sender": "from"}):
    """`send_message`: publish `message` (any JSON value) to every member of `room`."""

    room: JoinedRoom
    message: msgspec.Raw
    sender: Name | None = None


class GetHistory(msgspec.Struct, frozen=True):
    """`get_history`: the messages of `room` after `since`, at most `limit`."""

    room: Room
    since: Offset | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class GetPresence(msgspec.Struct, frozen=True):
    """`get_presence`: who is in `room`, on every node."""

    room: Room


class Empty(msgspec.Struct, frozen=True):
    """A payload with no fields of interest (`{}` or anything else)."""
