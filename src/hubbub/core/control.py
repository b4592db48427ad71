"""Each node's part in the server API's cluster-wide calls: control messages and node reports.

`Control` sends `disconnect`, `subscribe` and `unsubscribe` through the broker and carries them
out on this node's connections of the identity (at most once, as messages); it also reports the
node's connections and rooms for `GET /api/info`. How: docs/topics/integration.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import msgspec

from hubbub.backends.broker import Broker, BrokerUnavailable
from hubbub.backends.presence import Presence
from hubbub.core.rooms import Rooms
from hubbub.core.tasks import TaskOwner
from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.session import State

if TYPE_CHECKING:
    from hubbub.core.connection import Connection

log = logging.getLogger("hubbub.core.control")

REPORT_PERIOD = 2.0
"""Seconds between a node's reports of its numbers (`GET /api/info`)."""
REPORT_TTL = 10.0
"""Seconds a node's report lives: a node silent for that long is no longer listed."""


class Op(enum.StrEnum):
    """What a control message asks of every node."""

    DISCONNECT = "disconnect"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


class ControlMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    """One control message, as it travels between nodes (JSON)."""

    op: Op
    user: str
    room: str = ""
    code: int = 4000
    reason: str = ""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ControlMessage)


class ControlHub(Protocol):
    """What `Control` uses of the hub (a protocol: the hub imports this module)."""

    identities: dict[str, dict[Connection, None]]
    broker: Broker
    room_table: Rooms
    node_id: str


class Control:
    """Sends control messages to every node and carries them out on this one's connections."""

    def __init__(self, hub: ControlHub) -> None:
        self._hub = hub
        self.tasks = TaskOwner("control")
        """The joins that `subscribe` started, and the node reports; closed with the hub."""
        self._joins: dict[tuple[Connection, str], asyncio.Task[None]] = {}
        self._joining: dict[Connection, int] = {}
        """Joins in flight per connection: with its rooms, at most the room limit (a storm of calls
        must not start a join task, and a broker subscription, per call)."""
        self._malformed = 0

    async def send(self, message: ControlMessage) -> None:
        """To every node, this one included; `BrokerUnavailable` if the bus cannot take it."""
        await self._hub.broker.send_control(_encoder.encode(message))

    def receive(self, data: bytes) -> None:
        """The broker's control sink: act on this node's connections of the message's identity."""
        try:
            message = _decoder.decode(data)
        except msgspec.DecodeError:
            self._malformed += 1
            if self._malformed == 1:  # one line, not one per message: the bus is shared
                log.warning("control.malformed", extra={"bytes": len(data)})
            return
        targets = list(self._hub.identities.get(message.user, ()))
        for conn in targets:
            if message.op is Op.DISCONNECT:
                conn.close(message.code, message.reason)
            elif message.op is Op.SUBSCRIBE:
                self._subscribe(conn, message.room)
            else:
                self._unsubscribe(conn, message.room)

    def _subscribe(self, conn: Connection, room: str) -> None:
        key = (conn, room)
        if room in conn.rooms or key in self._joins or conn.state is not State.OPEN:
            return
        joining = self._joining.get(conn, 0)
        if len(conn.rooms) + joining >= self._hub.room_table.max_rooms:
            log.info(
                "control.subscribe_failed",
                extra={"conn": conn.id, "user": conn.identity, "room": room, "code": ErrorCode.LIMIT_EXCEEDED.value},
            )
            return
        self._joining[conn] = joining + 1
        self._joins[key] = self.tasks.spawn(self._join(conn, room))

    async def _join(self, conn: Connection, room: str) -> None:
        try:
            await self._hub.room_table.join(conn, room, ack=lambda payload: conn.send("subscribed", payload))
        except EventError as exc:
            log.info(
                "control.subscribe_failed",
                extra={"conn": conn.id, "user": conn.identity, "room": room, "code": exc.code.value},
            )
        finally:
            self._joins.pop((conn, room), None)
            left = self._joining.pop(conn, 1) - 1
            if left:
                self._joining[conn] = left

    def _unsubscribe(self, conn: Connection, room: str) -> None:
        joining = self._joins.pop((conn, room), None)
        if joining is not None:
            joining.cancel()  # Rooms.join undoes what it started
        if conn.leave(room):
            conn.send("unsubscribed", {"room": room})

    def start_reports(self, presence: Presence, numbers: Callable[[], tuple[int, int]]) -> None:
        """Report this node's `(connections, rooms)` now and every `REPORT_PERIOD` until `close`."""
        self.tasks.spawn(_report_forever(presence, self._hub.node_id, numbers))

    async def close(self) -> None:
        """Stop reporting and cancel the joins still under way (the hub is shutting down)."""
        await self.tasks.close()


async def _report_forever(presence: Presence, node: str, numbers: Callable[[], tuple[int, int]]) -> None:
    while True:
        connections, rooms = numbers()
        # a failure: the presence refresh and /healthz already tell; the next report is in REPORT_PERIOD
        with contextlib.suppress(BrokerUnavailable):
            await presence.report_node(node, connections, rooms, REPORT_TTL)
        await asyncio.sleep(REPORT_PERIOD)
