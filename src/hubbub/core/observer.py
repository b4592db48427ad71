"""What the node tells whoever watches it: connections, memberships and messages, as they happen.

The core never imports an integration. An observer (the webhooks dispatcher,
`hubbub.integration.webhooks.Webhooks`, is one) is handed to `Hub.observe`
by whoever assembles the node, and the hub calls it. Every call is made
without awaiting, off the per-recipient path: a publish makes at most one
`message` call, whatever the room's size.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["HubObserver"]


class HubObserver(Protocol):
    """Receives the node's events; each method queues and returns at once."""

    wants_messages: bool
    """Whether `message` is called for each message this node publishes (it costs an encode per publish)."""

    def connected(self, user: str) -> None:
        """A connection of `user` became live on this node."""

    def disconnected(self, user: str, code: int) -> None:
        """A connection of `user` ended with close `code`."""

    def membership(self, room: str, user: str, joined: bool, room_changed: bool) -> None:
        """`user`'s first join or last leave of `room` in the cluster; `room_changed`: the room's first or last."""

    def message(self, room: str, offset: int, sender: str, message: Any, sent: str) -> None:
        """This node published `message` into `room` at `offset`."""

    async def start(self) -> None:
        """Called by `Hub.start`."""

    async def close(self, grace: float) -> None:
        """Called last by `Hub.shutdown`: send what is queued within `grace` seconds, then drop the rest."""
