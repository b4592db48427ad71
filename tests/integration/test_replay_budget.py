"""Replays are paid for: `join_room` with `since` and `get_history` spend a byte budget.

The attack: leave and join again with `since: 0`, over and over, to be sent the same history
each time (sixty bytes in, up to half of `send_queue_bytes` out). Each connection's replays are
held to `replay_rate` (burst 8 s of it) and the node's to `replay_rate_total` (burst 4 s);
over either, the join is refused whole with `rate_limited`. Real sockets on loopback, with the
sizes shrunk so that the arithmetic shows in a second or two: answers capped at 64 KiB
(`send_queue_bytes` 128 KiB), a connection's budget 8 KiB/s with a 64 KiB burst.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from hubbub.backends.history import MESSAGE_OVERHEAD
from hubbub.core.settings import REPLAY_BURST_SECONDS, REPLAY_TOTAL_BURST_SECONDS
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import EventClient, ws_url

QUEUE = 128 * 1024
CAP = QUEUE // 2
RATE = 8192
"""Bytes a second of a connection's replays; its burst is `REPLAY_BURST_SECONDS` of it: the cap."""
MESSAGE = 10_000
SMALL = dict(send_queue_bytes=QUEUE, max_message_size=65536)


async def fill_history(server: Server, room: str, count: int, size: int = MESSAGE) -> None:
    for i in range(count):
        await server.hub.publish(room, {"i": i, "text": "x" * size}, "filler")


def errors(server: Server, code: str) -> float:
    value: float = server.hub.metrics.errors.labels(code)._value.get()
    return value


async def drain(client: EventClient, quiet: float = 0.2) -> int:
    """Read whatever arrives until `quiet` seconds of silence; return the bytes of its `new_message`s."""
    total = 0
    while True:
        try:
            data = await asyncio.wait_for(client.ws.recv(), quiet)
        except TimeoutError:
            return total
        assert isinstance(data, str)
        if json.loads(data)["type"] == "new_message":
            total += len(data.encode())


async def test_cycling_joins_with_since_0_are_refused_once_the_budget_is_spent(make_server: ServerFactory) -> None:
    """leave_room + join_room {since: 0} as fast as the event rate limit lets it for 2 s: the first
    join replays a full answer, later ones are refused with rate_limited ("retry after N s") and join
    nothing, and the bytes replayed stay within burst + rate x elapsed (plus one answer let in)."""
    server = await make_server(replay_rate=RATE, **SMALL)
    assert RATE * REPLAY_BURST_SECONDS == CAP
    hub = server.hub
    await fill_history(server, "big", 12)
    client = await EventClient.open(ws_url(server))
    replayed = 0
    joined = refused = 0
    start = time.monotonic()
    try:
        while time.monotonic() - start < 2.0:
            reply = await client.request("join_room", {"room": "big", "since": 0})
            if reply["type"] == "ack":
                joined += 1
                replayed += await drain(client, 0.05)
                left = await client.request("leave_room", {"room": "big"})
                assert left["type"] == "ack", left
            else:
                refused += 1
                assert reply["payload"]["code"] == "rate_limited", reply
                assert "replay budget exceeded" in reply["payload"]["message"]
                assert "retry after" in reply["payload"]["message"]
                (conn,) = hub.connections
                assert "big" not in conn.rooms  # refused whole: not joined
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - start
    finally:
        await client.close()
    assert joined >= 1 and refused >= 5, (joined, refused)
    assert errors(server, "rate_limited") == refused
    # What the arithmetic allows: the burst, the refill over the time it ran, and one answer
    # (a full replay is at most CAP): every frame of the replay is counted here, header aside.
    per_message = MESSAGE + MESSAGE_OVERHEAD
    assert replayed <= RATE * REPLAY_BURST_SECONDS + RATE * elapsed + per_message, (replayed, elapsed)
    assert replayed >= CAP - 2 * per_message  # the first join was replayed in full (its cap)


async def test_get_history_spends_the_same_budget(make_server: ServerFactory) -> None:
    """get_history answers come out of the same budget: after a full replay, a second full answer is
    refused with rate_limited, and nothing is answered."""
    server = await make_server(replay_rate=RATE, **SMALL)
    await fill_history(server, "big", 12)
    client = await EventClient.open(ws_url(server))
    try:
        reply = await client.request("join_room", {"room": "big", "since": 0})
        assert reply["type"] == "ack" and reply["payload"]["recovered"] is False  # longer than one answer
        await drain(client, 0.1)
        answer = await client.request("get_history", {"room": "big", "limit": 1000})
        assert answer["type"] == "error" and answer["payload"]["code"] == "rate_limited", answer
        offset = reply["payload"]["offset"]
        small = await client.request("get_history", {"room": "big", "since": offset})  # nothing new: free
        assert small["type"] == "ack" and small["payload"]["messages"] == [], small
    finally:
        await client.close()


async def test_the_node_budget_refuses_a_crowd_replaying_at_once(make_server: ServerFactory) -> None:
    """Ten connections join with since: 0 at once, each within its own budget: the node's budget
    (16 KiB/s, a 64 KiB burst) lets one full replay through, refuses the others with rate_limited,
    and the node sends no more than its arithmetic allows."""
    total = 16384
    server = await make_server(replay_rate_total=total, **SMALL)
    assert total * REPLAY_TOTAL_BURST_SECONDS == CAP
    await fill_history(server, "big", 12)
    clients = [await EventClient.open(ws_url(server)) for _ in range(10)]
    start = time.monotonic()
    try:
        replies: list[dict[str, Any]] = await asyncio.gather(
            *(c.request("join_room", {"room": "big", "since": 0}) for c in clients)
        )
        replayed = sum(await asyncio.gather(*(drain(c, 0.1) for c in clients)))
        elapsed = time.monotonic() - start
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    acked = [r for r in replies if r["type"] == "ack"]
    refused = [r for r in replies if r["type"] == "error"]
    assert len(acked) + len(refused) == 10
    assert 1 <= len(acked) <= 2, replies
    assert all(r["payload"]["code"] == "rate_limited" for r in refused), refused
    assert all("the server's" in r["payload"]["message"] for r in refused), refused
    assert replayed <= CAP + total * elapsed + MESSAGE + MESSAGE_OVERHEAD, (replayed, elapsed)


async def test_a_resume_with_nothing_missed_costs_nothing(make_server: ServerFactory) -> None:
    """An honest reconnect that missed nothing (since = the room's offset) replays nothing and is never
    refused, however often: the budget counts bytes, not joins."""
    server = await make_server(replay_rate=RATE, **SMALL)
    await fill_history(server, "big", 12)
    client = await EventClient.open(ws_url(server))
    try:
        first = await client.request("join_room", {"room": "big"})
        offset = first["payload"]["offset"]
        for _ in range(20):
            assert (await client.request("leave_room", {"room": "big"}))["type"] == "ack"
            reply = await client.request("join_room", {"room": "big", "since": offset})
            assert reply["type"] == "ack" and reply["payload"]["recovered"] is True, reply
    finally:
        await client.close()
