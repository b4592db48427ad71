"""Attacks by a hostile client, each on real loopback sockets, each with its outcome asserted.

The attacker speaks raw WebSocket (`RawPeer`), so it can send any frame and
read, or not, as it likes. Settings are the defaults unless a test says
otherwise and why: the defaults are what is under test. `benchmarks/attacks.py`
runs the same attacks at full size against a separate process and measures
bystanders; these are their bounded, asserted versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
from collections import Counter
from typing import Any

import pytest

from hubbub.core.connection import Connection
from hubbub.protocol.events import Empty
from hubbub.protocol.session import MAX_OWED_PONGS, State
from hubbub.server.pacer import FRAMES_PER_TURN
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import CLOSE, CONT, PING, PONG, TEXT, EventClient, RawPeer, eventually, mask_frame, ws_url

FLOOD_WINDOW = 3.0
"""The longest any flood below is kept up: each is expected to be stopped well before."""


async def open_peer(server: Server, limit: int = 2**16) -> tuple[RawPeer, Connection]:
    """A raw peer and the server's `Connection` for it."""
    hub = server.hub
    before = set(hub.connections)
    peer = await RawPeer.open(server.port, limit=limit)
    await eventually(lambda: bool(hub.connections - before))
    (conn,) = hub.connections - before
    return peer, conn


def event(type_: str, payload: dict[str, Any], id_: int | str | None = None) -> bytes:
    doc: dict[str, Any] = {"type": type_, "payload": payload}
    if id_ is not None:
        doc["id"] = id_
    return mask_frame(TEXT, json.dumps(doc).encode())


async def read_events(peer: RawPeer, timeout: float = 5.0) -> tuple[list[dict[str, Any]], int | None]:
    """Every event until the server's close frame (its code) or until `timeout` of silence (None)."""
    events: list[dict[str, Any]] = []
    while True:
        try:
            opcode, payload = await peer.read_frame(timeout)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionResetError):
            return events, None
        if opcode == CLOSE:
            code: int = struct.unpack("!H", payload[:2])[0]
            return events, code
        if opcode == TEXT:
            events.append(json.loads(payload))


def close_frame(code: int = 1000) -> bytes:
    return mask_frame(CLOSE, struct.pack("!H", code))


def rate_limited(server: Server) -> float:
    """`rate_limited` errors the server answered (counted as they are queued)."""
    value: float = server.hub.metrics.errors.labels("rate_limited")._value.get()
    return value


async def nobody_present(server: Server, rooms: list[str]) -> None:
    """Wait until no room in `rooms` has a presence entry (removals run in the background)."""
    deadline = time.monotonic() + 3
    while any([await server.hub.presence.members(room) for room in rooms]):
        assert time.monotonic() < deadline, "presence entries left behind"
        await asyncio.sleep(0.01)


# ---- control and continuation frames ----------------------------------------


async def test_ping_flood_without_reading_is_closed_and_holds_nothing(server: Server) -> None:
    """125-byte pings as fast as TCP takes them, never reading: closed by the frame budget (1008)
    within a moment, while what the server holds for it (owed pongs, outbox, transport buffer) stays
    bounded; it leaves the hub at once and its socket is gone within `close_timeout`."""
    hub = server.hub
    peer, conn = await open_peer(server, limit=1024)
    peer.shrink_receive_buffer()
    batch = mask_frame(PING, b"p" * 125) * 100
    owed = queued = buffered = 0
    start = time.monotonic()
    while conn in hub.connections and time.monotonic() - start < FLOOD_WINDOW:
        if peer.writer.transport.get_write_buffer_size() < 1 << 20:  # the attacker's own memory
            peer.writer.write(batch)
        await asyncio.sleep(0)
        owed = max(owed, len(conn.session.pong_owed))
        queued = max(queued, conn.queued_bytes)
        buffered = max(buffered, conn._raw.get_write_buffer_size())
    closed_after = time.monotonic() - start
    assert conn not in hub.connections and not hub.connections
    assert conn.close_code in (1008, 1013), conn.close_code
    assert closed_after < 1.0, closed_after
    assert owed <= MAX_OWED_PONGS
    assert queued <= hub.settings.send_queue_bytes
    # Pongs answered: at most the frame burst (200) plus a second's refill, 127 bytes each.
    assert buffered <= 400 * 127
    assert not conn.session.pong_owed and conn.queued_bytes == 0
    # It never answers the close frame: aborted after close_timeout, nothing left open.
    await eventually(lambda: conn.state is State.CLOSED, timeout=hub.settings.close_timeout + 1)
    assert not hub.rooms and hub.metrics.closes.labels(str(conn.close_code))._value.get() == 1


async def test_ping_flood_that_reads_is_closed_with_1008_and_a_bystander_is_served(server: Server) -> None:
    """4-byte pings, reading the pongs: pings over the frame budget go unanswered and the flooder is
    closed with 1008; an honest client in another room has every request acked within 0.5 s."""
    hub = server.hub
    honest = await EventClient.open(ws_url(server, query="name=honest"))
    await honest.join("honest")
    peer, conn = await open_peer(server)
    pongs = 0

    async def read_until_close() -> int | None:
        nonlocal pongs
        while True:
            opcode, payload = await peer.read_frame(FLOOD_WINDOW + 2)
            if opcode == PONG:
                pongs += 1
            elif opcode == CLOSE:
                return int(struct.unpack("!H", payload[:2])[0])

    async def flood() -> None:
        batch = mask_frame(PING, b"ping") * 50
        while not reader.done() and time.monotonic() - start < FLOOD_WINDOW:
            peer.writer.write(batch)
            await peer.writer.drain()
            await asyncio.sleep(0.001)

    latencies: list[float] = []

    async def bystander() -> None:
        for i in range(10):
            sent = time.monotonic()
            reply = await honest.request("send_message", {"room": "honest", "message": i})
            latencies.append(time.monotonic() - sent)
            assert reply["type"] == "ack", reply
            await asyncio.sleep(0.02)

    start = time.monotonic()
    reader = asyncio.create_task(read_until_close())
    flooder = asyncio.create_task(flood())
    await bystander()
    code = await reader
    elapsed = time.monotonic() - start
    await flooder
    assert code == 1008 and conn.close_code == 1008
    assert conn not in hub.connections
    assert 0 < pongs <= 200 + 100 * elapsed + 1  # the burst, then the rate: never one pong per ping
    assert max(latencies) < 0.5, latencies
    assert len(hub.connections) == 1 and (await honest.join("still"))["type"] == "ack"
    peer.reset()
    await honest.close()


@pytest.mark.parametrize(
    ("overrides", "code"),
    [({}, 1008), ({"frame_rate": 100_000}, 1009)],
    ids=["defaults-frame-budget", "frame-budget-raised-max-fragments"],
)
async def test_endless_empty_continuations_are_closed_and_hold_one_buffer(
    make_server: ServerFactory, overrides: dict[str, Any], code: int
) -> None:
    """A text frame with FIN=0, then empty continuations without end: with the defaults the frame
    budget closes it (1008); with the budget raised out of the way, `max_fragments` does (1009).
    Either way within a moment, and the reassembly buffer never grows past the first frame."""
    server: Server = await make_server(**overrides)
    hub = server.hub
    peer, conn = await open_peer(server)
    first = b'{"type": "send_message", "payload": '
    peer.send_frame(TEXT, first, fin=False)
    batch = mask_frame(CONT, b"", fin=False) * 100
    biggest = 0
    start = time.monotonic()
    while conn in hub.connections and time.monotonic() - start < FLOOD_WINDOW:
        peer.writer.write(batch)
        await peer.writer.drain()
        await asyncio.sleep(0)
        biggest = max(biggest, conn.session.buffered)
    closed_after = time.monotonic() - start
    assert await peer.read_close_code() == code
    assert conn.close_code == code and conn not in hub.connections
    assert closed_after < 1.0, closed_after
    assert biggest <= len(first) <= hub.settings.max_message_size
    assert conn.session.buffered == 0
    peer.reset()


# ---- message floods -----------------------------------------------------------


async def test_room_flood_is_rate_limited_then_closed_and_no_member_is_dropped(make_server: ServerFactory) -> None:
    """One client pipelines send_message into a room of 100 members that read: its burst is
    published, the rest refused (`rate_limited`), then it is closed with 1008. Every member gets
    every published message and none is dropped as a slow consumer.

    The rate is 2 a second here, not the default 20: `strikes` refusals in a row close, and a
    token given back starts the count again. At 20 a second, a loaded machine that pauses the
    server for 50 ms between two batches of the flood gives one back every time, and the
    flooder, rate-limited but never 100 refusals in a row, is never closed."""
    server = await make_server(rate_limit=2.0, rate_burst=100.0)
    hub = server.hub
    members: list[RawPeer] = []
    for i in range(100):
        member = await RawPeer.open(server.port)
        member.send_event("join_room", {"room": "crowd"}, i)
        while json.loads((await member.read_frame())[1]).get("id") != i:
            pass
        members.append(member)
    member_conns = set(hub.connections)
    got = [0] * len(members)

    async def read(i: int) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                opcode, payload = await members[i].read_frame(timeout=30)
                if opcode == TEXT and b'"new_message"' in payload:
                    got[i] += 1

    readers = [asyncio.create_task(read(i)) for i in range(len(members))]
    flooder, conn = await open_peer(server)
    flooder.send_event("join_room", {"room": "crowd"}, "join")
    while json.loads((await flooder.read_frame())[1]).get("id") != "join":
        pass
    await asyncio.sleep(0.6)  # the join's token comes back (2/s): the whole burst is for the flood
    started = time.monotonic()
    flooder.writer.write(
        b"".join(event("send_message", {"room": "crowd", "message": f"spam {n}"}, n) for n in range(1000))
    )
    events, code = await read_events(flooder)
    lasted = time.monotonic() - started
    assert code == 1008 and conn.close_code == 1008
    # The server's side: the burst published, then one more each time the rate gave a token back
    # while the flood was being read (more on a loaded machine, which reads it more slowly); then
    # refusals, each answered `rate_limited`, until `strikes` in a row closed it.
    rate = hub.settings.rate_limit
    burst = int(hub.settings.rate_burst or 2 * rate)
    published = hub.metrics.published.value
    assert burst <= published <= burst + rate * lasted + 1, (published, lasted)
    assert rate_limited(server) >= 99
    # The flooder's side: answers still in its outbox when the close was decided are not written
    # (the close clears it, docs/lifecycle.md rule 3), so how many acks and errors it sees before
    # the 1008 depends on the flushes in between; what it sees is right.
    answers = {e["id"]: e for e in events if "id" in e and e["id"] != "join"}
    acked = sorted(i for i, e in answers.items() if e["type"] == "ack")
    limited = sorted(i for i, e in answers.items() if e["type"] == "error")
    # The burst is the first messages (100), in order; a message admitted later by a token given back comes
    # after refusals, so the acks past the burst are not contiguous.
    assert acked[:burst] == list(range(min(len(acked), burst))) and len(acked) <= published
    assert {answers[i]["payload"]["code"] for i in limited} <= {"rate_limited"}
    assert all(i >= burst for i in limited)
    await eventually(lambda: got == [published] * len(members))
    assert hub.metrics.slow_dropped._value.get() == 0
    assert member_conns <= hub.connections and len(hub.connections) == len(members)
    assert hub.metrics.closes.labels("1013")._value.get() == 0
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for member in members:
        member.reset()
    flooder.reset()


async def test_one_read_of_thousands_of_messages_is_handled_fairly(make_server: ServerFactory) -> None:
    """Fair reading: one write of 10,000 small messages of a plain-function event (rate limit off,
    so the budget is not what stops it) is handled in batches of `FRAMES_PER_TURN`, across many
    loop turns, and an honest client's request sent meanwhile is answered before the flood is."""
    server: Server = await make_server(rate_limit=0)
    hub = server.hub
    loop = asyncio.get_running_loop()
    turn = 0
    ticking = True

    def tick() -> None:  # counts loop turns: one call per iteration of the loop
        nonlocal turn
        turn += 1
        if ticking:
            loop.call_soon(tick)

    per_turn: Counter[int] = Counter()
    flood_started = asyncio.Event()
    honest_handled_after = -1

    @hub.on("flood")
    def flood(payload: Empty, client: Connection) -> None:
        per_turn[turn] += 1
        flood_started.set()

    @hub.on("honest")
    def honest_event(payload: Empty, client: Connection) -> dict[str, int]:
        nonlocal honest_handled_after
        honest_handled_after = per_turn.total()
        return {"flood_handled": honest_handled_after}

    honest = await EventClient.open(ws_url(server))
    flooder, _ = await open_peer(server)
    total = 10_000
    answered: list[float] = []

    async def read_flood_answers() -> None:
        while len(answered) < total:
            opcode, payload = await flooder.read_frame(timeout=10)
            assert opcode == TEXT and json.loads(payload)["type"] == "ack"
            answered.append(time.monotonic())

    reader = asyncio.create_task(read_flood_answers())
    loop.call_soon(tick)
    flooder.writer.write(b"".join(event("flood", {}, n) for n in range(total)))  # one write
    await flood_started.wait()
    reply = await honest.request("honest", {})
    honest_acked = time.monotonic()
    await asyncio.wait_for(reader, 20)
    ticking = False
    assert reply["type"] == "ack"
    # handled between two batches of the flood, a few batches after it was sent, not behind it all
    assert 0 <= honest_handled_after <= 8 * FRAMES_PER_TURN
    assert honest_acked < answered[-1]  # and answered while the flood's answers were still coming
    assert per_turn.total() == total
    # At most FRAMES_PER_TURN per read or release of held frames. One loop iteration can hold both
    # (the last, partial release resumes reading, and the poll phase of the same iteration reads
    # again), so between two ticks of the turn counter up to twice that is seen.
    assert max(per_turn.values()) < 2 * FRAMES_PER_TURN
    assert Counter(per_turn.values()).most_common(1)[0][0] == FRAMES_PER_TURN  # the usual batch
    assert len(per_turn) >= total // (2 * FRAMES_PER_TURN)  # spread over many turns
    await honest.close()
    flooder.reset()


async def test_join_flood_stops_at_the_room_limit_and_closes_quickly(make_server: ServerFactory) -> None:
    """1,000 join_room pipelined on one connection (rate limits off, so the room limit is what is met):
    the first 128 are acked, the rest get `limit_exceeded`, the connection stays usable; closing it
    takes under 0.5 s and leaves no room, subscription or presence entry."""
    server: Server = await make_server(rate_limit=0, join_rate=0)
    hub = server.hub
    peer, conn = await open_peer(server)
    limit = hub.settings.max_rooms_per_connection
    assert limit == 128
    peer.writer.write(b"".join(event("join_room", {"room": f"r-{n}"}, n) for n in range(1000)))
    answers: dict[int, dict[str, Any]] = {}
    while len(answers) < 1000:
        reply = json.loads((await peer.read_frame())[1])
        if "id" in reply:
            answers[reply["id"]] = reply
    assert [i for i in range(1000) if answers[i]["type"] == "ack"] == list(range(limit))
    assert {answers[i]["payload"]["code"] for i in range(limit, 1000)} == {"limit_exceeded"}
    assert len(conn.rooms) == limit and len(hub.rooms) == limit
    # a refused join changes nothing: no subscription, no presence entry
    assert hub.room_table.subscribed == {f"r-{n}" for n in range(limit)}
    assert not any([await hub.presence.members(f"r-{n}") for n in range(limit, 1000)])
    # still usable: it can ask, leave and join again
    peer.send_event("get_presence", {"room": "r-0"}, "who")
    peer.send_event("leave_room", {"room": "r-0"}, "leave")
    peer.send_event("join_room", {"room": "another"}, "again")
    replies: dict[str, dict[str, Any]] = {}
    while len(replies) < 3:
        reply = json.loads((await peer.read_frame())[1])
        if isinstance(reply.get("id"), str):
            replies[reply["id"]] = reply
    assert replies["who"]["payload"]["members"] == [{"name": "anonymous", "connections": 1}]
    assert replies["leave"]["type"] == "ack" and replies["again"]["type"] == "ack"
    start = time.monotonic()
    peer.writer.write(close_frame())
    await eventually(lambda: not hub.rooms and conn not in hub.connections, timeout=2, step=0.005)
    assert time.monotonic() - start < 0.5
    await eventually(lambda: not hub.room_table.subscribed)
    await nobody_present(server, [f"r-{n}" for n in range(limit)] + ["another"])


async def test_join_flood_with_the_defaults_is_rate_limited_and_leaves_nothing(server: Server) -> None:
    """The same flood with the default rate limit: joins past the burst are refused (`rate_limited`),
    the connection is closed with 1008, and the joins it still had in flight are undone."""
    hub = server.hub
    peer, conn = await open_peer(server)
    peer.writer.write(b"".join(event("join_room", {"room": f"r-{n}"}, n) for n in range(1000)))
    events, code = await read_events(peer)
    assert code == 1008 and conn.close_code == 1008
    answers = {e["id"]: e for e in events if "id" in e}
    acked = [i for i, e in answers.items() if e["type"] == "ack"]
    assert len(acked) <= 110  # the burst (100) and what the rate refilled meanwhile
    assert {e["payload"]["code"] for e in answers.values() if e["type"] == "error"} <= {"rate_limited"}
    # `strikes` refusals in a row, each answered (those of the last flush are not written: the
    # close came first)
    assert rate_limited(server) >= 99
    await eventually(lambda: not hub.rooms and not hub.connections and not hub.room_table.subscribed)
    await nobody_present(server, [f"r-{n}" for n in range(200)])


# ---- reading what a room holds ----------------------------------------------------


async def test_get_presence_requires_membership(server: Server) -> None:
    """Who is in a room is for its members: `not_in_room` before joining, the list after."""
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    bob = await EventClient.open(ws_url(server, query="name=bob"))
    await bob.join("private")
    refused = await alice.request("get_presence", {"room": "private"})
    assert refused["type"] == "error" and refused["payload"]["code"] == "not_in_room"
    await alice.join("private")
    listed = await alice.request("get_presence", {"room": "private"})
    assert listed["type"] == "ack"
    assert listed["payload"] == {
        "room": "private",
        "members": [{"name": "alice", "connections": 1}, {"name": "bob", "connections": 1}],
    }
    await alice.request("leave_room", {"room": "private"})
    again = await alice.request("get_presence", {"room": "private"})
    assert again["payload"]["code"] == "not_in_room"
    await alice.close()
    await bob.close()


async def test_history_of_large_messages_is_answered_within_the_send_queue(make_server: ServerFactory) -> None:
    """40 messages of 60 KB (2.4 MB) in a room, send queue 1 MiB (the default): `get_history` and a
    resuming `join_room` answer with what fits in half the queue -- fewer than asked, the oldest
    when `since` is given, the newest when not; a resume says `recovered: false` -- and nobody who
    asked is dropped. Rate limit off: the publisher is setting up, not attacking."""
    server: Server = await make_server(rate_limit=0)
    hub = server.hub
    assert hub.settings.send_queue_bytes == 1_048_576
    publisher = await EventClient.open(ws_url(server))
    await publisher.join("big")
    for i in range(40):
        reply = await publisher.request("send_message", {"room": "big", "message": f"{i:02d}" + "x" * 60_000})
        assert reply["type"] == "ack"
    asker = await EventClient.open(ws_url(server))
    await asker.join("big")

    newest = await asker.request("get_history", {"room": "big", "limit": 100})
    assert newest["type"] == "ack" and newest["payload"]["offset"] == 40
    offsets = [m["offset"] for m in newest["payload"]["messages"]]
    assert 0 < len(offsets) < 40
    assert offsets == list(range(41 - len(offsets), 41))  # the newest, in order
    assert len(json.dumps(newest)) <= hub.settings.send_queue_bytes // 2

    oldest = await asker.request("get_history", {"room": "big", "since": 0, "limit": 100})
    offsets = [m["offset"] for m in oldest["payload"]["messages"]]
    assert 0 < len(offsets) < 40
    assert offsets == list(range(1, len(offsets) + 1))  # the oldest: ask again from the last one
    assert oldest["payload"]["offset"] == 40

    resumer = await EventClient.open(ws_url(server))
    ack = await resumer.request("join_room", {"room": "big", "since": 0})
    assert ack["type"] == "ack" and ack["payload"] == {"room": "big", "offset": 40, "recovered": False}
    replayed: list[int] = []
    while not replayed or replayed[-1] < 40:
        replayed.append((await resumer.recv_type("new_message"))["payload"]["offset"])
    assert 0 < len(replayed) < 40
    assert replayed == list(range(41 - len(replayed), 41))  # the newest that fit: no gap before live ones

    assert hub.metrics.slow_dropped._value.get() == 0
    assert len(hub.connections) == 3
    for client in (asker, resumer):
        assert (await client.request("get_presence", {"room": "big"}))["type"] == "ack"  # still served
    for client in (publisher, asker, resumer):
        await client.close()
