"""Attacks on issue 11's surface (the server API, the proxies to the app, webhooks), on real loopback sockets.

Each test mounts one attack as a hostile client, a holder of no key, or a
hostile application endpoint would, and asserts the outcome: a coded answer,
a bound that holds, no traceback in the log, and the bystanders served. What
each proves is listed in docs/security.md with its bound and default.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import httpx
import pytest

from hubbub.server import Server
from tests.conftest import ServerFactory

KEY = "attack-key-0123456789"
AUTH = {"Authorization": f"apikey {KEY}"}


async def raw(port: int, data: bytes, until: bytes = b"", timeout: float = 5.0) -> bytes:
    """Send `data` on a new socket; read until `until` is seen, the server closes, or `timeout` passes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    got = b""
    try:
        async with asyncio.timeout(timeout):
            while not (until and until in got):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                got += chunk
    except TimeoutError:
        pass
    finally:
        writer.close()
    return got


def request(method: str, target: str, body: bytes = b"", extra: str = "", key: str = KEY) -> bytes:
    """An HTTP/1.1 request with the API key and a Content-Length (unless `extra` brings its own)."""
    length = "" if "content-length" in extra.lower() else f"Content-Length: {len(body)}\r\n"
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: apikey {key}\r\n{length}{extra}\r\n"
    return head.encode("latin-1") + body


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing was logged at ERROR: every hostile input got a coded answer, not an exception."""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [(r.name, r.getMessage(), r.exc_text) for r in errors]


async def api_server(make_server: ServerFactory, **overrides: object) -> Server:
    server: Server = await make_server(api_keys=(KEY,), **overrides)
    return server


# ---- the HTTP reader: numbers, smuggling, pipelining ------------------------------------------


@pytest.mark.parametrize(
    "length",
    [b"\xb2", b"\xb9", b"9" * 5000, b"0" * 5000 + b"5", b"+5", b"-1", b"5 5", b"0x10", b""],
    ids=["superscript-2", "superscript-1", "5000-digits", "leading-zeros", "plus", "minus", "two", "hex", "empty"],
)
async def test_a_content_length_that_is_not_plain_digits_is_400_not_a_traceback(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, length: bytes
) -> None:
    """`str.isdigit()` is true for `²`, which `int()` refuses: the reader raised in `buffer_updated`."""
    server = await api_server(make_server)
    body = b'{"room":"r","message":1}'
    head = (
        b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + length + b"\r\n\r\n"
    )  # no key: this is what anyone can send
    got = await raw(server.port, head + body)
    if length == b"0" * 5000 + b"5":  # a valid length of 5, written long: read, then refused for the key
        assert got.startswith(b"HTTP/1.1 401"), got[:100]
    else:
        assert got.startswith(b"HTTP/1.1 400") and b'"code":"bad_payload"' in got, got[:200]
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    "query",
    ["since=%C2%B2", "limit=%C2%B9", "since=" + "9" * 5000, "limit=%EF%BC%95", "since=1e3"],
    ids=["superscript-since", "superscript-limit", "5000-digits", "fullwidth", "exponent"],
)
async def test_history_numbers_that_are_not_plain_digits_are_bad_payload(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, query: str
) -> None:
    server = await api_server(make_server)
    got = await raw(server.port, request("GET", f"/api/history?room=r&{query}", extra="Connection: close\r\n"))
    assert got.startswith(b"HTTP/1.1 400") and b'"code":"bad_payload"' in got, got[:200]
    no_tracebacks(caplog)


def recording(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every pacer the servers started after this make (one per accepted socket), in order."""
    made: list[Any] = []
    build = Server._protocol

    def protocol(self: Server, slot: Any) -> Any:
        pacer = build(self, slot)
        made.append(pacer)
        return pacer

    monkeypatch.setattr(Server, "_protocol", protocol)
    return made


async def stalled_socket(port: int) -> socket.socket:
    """A connected socket with a small receive buffer that the test never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def push(sock: socket.socket, data: bytes, seconds: float) -> int:
    """Write `data` over and over for `seconds`, as fast as the server reads; the bytes written."""
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sent += sock.send(data)
        except BlockingIOError:
            await asyncio.sleep(0.01)
        else:
            await asyncio.sleep(0)
    return sent


@pytest.mark.parametrize("keyed", [True, False], ids=["history-512k-answers", "no-key-403s"])
async def test_pipelined_requests_whose_answers_are_never_read_hold_one_write_buffer(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch, keyed: bool
) -> None:
    """A client pipelines requests and never reads: before, every answer piled up in the transport (a
    60-byte `GET /api/history` of a room of large messages is a 512 KiB answer: 8,000 times its size).
    Now the next request is not judged while the answers written are over the transport's high-water mark."""
    pacers = recording(monkeypatch)
    server = await api_server(make_server)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", headers=AUTH, timeout=10) as api:
        for n in range(10):
            reply = await api.post("/api/publish", json={"room": "big", "message": "x" * 60000 + str(n)})
            assert reply.status_code == 200
        if keyed:
            one = request("GET", "/api/history?room=big")
        else:  # anyone: a foreign Origin is refused 403 and the connection kept
            one = b"GET /api/rooms HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n\r\n"
        sock = await stalled_socket(server.port)
        attacker = pacers[-1]
        pushing = asyncio.create_task(push(sock, one * 200, 3.0))
        slowest = 0.0
        while not pushing.done():  # a bystander on its own connection is served meanwhile
            start = time.monotonic()
            assert (await api.get("/api/rooms")).status_code == 200
            slowest = max(slowest, time.monotonic() - start)
            await asyncio.sleep(0.05)
        await pushing
        held = attacker._transport.get_write_buffer_size()
        sock.close()
    answer = 512 * 1024 if keyed else 1024
    assert held <= 64 * 1024 + answer, held  # uvloop's high-water mark, and the answer that crossed it
    assert slowest < 1.0, slowest
