"""The Broker and History contracts, against every backend."""

from __future__ import annotations

import asyncio
import json
import uuid

from hubbub.backends.broker import Broker
from hubbub.backends.history import History, payload_of
from hubbub.backends.redis_store import RedisStore
from hubbub.protocol.envelope import new_message_parts
from tests.contract.conftest import REDIS_URL, Received, _make_broker
from tests.helpers import eventually


def _parts(room: str, text: str) -> tuple[bytes, bytes]:
    return new_message_parts(room, text, "tester", "2026-01-01T00:00:00.000Z")


async def _publish(b: Broker, room: str, *texts: str) -> list[int]:
    return [await b.publish(room, *_parts(room, t)) for t in texts]


async def test_offsets_are_consecutive_per_room(broker: tuple[Broker, Received]) -> None:
    b, _ = broker
    assert await b.last_offset("r1") == 0
    assert await _publish(b, "r1", "a", "b", "c") == [1, 2, 3]
    assert await _publish(b, "r2", "x") == [1]
    assert await b.last_offset("r1") == 3


async def test_subscribed_rooms_are_delivered_in_order(broker: tuple[Broker, Received]) -> None:
    b, sink = broker
    await b.subscribe("r")
    await _publish(b, "other", "not for us")
    await asyncio.gather(*(_publish(b, "r", f"m{i}") for i in range(20)))  # racing publishes
    await eventually(lambda: len(sink.items) == 20)
    assert [offset for _, offset, _ in sink.items] == list(range(1, 21))
    event = json.loads(sink.items[0][2])
    assert event["type"] == "new_message" and event["payload"]["offset"] == 1


async def test_broadcast_is_delivered_with_offset_zero_and_not_kept(broker: tuple[Broker, Received]) -> None:
    b, sink = broker
    assert isinstance(b, History)
    await b.subscribe("r")
    await b.broadcast("r", b'{"type":"member_joined","payload":{"room":"r","name":"n"}}')
    await eventually(lambda: len(sink.items) == 1)
    assert sink.items[0][1] == 0
    assert (await b.latest("r", 10)).messages == []


async def test_unsubscribed_rooms_are_not_delivered(broker: tuple[Broker, Received]) -> None:
    b, sink = broker
    await b.subscribe("r")
    await b.unsubscribe("r")
    await _publish(b, "r", "after")
    await asyncio.sleep(0.3)
    assert sink.items == []


async def test_history_since_and_latest(broker: tuple[Broker, Received]) -> None:
    b, _ = broker
    assert isinstance(b, History)
    await _publish(b, "h", "1", "2", "3")
    page = await b.since("h", 1, 10)
    assert [o for o, _ in page.messages] == [2, 3] and page.complete and page.offset == 3
    assert json.loads(payload_of(page.messages[0][1]))["message"] == "2"
    assert (await b.since("h", 3, 10)).messages == [] and (await b.since("h", 3, 10)).complete
    assert [o for o, _ in (await b.latest("h", 2)).messages] == [2, 3]


async def test_history_is_bounded_by_size(broker_backend: str) -> None:
    b = _make_broker(broker_backend, history_size=5)
    await b.start(Received())
    try:
        assert isinstance(b, History)
        await _publish(b, "big", *[str(i) for i in range(8)])
        page = await b.since("big", 0, 100)
        assert [o for o, _ in page.messages] == [4, 5, 6, 7, 8]
        assert not page.complete  # offsets 1..3 are gone
        assert (await b.since("big", 3, 100)).complete
    finally:
        await b.close()


async def test_history_is_bounded_by_age(broker_backend: str) -> None:
    b = _make_broker(broker_backend, history_size=10, history_ttl=0.2)
    await b.start(Received())
    try:
        assert isinstance(b, History)
        await _publish(b, "old", "x")
        await asyncio.sleep(0.35)
        [second] = await _publish(b, "old", "y")
        assert second > 1  # never an offset the room had, whether its state outlived its history or not
        page = await b.since("old", 0, 10)
        assert [o for o, _ in page.messages] == [second] and not page.complete
    finally:
        await b.close()


async def test_control_messages_reach_every_node_once(broker_backend: str) -> None:
    """`send_control` reaches the control sink of every started node of the cluster, the sender's too.

    Memory spans one node: it delivers to itself. Redis and NATS: two brokers on one
    store (and bus) both hear a message either sends. Other test runs may share the
    NATS subject, so only this test's own messages are counted.
    """
    prefix = f"test:{uuid.uuid4().hex}:"
    first = _make_broker(broker_backend, prefix=prefix)
    nodes = [first]
    if broker_backend != "memory":
        nodes.append(_make_broker(broker_backend, prefix=prefix))  # one cluster
    heard: list[list[bytes]] = [[] for _ in nodes]
    tag = f"control-{id(first)}".encode()
    for node, got in zip(nodes, heard, strict=True):
        node.control_sink = lambda message, got=got: got.append(message) if message.startswith(tag) else None
        await node.start(Received())
    try:
        await nodes[-1].send_control(tag + b":one")
        await first.send_control(tag + b":two")
        await eventually(lambda: all(len(got) == 2 for got in heard), timeout=5)
        await asyncio.sleep(0.2)  # and no more than once
        for got in heard:
            assert sorted(got) == [tag + b":one", tag + b":two"]
    finally:
        for node in nodes:
            await node.close()


async def test_a_message_the_bus_missed_is_filled_from_history_in_order(broker_backend: str) -> None:
    """A message numbered and kept in the store but never on the bus reaches a subscribed node before the next.

    The store that writes it is another node's whose bus lost it (Redis: a
    subscription down at that moment; NATS: a publish that reached Redis, not NATS).
    """
    if broker_backend == "memory":
        return  # one process: there is no bus to miss a message
    prefix = f"test:{uuid.uuid4().hex}:"
    b = _make_broker(broker_backend, prefix=prefix)
    sink = Received()
    await b.start(sink)
    silent = RedisStore(REDIS_URL, 100, 60.0, prefix, fanout=False)
    try:
        await b.subscribe("g")
        await _publish(b, "g", "one")
        assert await silent.publish("g", *_parts("g", "missed")) == 2
        await _publish(b, "g", "three", "four")
        await eventually(lambda: len(sink.items) == 4)
        await asyncio.sleep(0.2)  # and nothing twice
        texts = [json.loads(event)["payload"]["message"] for _, _, event in sink.items]
        assert [offset for _, offset, _ in sink.items] == [1, 2, 3, 4]
        assert texts == ["one", "missed", "three", "four"]
    finally:
        await silent.close()
        await b.close()
