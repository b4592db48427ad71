"""The Broker contract: how a published message reaches every node with members.

The broker delivers to *nodes*, not to clients: each node subscribes to the
rooms it has local members in, and the hub fans a delivery out locally. The
broker also assigns each message its offset, so that every node sees a room's
messages in one order with consecutive offsets.

Guarantee: at most once, live. A node that was not subscribed (or not
connected) when a message went out does not get it from the broker; history
and resume-by-offset are how clients recover what they missed.

Backends: `hubbub.backends.memory` (the default; one process, one node) and,
for several nodes, the Redis and NATS backends.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from hubbub.errors import HubbubError

ControlSink = Callable[[bytes], None]
"""Called on the event loop with each control message (`Broker.send_control`) any node sent."""

Sink = Callable[[str, int, bytes], None]
"""Called on the event loop for each delivery: `(room, offset, event_json)`.

`event_json` is a complete encoded event, the same bytes for every recipient;
`offset` is the message's offset, or 0 for an event outside the room's sequence
(`member_joined`, `member_left`). The sink must not block or await.
"""


class BrokerUnavailable(HubbubError):
    """The broker cannot be reached; the publish did not happen."""


class Broker(abc.ABC):
    """Publish/subscribe between nodes, with per-room offsets."""

    synchronous = False
    """True for a broker that publishes without I/O: it implements `publish_now`,
    which the hub calls in place of `publish`, with no task or future per message."""

    @abc.abstractmethod
    async def start(self, sink: Sink) -> None:
        """Connect, and deliver every message of a subscribed room to `sink`."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect; idempotent."""

    @abc.abstractmethod
    async def publish(self, room: str, head: bytes, tail: bytes) -> int:
        """Assign the room's next offset, deliver `head + offset + tail`, return the offset.

        Raises `BrokerUnavailable` when the message could not be published.
        """

    def publish_now(self, room: str, head: bytes, tail: bytes) -> int:
        """`publish` without suspending; only brokers with `synchronous = True` implement it."""
        raise NotImplementedError(f"{type(self).__name__} publishes asynchronously")

    @abc.abstractmethod
    async def broadcast(self, room: str, event: bytes) -> None:
        """Deliver `event` to the room's nodes with offset 0: not numbered, not kept in history."""

    @abc.abstractmethod
    async def subscribe(self, room: str) -> None:
        """Start delivering `room` to this node; returns once deliveries flow."""

    @abc.abstractmethod
    async def unsubscribe(self, room: str) -> None:
        """Stop delivering `room` to this node."""

    @abc.abstractmethod
    async def last_offset(self, room: str) -> int:
        """The offset of the latest message published to `room` (0 for none)."""

    @property
    def healthy(self) -> bool:
        """False while the broker cannot be reached (`/healthz` answers 503)."""
        return True

    # ---- the control channel (the server API's disconnect, subscribe, unsubscribe) ----

    control_sink: ControlSink | None = None
    """Where this node gets control messages; set before `start` (the hub's `Control.receive`)."""

    async def send_control(self, message: bytes) -> None:
        """Deliver `message` to the control sink of every started node, this one's included.

        At most once, like messages: a node that is not connected at that moment
        misses it. This default is a broker that spans one node (memory): the
        message goes straight to this node's sink. Raises `BrokerUnavailable`
        when the message could not be sent.
        """
        if self.control_sink is not None:
            self.control_sink(message)
