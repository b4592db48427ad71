"""A client that goes away while its join_room awaits the broker leaves nothing behind, on every backend.

The bug (b298dcd and before): `join_room` awaits the broker's subscribe, then
the presence store. A client that vanished during those awaits had its join
cancelled, and the cancelled path undid neither: the node stayed subscribed to
a room with no members, and on Redis a presence entry listed a connection that
no longer existed (until the node died). `hubbub.core.rooms.Rooms.join` now undoes
both, and only when nobody else needs them.

The window is made certain, not raced: the backend's `subscribe` or `add` is
wrapped to take `WINDOW` seconds, and the client closes (close frame, or an
RST) once its join is inside. Each backend is the real one: memory; Redis;
NATS with its Redis store; each with prefixes (and rooms) of its own.
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from hubbub.backends.broker import Broker, BrokerUnavailable
from hubbub.backends.memory import MemoryBroker, MemoryPresence
from hubbub.backends.nats import NatsBroker
from hubbub.backends.presence import Presence
from hubbub.backends.redis import RedisBroker
from hubbub.backends.redis_presence import RedisPresence
from hubbub.core.hub import Hub
from hubbub.core.settings import Settings
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import CLOSE, EventClient, RawPeer, eventually, mask_frame, ws_url

REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"
WINDOW = 0.2
"""How long the slowed await takes: the client vanishes inside it."""

AsyncMethod = Callable[..., Coroutine[Any, Any, Any]]


def backends(kind: str, node: str) -> tuple[Broker, Presence]:
    """The broker and presence of one node, on keys no other test uses."""
    if kind == "memory":
        return MemoryBroker(100, 60.0), MemoryPresence()
    prefix = f"test:{uuid.uuid4().hex}:"
    presence = RedisPresence(REDIS_URL, node, 30.0, prefix + "presence:")
    if kind == "redis":
        return RedisBroker(REDIS_URL, node, 100, 60.0, prefix=prefix), presence
    return NatsBroker(NATS_URL, REDIS_URL, node, 100, 60.0, prefix=prefix), presence


def broker_subscribed(broker: Broker, room: str) -> bool:
    """Whether the backend itself still delivers `room` to this node (not just the hub's table)."""
    if isinstance(broker, MemoryBroker):
        state = broker._rooms.get(room)
        return state is not None and state.subscribed
    if isinstance(broker, NatsBroker):
        return room in broker._order.wanted or room in broker._subs
    assert isinstance(broker, RedisBroker)
    return room in broker._order.wanted


class Window:
    """Slows one backend method down; `entered` is set when a call is inside the slow part."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    def before(self, original: AsyncMethod) -> AsyncMethod:
        """The call waits before it reaches the backend (nothing done there yet)."""

        async def slow(*args: Any) -> Any:
            self.entered.set()
            await asyncio.sleep(WINDOW)
            return await original(*args)

        return slow

    def after(self, original: AsyncMethod) -> AsyncMethod:
        """The backend has done it; the answer is slow to come back."""

        async def slow(*args: Any) -> Any:
            result = await original(*args)
            self.entered.set()
            await asyncio.sleep(WINDOW)
            return result

        return slow


@pytest.fixture(params=["memory", "redis", "nats"])
async def server(request: pytest.FixtureRequest, make_server: ServerFactory) -> Server:
    """A server on the backend `request.param`; make_server stops it (and closes the backends)."""
    node = uuid.uuid4().hex[:12]
    broker, presence = backends(request.param, node)
    hub = Hub(Settings(port=0, node_id=node), broker, presence)
    started: Server = await make_server(hub)
    return started


def slow_down(server: Server, where: str, monkeypatch: pytest.MonkeyPatch) -> Window:
    """Make the join's `where` await take WINDOW seconds: before or after the broker's subscribe,
    or after the presence store's add."""
    hub = server.hub
    window = Window()
    if where == "before-subscribe":
        monkeypatch.setattr(hub.broker, "subscribe", window.before(hub.broker.subscribe))
    elif where == "after-subscribe":
        monkeypatch.setattr(hub.broker, "subscribe", window.after(hub.broker.subscribe))
    else:
        assert where == "after-presence-add"
        monkeypatch.setattr(hub.presence, "add", window.after(hub.presence.add))
    return window


def vanish(peer: RawPeer, how: str) -> None:
    if how == "close":
        peer.writer.write(mask_frame(CLOSE, struct.pack("!H", 1000)))
    else:
        peer.reset()


async def leftovers(server: Server, room: str) -> dict[str, object]:
    """What remains of `room` on this node: each entry is something the departed client left."""
    hub = server.hub
    found: dict[str, object] = {
        "hub subscription": room in hub.room_table.subscribed,
        "joiner": room in hub.room_table._joining,
        "backend subscription": broker_subscribed(hub.broker, room),
        "members": {r: [c.identity for c in m] for r, m in hub.rooms.items()},
        "connections": len(hub.connections),
        "presence": await hub.presence.members(room),
    }
    return {what: value for what, value in found.items() if value}


async def nothing_left(server: Server, room: str, connected: int = 0) -> None:
    """No subscription (the hub's or the backend's), no joiner, no member, no presence entry for
    `room`, and no connection but the `connected` still open."""
    deadline = time.monotonic() + 3
    while left := {k: v for k, v in (await leftovers(server, room)).items() if (k, v) != ("connections", connected)}:
        assert time.monotonic() < deadline, f"left behind: {left}"
        await asyncio.sleep(0.02)


async def receives_its_own_messages(client: EventClient, room: str) -> None:
    """The room is really subscribed: a message goes out through the broker and comes back."""
    reply = await client.request("send_message", {"room": room, "message": "through the broker"})
    assert reply["type"] == "ack", reply
    event = await client.recv_type("new_message", timeout=3)
    assert event["payload"]["message"] == "through the broker"


def fresh_room() -> str:
    return f"join-{uuid.uuid4().hex[:12]}"  # NATS subjects carry no test prefix


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("where", ["before-subscribe", "after-subscribe", "after-presence-add"])
async def test_a_client_that_vanishes_mid_join_leaves_nothing_behind(
    server: Server, monkeypatch: pytest.MonkeyPatch, where: str, how: str
) -> None:
    """It sends join_room and goes away (close frame, or RST) while the join awaits the broker or
    the presence store: no subscription, no presence entry and no room remain, even after the
    slow call would have completed."""
    hub = server.hub
    window = slow_down(server, where, monkeypatch)
    room = fresh_room()
    peer = await RawPeer.open(server.port, path="/ws?name=alice")
    peer.send_event("join_room", {"room": room}, "join")
    await asyncio.wait_for(window.entered.wait(), 3)
    vanish(peer, how)
    await asyncio.sleep(WINDOW + 0.1)  # past the moment the slow call returns
    await nothing_left(server, room)
    await eventually(lambda: len(hub.tasks) == 1)  # the heartbeat sweep alone: the undoing is done too


@pytest.mark.parametrize("when", ["joining-together", "already-a-member", "joining-right-after"])
async def test_a_vanished_joiner_does_not_take_the_room_from_others(
    server: Server, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """No over-eager cleanup: bob, who joins the same room together with alice, or is in it
    already, or joins right after her join was undone, keeps a working subscription and his
    presence entry, while alice's vanish leaves none of hers."""
    hub = server.hub
    room = fresh_room()
    window = slow_down(server, "after-presence-add" if when == "already-a-member" else "before-subscribe", monkeypatch)
    bob = await EventClient.open(ws_url(server, query="name=bob"))
    if when == "already-a-member":
        await bob.join(room)
        window.entered.clear()
    alice = await RawPeer.open(server.port, path="/ws?name=alice")
    alice.send_event("join_room", {"room": room}, "join")
    await asyncio.wait_for(window.entered.wait(), 3)
    if when == "joining-together":
        await bob.send("join_room", {"room": room}, "bob-join")
        await eventually(lambda: len(hub.room_table._joining.get(room, {})) == 2)  # both wait on one subscribe
    vanish(alice, "reset")
    await eventually(lambda: len(hub.connections) == 1)
    if when == "joining-together":
        ack = await bob.recv_type("ack", timeout=3)
        assert ack["id"] == "bob-join"
    elif when == "joining-right-after":
        await bob.join(room)
    await asyncio.sleep(WINDOW + 0.1)
    assert room in hub.room_table.subscribed and broker_subscribed(hub.broker, room)
    assert [c.identity for c in hub.rooms[room]] == ["bob"]
    assert await hub.presence.members(room) == [("bob", 1)]
    await receives_its_own_messages(bob, room)
    await bob.close()
    await nothing_left(server, room)


@pytest.mark.parametrize("call", ["subscribe", "subscribe-after-subscribing", "history"])
async def test_a_failed_broker_call_is_answered_unavailable_and_leaves_nothing_behind(
    server: Server, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    """The broker fails during join_room: its subscribe (before or after the backend subscribed the
    channel), or (after subscribing) the history read of a resume. The join is answered
    `unavailable` and undone (no subscription, the backend's included, no joiner or presence
    entry), the client stays connected, and once the broker works again the same join succeeds."""
    hub = server.hub
    target: Any = hub.room_table._history if call == "history" else hub.broker
    method = "since" if call == "history" else "subscribe"
    original = getattr(target, method)

    async def failing(*args: Any) -> Any:
        if call == "subscribe-after-subscribing":
            await original(*args)  # the channel is subscribed; then, say, the gap read fails
        raise BrokerUnavailable("down for the test")

    monkeypatch.setattr(target, method, failing)
    room = fresh_room()
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    reply = await alice.request("join_room", {"room": room, "since": 0})
    assert reply["type"] == "error" and reply["payload"]["code"] == "unavailable", reply
    await nothing_left(server, room, connected=1)
    monkeypatch.setattr(target, method, original)
    assert (await alice.request("join_room", {"room": room, "since": 0}))["type"] == "ack"
    await receives_its_own_messages(alice, room)
    await alice.close()
    await nothing_left(server, room)
