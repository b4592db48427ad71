"""Payload schemas of the built-in client events (PROTOCOL.md, "Client to server").

Each schema is a msgspec Struct: the router decodes a raw payload straight
into it, so a handler only ever sees a payload that already matches. Unknown
fields are ignored, which lets clients send newer optional fields to an older
server.
"""

from __future__ import annotations

import re
import unicodedata
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


ROOM_RULE = "1 to 128 letters, digits and _ - . : @"
"""ROOM_PATTERN in words: what a client or an API caller is told (never the regex)."""


def invalid_room_message(field: str = "$.room") -> str:
    """The `bad_payload` message for an invalid room name, the same from the schema check and the handlers."""
    return f"room must be {ROOM_RULE} - at `{field}`"


def schema_field(message: str) -> str | None:
    """The field (`$.room`, `$.rooms[2]`) a msgspec validation message is about, if it names one."""
    _, sep, at = message.rpartition(" - at `")
    return at[:-1] if sep and at.endswith("`") else None


def plain_schema_message(message: str) -> str:
    """A msgspec validation message fit for a client: a room field's in words, never a regex.

    msgspec words a failed `pattern` as "Expected `str` matching regex '^[A-Za-z0-9...'";
    any error about a room (its pattern, length or type) becomes `invalid_room_message`.
    Runs only on a payload that failed, never on the message path.
    """
    field = schema_field(message)
    if field is not None and (field == "$.room" or field.startswith("$.rooms[")):
        return invalid_room_message(field)
    if "matching regex" in message:  # no other field has a pattern today; no regex leaks if one is added
        return f"{message.partition(' matching regex')[0]} of the documented form - at `{field or '$'}`"
    return message


Offset = Annotated[int, msgspec.Meta(ge=0)]

NAME_MAX = 64
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_MAX)]
"""A display name or identity: 1 to NAME_MAX characters, and `valid_name` must hold (checked by the
handshake for `?name=`, and by `SendMessage` for `from`)."""

_REFUSED_IN_NAMES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Unicode categories a name may not contain: controls (C0, DEL, C1), format characters
(bidi embeddings, overrides and isolates, LRM/RLM, zero-width space and joiners, soft
hyphen, BOM, tags), surrogates, and the line and paragraph separators U+2028/2029."""


def _refuses(name: str) -> bool:
    """Whether `name`, known not to be `isprintable()`, holds a refused character.

    `isprintable()` is also false for spaces other than U+0020, private-use and
    unassigned code points (this Python's Unicode tables may predate an emoji);
    those are allowed, so the slow per-character look-up decides.
    """
    category = unicodedata.category
    return any(category(c) in _REFUSED_IN_NAMES for c in name)


def valid_name(name: str) -> bool:
    """Whether `name` may be a display name: 1 to NAME_MAX characters, none of them a
    control, format (bidi, zero-width) or line/paragraph-separator character.

    A name is shown to other clients and written in the log: a newline would
    forge a log line or a chat line, a bidi override would make `evil\u202egnp.exe`
    read as another name, a zero-width character would make a look-alike of
    someone else's name. As a consequence, emoji built with the zero-width joiner
    (family, profession emoji) and tag-sequence flags are refused too.

    Cheap for the names people use: one `len` and one `str.isprintable()` (C, no
    regex); only a name that is not printable is looked at character by character.
    """
    return 1 <= len(name) <= NAME_MAX and (name.isprintable() or not _refuses(name))


def invalid_name_message(name: str) -> str:
    """Why `name` is not `valid_name`, for a 400 body or a `bad_payload` message."""
    if not 1 <= len(name) <= NAME_MAX:
        return f"name must be 1 to {NAME_MAX} characters"
    return "name must not contain control, formatting (bidi, zero-width) or line-separator characters"


class JoinRoom(msgspec.Struct, frozen=True):
    """`join_room`: subscribe to `room`; with `since`, first replay what was missed."""

    room: Room
    since: Offset | None = None


class LeaveRoom(msgspec.Struct, frozen=True):
    """`leave_room`: unsubscribe from `room`; the connection stays open."""

    room: Room


class SendMessage(msgspec.Struct, frozen=True, rename={"sender": "from"}):
    """`send_message`: publish `message` (any JSON value) to every member of `room`.

    `from` must be a `valid_name` (else `bad_payload`, even where an identity
    makes it unused). It is checked here, after decoding, rather than with a
    schema `pattern`, which msgspec would run through `re` on every message that
    has the field: the check costs far less so (docs/performance.md).
    """

    room: JoinedRoom
    message: msgspec.Raw
    sender: Name | None = None

    def __post_init__(self) -> None:
        sender = self.sender
        if sender is not None and not sender.isprintable() and _refuses(sender):
            # msgspec turns a ValueError here into a ValidationError: `bad_payload`.
            raise ValueError(f"{invalid_name_message(sender)} - at `$.from`")


class GetHistory(msgspec.Struct, frozen=True):
    """`get_history`: the messages of `room` after `since`, at most `limit`."""

    room: Room
    since: Offset | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class GetPresence(msgspec.Struct, frozen=True):
    """`get_presence`: who is in `room`, on every node."""

    room: Room


METHOD_MAX = 128
"""Longest `rpc` method name: it goes into every call to the app and into its log lines."""
NULL = msgspec.Raw(b"null")
"""The `data` of an `rpc` that has none."""


class Rpc(msgspec.Struct, frozen=True):
    """`rpc`: call the application's `method` with `data` (any JSON value, null when absent).

    A `method` that is not a string of 1 to `METHOD_MAX` characters is `bad_payload`.
    `data` stays the client's bytes: the RPC proxy passes them on without decoding
    and encoding them again; an in-process method gets them decoded.
    """

    method: Annotated[str, msgspec.Meta(min_length=1, max_length=METHOD_MAX)]
    data: msgspec.Raw = NULL


class Empty(msgspec.Struct, frozen=True):
    """A payload with no fields of interest (`{}` or anything else)."""
