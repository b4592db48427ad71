"""The built-in events of PROTOCOL.md: join_room, leave_room, send_message, get_history, get_presence, rpc.

Each is an ordinary handler, registered the same way an application registers
its own: a payload schema and `handler(payload, client)`. The ones that never
wait (leave_room, send_message) are plain functions, which the hub runs the
moment a message is read; the others are `async def`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from hubbub.backends.broker import BrokerUnavailable
from hubbub.backends.history import History, page_within, payload_of
from hubbub.backends.presence import Presence
from hubbub.core.replays import replay_cost
from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.events import (
    GetHistory,
    GetPresence,
    JoinRoom,
    LeaveRoom,
    Rpc,
    SendMessage,
    invalid_room_message,
    valid_room,
)
from hubbub.protocol.namespaces import JoinRule, PublishRule

if TYPE_CHECKING:
    from hubbub.core.connection import Connection
    from hubbub.protocol.router import Router


async def join_room(payload: JoinRoom, client: Connection) -> None:
    """Subscribe the client to a room; the ack (sent by the hub, before any replay) carries its offset.

    Over the join budget (`join_rate`): `rate_limited`, nothing done. The room's namespace's `join`
    rule first (`token`: credentials naming rooms; `proxy`: the join proxy decides, as it does for
    rooms outside every namespace when `--join-proxy` is set); then an `authorize_join` hook
    judges the request (`forbidden`: nothing done); then the credentials' own `rooms`.
    """
    client.change_rooms()
    info = await admit(client, payload.room, payload.since)
    await client.join(payload.room, payload.since, info)


async def admit(client: Connection, room: str, since: int | None) -> bytes | None:
    """Whether `client` may join `room` (`EventError` when not), and its info in that room's presence.

    The room's namespace's `join` rule, the join proxy, then an `authorize_join` hook: what every
    join of a client goes through, `join_room` over any transport and the rooms an `/sse` stream
    opens with. The info is the join proxy's, else None (the connection's own).
    """
    hub = client.hub
    info: bytes | None = None
    if hub.namespaces.active or hub.join_proxy is not None:
        rule = hub.namespaces.rules(room)
        if rule.join is JoinRule.TOKEN:
            if client.grant is None or client.grant.rooms is None:
                raise EventError(ErrorCode.FORBIDDEN, f"room {room!r} needs credentials that name it")
        elif hub.join_proxy is not None and (rule.join is JoinRule.PROXY or rule.outside):
            if not valid_room(room):  # never asked about
                raise EventError(ErrorCode.BAD_PAYLOAD, invalid_room_message())
            info = await hub.join_proxy(client, room, since)
    guard = hub.join_guard
    if guard is not None:
        await guard(client, room)
    return info


def leave_room(payload: LeaveRoom, client: Connection) -> dict[str, Any]:
    """Unsubscribe; leaving a room one is not in is `not_in_room`; over the join budget, `rate_limited`."""
    client.change_rooms()
    if not client.leave(payload.room):
        raise EventError(ErrorCode.NOT_IN_ROOM, f"not a member of room {payload.room!r}")
    return {"room": payload.room}


def sendable(payload: SendMessage, client: Connection) -> tuple[str, str]:
    """The room and sender of a `send_message` the client may send: `bad_payload` for a room name that
    cannot be, `not_in_room` for a room it is not in, `forbidden` for a room whose namespace says
    `publish = "server"` (the publish proxy asks the app only after this)."""
    room = payload.room
    if room not in client.rooms:
        if not valid_room(room):
            raise EventError(ErrorCode.BAD_PAYLOAD, invalid_room_message())
        raise EventError(ErrorCode.NOT_IN_ROOM, f"join room {room!r} before sending to it")
    namespaces = client.hub.namespaces
    if namespaces.active and namespaces.rules(room).publish is PublishRule.SERVER:
        raise EventError(ErrorCode.FORBIDDEN, f"only the server publishes to room {room!r}")
    return room, client.identity or payload.sender or "anonymous"


def send_message(payload: SendMessage, client: Connection) -> dict[str, Any] | None:
    """Publish to a room the client is in; every member gets `new_message`, sender included.

    The ack carries the offset. With a networked broker it comes when the broker
    has answered; meanwhile the client's next messages are already being read
    and published.
    """
    room, sender = sendable(payload, client)
    offset = client.hub.publish_nowait(room, payload.message, sender, client)  # Connection.publish, one call less
    if isinstance(offset, int):
        return {"room": room, "offset": offset}
    client.reply_later(offset, lambda offset: {"room": room, "offset": offset})
    return None


async def get_history(payload: GetHistory, client: Connection) -> dict[str, Any]:
    """Recent messages of a room the client is in, oldest first.

    The answer is bounded in bytes (half the send-queue bound), so that no
    request can get its own asker dropped: with `since`, the oldest messages
    after it that fit (the client asks again from the last one it got); without
    it, the newest that fit. The ack's `offset` tells whether there is more.
    Its bytes are paid for from the replay budgets (`hubbub.core.replays`):
    over them, `rate_limited` and no answer.
    """
    if payload.room not in client.rooms:
        raise EventError(ErrorCode.NOT_IN_ROOM, f"join room {payload.room!r} before reading its history")
    hub = client.hub
    return await history_answer(
        hub.history, payload, hub.settings.send_queue_bytes // 2, lambda cost: hub.replays.charge(client, cost)
    )


async def history_answer(
    history: History, payload: GetHistory, budget: int, pay: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """The ack of `get_history` (and the answer of `GET /api/history`), at most about `budget` bytes.

    `pay(cost)` is called with the answer's cost in bytes before it is built, and may refuse it by raising.
    """
    try:
        if payload.since is None:
            page = await history.latest(payload.room, payload.limit)
        else:
            page = await history.since(payload.room, payload.since, payload.limit)
    except BrokerUnavailable as exc:
        raise EventError(ErrorCode.UNAVAILABLE, f"history is unavailable: {exc}") from None
    page = page_within(page, budget, newest=payload.since is None)
    if pay is not None:
        pay(replay_cost(page.messages))
    messages = [msgspec.Raw(payload_of(event)) for _, event in page.messages]
    return {"room": payload.room, "offset": page.offset, "messages": messages}


async def get_presence(payload: GetPresence, client: Connection) -> dict[str, Any]:
    """Every identity with a connection in a room the client is in, on every node.

    Membership is required, as for `get_history`: who is in a room is the
    room's business (a private room's member list is not for passers-by). A
    room whose namespace says `presence = false` has none: `forbidden`.
    Like `get_history`, the answer is bounded in bytes (half the send-queue
    bound) so that asking cannot get the asker dropped: a list cut short
    carries `"truncated": true` (a hubbub extension).
    """
    if payload.room not in client.rooms:
        raise EventError(ErrorCode.NOT_IN_ROOM, f"join room {payload.room!r} before asking who is in it")
    hub = client.hub
    if not hub.namespaces.rules(payload.room).presence:
        raise EventError(ErrorCode.FORBIDDEN, f"room {payload.room!r} has no member list")
    with_info = bool(hub.settings.connect_proxy or hub.settings.join_proxy)
    return await presence_answer(hub.presence, payload.room, hub.settings.send_queue_bytes // 2, with_info=with_info)


async def presence_answer(presence: Presence, room: str, budget: int, *, with_info: bool = False) -> dict[str, Any]:
    """The ack of `get_presence` (and the answer of `GET /api/presence`), at most about `budget` bytes.

    `with_info`: also list each member's public info (only the connect proxy gives any, so without it the
    round trip is not made).
    """
    try:
        members = await presence.members(room)
        infos = await presence.infos(room) if with_info else {}
    except BrokerUnavailable as exc:
        raise EventError(ErrorCode.UNAVAILABLE, f"presence is unavailable: {exc}") from None
    listed: list[dict[str, Any]] = []
    for name, connections in members:
        budget -= len(name.encode()) * 6 + 40  # the worst case of JSON escaping, and the entry's keys
        entry: dict[str, Any] = {"name": name, "connections": connections}
        info = infos.get(name)
        if info is not None:
            budget -= len(info) + 10
            entry["info"] = msgspec.Raw(info)
        if budget < 0:
            return {"room": room, "members": listed, "truncated": True}
        listed.append(entry)
    return {"room": room, "members": listed}


async def rpc(payload: Rpc, client: Connection) -> dict[str, Any]:
    """Call the app's method (hubbub.core.rpc: in-process, else the RPC proxy); answer `{"data": X}`.

    An in-process method's answer is encoded here once, checked against
    `--max-message-size` (`unavailable` past it) and sent as it is.
    """
    hub = client.hub
    methods = hub.rpc_methods
    method = methods.local.get(payload.method)
    if method is not None:
        answer = method(client, msgspec.json.decode(payload.data))
        if inspect.isawaitable(answer):
            answer = await answer
        data = _ENCODER.encode(answer)  # an answer that does not encode is the app's bug: `internal`, logged
        limit = hub.settings.max_message_size
        if len(data) > limit:
            raise EventError(ErrorCode.UNAVAILABLE, f"the answer is larger than {limit} bytes")
        return {"data": msgspec.Raw(data)}
    if methods.proxy is None:
        raise EventError(ErrorCode.BAD_PAYLOAD, f"no method {payload.method!r}")
    return {"data": await methods.proxy(client, payload.method, payload.data)}


_ENCODER = msgspec.json.Encoder()


def install(router: Router) -> tuple[str, ...]:
    """Register the built-in events on `router`; return their types."""
    router.add("join_room", join_room, JoinRoom)
    router.add("leave_room", leave_room, LeaveRoom)
    router.add("send_message", send_message, SendMessage)
    router.add("get_history", get_history, GetHistory)
    router.add("get_presence", get_presence, GetPresence)
    router.add("rpc", rpc, Rpc)
    return ("join_room", "leave_room", "send_message", "get_history", "get_presence", "rpc")
