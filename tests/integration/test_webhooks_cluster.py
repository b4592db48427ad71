"""Webhooks of a cluster, as real processes on a private Redis: each event once, membership decided cluster-wide.

Every node is configured with the same webhook URL, as a deployment would be;
the receiver counts what it gets, so an event sent by every node shows up as
a duplicate.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from tests.cluster import Node, RedisProcess
from tests.helpers import EventClient
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.timeout(90)

SECRET = "cluster-webhook-secret"


async def _nodes(redis: RedisProcess, receiver: Receiver, count: int) -> list[Node]:
    assert receiver._server is not None
    url = f"http://127.0.0.1:{receiver._server.sockets[0].getsockname()[1]}/hook"
    args = ["--presence-ttl", "1.5", "--webhook", url, "--webhook-secret", SECRET, "--webhook-messages"]
    return [await Node(redis.url, *args, node_id=f"n{i}").start() for i in range(count)]


def _seen(receiver: Receiver) -> Counter[tuple[Any, ...]]:
    """Each delivered event without its id and time: a count above 1 is a duplicate."""
    return Counter(
        tuple(sorted((k, str(v)) for k, v in e.items() if k not in ("id", "time", "sent"))) for e in receiver.delivered
    )


def _count(receiver: Receiver, type_: str, **fields: Any) -> int:
    return sum(e["type"] == type_ and all(e.get(k) == v for k, v in fields.items()) for e in receiver.delivered)


async def test_an_identity_on_two_nodes_joins_and_leaves_once_and_every_event_is_sent_once(
    redis: RedisProcess, receiver: Receiver
) -> None:
    nodes = await _nodes(redis, receiver, 2)
    try:
        alice0 = await EventClient.open(nodes[0].url + "?name=alice")
        alice1 = await EventClient.open(nodes[1].url + "?name=alice")
        bob = await EventClient.open(nodes[1].url + "?name=bob")
        await alice0.join("hall")
        await alice1.join("hall")
        await bob.join("hall")
        await alice0.request("send_message", {"room": "hall", "message": "from n0"})
        await receiver.wait_for(lambda _: _count(receiver, "message") == 1 and _count(receiver, "member_joined") == 2)

        await alice0.request("leave_room", {"room": "hall"})  # her connection on n1 is still in the room
        await alice0.close()
        await receiver.wait_for(lambda _: _count(receiver, "disconnected", user="alice") == 1)
        await asyncio.sleep(0.5)
        assert _count(receiver, "member_left") == 0

        await alice1.close()  # her last connection: now she has left
        await receiver.wait_for(lambda _: _count(receiver, "member_left", user="alice") == 1)
        await bob.close()
        await receiver.wait_for(lambda _: _count(receiver, "room_vacated") == 1)
        await asyncio.sleep(1.0)  # time for a duplicate from the other node to arrive, if there were one

        seen = _seen(receiver)
        assert max(seen.values()) == 1, [e for e, n in seen.items() if n > 1]
        assert _count(receiver, "room_occupied", room="hall") == 1
        assert _count(receiver, "member_joined", room="hall", user="alice") == 1
        assert _count(receiver, "member_joined", room="hall", user="bob") == 1
        assert _count(receiver, "member_left", room="hall", user="alice") == 1
        assert _count(receiver, "member_left", room="hall", user="bob") == 1
        assert _count(receiver, "message", room="hall", offset=1, message="from n0") == 1
        connected = sorted((e["user"], e["node"]) for e in receiver.delivered if e["type"] == "connected")
        assert connected == [("alice", "n0"), ("alice", "n1"), ("bob", "n1")]  # from the node holding each
        disconnected = sorted(
            (e["user"], e["node"], e["code"]) for e in receiver.delivered if e["type"] == "disconnected"
        )
        assert disconnected == [("alice", "n0", 1000), ("alice", "n1", 1000), ("bob", "n1", 1000)]
        hall = [e["type"] for e in receiver.delivered if e.get("room") == "hall"]
        assert hall[0] == "room_occupied" and hall[-1] == "room_vacated"
        assert all(r.signed_by(SECRET) for r in receiver.requests)
    finally:
        for node in nodes:
            node.stop()


async def test_a_killed_node_produces_member_left_and_room_vacated_once_its_presence_expires(
    redis: RedisProcess, receiver: Receiver
) -> None:
    nodes = await _nodes(redis, receiver, 3)  # two survivors sweep: still one event each
    try:
        carol = await EventClient.open(nodes[0].url + "?name=carol")
        await carol.join("shared")
        dave = await EventClient.open(nodes[2].url + "?name=dave")
        await dave.join("shared")
        await dave.join("doomed")
        await receiver.wait_for(lambda _: _count(receiver, "member_joined") == 3)
        nodes[2].kill9()
        await receiver.wait_for(lambda _: _count(receiver, "room_vacated") == 1, timeout=15)
        await receiver.wait_for(lambda _: _count(receiver, "member_left") == 2, timeout=5)
        await asyncio.sleep(2.0)  # both survivors sweep several times more (TTL 1.5 s, four sweeps per TTL)
        assert _count(receiver, "member_left", room="doomed", user="dave") == 1
        assert _count(receiver, "member_left", room="shared", user="dave") == 1
        assert _count(receiver, "room_vacated", room="doomed") == 1
        assert _count(receiver, "room_vacated", room="shared") == 0  # carol is still there
        doomed = [e["type"] for e in receiver.delivered if e.get("room") == "doomed"]
        assert doomed == ["room_occupied", "member_joined", "member_left", "room_vacated"]
        await carol.close()
    finally:
        for node in nodes:
            node.stop()
