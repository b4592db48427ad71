"""The dialect of the "Mastering WebSockets with Go" tutorial, as a hubbub app (docs/tutorial.md).

Run from the repository root:

    hubbub serve --app examples.tutorial:hub --static examples/tutorial_static \
        --tls-cert cert.pem --tls-key key.pem --users users

* a connection starts in the room `general`;
* `change_room {"name": R}` leaves the current room and enters R;
* `send_message {"message": M, "from": F}` (no room, no id) goes to everyone in
  the sender's current room, sender included, as `new_message` with `message`,
  `from` (the login name) and `sent` (RFC 3339).

The tutorial's page knows no other server event, so nothing else is sent in
normal use: no acks (its events carry no `id`), no presence events.
"""

from __future__ import annotations

import msgspec

from hubbub import Connection, ErrorCode, EventError, Hub
from hubbub.protocol.events import Name, Room

hub = Hub(presence_events=False)

FIRST_ROOM = "general"
CURRENT = "room"
"""The `conn.data` key of the connection's current room."""


class ChangeRoom(msgspec.Struct, frozen=True):
    """`change_room`: leave the current room for `name` (a valid room name, else `bad_payload`)."""

    name: Room


class SendMessage(msgspec.Struct, frozen=True, rename={"sender": "from"}):
    """`send_message`: `message` to the current room. `from` is accepted and ignored: the identity signs."""

    message: str
    sender: Name | None = None


@hub.on_connect
async def start_in_general(conn: Connection) -> None:
    await conn.join(FIRST_ROOM)
    conn.data[CURRENT] = FIRST_ROOM


@hub.on("change_room", ChangeRoom)
async def change_room(payload: ChangeRoom, conn: Connection) -> None:
    current: str | None = conn.data.get(CURRENT)
    if payload.name == current:
        return
    if current is not None:
        conn.leave(current)
    conn.data[CURRENT] = None  # in no room until the join is done
    await conn.join(payload.name)
    conn.data[CURRENT] = payload.name


@hub.on("send_message", SendMessage)
def send_message(payload: SendMessage, conn: Connection) -> None:
    room: str | None = conn.data.get(CURRENT)
    if room is None or room not in conn.rooms:
        raise EventError(ErrorCode.NOT_IN_ROOM, "in no room: change_room first")
    offset = conn.publish(room, payload.message, conn.identity or payload.sender or "anonymous")
    if not isinstance(offset, int):  # a networked broker answers later: a failure is still reported
        conn.reply_later(offset, lambda _: None)
