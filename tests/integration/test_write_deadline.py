"""The write deadline: a client whose writes do not drain is dropped, however quiet its rooms.

The attack: join a room with a long history with `since: 0` (sixty bytes in, up to half of
`send_queue_bytes` out), read nothing, and send an unsolicited pong now and then so the
heartbeat never finds the peer silent. Its room is quiet, so no outbox ever overflows; only the
write deadline (`write_timeout`, kept by the heartbeat sweep) ends it. Real sockets on
loopback; `write_timeout` is shrunk to 1 s to show the mechanism in a test's time.
"""

from __future__ import annotations

import asyncio
import socket
import time

from hubbub.core.connection import Connection
from hubbub.protocol.session import State
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import PONG, EventClient, RawPeer, eventually, ws_url

WRITE_TIMEOUT = 1.0
SWEEP = WRITE_TIMEOUT / 4
"""The heartbeat sweep's period with this `write_timeout` (a quarter of it)."""


async def stalled_peer(server: Server, room: str, since: int = 0) -> tuple[RawPeer, Connection]:
    """A raw peer with a 4 KiB receive buffer that joins `room` with `since` and will read nothing."""
    hub = server.hub
    before = set(hub.connections)
    peer = await RawPeer.open(server.port, limit=1024)  # its reader stops taking bytes at 2 KiB
    peer.shrink_receive_buffer()
    await eventually(lambda: bool(hub.connections - before))
    (conn,) = hub.connections - before
    peer.send_event("join_room", {"room": room, "since": since}, "j")
    await eventually(lambda: room in conn.rooms)
    return peer, conn


async def fill_history(server: Server, room: str, count: int, size: int) -> None:
    for i in range(count):
        await server.hub.publish(room, {"i": i, "text": "x" * size}, "filler")


async def pong_until_gone(peer: RawPeer, conn: Connection, every: float = 0.1) -> float:
    """Send unsolicited pongs until the server drops `conn`; return how long that took."""
    start = time.monotonic()
    while conn.state is State.OPEN and time.monotonic() - start < 10:
        peer.send_frame(PONG, b"alive")
        await asyncio.sleep(every)
    return time.monotonic() - start


async def honest_traffic(url: str, room: str, stop: asyncio.Event) -> tuple[int, int, float]:
    """A member of `room` that sends and reads its own messages until `stop`: (sent, received, worst delay)."""
    client = await EventClient.open(url)
    await client.join(room)
    sent = received = 0
    worst = 0.0
    try:
        while not stop.is_set():
            start = time.monotonic()
            reply = await client.request("send_message", {"room": room, "message": sent})
            assert reply["type"] == "ack", reply
            sent += 1
            event = await client.recv_type("new_message")
            assert event["payload"]["message"] == received, event  # in order, none lost
            received += 1
            worst = max(worst, time.monotonic() - start)
            await asyncio.sleep(0.02)
    finally:
        await client.close()
    return sent, received, worst


async def test_a_stalled_reader_that_sends_pongs_is_dropped_by_the_write_deadline(
    make_server: ServerFactory,
) -> None:
    """Joined with `since: 0` into 600 KB of history, reading nothing, a pong every 0.1 s: the replay
    pauses the transport, and the connection is dropped 1013 within write_timeout + one sweep of the
    pause, counted as a slow consumer; an honest member of another room loses nothing meanwhile."""
    server = await make_server(write_timeout=WRITE_TIMEOUT, send_buffer=65536)
    hub = server.hub
    await fill_history(server, "big", 20, 30_000)
    stop = asyncio.Event()
    honest = asyncio.create_task(honest_traffic(ws_url(server), "chat", stop))
    await asyncio.sleep(0.2)
    peer, conn = await stalled_peer(server, "big")
    await eventually(lambda: conn._paused, timeout=2)
    paused_at = conn._blocked_since
    assert paused_at is not None
    took = await pong_until_gone(peer, conn)
    assert conn.state is not State.OPEN and conn.close_code == 1013, conn.close_code
    assert conn not in hub.connections
    dropped_after_pause = time.monotonic() - paused_at
    assert WRITE_TIMEOUT <= dropped_after_pause <= WRITE_TIMEOUT + SWEEP + 0.25, dropped_after_pause
    assert took < WRITE_TIMEOUT + 1.0, took
    assert hub.metrics.slow_dropped._value.get() == 1
    # 1013 first, then the RST: its socket is gone within slow_close_grace.
    await eventually(lambda: conn.state is State.CLOSED, timeout=hub.settings.slow_close_grace + 1)
    stop.set()
    sent, received, worst = await honest
    assert sent == received and sent > 10, (sent, received)
    assert worst < 1.0, worst
    peer.writer.transport.abort()


async def test_bytes_held_below_the_pause_mark_are_found_by_the_sweep(make_server: ServerFactory) -> None:
    """A replay too small to pause the transport (its bytes wait in the transport's buffer, below the
    high-water mark) still drains or is dropped: the sweep finds them waiting, and drops the
    connection when they are still there write_timeout later."""
    server = await make_server(write_timeout=WRITE_TIMEOUT, send_buffer=65536)
    hub = server.hub
    await fill_history(server, "mid", 8, 30_000)
    peer, conn = await stalled_peer(server, "mid")
    await eventually(lambda: conn._raw.get_write_buffer_size() > 0, timeout=2)
    assert not conn._paused  # below the high-water mark: never paused
    start = time.monotonic()
    took = await pong_until_gone(peer, conn)
    assert conn.close_code == 1013, conn.close_code
    assert time.monotonic() - start + SWEEP >= WRITE_TIMEOUT and took <= WRITE_TIMEOUT + 2 * SWEEP + 0.25, took
    assert hub.metrics.slow_dropped._value.get() == 1
    peer.writer.transport.abort()


async def test_a_client_that_reads_slowly_but_drains_is_kept(make_server: ServerFactory) -> None:
    """The deadline is on draining, not on speed: a client with a 32 KiB receive buffer that takes its
    600 KB replay 32 KiB at a time (about half of write_timeout in all) is kept, and reads on."""
    server = await make_server(write_timeout=WRITE_TIMEOUT, send_buffer=65536)
    hub = server.hub
    await fill_history(server, "big", 20, 30_000)
    before = set(hub.connections)
    peer = await RawPeer.open(server.port)
    peer.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    await eventually(lambda: bool(hub.connections - before))
    (conn,) = hub.connections - before
    peer.send_event("join_room", {"room": "big", "since": 0}, "j")
    got = 0
    start = time.monotonic()
    while got < 500_000:
        chunk = await asyncio.wait_for(peer.reader.read(32 * 1024), 1)
        assert chunk, "the server closed a client that reads"
        got += len(chunk)
        await asyncio.sleep(0.025)
    assert conn._blocked_since is None or time.monotonic() - conn._blocked_since < WRITE_TIMEOUT
    await hub.publish("big", "after", "someone")
    while b"after" not in (chunk := await asyncio.wait_for(peer.reader.read(64 * 1024), 2)):
        assert chunk
    assert time.monotonic() - start < 2 * WRITE_TIMEOUT
    await asyncio.sleep(WRITE_TIMEOUT + 2 * SWEEP)
    assert conn.state is State.OPEN and conn in hub.connections
    assert hub.metrics.slow_dropped._value.get() == 0
    peer.writer.transport.abort()


async def test_bytes_held_only_by_the_kernel_are_given_up_by_the_kernel(make_server: ServerFactory) -> None:
    """A replay small enough for the kernel to take it all (nothing waits in the transport, so the sweep
    sees nothing) to a client that never opens its window: the kernel ends the connection
    (TCP_USER_TIMEOUT = 2 x write_timeout) though the client sends pongs all along."""
    server = await make_server(write_timeout=WRITE_TIMEOUT, send_buffer=65536)
    hub = server.hub
    await fill_history(server, "small", 5, 20_000)
    peer, conn = await stalled_peer(server, "small")
    await asyncio.sleep(0.1)
    assert not conn._paused and not conn._raw.get_write_buffer_size()  # all of it in the kernel
    took = await pong_until_gone(peer, conn)
    assert conn not in hub.connections and conn.state is not State.OPEN
    assert took <= 2 * WRITE_TIMEOUT + 1.5, took
    assert hub.metrics.slow_dropped._value.get() == 0  # the kernel's doing: the sweep saw nothing waiting
    peer.writer.transport.abort()
