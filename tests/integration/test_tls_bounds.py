"""TLS handshakes in progress are bounded: in all, per address, in time; a wave of them leaves no sockets.

Real loopback sockets against a server with the self-signed certificate of
test_tls.py. The attacker's sockets connect and then send nothing, or trickle
the first bytes of a real ClientHello: they hold a handshake without ever
finishing it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from pathlib import Path

import pytest

from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import eventually
from tests.integration.test_tls import _get, _self_signed

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    return _self_signed(tmp_path_factory.mktemp("tls"), "server")


@pytest.fixture
def trusting(cert: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert[0]))


def _hello() -> bytes:
    """A real TLS ClientHello, as a client's first flight."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def _rejected(server: Server, reason: str) -> float:
    value: float = server.hub.metrics.handshakes_rejected.labels(reason)._value.get()
    return value


async def _silent(server: Server, source: str = "127.0.0.1") -> Stream:
    """A socket that connects from `source` and sends nothing."""
    return await asyncio.open_connection("127.0.0.1", server.port, local_addr=(source, 0))


async def _closed_within(stream: Stream, seconds: float) -> float:
    """Seconds until the server closed `stream` (it must within `seconds`)."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        assert await stream[0].read() == b""
    return time.monotonic() - started


def _close_all(streams: list[Stream]) -> None:
    for _, writer in streams:
        writer.close()


async def _tls_server(make_server: ServerFactory, cert: tuple[Path, Path], **overrides: object) -> Server:
    server: Server = await make_server(tls_cert=str(cert[0]), tls_key=str(cert[1]), **overrides)
    return server


async def test_past_the_total_cap_a_new_socket_is_closed_at_once_and_counted(
    make_server: ServerFactory, cert: tuple[Path, Path], trusting: ssl.SSLContext
) -> None:
    server = await _tls_server(make_server, cert, max_tls_handshakes=3, max_tls_handshakes_per_ip=10)
    listener = server.listener
    assert listener is not None
    listener.handshakes = dataclasses.replace(listener.handshakes, evict_after=60.0)  # young handshakes all
    holders = [await _silent(server, f"127.0.0.{2 + i}") for i in range(3)]
    try:
        await eventually(lambda: listener.handshaking == 3)
        extra = await _silent(server, "127.0.0.9")
        assert await _closed_within(extra, 1.0) < 0.5  # at once, not at the handshake timeout
        extra[1].close()
        assert _rejected(server, "tls_capacity") == 1 and _rejected(server, "tls_per_ip") == 0
        assert listener.handshaking == 3
    finally:
        _close_all(holders)
    await eventually(lambda: listener.handshaking == 0 and listener.open == 0)
    assert await _get(server.port, "/healthz", trusting) == (200, b"ok\n")  # room again once they left


async def test_with_every_place_taken_a_new_client_ends_the_oldest_stalled_handshake(
    make_server: ServerFactory, cert: tuple[Path, Path], trusting: ssl.SSLContext
) -> None:
    """A crowd of sockets that never finish their handshakes, from many addresses, cannot keep new
    clients out for the whole handshake timeout: once the oldest has run `evict_after`, a newcomer
    takes its place, so the crowd must be renewed that often to hold the door."""
    server = await _tls_server(
        make_server, cert, max_tls_handshakes=3, max_tls_handshakes_per_ip=10, tls_handshake_timeout=30.0
    )
    listener = server.listener
    assert listener is not None
    listener.handshakes = dataclasses.replace(listener.handshakes, evict_after=0.3)
    holders = [await _silent(server, f"127.0.0.{2 + i}") for i in range(3)]
    try:
        await eventually(lambda: listener.handshaking == 3)
        await asyncio.sleep(0.4)  # every holder is past evict_after
        assert await _get(server.port, "/healthz", trusting) == (200, b"ok\n")  # the newcomer is served
        assert await _closed_within(holders[0], 2.0) < 2.0  # the oldest was ended, long before the timeout
        assert _rejected(server, "tls_evicted") == 1 and _rejected(server, "tls_capacity") == 0
        assert listener.handshaking == 2  # the two younger holders keep theirs
    finally:
        _close_all(holders)
    await eventually(lambda: listener.handshaking == 0 and listener.open == 0)


async def test_past_the_per_address_cap_only_that_address_is_refused(
    make_server: ServerFactory, cert: tuple[Path, Path], trusting: ssl.SSLContext
) -> None:
    server = await _tls_server(make_server, cert, max_tls_handshakes=10, max_tls_handshakes_per_ip=2)
    listener = server.listener
    assert listener is not None
    holders = [await _silent(server, "127.0.0.3") for _ in range(2)]
    try:
        await eventually(lambda: listener.handshaking_per_ip.get("127.0.0.3") == 2)
        extra = await _silent(server, "127.0.0.3")
        assert await _closed_within(extra, 1.0) < 0.5
        extra[1].close()
        assert _rejected(server, "tls_per_ip") == 1 and _rejected(server, "tls_capacity") == 0
        # another address still gets its handshake, and its page
        assert await _get(server.port, "/healthz", trusting) == (200, b"ok\n")
    finally:
        _close_all(holders)
    await eventually(lambda: listener.handshaking == 0 and listener.open == 0)


async def test_a_trickling_hello_is_closed_at_the_handshake_timeout(
    make_server: ServerFactory, cert: tuple[Path, Path]
) -> None:
    server = await _tls_server(make_server, cert, tls_handshake_timeout=0.5)
    listener = server.listener
    assert listener is not None
    reader, writer = await _silent(server)
    started = time.monotonic()
    ended: float | None = None
    try:
        async with asyncio.timeout(5):
            for byte in _hello():  # one byte per 50 ms: 500 bytes would take 25 s
                writer.write(bytes([byte]))
                try:
                    async with asyncio.timeout(0.05):
                        if await reader.read(100) == b"":
                            ended = time.monotonic() - started
                            break
                except TimeoutError:
                    pass
                except ConnectionError:
                    ended = time.monotonic() - started
                    break
    finally:
        writer.close()
    assert ended is not None and 0.4 <= ended < 2.0, ended
    await eventually(lambda: _rejected(server, "tls") == 1 and listener.open == 0 and listener.handshaking == 0)


async def test_after_a_wave_of_abandoned_handshakes_no_socket_is_left_and_the_heap_is_trimmed(
    make_server: ServerFactory, cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hubbub.server.heap.WAVE", 30)
    monkeypatch.setattr("hubbub.server.heap.DELAY", 0.05)
    server = await _tls_server(make_server, cert, max_tls_handshakes=100, max_tls_handshakes_per_ip=100)
    listener = server.listener
    assert listener is not None
    hello = _hello()
    wave = [await _silent(server) for _ in range(40)]
    try:
        for i, (_, writer) in enumerate(wave):
            writer.write(hello[: i % 50])  # nothing, or the first bytes of a hello
        await eventually(lambda: listener.handshaking == 40)
        assert server.hub.metrics.heap_trims._value.get() == 0
    finally:
        _close_all(wave)
    await eventually(lambda: listener.open == 0 and listener.handshaking == 0 and not listener.per_ip)
    assert _rejected(server, "tls") == 40
    if not listener.trimmer.available:
        pytest.skip("no malloc_trim in this C library")
    await eventually(lambda: server.hub.metrics.heap_trims._value.get() == 1)
    assert listener.trimmer.peak == 0  # counted again from the sockets open after the trim
