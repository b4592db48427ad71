"""Caps on accepted sockets (503 total, 429 per address), the listen backlog, and the counts."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
from collections import Counter

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hubbub.core.connection import Connection
from hubbub.protocol.events import Empty
from hubbub.server.listener import _ACCEPT_BATCH, REFUSAL_WAIT, REFUSALS_WAITING, Tally, connection_cap, peer_key
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import EventClient, eventually, ws_url

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def hold(port: int, source: str = "127.0.0.1") -> Streams:
    """A bare TCP connection that sends nothing: it holds a socket, as a pre-handshake client does."""
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def refusal(port: int, source: str = "127.0.0.1", request: bool = True) -> bytes:
    """Connect, send a request (or nothing), and read what the server says before closing."""
    reader, writer = await hold(port, source)
    if request:
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def rejected(server: Server, reason: str) -> float:
    value: float = server.hub.metrics.handshakes_rejected.labels(reason)._value.get()
    return value


async def metrics_text(server: Server) -> list[str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data.decode().splitlines()


async def test_past_max_connections_a_socket_gets_503_at_once(make_server: ServerFactory) -> None:
    """Every accepted socket counts, also before its request; the next is answered 503 without being read."""
    server = await make_server(max_connections=3)
    assert server.listener is not None
    held = [await hold(server.port) for _ in range(3)]
    await eventually(lambda: server.listener is not None and server.listener.open == 3)
    answer = await refusal(server.port)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in head and body == b"server at capacity\n"
    # a WebSocket client sees the status too (not a reset, not an answer before its request)
    for _ in range(5):
        with pytest.raises(InvalidStatus) as caught:
            await connect(ws_url(server), open_timeout=2)
        assert caught.value.response.status_code == 503
    assert rejected(server, "capacity") == 6
    assert server.listener.open == 3 and not server.hub.connections  # a refusal holds nothing
    # closing one frees its place: the next client connects and works
    held.pop()[1].close()
    await eventually(lambda: server.listener is not None and server.listener.open == 2)
    client = await EventClient.open(ws_url(server))
    await client.join("lobby")
    assert (await client.request("send_message", {"room": "lobby", "message": "in"}))["type"] == "ack"
    await client.close()
    for _, writer in held:
        writer.close()
    await eventually(lambda: server.listener is not None and server.listener.open == 0)
    lines = await metrics_text(server)
    assert 'hubbub_handshakes_rejected_total{reason="capacity"} 6.0' in lines
    assert "hubbub_sockets 1.0" in lines  # this scrape's own socket


async def test_past_the_per_address_cap_a_socket_gets_429(make_server: ServerFactory) -> None:
    """One address cannot take every place; another address still gets in."""
    server = await make_server(max_connections_per_ip=2, max_connections=10)
    held = [await hold(server.port) for _ in range(2)]
    await eventually(lambda: server.listener is not None and server.listener.per_ip.get("127.0.0.1") == 2)
    answer = await refusal(server.port)
    assert answer.startswith(b"HTTP/1.1 429 ") and answer.endswith(b"too many connections from your address\n")
    with pytest.raises(InvalidStatus) as caught:
        await connect(ws_url(server), open_timeout=2)
    assert caught.value.response.status_code == 429
    # 127.0.0.2 is another address (all of 127/8 is loopback on Linux)
    reader, writer = await hold(server.port, "127.0.0.2")
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200 ")
    writer.close()
    held.pop()[1].close()
    await eventually(lambda: server.listener is not None and server.listener.per_ip.get("127.0.0.1") == 1)
    async with connect(ws_url(server), open_timeout=2) as ws:
        await ws.ping()
    for _, w in held:
        w.close()
    await eventually(lambda: server.listener is not None and not server.listener.per_ip)
    assert 'hubbub_handshakes_rejected_total{reason="per_ip"} 2.0' in await metrics_text(server)


async def test_a_flood_of_refusals_is_one_log_line(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server(max_connections=1)
    held = await hold(server.port)
    await eventually(lambda: server.listener is not None and server.listener.open == 1)
    with caplog.at_level(logging.INFO, logger="hubbub"):
        for _ in range(50):
            assert (await refusal(server.port)).startswith(b"HTTP/1.1 503 ")
    lines = [r for r in caplog.records if r.getMessage() == "conn.rejected"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert rejected(server, "capacity") == 50
    held[1].close()


async def test_silent_refused_sockets_wait_briefly_and_boundedly(make_server: ServerFactory) -> None:
    """A refused socket that has not sent its request waits for it at most REFUSAL_WAIT, and at most
    REFUSALS_WAITING wait at once: the rest are answered at once, so silence cannot pile up sockets."""
    server = await make_server(max_connections=1)
    assert server.listener is not None
    held = await hold(server.port)
    await eventually(lambda: server.listener is not None and server.listener.open == 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    silent = [await hold(server.port) for _ in range(REFUSALS_WAITING + 6)]
    await eventually(lambda: server.listener is not None and server.listener.refusals_waiting == REFUSALS_WAITING)
    late = await asyncio.gather(*(asyncio.wait_for(r.read(), REFUSAL_WAIT / 2) for r, _ in silent[-6:]))
    assert all(a.startswith(b"HTTP/1.1 503 ") for a in late)  # no room to wait: answered at once
    waited = await asyncio.gather(*(asyncio.wait_for(r.read(), 5) for r, _ in silent[:-6]))
    assert all(a.startswith(b"HTTP/1.1 503 ") for a in waited)
    assert REFUSAL_WAIT <= loop.time() - started < REFUSAL_WAIT + 2
    assert server.listener.refusals_waiting == 0 and rejected(server, "capacity") == REFUSALS_WAITING + 6
    for _, w in [*silent, held]:
        w.close()


async def test_backlog_reaches_the_listening_socket(make_server: ServerFactory) -> None:
    server = await make_server(backlog=37)
    assert server.listener is not None and server.listener.backlog == 37
    if shutil.which("ss") is None:
        pytest.skip("no ss(8) to read the socket's backlog")
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True, timeout=5, check=True
    ).stdout
    # for a listening socket, ss shows the backlog in the Send-Q column
    assert [line.split()[2] for line in out.splitlines()] == ["37"]


def test_default_cap_follows_the_descriptor_limit() -> None:
    assert connection_cap(None, 1_000_000) == 65536
    assert connection_cap(None, 20000) == 20000 - 192
    assert connection_cap(None, 64) == 32  # a tiny limit keeps half for the process
    assert connection_cap(100_000, 64) == 100_000  # an explicit cap is the operator's call


def test_peer_key_counts_ipv6_by_64() -> None:
    assert peer_key(("192.0.2.1", 5)) == "192.0.2.1"
    assert peer_key(("2001:db8:1:2:3:4:5:6", 5, 0, 0)) == peer_key(("2001:db8:1:2::9", 6, 0, 0)) == "2001:db8:1:2::/64"
    assert peer_key(("2001:db8:1:3::1", 5, 0, 0)) != peer_key(("2001:db8:1:2::1", 5, 0, 0))
    assert peer_key(("::ffff:192.0.2.1", 5, 0, 0)) == "192.0.2.1"


async def test_tally_says_at_most_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    tally = Tally("thing.happened", logging.WARNING, interval=0.2)
    with caplog.at_level(logging.WARNING, logger="hubbub"):
        for _ in range(10):
            tally.add(why="x")
        assert [r.__dict__["count"] for r in caplog.records] == [1]  # the first, at once
        await asyncio.sleep(0.3)
        assert [r.__dict__["count"] for r in caplog.records] == [1, 9]  # then the rest, counted
        await asyncio.sleep(0.3)
        tally.add(why="y")
        tally.add(why="y")
        tally.close()
    assert [r.__dict__["count"] for r in caplog.records] == [1, 9, 1, 1]
    assert tally.total == 12


async def test_a_connection_storm_is_accepted_over_several_turns_while_open_connections_are_served(
    make_server: ServerFactory,
) -> None:
    """400 connections wait in the backlog at once: at most `_ACCEPT_BATCH` (64) are accepted per
    loop turn, so accepting them takes several turns, and a request from a connection already open,
    sent together with the storm, is handled by the server before most of the storm is accepted."""
    server: Server = await make_server()
    listener = server.listener
    assert listener is not None
    loop = asyncio.get_running_loop()

    @server.hub.on("honest")
    def honest_event(payload: Empty, client: Connection) -> dict[str, int]:
        return {"open": listener.open}

    honest = await EventClient.open(ws_url(server))
    assert listener.open == 1
    storm = 400
    per_turn: Counter[int] = Counter()
    turn = 0
    ticking = True

    def tick() -> None:  # one call per loop iteration: how many sockets the listener holds by then
        nonlocal turn
        per_turn[turn] = listener.open
        turn += 1
        if ticking:
            loop.call_soon(tick)

    sockets = []
    try:
        # Blocking connects: the loop does not run meanwhile, so all 400 wait in the backlog together.
        for _ in range(storm):
            sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        loop.call_soon(tick)
        reply = await asyncio.wait_for(honest.request("honest", {}), 5)
        await eventually(lambda: listener.open == storm + 1, timeout=5)
        ticking = False
        counts = [per_turn[t] for t in sorted(per_turn)]
        steps = [b - a for a, b in zip([1, *counts], counts, strict=False)]
        assert max(steps) <= _ACCEPT_BATCH  # never more than a batch per turn
        assert sum(1 for step in steps if step) >= -(-storm // _ACCEPT_BATCH)  # over several turns
        # handled within the first few batches of the storm (the request is written a turn or two
        # after the storm is in the backlog), not behind all of it
        assert reply["type"] == "ack" and reply["payload"]["open"] <= 1 + 3 * _ACCEPT_BATCH
    finally:
        ticking = False
        for sock in sockets:
            sock.close()
    await honest.close()
