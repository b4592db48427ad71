"""History is bounded in every backend, and a room whose state was dropped never reuses an offset.

The memory broker bounds history in bytes across all rooms, enforces the TTL
with a sweep (not only on read) and reclaims a room with no subscriber and no
history; Redis trims each room's list and expires its keys. Either way, a
client resuming with an offset from before gets `recovered: false` and numbers
above the offset it holds.
"""

from __future__ import annotations

import asyncio
import tracemalloc
import uuid

import redis.asyncio as aioredis

from hubbub.backends.history import History
from hubbub.backends.memory import ENTRY_OVERHEAD, ROOM_OVERHEAD, MemoryBroker
from hubbub.protocol.envelope import new_message_parts
from tests.contract.conftest import REDIS_URL, Received, _make_broker
from tests.helpers import eventually


def _parts(room: str, text: str) -> tuple[bytes, bytes]:
    return new_message_parts(room, text, "tester", "2026-01-01T00:00:00.000Z")


async def test_a_dropped_room_never_reuses_an_offset(broker_backend: str) -> None:
    """Once a room's history has expired and nothing holds it, a resume is not recovered and offsets go on above."""
    b = _make_broker(broker_backend, history_size=10, history_ttl=0.2)
    await b.start(Received())
    try:
        assert isinstance(b, History)
        offsets = [await b.publish("gone", *_parts("gone", str(i))) for i in range(3)]
        assert offsets == [1, 2, 3]
        await asyncio.sleep(0.5)  # past the TTL, and past a sweep
        for since in (3, 2, 0):  # up to date, one behind, from the start: none can be recovered
            page = await b.since("gone", since, 10)
            assert not page.complete and page.messages == [], since
        after = await b.publish("gone", *_parts("gone", "again"))
        assert after > 3  # a client that saw 3 does not drop it as a repeat
        page = await b.since("gone", 3, 10)
        assert [o for o, _ in page.messages] == [after] and not page.complete
        assert (await b.since("gone", after, 10)).complete
    finally:
        await b.close()


async def test_a_subscribed_room_keeps_numbering_after_its_history_expired(broker_backend: str) -> None:
    """Live members never see offsets go back, even when a quiet room's history has expired."""
    b = _make_broker(broker_backend, history_size=10, history_ttl=0.2)
    sink = Received()
    await b.start(sink)
    try:
        await b.subscribe("quiet")
        await b.publish("quiet", *_parts("quiet", "first"))
        await asyncio.sleep(0.5)
        later = await b.publish("quiet", *_parts("quiet", "later"))
        await eventually(lambda: len(sink.items) == 2)
        assert [offset for _, offset, _ in sink.items] == [1, later] and later > 1
    finally:
        await b.close()


async def test_memory_history_is_bounded_in_bytes_across_rooms() -> None:
    """60 KB messages over 300 rooms: history keeps to its byte budget, dropping the oldest first."""
    budget = 2 * 1024 * 1024
    b = MemoryBroker(history_size=1000, history_ttl=3600, history_max_bytes=budget)
    await b.start(Received())
    try:
        await b.subscribe("room-0")  # a subscribed room loses its history too, but keeps its numbering
        body = "x" * 60_000
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(300 * 3):
            room = f"room-{i % 300}"
            b.publish_now(room, *_parts(room, body))
            assert b.held_bytes <= budget
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert held < budget * 1.25, held  # the count tracks what is really held
        per_message = 60_000 + 100 + ENTRY_OVERHEAD
        assert b.held_bytes > budget - per_message - ROOM_OVERHEAD  # and the budget is used, not wasted
        newest = await b.latest("room-299", 10)
        # Each time, the room had been reclaimed since its last message: lives numbered 1, 3, 5.
        assert [o for o, _ in newest.messages] == [5]
        oldest = await b.since("room-1", 0, 10)
        assert oldest.messages == [] and not oldest.complete
        assert b.room_count < 40  # rooms left with nothing are reclaimed...
        assert await b.last_offset("room-0") == 3  # ...but not a subscribed one
    finally:
        await b.close()


async def test_memory_ttl_is_enforced_without_any_read() -> None:
    """The sweep drops expired messages and reclaims their rooms: nothing stays because nobody asked."""
    b = MemoryBroker(history_size=100, history_ttl=0.2)
    await b.start(Received())
    try:
        for i in range(200):
            b.publish_now(f"r{i}", *_parts(f"r{i}", "hello"))
        assert b.room_count == 200 and b.held_bytes > 0
        await eventually(lambda: b.room_count == 0, timeout=2)
        assert b.held_bytes == 0
    finally:
        await b.close()
    assert b._sweeper is None  # close() cancelled and awaited it


async def test_memory_rooms_without_history_are_reclaimed_on_unsubscribe() -> None:
    """With --history-size 0 a room holds nothing; its counter goes when its last subscriber does."""
    b = MemoryBroker(history_size=0)
    await b.start(Received())
    try:
        for i in range(50):
            await b.subscribe(f"r{i}")
            b.publish_now(f"r{i}", *_parts(f"r{i}", "m"))
            await b.unsubscribe(f"r{i}")
        assert b.room_count == 0
        await b.subscribe("r7")
        assert b.publish_now("r7", *_parts("r7", "m")) > 1
    finally:
        await b.close()


async def test_redis_history_and_offset_keys_are_bounded(broker_backend: str) -> None:
    """In Redis a room's history is trimmed to `history_size`, and its keys expire after `history_ttl`."""
    if broker_backend == "memory":
        return
    prefix = f"test:{uuid.uuid4().hex}:"
    b = _make_broker(broker_backend, history_size=5, history_ttl=0.5, prefix=prefix)
    await b.start(Received())
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        for i in range(20):
            await b.publish("kept", *_parts("kept", str(i)))
        history, offset = f"{prefix}history:kept", f"{prefix}offset:kept"
        assert await client.llen(history) == 5
        assert 0 < await client.pttl(history) <= 500 and 0 < await client.pttl(offset) <= 500
        await asyncio.sleep(0.7)
        assert await client.exists(history, offset) == 0
    finally:
        await client.aclose()
        await b.close()


async def test_each_room_keeps_the_history_its_namespace_gives(broker_backend: str) -> None:
    """`history_for` (the namespaces' `history_size` and `history_ttl`) bounds each room on its own:
    a room of size 2, one of none, one with a short TTL, and the others at the broker's."""

    def history_for(room: str) -> tuple[int, float]:
        return {"short": (2, 60.0), "none": (0, 60.0), "fast": (10, 0.2)}.get(room.split(":")[0], (10, 60.0))

    b = _make_broker(broker_backend, history_size=10, history_ttl=60.0)
    assert isinstance(b, History)
    b.history_for = history_for
    await b.start(Received())
    try:
        for room in ("short:a", "none:a", "fast:a", "lobby"):
            for i in range(4):
                await b.publish(room, *_parts(room, str(i)))
        kept = {room: len((await b.latest(room, 10)).messages) for room in ("short:a", "none:a", "fast:a", "lobby")}
        assert kept == {"short:a": 2, "none:a": 0, "fast:a": 4, "lobby": 4}
        assert not (await b.since("none:a", 1, 10)).complete  # missed three, none kept
        await asyncio.sleep(0.5)  # past the fast room's TTL, and past a sweep
        assert not (await b.latest("fast:a", 10)).messages
        assert len((await b.latest("lobby", 10)).messages) == 4
    finally:
        await b.close()
