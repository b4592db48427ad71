"""History's bounds on a real server: bytes across rooms, and a reclaimed room's resume."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hubbub.backends.memory import MemoryBroker
from tests.cluster import Node
from tests.conftest import ServerFactory
from tests.helpers import EventClient, eventually, ws_url


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.timeout(90)
async def test_a_flood_of_large_messages_over_many_rooms_keeps_history_within_its_bytes() -> None:
    """60 KB messages to 100 rooms, 60 MB in all: the node grows by its history budget (8 MiB), not by 60 MB."""
    budget = 8 * 1024 * 1024
    node = await Node("memory", "--history-max-bytes", str(budget)).start()
    try:
        assert node.proc is not None
        client = await EventClient.open(node.url, max_size=None)
        rooms = [f"flood{i}" for i in range(100)]
        for room in rooms:
            await client.join(room)
        body = "x" * 60_000

        async def flood(count: int) -> None:
            for k in range(count):
                reply = await client.request("send_message", {"room": rooms[k % len(rooms)], "message": body})
                assert reply["type"] == "ack"
                client._backlog.clear()  # its own copies: not needed here

        await flood(200)  # warm up: buffers, allocator arenas, and a full budget
        before = _rss(node.proc.pid)
        await flood(1000)
        grown = _rss(node.proc.pid) - before
        assert grown < budget, f"grew by {grown / 2**20:.1f} MiB"
        await client.close()
    finally:
        node.stop()


async def test_resume_in_a_reclaimed_room_is_not_recovered_and_new_messages_are_above_it(
    make_server: ServerFactory,
) -> None:
    """Everyone left and history expired, so the room was forgotten: a resume says so, and offsets go on above."""
    server = await make_server(history_ttl=0.3)
    broker = server.hub.broker
    assert isinstance(broker, MemoryBroker)
    writer = await EventClient.open(ws_url(server))
    await writer.join("gone")
    offsets = [
        (await writer.request("send_message", {"room": "gone", "message": k}))["payload"]["offset"] for k in range(3)
    ]
    assert offsets == [1, 2, 3]
    await writer.close()
    await eventually(lambda: broker.room_count == 0, timeout=3)
    back = await EventClient.open(ws_url(server))
    reply = await back.request("join_room", {"room": "gone", "since": 3})
    assert reply["type"] == "ack" and reply["payload"]["recovered"] is False
    assert reply["payload"]["offset"] > 3
    sent = await back.request("send_message", {"room": "gone", "message": "again"})
    new = (await back.recv_type("new_message"))["payload"]
    assert new["offset"] == sent["payload"]["offset"] > reply["payload"]["offset"]  # hubbub.client.client keeps it: > 3
    await back.close()
    await asyncio.sleep(0)
