"""No client can hurt another, over real sockets: deep JSON, hostile names, broken frames, log forging.

Each attack gets a coded answer (an `error` event, a 400, a close code), the
attacker's connection stays usable where the protocol allows, and the log
gets at most one line per connection, never an ERROR or a traceback. The tests
that take `any_server` or `make_any_server` run against the textbook too.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import struct
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hubbub.protocol.envelope import MAX_DEPTH
from hubbub.server.logs import TextFormatter
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import PING, TEXT, EventClient, RawPeer, eventually, ws_url
from tests.integration.conftest import AnyServerFactory, Running

BIG = 4 * 1024 * 1024


def _arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def _objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _no_errors(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not bad, [(r.name, r.getMessage()) for r in bad]


async def _reply(client: EventClient, timeout: float = 5.0) -> dict[str, Any]:
    """The next ack or error, read without `json.loads` of whole events (a deep echo would overflow it)."""
    while True:
        text = await asyncio.wait_for(client.ws.recv(), timeout)
        assert isinstance(text, str)
        if text.startswith(('{"type":"ack"', '{"type":"error"')):
            event: dict[str, Any] = json.loads(text)
            return event


@pytest.mark.parametrize("shape", [_arrays, _objects], ids=["arrays", "objects"])
@pytest.mark.parametrize("depth", [5_000, 200_000])
async def test_deep_json_gets_bad_json_and_the_connection_lives(
    make_any_server: AnyServerFactory, caplog: pytest.LogCaptureFixture, shape: Any, depth: int
) -> None:
    server = await make_any_server(max_message_size=BIG, send_queue_bytes=BIG)
    client = await EventClient.open(server.url(), max_size=None)
    await client.join("r")
    deep = shape(depth)
    frames = [
        '{"type":"send_message","payload":{"room":"r","message":' + deep + '},"id":"m"}',
        '{"type":"join_room","payload":{"room":"r","extra":' + deep + '},"id":"e"}',
        '{"type":"send_message","payload":' + deep + ',"id":"p"}',
        '{"x":' + deep + ',"type":"send_message","payload":{}}',
    ]
    with caplog.at_level(logging.DEBUG):
        for frame in frames:
            await client.ws.send(frame)
            reply = await _reply(client)
            assert reply["type"] == "error" and reply["payload"]["code"] in ("bad_json", "bad_payload"), reply
            ok = await client.request("send_message", {"room": "r", "message": "still here"})
            assert ok["type"] == "ack", ok
    _no_errors(caplog)
    if server.hub is not None:  # hubbub counts the errors it answers, by code
        assert server.hub.metrics.errors.labels("internal")._value.get() == 0
    await client.close()


async def test_deep_json_under_the_rate_limit_is_refused_without_error(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused event's `id` is salvaged by parsing it: that parse must survive any depth too."""
    server = await make_server(max_message_size=BIG, send_queue_bytes=BIG, rate_limit=1, rate_burst=1)
    client = await EventClient.open(ws_url(server), max_size=None)
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            await client.ws.send('{"type":"join_room","payload":{"room":"r","x":' + _objects(200_000) + "}}")
        codes = [(await _reply(client))["payload"]["code"] for _ in range(3)]
    assert codes[0] == "bad_json" and set(codes[1:]) == {"rate_limited"}
    _no_errors(caplog)
    await client.close()


async def test_effective_depth_limit_through_a_connection(make_server: ServerFactory) -> None:
    """The deepest JSON the hub accepts is `MAX_DEPTH`, the envelope's two levels included, however deep
    the call stack that decodes it."""
    server = await make_server()
    client = await EventClient.open(ws_url(server))

    async def accepted(depth: int) -> bool:
        await client.ws.send('{"type":"join_room","payload":{"room":"r","x":' + _arrays(depth) + '},"id":"q"}')
        reply = await _reply(client)
        assert reply["type"] == "ack" or reply["payload"]["code"] == "bad_json", reply
        return bool(reply["type"] == "ack")

    low, high = 1, 2_000
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if await accepted(mid) else (low, mid - 1)
    assert low == MAX_DEPTH - 2, low
    assert await accepted(low) and not await accepted(low + 1)  # the same answer every time
    await client.close()


# ---- names ------------------------------------------------------------------------

HOSTILE_NAMES = ["a\nb", "a\r\nts=1", "a\tb", "\x00", "x\x7f", "x\x85", "\x1b[31mred", "evil\u202egnp", "a\u2066b"]
HOSTILE_NAMES += ["ad\u200bmin", "a\u200eb", "x\u2028y", "\ufeffx"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_handshake_refuses_names_with_control_or_bidi_characters(any_server: Running, name: str) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await connect(any_server.url("name=" + quote(name)))
    response = caught.value.response
    assert response.status_code == 400
    assert b"control" in response.body and len(response.body) < 200
    assert not any_server.connections()


@pytest.mark.parametrize("name", ["Zoë", "李雷", "a b", "😀", "x=y"])
async def test_handshake_accepts_names_people_use(any_server: Running, name: str) -> None:
    client = await EventClient.open(any_server.url("name=" + quote(name)))
    await client.join("r")
    await client.request("send_message", {"room": "r", "message": "hi"})
    assert (await client.recv_type("new_message"))["payload"]["from"] == name
    await client.close()


async def test_payload_from_with_control_or_bidi_characters_is_bad_payload(any_server: Running) -> None:
    client = await EventClient.open(any_server.url())
    await client.join("r")
    for name in HOSTILE_NAMES:
        reply = await client.request("send_message", {"room": "r", "message": "hi", "from": name})
        assert reply["type"] == "error" and reply["payload"]["code"] == "bad_payload", (name, reply)
    reply = await client.request("send_message", {"room": "r", "message": "hi", "from": "Zoë"})
    assert reply["type"] == "ack"
    assert (await client.recv_type("new_message"))["payload"]["from"] == "Zoë"
    await client.close()


async def test_room_names_with_control_or_bidi_characters_are_bad_payload(server: Server) -> None:
    client = await EventClient.open(ws_url(server))
    await client.join("r")
    for room in ["a\nb", "a\x00", "a\u202eb", "a\u200bb", "a\u2028", "r\n"]:
        for type_ in ("join_room", "leave_room", "send_message", "get_history", "get_presence"):
            payload: dict[str, Any] = {"room": room, "message": 1} if type_ == "send_message" else {"room": room}
            reply = await client.request(type_, payload)
            assert reply["type"] == "error" and reply["payload"]["code"] == "bad_payload", (type_, room, reply)
    assert not [room for room in server.hub.rooms if room != "r"]
    await client.close()


# ---- broken frames ------------------------------------------------------------------


@pytest.fixture
def picows_at_warning() -> Iterator[None]:
    """picows' own logger at WARNING, as `logs.configure` sets it (its info lines are connection noise)."""
    picows = logging.getLogger("picows")
    level = picows.level
    picows.setLevel(logging.WARNING)
    yield
    picows.setLevel(level)


def _masked_header(first: int, length_bytes: bytes) -> bytes:
    return bytes([first]) + length_bytes + b"\x00\x00\x00\x00"


BROKEN_FRAMES = {  # what each is, in bytes, and picows' reason for it (None: hubbub's own check)
    "reserved opcode": (_masked_header(0x83, b"\x80"), "Received frame with invalid opcode=0x3"),
    "reserved bits": (_masked_header(0x81 | 0x40, b"\x80"), None),
    "16-bit length under 126": (
        _masked_header(0x81, b"\xfe" + struct.pack("!H", 5)),
        "Received frame with invalid 16-bit payload len",
    ),
    "64-bit length with its top bit": (
        _masked_header(0x81, b"\xff" + struct.pack("!Q", 1 << 63)),
        "Received frame with invalid 64-bit payload length",
    ),
    "64-bit length under 65536": (
        _masked_header(0x81, b"\xff" + struct.pack("!Q", 10)),
        "Received frame with invalid 64-bit payload length",
    ),
    "long ping": (
        _masked_header(0x80 | PING, b"\xfe" + struct.pack("!H", 200)),
        "Received control frame with payload size > 125 bytes, opcode=0x9",
    ),
    "unmasked": (
        bytes([0x81, 0x02]) + b"hi",
        "Received un-masked frame from client, RFC 6455 section 5.1 forbids this",
    ),
}


@pytest.mark.usefixtures("picows_at_warning")
async def test_broken_frames_are_logged_once_per_connection_at_info(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """picows reports each broken frame at ERROR; the hub says it once per connection, at info."""
    with caplog.at_level(logging.INFO):
        peers = []
        for frame, _ in BROKEN_FRAMES.values():
            peer = await RawPeer.open(server.port)
            for _ in range(20):  # frame after frame, each in its own read where the socket allows
                peer.writer.write(frame)
                await asyncio.sleep(0)
            peers.append(peer)
        for peer in peers:
            assert await peer.read_close_code() == 1002
        await eventually(lambda: not server.hub.connections)
        await asyncio.sleep(0.05)  # picows' delayed disconnect, and anything it would still log
    faults = [r for r in caplog.records if r.getMessage() == "conn.protocol_error"]
    assert all(r.levelno == logging.INFO and r.__dict__["code"] == 1002 for r in faults)
    remotes = [r.__dict__["remote"] for r in faults]
    assert len(remotes) == len(set(remotes))  # one per connection, not one per frame
    expected = sorted(reason for _, reason in BROKEN_FRAMES.values() if reason is not None)
    assert sorted(r.__dict__["reason"] for r in faults) == expected
    assert not [r for r in caplog.records if r.name.startswith("picows")]
    _no_errors(caplog)


async def test_a_good_frame_after_broken_connections_is_served(server: Server) -> None:
    for frame, _ in BROKEN_FRAMES.values():
        peer = await RawPeer.open(server.port)
        peer.writer.write(frame)
    client = await EventClient.open(ws_url(server))
    assert (await client.join("r"))["type"] == "ack"
    await client.close()
    peer = await RawPeer.open(server.port)
    peer.send_frame(TEXT, b'{"type":"join_room","payload":{"room":"r"},"id":1}')
    assert b'"ack"' in (await peer.read_frame())[1]


# ---- the log ---------------------------------------------------------------------------


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    """What `hubbub serve --log-format text` would print, captured."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield out
    root.removeHandler(handler)
    root.setLevel(level)


async def _handshake(port: int, headers: bytes) -> bytes:
    """The status line of a raw upgrade request with `headers` as given (no client library would send them)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + headers + b"\r\n"
    )
    async with asyncio.timeout(5):
        status = await reader.readline()
    writer.close()
    return status


async def test_a_hostile_origin_cannot_forge_a_log_line(server: Server, text_log: io.StringIO) -> None:
    # picows itself answers 400 to other control characters in a header; a tab and bidi characters get through.
    origin = 'http://x\t2026-01-01T00:00:00.000Z error hubbub.core.hub forged=1 "q" \u202e'.encode()
    assert (await _handshake(server.port, b"Origin: " + origin + b"\r\n")).startswith(b"HTTP/1.1 403")
    lines = [line for line in text_log.getvalue().splitlines() if "handshake.rejected" in line]
    assert len(lines) == 1
    (line,) = lines
    assert line.isascii() and line.isprintable() and ' origin="http://x\\t2026' in line
    assert "forged" not in line.split('origin="')[0]
