"""Close codes of PROTOCOL.md on real sockets: 1003, 1007, 1009, 1000 echo, 1001.

Also proves that normal life (1000, 1001, 1006) is logged without a traceback. Every test here
runs against hubbub and against the textbook (`any_server`, `make_any_server`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct

import pytest

from tests.helpers import BINARY, CLOSE, CONT, TEXT, EventClient, RawPeer, eventually
from tests.integration.conftest import AnyServerFactory, Running


async def test_binary_frame_closes_with_1003(any_server: Running) -> None:
    peer = await RawPeer.open(any_server.port)
    peer.send_frame(BINARY, b"\x00\x01")
    assert await peer.read_close_code() == 1003
    await eventually(lambda: not any_server.connections())


async def test_invalid_utf8_closes_with_1007(any_server: Running) -> None:
    peer = await RawPeer.open(any_server.port)
    peer.send_frame(TEXT, b'{"type": "\xff"}')
    assert await peer.read_close_code() == 1007


async def test_invalid_utf8_across_fragments_closes_with_1007(any_server: Running) -> None:
    peer = await RawPeer.open(any_server.port)
    peer.send_frame(TEXT, b'{"a": "\xe2', fin=False)
    peer.send_frame(CONT, b'\x28\xa1"}', fin=True)
    assert await peer.read_close_code() == 1007


async def test_oversized_frame_closes_with_1009(make_any_server: AnyServerFactory) -> None:
    server = await make_any_server(max_message_size=1024)
    peer = await RawPeer.open(server.port)
    peer.send_frame(TEXT, b"x" * 2000)
    assert await peer.read_close_code() == 1009
    await eventually(lambda: not server.connections())


async def test_oversized_fragmented_message_closes_with_1009(make_any_server: AnyServerFactory) -> None:
    server = await make_any_server(max_message_size=1024)
    peer = await RawPeer.open(server.port)
    for _ in range(3):
        peer.send_frame(TEXT if _ == 0 else CONT, b"x" * 600, fin=False)
    assert await peer.read_close_code() == 1009


async def test_fragmented_message_is_reassembled(any_server: Running) -> None:
    peer = await RawPeer.open(any_server.port)
    body = json.dumps({"type": "join_room", "payload": {"room": "frag"}, "id": 1}).encode()
    peer.send_frame(TEXT, body[:10], fin=False)
    peer.send_frame(CONT, body[10:20], fin=False)
    peer.send_frame(CONT, body[20:], fin=True)
    opcode, payload = await peer.read_frame()
    assert opcode == TEXT and json.loads(payload)["type"] == "ack"


async def test_peer_close_is_echoed_and_counted(any_server: Running) -> None:
    peer = await RawPeer.open(any_server.port)
    peer.send_frame(CLOSE, struct.pack("!H", 1000) + b"bye")
    assert await peer.read_close_code() == 1000
    await eventually(lambda: not any_server.connections())
    if any_server.hub is not None:  # hubbub counts closes by code in its metrics; the textbook logs them
        assert any_server.hub.metrics.closes.labels("1000")._value.get() == 1


async def test_shutdown_sends_1001_and_empties_hub(any_server: Running, caplog: pytest.LogCaptureFixture) -> None:
    clients = [await EventClient.open(any_server.url()) for _ in range(5)]
    for c in clients:
        await c.join("r")
    with caplog.at_level(logging.DEBUG):
        await asyncio.wait_for(any_server.stop(), 5)
    for c in clients:
        await c.ws.wait_closed()
        assert c.ws.close_code == 1001
    assert not any_server.connections() and not any_server.rooms()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]


async def test_normal_life_is_logged_without_tracebacks(any_server: Running, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        polite = await EventClient.open(any_server.url())
        await polite.close()
        rude = await RawPeer.open(any_server.port)
        rude.reset()
        quiet = await RawPeer.open(any_server.port)
        quiet.fin()
        await eventually(lambda: not any_server.connections())
        await eventually(lambda: len([r for r in caplog.records if r.getMessage().startswith("conn.closed")]) == 3)
    codes = sorted(r.__dict__.get("code", 0) for r in caplog.records if r.getMessage().startswith("conn.closed"))
    assert codes == [1000, 1006, 1006]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
