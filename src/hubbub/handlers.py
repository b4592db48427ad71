"""The built-in events of PROTOCOL.md: join_room, leave_room, send_message.

Each is an ordinary handler, registered the same way an application registers
its own: a payload schema and `async def handler(payload, client)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hubbub.codes import ErrorCode
from hubbub.errors import EventError
from hubbub.events import JoinRoom, LeaveRoom, SendMessage

if TYPE_CHECKING:
    from hubbub.connection import Connection
    from hubbub.router import Router

ANONYMOUS = "anonymous"


async def join_room(payload: JoinRoom, client: Connection) -> dict[str, Any]:
    """Subscribe the client to a room; the ack carries the room's latest offset."""
    offset = await client.hub.join(client, payload.room)
    return {"room": payload.room, "offset": offset}


async def leave_room(payload: LeaveRoom, client: Connection) -> dict[str, Any]:
    """Unsubscribe; leaving a room one is not in is `not_in_room`."""
    if not client.hub.leave(client, payload.room):
        raise EventError(ErrorCode.NOT_IN_ROOM, f"not a member of room {payload.room!r}")
    return {"room": payload.room}


async def send_message(payload: SendMessage, client: Connection) -> dict[str, Any]:
    """Publish to a room the client is in; every member gets `new_message`, sender included."""
    if payload.room not in client.rooms:
        raise EventError(ErrorCode.NOT_IN_ROOM, f"join room {payload.room!r} before sending to it")
    sender = client.identity or payload.sender or ANONYMOUS
    offset = await client.hub.publish(payload.room, payload.message, sender)
    return {"room": payload.room, "offset": offset}


def install(router: Router) -> None:
    """Register the built-in events on `router`."""
    router.add("join_room", join_room, JoinRoom)
    router.add("leave_room", leave_room, LeaveRoom)
    router.add("send_message", send_message, SendMessage)
