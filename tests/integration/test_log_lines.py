"""What a watcher of the log sees: each line about a connection names its peer, and the accept line the
capped send buffer (docs/learn/experiments.md runs these failure modes by hand)."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import pytest

from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import RawPeer, eventually

CLOSE = 0x8


def port_of(peer: RawPeer) -> int:
    port: int = peer.writer.get_extra_info("sockname")[1]
    return port


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.msg == event]


async def closed(server: Server) -> None:
    await eventually(lambda: not server.hub.connections)


async def test_a_closed_connection_is_logged_with_its_peers_address(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hubbub")
    peer = await RawPeer.open(server.port)
    peer.send_frame(CLOSE, struct.pack("!H", 1000))
    assert await peer.read_close_code() == 1000
    await closed(server)
    remote = f"127.0.0.1:{port_of(peer)}"
    assert [r.__dict__["remote"] for r in records(caplog, "conn.opened")] == [remote]
    assert [(r.__dict__["remote"], r.__dict__["code"]) for r in records(caplog, "conn.closed")] == [(remote, 1000)]


async def test_a_peers_protocol_error_is_logged_with_its_address(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hubbub")
    peer = await RawPeer.open(server.port)
    peer.send_frame(0x3, b"reserved opcode")
    assert await peer.read_close_code() == 1002
    await closed(server)
    remote = f"127.0.0.1:{port_of(peer)}"
    (fault,) = records(caplog, "conn.protocol_error")
    assert (fault.__dict__["remote"], fault.__dict__["code"]) == (remote, 1002)
    assert [(r.__dict__["remote"], r.__dict__["code"]) for r in records(caplog, "conn.closed")] == [(remote, 1002)]


async def test_a_foreign_origin_is_logged_with_its_address(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hubbub")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Origin: http://evil.example\r\n\r\n".encode()
    )
    status = await asyncio.wait_for(reader.readline(), 5)
    assert status.startswith(b"HTTP/1.1 403"), status
    port = writer.get_extra_info("sockname")[1]
    writer.close()
    (rejected,) = records(caplog, "handshake.rejected")
    assert (rejected.__dict__["reason"], rejected.__dict__["remote"]) == ("origin", f"127.0.0.1:{port}")


async def test_a_dropped_slow_consumer_is_logged_with_its_address(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hubbub")
    server = await make_server(send_queue_bytes=131072, send_buffer=65536, rate_limit=0)
    stalled = await RawPeer.open(server.port, limit=1024)
    stalled.shrink_receive_buffer()
    stalled.send_event("join_room", {"room": "r"}, 1)
    await stalled.read_frame()
    conn = next(iter(server.hub.connections))
    async with asyncio.timeout(10):
        while conn in server.hub.connections:  # the room talks; the peer reads nothing more
            server.hub.publish_nowait("r", "m" * 4000, "server")
            await asyncio.sleep(0)
    remote = f"127.0.0.1:{port_of(stalled)}"
    (dropped,) = records(caplog, "conn.slow_consumer_dropped")
    assert dropped.__dict__["remote"] == remote
    assert [(r.__dict__["remote"], r.__dict__["code"]) for r in records(caplog, "conn.closed")] == [(remote, 1013)]


async def test_the_send_buffer_is_capped_before_picows_logs_the_accepted_socket(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """`--send-buffer` is set right after accept: picows' accept line (at debug) shows the cap, which
    Linux doubles, not the kernel's default; and the open connection's socket has it."""
    caplog.set_level(logging.INFO, logger="picows")
    send_buffer = 3 * 65536
    server = await make_server(send_buffer=send_buffer)
    peer = await RawPeer.open(server.port)
    await eventually(lambda: bool(server.hub.connections))
    conn = next(iter(server.hub.connections))
    sock = conn._raw.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * send_buffer
    (accepted,) = [r for r in caplog.records if str(r.msg).startswith("New connection accepted")]
    assert isinstance(accepted.args, tuple)
    assert accepted.args[3] == 2 * send_buffer  # "sendbuf=%d"
    peername = accepted.args[1]
    assert isinstance(peername, tuple) and peername[1] == port_of(peer)  # the peer, as hubbub's lines name it
    peer.fin()
    await closed(server)
