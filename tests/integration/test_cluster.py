"""Several nodes on Redis, as real processes: order, presence, resume anywhere, node death, Redis restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from hubbub.client.client import connect
from tests.cluster import Node, RedisProcess
from tests.helpers import EventClient, eventually

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def nodes(redis: RedisProcess) -> AsyncIterator[list[Node]]:
    started = [await Node(redis.url, "--presence-ttl", "1.5", "--history-size", "50").start() for _ in range(2)]
    yield started
    for node in started:
        node.stop()


async def test_one_order_across_nodes(nodes: list[Node]) -> None:
    members = [await EventClient.open(nodes[i % 2].url + f"?name=m{i}") for i in range(6)]
    for m in members:
        await m.join("order")
    per_sender = 40

    async def publish(client: EventClient) -> None:
        for k in range(per_sender):
            await client.send("send_message", {"room": "order", "message": k})

    async def collect(client: EventClient) -> list[tuple[int, str, int]]:
        seen: list[tuple[int, str, int]] = []
        while len(seen) < 2 * per_sender:
            p = (await client.recv_type("new_message", timeout=10))["payload"]
            seen.append((p["offset"], p["from"], p["message"]))
        return seen

    collectors = [asyncio.create_task(collect(m)) for m in members]
    await asyncio.gather(publish(members[0]), publish(members[1]))  # one on each node
    results = await asyncio.gather(*collectors)
    assert [o for o, _, _ in results[0]] == list(range(1, 2 * per_sender + 1))
    assert all(r == results[0] for r in results)
    for m in members:
        await m.close()


async def test_presence_spans_nodes(nodes: list[Node]) -> None:
    alice = await EventClient.open(nodes[0].url + "?name=alice")
    alice2 = await EventClient.open(nodes[1].url + "?name=alice")
    bob = await EventClient.open(nodes[1].url + "?name=bob")
    await bob.join("p")
    await alice.join("p")
    while (joined := await bob.recv_type("member_joined"))["payload"]["name"] == "bob":
        pass  # bob's own arrival comes first
    assert joined["payload"] == {"room": "p", "name": "alice"}
    await alice2.join("p")
    reply = await bob.request("get_presence", {"room": "p"})
    assert reply["payload"]["members"] == [{"name": "alice", "connections": 2}, {"name": "bob", "connections": 1}]
    await alice.close()
    await asyncio.sleep(0.3)
    assert (await bob.request("get_presence", {"room": "p"}))["payload"]["members"][0]["connections"] == 1
    await alice2.close()  # her last connection: now she has left
    assert (await bob.recv_type("member_left"))["payload"] == {"room": "p", "name": "alice"}
    await bob.close()


async def test_resume_on_another_node(nodes: list[Node]) -> None:
    reader = await EventClient.open(nodes[0].url)
    writer = await EventClient.open(nodes[1].url)
    await reader.join("r")
    await writer.join("r")
    for k in range(3):
        await writer.request("send_message", {"room": "r", "message": k})
    seen = [(await reader.recv_type("new_message"))["payload"]["offset"] for _ in range(3)]
    assert seen == [1, 2, 3]
    await reader.close()
    for k in range(3, 8):
        await writer.request("send_message", {"room": "r", "message": k})
    back = await EventClient.open(nodes[1].url)  # the other node
    await back.send("join_room", {"room": "r", "since": 3}, "j")
    ack = await back.recv()
    assert ack == {"type": "ack", "payload": {"room": "r", "offset": 8, "recovered": True}, "id": "j"}
    await writer.request("send_message", {"room": "r", "message": 8})
    got = [(await back.recv_type("new_message"))["payload"] for _ in range(6)]
    assert [(p["offset"], p["message"]) for p in got] == [(o, o - 1) for o in range(4, 10)]
    history = await back.request("get_history", {"room": "r", "since": 6, "limit": 2})
    assert [m["offset"] for m in history["payload"]["messages"]] == [7, 8]
    await back.close()
    await writer.close()


async def test_resume_past_history_is_reported(nodes: list[Node]) -> None:
    writer = await EventClient.open(nodes[0].url)
    await writer.join("long")
    for k in range(59):  # history holds 50
        await writer.send("send_message", {"room": "long", "message": k})
    await writer.request("send_message", {"room": "long", "message": 59})  # acked once all 60 are in
    late = await EventClient.open(nodes[1].url)
    reply = await late.request("join_room", {"room": "long", "since": 2})
    assert reply["payload"] == {"room": "long", "offset": 60, "recovered": False}
    replayed = [(await late.recv_type("new_message"))["payload"]["offset"] for _ in range(50)]
    assert replayed == list(range(11, 61))  # everything history still held, in order
    await late.close()
    await writer.close()


async def test_a_killed_node_drops_out_of_presence(nodes: list[Node]) -> None:
    doomed = await EventClient.open(nodes[0].url + "?name=doomed")
    watcher = await EventClient.open(nodes[1].url + "?name=watcher")
    await watcher.join("k")
    await doomed.join("k")
    while (await watcher.recv_type("member_joined"))["payload"]["name"] != "doomed":
        pass  # the watcher's own arrival comes first; wait until doomed is in presence
    nodes[0].kill9()
    started = time.monotonic()
    left = await watcher.recv_type("member_left", timeout=10)
    assert left["payload"] == {"room": "k", "name": "doomed"}
    assert time.monotonic() - started < 1.5 * 2 + 1  # within the TTL (1.5 s), give or take a sweep
    members = (await watcher.request("get_presence", {"room": "k"}))["payload"]["members"]
    assert members == [{"name": "watcher", "connections": 1}]
    await watcher.close()


async def test_redis_outage_is_visible_and_survived(redis: RedisProcess, nodes: list[Node]) -> None:
    a = await EventClient.open(nodes[0].url)
    b = await EventClient.open(nodes[1].url)
    await a.join("o")
    await b.join("o")
    assert nodes[0].health() == 200
    redis.stop()
    await eventually(lambda: nodes[0].health() == 503, timeout=8)
    failed = await a.request("send_message", {"room": "o", "message": "lost?"})
    assert failed["type"] == "error" and failed["payload"]["code"] == "unavailable"
    await redis.start()  # empty: offsets start over, as with a Redis that keeps nothing
    await eventually(lambda: nodes[0].health() == 200 and nodes[1].health() == 200, timeout=15)
    ok = await a.request("send_message", {"room": "o", "message": "back"})
    assert ok["type"] == "ack"
    got = await b.recv_type("new_message", timeout=10)
    assert got["payload"]["message"] == "back"
    await a.close()
    await b.close()


async def test_client_rides_through_a_node_restart(redis: RedisProcess) -> None:
    node = await Node(redis.url, "--history-size", "500").start()
    other = await Node(redis.url).start()
    try:
        publisher = await EventClient.open(other.url)
        await publisher.join("ride")
        async with connect(node.url, name="rider", backoff=0.05, max_backoff=0.5) as client:
            await client.join("ride")
            total = 120

            async def publish() -> None:
                for k in range(total):
                    await publisher.request("send_message", {"room": "ride", "message": k})
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(publish())
            await asyncio.sleep(0.3)
            node.kill9()
            await asyncio.sleep(0.3)
            await node.start()
            got: list[int] = []
            while len(got) < total:
                event = await client.next_event(timeout=15)
                if event["type"] == "new_message":
                    got.append(event["payload"]["message"])
            await task
            assert got == list(range(total))
            assert client.reconnects >= 1
        await publisher.close()
    finally:
        node.stop()
        other.stop()


async def test_nats_nodes_share_rooms_in_one_order(redis: RedisProcess) -> None:
    """NATS carries the messages, Redis numbers and keeps them: same order everywhere, resume anywhere."""
    args = ("--store", redis.url)
    nodes = [await Node("nats://127.0.0.1:4222", *args).start() for _ in range(2)]
    try:
        members = [await EventClient.open(nodes[i % 2].url) for i in range(4)]
        for m in members:
            await m.join("nats-room")

        async def publish(client: EventClient, tag: str) -> None:
            for k in range(30):
                await client.send("send_message", {"room": "nats-room", "message": f"{tag}{k}"})

        async def collect(client: EventClient) -> list[int]:
            return [(await client.recv_type("new_message", timeout=10))["payload"]["offset"] for _ in range(60)]

        collectors = [asyncio.create_task(collect(m)) for m in members]
        await asyncio.gather(publish(members[0], "a"), publish(members[1], "b"))
        results = await asyncio.gather(*collectors)
        assert all(r == list(range(1, 61)) for r in results)
        late = await EventClient.open(nodes[1].url)
        reply = await late.request("join_room", {"room": "nats-room", "since": 55})
        assert reply["payload"] == {"room": "nats-room", "offset": 60, "recovered": True}
        assert [(await late.recv_type("new_message"))["payload"]["offset"] for _ in range(5)] == [56, 57, 58, 59, 60]
        for m in [*members, late]:
            await m.close()
    finally:
        for node in nodes:
            node.stop()


@pytest.mark.timeout(150)
async def test_healthz_200_after_a_redis_restart_means_every_operation_works(redis: RedisProcess) -> None:
    """Once `/healthz` is 200 again, the first join, send and presence on the node succeed (five restarts)."""
    node = await Node(redis.url, "--presence-ttl", "1.5").start()
    try:
        stayer = await EventClient.open(node.url + "?name=stayer")
        await stayer.join("stay")
        for attempt in range(5):
            # Several commands at once, so that the node's pool holds several connections to go stale.
            busy = [await EventClient.open(node.url + f"?name=b{attempt}{i}") for i in range(6)]
            await asyncio.gather(*(b.join(f"warm{i}") for i, b in enumerate(busy)))
            await asyncio.gather(*(b.request("get_presence", {"room": "stay"}) for b in busy))
            redis.stop()
            await eventually(lambda: node.health() == 503, timeout=8)
            await redis.start()
            await eventually(lambda: node.health() == 200, timeout=20)
            client = await EventClient.open(node.url + f"?name=r{attempt}")
            room = f"after{attempt}"
            joined = await client.request("join_room", {"room": room})
            assert joined["type"] == "ack", (attempt, joined)
            sent = await client.request("send_message", {"room": room, "message": attempt})
            assert sent["type"] == "ack", (attempt, sent)
            presence = await client.request("get_presence", {"room": room})
            assert presence["type"] == "ack", (attempt, presence)
            assert presence["payload"]["members"] == [{"name": f"r{attempt}", "connections": 1}]
            for c in [client, *busy]:
                await c.close()
        # The last Redis came back empty: the node's next presence refresh (every TTL / 4) lists stayer again.
        deadline = time.monotonic() + 5
        while (await stayer.request("get_presence", {"room": "stay"}))["payload"]["members"] != [
            {"name": "stayer", "connections": 1}
        ]:
            assert time.monotonic() < deadline, "stayer never came back into presence"
            await asyncio.sleep(0.1)
        await stayer.close()
    finally:
        node.stop()


async def test_a_room_whose_keys_expired_numbers_above_its_past(redis: RedisProcess) -> None:
    """Redis forgets a quiet room after --history-ttl; a resume is then not recovered, and offsets never go back."""
    node = await Node(redis.url, "--history-ttl", "0.5").start()
    try:
        stayer = await EventClient.open(node.url)
        writer = await EventClient.open(node.url)
        await stayer.join("quiet")
        for room in ("gone", "quiet"):
            await writer.join(room)
        for k in range(3):
            await writer.request("send_message", {"room": "gone", "message": k})
        await writer.request("send_message", {"room": "quiet", "message": "first"})
        assert (await stayer.recv_type("new_message"))["payload"]["offset"] == 1
        await asyncio.sleep(1.0)  # both rooms' keys expire
        back = await EventClient.open(node.url)
        reply = await back.request("join_room", {"room": "gone", "since": 3})
        assert reply["type"] == "ack" and reply["payload"]["recovered"] is False
        sent = await back.request("send_message", {"room": "gone", "message": "again"})
        assert sent["payload"]["offset"] > 3
        await writer.request("send_message", {"room": "quiet", "message": "later"})
        later = (await stayer.recv_type("new_message"))["payload"]
        assert later["message"] == "later" and later["offset"] > 1  # a member that stayed drops nothing
        for c in (stayer, writer, back):
            await c.close()
    finally:
        node.stop()
