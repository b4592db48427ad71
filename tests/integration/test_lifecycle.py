"""The lifecycle rules of docs/lifecycle.md, each proven on real loopback sockets.

The tests that take `make_any_server` run against hubbub and against the textbook; the others read
hubbub's internals (its tasks, outbox, send buffer, hooks) and run against hubbub only.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import time
import weakref

import pytest

from hubbub.backends.presence import Change
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import PONG, EventClient, RawPeer, eventually, ws_url
from tests.integration.conftest import AnyServerFactory


def _tasks() -> int:
    return len(asyncio.all_tasks())


async def test_abrupt_disconnects_leave_nothing_behind(server: Server) -> None:
    """Rule 3: hundreds of peers vanish (RST and FIN) mid-handler; counts, tasks and rooms return to baseline."""
    hub = server.hub
    forever = asyncio.Event()

    @hub.on("wait_forever")
    async def wait_forever(payload: object, client: object) -> None:
        await forever.wait()

    baseline_tasks = _tasks()
    peers = [await RawPeer.open(server.port) for _ in range(300)]
    for i, peer in enumerate(peers):
        peer.send_event("join_room", {"room": f"room-{i % 7}"}, i)
    for peer in peers:
        await peer.read_frame()
    assert len(hub.connections) == 300 and len(hub.rooms) == 7
    assert _tasks() == baseline_tasks  # an idle connection holds no task
    for i, peer in enumerate(peers):
        peer.send_event("send_message", {"room": f"room-{i % 7}", "message": "last words"})  # senders are tracked
        peer.send_event("wait_forever", {})
    await eventually(lambda: _tasks() == baseline_tasks + 300)  # one reader task each, inside the handler
    alive = [weakref.ref(conn) for conn in hub.connections]
    for i, peer in enumerate(peers):
        peer.reset() if i % 2 else peer.fin()
    await eventually(lambda: not hub.connections and not hub.rooms)
    await eventually(lambda: _tasks() == baseline_tasks)
    assert hub.metrics.closes.labels("1006")._value.get() == 300
    # No connection object outlives its socket. Once the tasks are gone, a callback the loop has already
    # scheduled (a transport's connection_lost, a timer being cancelled) may still hold one for a turn or
    # two on a loaded machine: it must be gone within a bounded time, not at this exact instant.

    def none_alive() -> bool:
        gc.collect()
        return all(ref() is None for ref in alive)

    await eventually(none_alive, timeout=5.0, step=0.05)


async def test_slow_consumer_is_dropped_and_others_get_everything(make_server: ServerFactory) -> None:
    """Rule 4: a member that stops reading is dropped with an RST; the others miss nothing."""
    limit = 256 * 1024
    server = await make_server(send_queue_bytes=limit, rate_limit=0)  # a publisher at full speed
    hub = server.hub
    stalled = await RawPeer.open(server.port, limit=1024)
    stalled.shrink_receive_buffer()
    stalled.send_event("join_room", {"room": "busy"}, 1)
    await stalled.read_frame()
    fast = [await EventClient.open(ws_url(server)) for _ in range(3)]
    publisher = fast[0]
    for c in fast:
        await c.join("busy")
    stalled_conn = min(hub.connections, key=lambda c: c.id)
    message = "m" * 4000
    total = 3000
    got = [0] * len(fast)
    high_water = 0

    async def drain(i: int) -> None:
        while got[i] < total:
            event = await fast[i].recv_type("new_message", timeout=10)
            assert event["payload"]["offset"] == got[i] + 1
            got[i] += 1

    readers = [asyncio.create_task(drain(i)) for i in range(len(fast))]
    for n in range(total):
        while n - got[0] >= 16:  # a window of messages in flight, as wsload keeps
            await asyncio.sleep(0.001)
        await publisher.send("send_message", {"room": "busy", "message": message})
        high_water = max(high_water, stalled_conn._out_bytes)
    await asyncio.wait_for(asyncio.gather(*readers), 20)
    assert got == [total] * len(fast)
    assert hub.metrics.slow_dropped._value.get() == 1
    assert stalled_conn not in hub.connections
    assert high_water <= limit
    dropped_at = time.monotonic()
    # The kernel's backlog is discarded with an RST within a second.
    async with asyncio.timeout(2):
        while True:
            try:
                if not await stalled.reader.read(65536):
                    raise AssertionError("expected an RST, got a FIN")
            except ConnectionResetError:
                break
    assert time.monotonic() - dropped_at < 1.5
    for c in fast:
        await c.close()


async def test_client_sockets_get_the_default_send_buffer(make_server: ServerFactory) -> None:
    """256 KiB unless told otherwise (Linux doubles it); 0 leaves the kernel's autotuning alone."""
    for setting, expected in ((None, 2 * 262_144), (0, None)):
        server = await make_server() if setting is None else await make_server(send_buffer=setting)
        peer = await RawPeer.open(server.port)
        await eventually(lambda server=server: len(server.hub.connections) == 1)  # type: ignore[misc]
        (conn,) = server.hub.connections
        size = conn._raw.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        if expected is not None:
            assert size == expected
        else:
            assert size != 2 * 262_144  # the kernel's own starting size
        peer.fin()


async def test_send_buffer_caps_what_a_stalled_client_holds(make_server: ServerFactory) -> None:
    """--send-buffer: the kernel's share of a stalled client's backlog is capped, so it is dropped sooner.

    Without it, Linux lets a socket's send buffer grow to 4 MiB, all of it
    taken before the outbox sees a byte. With it, the drop comes after about
    send_buffer (doubled by the kernel) + the transport's high water + the
    outbox bound.
    """
    limit, send_buffer = 128 * 1024, 64 * 1024
    server = await make_server(send_queue_bytes=limit, send_buffer=send_buffer, rate_limit=0)
    hub = server.hub
    stalled = await RawPeer.open(server.port, limit=1024)
    stalled.shrink_receive_buffer()
    stalled.send_event("join_room", {"room": "busy"}, 1)
    await stalled.read_frame()
    (stalled_conn,) = hub.connections
    sock = stalled_conn._raw.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * send_buffer  # Linux doubles what it is given
    publisher = await EventClient.open(ws_url(server))
    await publisher.join("busy")
    message = "m" * 4000
    sent = got = 0

    async def drain() -> None:
        nonlocal got
        while True:
            await publisher.recv_type("new_message", timeout=10)
            got += 1

    reader = asyncio.create_task(drain())
    while stalled_conn in hub.connections and sent < 8 * 2**20:
        while sent // len(message) - got >= 16:
            await asyncio.sleep(0.001)
        await publisher.send("send_message", {"room": "busy", "message": message})
        sent += len(message)
    assert hub.metrics.slow_dropped._value.get() == 1
    # kernel (doubled) + transport high water (the limit, under 256 KiB) + outbox + what is in flight
    assert sent <= 2 * send_buffer + limit + limit + 128 * 1024 + 16 * len(message)  # not 4 MiB
    reader.cancel()
    await publisher.close()


async def test_half_open_peer_is_dropped_by_heartbeat(make_any_server: AnyServerFactory) -> None:
    """A peer that stops answering pings goes within interval + timeout + 1 s; hubbub resets it at
    once, the textbook (websockets) sends 1011 and waits up to its close timeout for an answer."""
    server = await make_any_server(ping_interval=0.4, ping_timeout=0.4)
    alive = await EventClient.open(server.url())  # answers pings by itself
    silent = await RawPeer.open(server.port)  # never answers
    await eventually(lambda: server.connections() == 2)
    start = time.monotonic()
    await eventually(lambda: server.connections() == 1, timeout=4 + server.close_grace)
    assert time.monotonic() - start <= 0.4 + 0.4 + 1 + server.close_grace
    await asyncio.sleep(1.2)
    assert server.connections() == 1
    assert (await alive.join("still-here"))["type"] == "ack"
    del silent
    await alive.close()


async def test_pong_keeps_a_quiet_peer(make_any_server: AnyServerFactory) -> None:
    server = await make_any_server(ping_interval=0.2, ping_timeout=0.3)
    peer = await RawPeer.open(server.port)
    for _ in range(5):
        opcode, payload = await peer.read_frame(timeout=2)
        assert opcode == 0x9
        peer.send_frame(PONG, payload)
    assert server.connections() == 1


async def test_concurrent_publishers_one_order_exactly_once(make_any_server: AnyServerFactory) -> None:
    """Rule 6: every member gets every message once, all in the same order, offsets consecutive."""
    server = await make_any_server(rate_limit=0)  # eight publishers at full speed (the textbook has no limit)
    members = [await EventClient.open(server.url(f"name=m{i}")) for i in range(8)]
    for m in members:
        await m.join("race")
    per_sender = 100
    total = per_sender * len(members)

    async def publish(client: EventClient, n: int) -> None:
        for k in range(n):
            await client.send("send_message", {"room": "race", "message": f"{k}"})

    async def collect(client: EventClient) -> list[tuple[int, str, str]]:
        seen: list[tuple[int, str, str]] = []
        while len(seen) < total:
            event = await client.recv_type("new_message", timeout=10)
            p = event["payload"]
            seen.append((p["offset"], p["from"], p["message"]))
        return seen

    collectors = [asyncio.create_task(collect(m)) for m in members]
    await asyncio.gather(*(publish(m, per_sender) for m in members))
    results = await asyncio.wait_for(asyncio.gather(*collectors), 20)
    first = results[0]
    assert [o for o, _, _ in first] == list(range(1, total + 1))
    assert all(r == first for r in results)
    for i in range(len(members)):
        mine = [int(msg) for _, sender, msg in first if sender == f"m{i}"]
        assert mine == list(range(per_sender))
    for m in members:
        await m.close()


async def test_flooding_client_is_throttled_not_buffered(make_server: ServerFactory) -> None:
    """Messages behind a slow async handler queue in the inbox; past its high-water mark the socket
    is not read any more (TCP pushes back), so the inbox stays bounded, and every event is still
    answered, in the order it was sent."""
    server: Server = await make_server(rate_limit=0)
    hub = server.hub

    @hub.on("slow_echo")
    async def slow_echo(payload: object, client: object) -> dict[str, int]:
        await asyncio.sleep(0)  # suspends, so what follows waits in the inbox
        return {}

    peer = await RawPeer.open(server.port)
    total = 5000
    for i in range(total):
        peer.send_event("slow_echo", {}, i)
    await eventually(lambda: bool(hub.connections))
    conn = next(iter(hub.connections))
    longest = 0
    paused = False
    ids: list[int] = []
    while len(ids) < total:
        ids.append(json.loads((await peer.read_frame())[1])["id"])
        longest = max(longest, sum(map(len, conn._inbox)))
        paused = paused or conn._reading_paused
    assert ids == list(range(total))
    assert paused
    # Reading stops at the high-water mark; what one socket read (256 KiB at most)
    # already holds is the only excess.
    assert longest <= 256 * 1024 + hub.settings.inbox_high_water * 100
    assert conn._reader is None and not conn._inbox  # caught up: back to handling messages as they are read


def _hubbub_tasks() -> list[asyncio.Task[object]]:
    """Pending tasks running hubbub's code (not the test's or its clients')."""
    found = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if not task.done() and code is not None and "/hubbub/" in code.co_filename:
            found.append(task)
    return found


@pytest.mark.parametrize(("removal", "finished"), [(0.3, True), (30.0, False)], ids=["finishes", "cancelled"])
async def test_stop_leaves_no_task_pending(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch, removal: float, finished: bool
) -> None:
    """Server.stop while the presence removals of the last disconnects are still running (each one
    slowed to `removal` seconds): they finish within the shutdown grace, or past it are cancelled
    and awaited; either way no task the hub spawned is left pending, and stop takes at most about
    `shutdown_timeout`."""
    server: Server = await make_server(shutdown_timeout=0.8)
    hub = server.hub
    started: list[str] = []
    done: list[str] = []
    original = hub.presence.remove

    async def slow_remove(room: str, name: str, key: str) -> Change:
        started.append(key)
        await asyncio.sleep(removal)
        result = await original(room, name, key)
        done.append(key)
        return result

    monkeypatch.setattr(hub.presence, "remove", slow_remove)
    rude = [await RawPeer.open(server.port) for _ in range(3)]
    for i, peer in enumerate(rude):
        peer.send_event("join_room", {"room": "r"}, i)
        await peer.read_frame()
    polite = [await EventClient.open(ws_url(server)) for _ in range(3)]
    for client in polite:
        await client.join("r")
    for peer in rude:
        peer.reset()  # the last disconnects before the stop: their removals are under way
    await eventually(lambda: len(started) == 3)
    assert len(_hubbub_tasks()) >= 3  # the removals (and the heartbeat) are seen here
    begun = time.monotonic()
    await server.stop()  # closes the polite ones with 1001: three more removals
    assert time.monotonic() - begun < hub.settings.shutdown_timeout + 1
    assert len(started) == 6
    assert len(done) == (6 if finished else 0)
    assert len(hub.tasks) == 0
    assert _hubbub_tasks() == []
    for client in polite:
        await client.ws.wait_closed()
