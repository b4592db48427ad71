"""Attacks on the integration surface (the server API, the proxies to the app, webhooks), on real loopback sockets.

Each test mounts one attack as a hostile client, a holder of no key, or a
hostile application endpoint would, and asserts the outcome: a coded answer,
a bound that holds, no traceback in the log, and the bystanders served. What
each proves is listed in docs/security.md with its bound and default.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from hubbub.core.control import ControlMessage, Op
from hubbub.errors import EventError
from hubbub.integration import server_api
from hubbub.protocol.codes import ErrorCode
from hubbub.server.pacer import FramePacer
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import EventClient, eventually, exchange, ws_url

KEY = "attack-key-0123456789"
AUTH = {"Authorization": f"apikey {KEY}"}


def request(method: str, target: str, body: bytes = b"", extra: str = "", key: str = KEY) -> bytes:
    """An HTTP/1.1 request with the API key and a Content-Length (unless `extra` brings its own)."""
    length = "" if "content-length" in extra.lower() else f"Content-Length: {len(body)}\r\n"
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: apikey {key}\r\n{length}{extra}\r\n"
    return head.encode("latin-1") + body


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing was logged at ERROR: every hostile input got a coded answer, not an exception."""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [(r.name, r.getMessage(), r.exc_text) for r in errors]


PROXY_SECRET = "proxy-secret-shared-with-the-app"
"""The proxies sign what they send, so they need the secret shared with the app."""


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
    got = await exchange(server.port, head + body)
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
    got = await exchange(server.port, request("GET", f"/api/history?room=r&{query}", extra="Connection: close\r\n"))
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


@pytest.mark.parametrize("large", [True, False], ids=["history-512k-answers", "404s"])
async def test_pipelined_requests_whose_answers_are_never_read_hold_one_write_buffer(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch, large: bool
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
        one = request("GET", "/api/history?room=big" if large else "/api/nowhere")  # 512 KiB, or 404s
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
    answer = 512 * 1024 if large else 1024
    assert held <= 64 * 1024 + answer, held  # uvloop's high-water mark, and the answer that crossed it
    assert slowest < 1.0, slowest


# ---- a hostile application behind the proxies -------------------------------------------------


Chunks = AsyncIterator[bytes]


class RawApp:
    """An application endpoint that answers every request with the bytes `answer` returns (head and
    body as the test writes them, at once or as chunks over time), and records each request's head."""

    def __init__(self, answer: Callable[[bytes], bytes | Chunks]) -> None:
        self.answer = answer
        self.heads: list[bytes] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawApp:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hubbub"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next((h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")), b"0")
            )
            body = await reader.readexactly(length)
            self.heads.append(head)
            answered = self.answer(body)
            if isinstance(answered, bytes):
                answered = _once(answered)
            async for chunk in answered:
                writer.write(chunk)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _once(data: bytes) -> Chunks:
    yield data


async def trickled(data: bytes, every: float) -> Chunks:
    """`data` a byte at a time, `every` seconds apart."""
    for n in range(len(data)):
        yield data[n : n + 1]
        await asyncio.sleep(every)


async def endless(head: str) -> Chunks:
    """A 200 that announces a gigabyte and sends it as fast as it is read."""
    yield f"HTTP/1.1 200 OK\r\n{head}Content-Length: {2**30}\r\n\r\n".encode()
    block = b" " * 65536
    while True:
        yield block


def answer(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    return head.encode() + body


async def handshake_status(server: Server) -> int:
    """The status a `/ws` handshake without a credential gets (101 when it is let in)."""
    got = await exchange(
        server.port,
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: s=1\r\n\r\n",
        until=b"\r\n\r\n",
    )
    return int(got.split(b" ", 2)[1])


async def test_a_compressed_connect_answer_is_never_inflated(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A 16 KiB gzip answer is 16 MiB once inflated: httpx inflated each read whole before the 16 KiB
    answer bound was looked at. Now hubbub asks for identity and refuses any other encoding (503)."""
    bomb = gzip.compress(b'{"user": "alice", "info": {"pad": "' + b" " * (16 * 1024 * 1024) + b'"}}', 9)
    assert len(bomb) < 20 * 1024
    small = gzip.compress(b'{"user": "alice"}')
    async with RawApp(lambda _: answer(bomb, extra="Content-Encoding: gzip\r\n")) as app:
        server = await make_server(connect_proxy=app.url(), webhook_secret=PROXY_SECRET)
        tracemalloc.start()
        try:
            status = await handshake_status(server)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert status == 503 and peak < 4 * 1024 * 1024, (status, peak)
        assert b"accept-encoding: identity" in app.heads[0].lower()
    async with RawApp(lambda _: answer(small, extra="Content-Encoding: gzip\r\n")) as app:
        server = await make_server(connect_proxy=app.url(), webhook_secret=PROXY_SECRET)
        assert await handshake_status(server) == 503  # even a small one: an app must answer as asked
    no_tracebacks(caplog)


@pytest.mark.parametrize("size", [70_000, 100 * 1024 * 1024], ids=["over-max-message-size", "100MB"])
async def test_a_publish_proxy_rewrite_is_held_to_the_message_size(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, size: int
) -> None:
    """The app rewrites a message to more than a client may send: before, up to twice
    `--max-message-size` was published to every member; now the client gets `unavailable`, and a
    100 MB answer is cut at the answer bound, within the timeout."""
    rewrite = b'{"message": "' + b"x" * size + b'"}'
    async with RawApp(lambda _: answer(rewrite)) as app:
        server = await make_server(publish_proxy=app.url(), webhook_secret=PROXY_SECRET)
        sender = await EventClient.open(ws_url(server, query="name=alice"))
        member = await EventClient.open(ws_url(server, query="name=bob"))
        await sender.join("r")
        await member.join("r")
        start = time.monotonic()
        reply = await sender.request("send_message", {"room": "r", "message": "hi"})
        assert reply["type"] == "error" and reply["payload"]["code"] == "unavailable", reply
        assert time.monotonic() - start < 5
        with pytest.raises(TimeoutError):
            await member.recv_type("new_message", timeout=0.3)
        await sender.close()
        await member.close()
    no_tracebacks(caplog)


# ---- the control channel: subscribe, unsubscribe, disconnect ----------------------------------


async def test_a_storm_of_api_subscribes_keeps_the_room_limit_and_the_joins_in_flight_bounded(
    make_server: ServerFactory,
) -> None:
    """`/api/subscribe` answers once its control message is sent; each node then joins in a task. With a
    broker slow enough that joins overlap, the room limit was checked only when each began: 40 calls put
    a connection in 40 rooms against a limit of 4. Now the joins in flight count against it too."""
    server = await api_server(make_server, max_rooms_per_connection=4)
    broker = server.hub.broker
    last_offset = broker.last_offset

    async def slow_last_offset(room: str) -> int:  # a broker a network away
        await asyncio.sleep(0.2)
        return await last_offset(room)

    broker.last_offset = slow_last_offset  # type: ignore[method-assign]
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    (conn,) = server.hub.connections
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", headers=AUTH, timeout=10) as api:
        for n in range(40):
            reply = await api.post("/api/subscribe", json={"user": "alice", "room": f"r{n}"})
            assert reply.status_code == 200
        assert len(server.hub.control._joins) <= 4
        await asyncio.sleep(0.6)
    assert len(conn.rooms) == 4, sorted(conn.rooms)
    subscribed = [(await alice.recv_type("subscribed"))["payload"]["room"] for _ in range(4)]
    assert set(subscribed) == set(conn.rooms)
    # joins that overlap some other way (an application's handlers) meet the limit when they end too
    joins = [server.hub.room_table.join(conn, f"x{n}", ack=lambda _: None) for n in range(6)]
    for room in sorted(conn.rooms)[:2]:
        assert conn.leave(room)
    outcomes = await asyncio.gather(*joins, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, EventError)]
    assert len(conn.rooms) == 4 and len(refused) == 4, (sorted(conn.rooms), outcomes)
    assert {e.code for e in refused} == {ErrorCode.LIMIT_EXCEEDED}
    await alice.close()


class Bystander:
    """Stands in a hub's connection set for a connection of another identity (it is hashable)."""

    __slots__ = ("identity",)

    def __init__(self, identity: str) -> None:
        self.identity = identity


async def test_a_control_message_costs_its_targets_not_a_walk_of_every_connection(make_server: ServerFactory) -> None:
    """A storm of `/api/disconnect` (or subscribe) calls for users nobody is: each is one control message
    that every node acted on by walking all its connections (3 ms a call at 65,536 connections, on every
    node). Now a node finds an identity's connections in `Hub.identities`."""
    server = await api_server(make_server)
    hub = server.hub
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    bystanders = [Bystander(f"u{n}") for n in range(100_000)]
    hub.connections.update(bystanders)  # type: ignore[arg-type]  # only walked, never touched
    try:
        unknown = msgspec.json.encode(ControlMessage(Op.DISCONNECT, "nobody"))
        start = time.perf_counter()
        for _ in range(200):
            hub.control.receive(unknown)
        per_call = (time.perf_counter() - start) / 200
    finally:
        hub.connections.difference_update(bystanders)
    assert per_call < 0.0005, per_call  # a walk of 100,000 was about 5 ms
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", headers=AUTH, timeout=10) as api:
        assert (await api.post("/api/disconnect", json={"user": "alice", "code": 4001})).status_code == 200
    with pytest.raises(ConnectionClosed):
        await alice.recv(timeout=5)
    assert alice.ws.close_code == 4001
    await eventually(lambda: "alice" not in hub.identities)


WS_HEAD = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)
ROOMS = request("GET", "/api/rooms")


@pytest.mark.parametrize(
    ("data", "statuses"),
    [
        (WS_HEAD + b"Content-Length: 5\r\n\r\nhello", [400]),
        (WS_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", [400]),
        (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + ROOMS, [400]),
        (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % len(ROOMS) + ROOMS, [400]),
        (request("POST", "/api/publish", b"0\r\n\r\n", "Transfer-Encoding: chunked\r\n") + ROOMS, [411]),
        (request("POST", "/api/publish", b"abcd", "Content-Length: 4\r\nContent-Length: 5\r\n") + ROOMS, [400]),
        (request("POST", "/api/publish", b"abcd", "Transfer-Encoding : chunked\r\nContent-Length: 4\r\n"), [400]),
        (request("GET", "/api/rooms", ROOMS), [200]),  # a body is a body, never a second request
        (ROOMS + WS_HEAD + b"\r\n", [200, 101]),  # an upgrade after an API call is picows' as a first request
        (request("GET", "/api/rooms", extra="X: a\r\n folded\r\n"), [400]),
    ],
    ids=[
        "ws-CL-body",
        "ws-TE",
        "picows-TE",
        "picows-CL",
        "api-CL-TE",
        "api-two-CL",
        "api-TE-space",
        "api-GET-body",
        "api-then-upgrade",
        "obs-fold",
    ],
)
async def test_no_request_is_smuggled_between_the_api_reader_and_picows(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, data: bytes, statuses: list[int]
) -> None:
    """A front proxy and hubbub must agree on where each request ends: a body on a picows route is refused,
    chunked and doubled lengths are refused and the connection closed, a body is never read as a request."""
    server = await api_server(make_server)
    got = await exchange(server.port, data, timeout=1.5)
    seen = [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", got)]
    assert seen == statuses, got[:300]
    no_tracebacks(caplog)


SECRET = "webhook-secret-do-not-print"
COOKIE = "session=cookie-do-not-print"


async def test_no_secret_reaches_the_log_the_metrics_or_an_answer(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Every secret the new surface handles -- API keys (right and wrong), the webhook secret, a cookie
    passed to the connect proxy -- with every logger at debug, through successes and failures."""
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-key-do-not-print-0123"
    async with RawApp(lambda _: answer(b'{"user": "alice"}')) as app:
        server = await make_server(
            api_keys=(KEY,),
            connect_proxy=app.url(),
            publish_proxy=app.url(),
            webhooks=("http://127.0.0.1:9/unreachable",),
            webhook_secret=SECRET,
            webhook_retry_for=0.2,
        )
        answers = b""
        answers += await exchange(server.port, request("GET", "/api/rooms", key=wrong))
        answers += await exchange(server.port, request("GET", "/api/nowhere", extra="Connection: close\r\n"))
        answers += await exchange(
            server.port,
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: apikey "
            + KEY.encode()
            + b"\r\nCookie: "
            + COOKIE.encode()
            + b"\r\n\r\n",
        )
        alice = await EventClient.open(ws_url(server), additional_headers={"Cookie": COOKIE})
        await alice.join("r")
        await alice.request("send_message", {"room": "r", "message": "hi"})
        await alice.close()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            answers += (await client.get("/metrics")).content
        await asyncio.sleep(0.5)  # the webhook gives its events up
        server_side = [r for r in caplog.records if not r.name.startswith("websockets")]  # not the test's client
        text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in server_side)
        text += repr(server.settings) + repr(server.hub.settings)
    assert "webhook.dropped" in text and "proxy" in text  # the failures were logged...
    for secret in (KEY, wrong, SECRET, "cookie-do-not-print"):  # ...without a secret
        assert secret not in text, secret
        assert secret.encode() not in answers, secret


# built once, here: the test measures what the server allocates, not what its app does
ROOMS_100K = answer(msgspec.json.encode({"user": "alice", "rooms": [f"r{n}" for n in range(100_000)]}))
INFO_1MB = answer(msgspec.json.encode({"user": "alice", "info": {"bio": "x" * 1_000_000}}))
DEEP_INFO = answer(b'{"user": "alice", "info": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}")
HOSTILE_CONNECT_ANSWERS: dict[str, Callable[[str], bytes | Chunks]] = {
    "trickle": lambda _: trickled(answer(b'{"user": "alice"}'), 0.05),
    "1GB": lambda _: endless("Content-Type: application/json\r\n"),
    "redirect": lambda target: answer(b"", "307 Temporary Redirect", f"Location: {target}\r\n"),
    "bell-in-user": lambda _: answer(b'{"user": "al\\u0007ice"}'),
    "bidi-in-user": lambda _: answer(b'{"user": "\\u202eecila"}'),
    "100k-rooms": lambda _: ROOMS_100K,
    "1MB-info": lambda _: INFO_1MB,
    "deep-info": lambda _: DEEP_INFO,
}


@pytest.mark.parametrize("hostile", list(HOSTILE_CONNECT_ANSWERS))
async def test_a_hostile_connect_proxy_answer_is_503_in_bounded_time_and_memory(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, hostile: str
) -> None:
    """The app behind `--connect-proxy` trickles, streams a gigabyte, redirects (to an app that would
    admit anyone), or names a user with control characters, 100,000 room patterns or 1 MB of info:
    the handshake gets 503 within the timeout, with at most the 16 KiB answer bound read."""
    async with RawApp(lambda _: answer(b'{"user": "mallory"}')) as elsewhere:
        async with RawApp(lambda _: HOSTILE_CONNECT_ANSWERS[hostile](elsewhere.url())) as app:
            server = await make_server(connect_proxy=app.url(), webhook_secret=PROXY_SECRET)
            tracemalloc.start()
            start = time.monotonic()
            try:
                status = await handshake_status(server)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            elapsed = time.monotonic() - start
        assert not elsewhere.heads  # a redirect is not followed
    assert status == 503
    assert elapsed < server.settings.proxy_timeout + 1.5, elapsed
    assert peak < 4 * 1024 * 1024, peak
    no_tracebacks(caplog)


async def hang() -> Chunks:
    """An app that takes the request and never answers."""
    await asyncio.sleep(3600)
    yield b""


DATA_1MB = answer(msgspec.json.encode({"data": "x" * 1_000_000}))
DEEP_DATA = answer(b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
HOSTILE_RPC_ANSWERS: dict[str, Callable[[str], bytes | Chunks]] = {
    "trickle": lambda _: trickled(answer(b'{"data": "slowly"}'), 0.05),
    "1GB": lambda _: endless("Content-Type: application/json\r\n"),
    "redirect": lambda target: answer(b"", "307 Temporary Redirect", f"Location: {target}\r\n"),
    "hang": lambda _: hang(),
    "1MB-data": lambda _: DATA_1MB,
    "deep-data": lambda _: DEEP_DATA,
    "gzip": lambda _: answer(
        gzip.compress(b'{"data": "' + b" " * 1_000_000 + b'"}'), extra="Content-Encoding: gzip\r\n"
    ),
}


@pytest.mark.parametrize("hostile", list(HOSTILE_RPC_ANSWERS))
async def test_a_hostile_rpc_proxy_answer_is_unavailable_in_bounded_time_and_memory(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, hostile: str
) -> None:
    """The app behind `--rpc-proxy` trickles, streams a gigabyte, redirects (to an app that would
    answer), hangs, or answers 1 MB of data, data nested 100,000 deep or a gzip bomb: the caller gets
    `unavailable` within the timeout, the server reads at most its answer bound, and the connection
    and another client go on being served."""
    async with RawApp(lambda _: answer(b'{"data": "from elsewhere"}')) as elsewhere:
        async with RawApp(lambda _: HOSTILE_RPC_ANSWERS[hostile](elsewhere.url())) as app:
            server = await make_server(rpc_proxy=app.url(), webhook_secret=PROXY_SECRET)
            caller = await EventClient.open(ws_url(server, query="name=alice"))
            bystander = await EventClient.open(ws_url(server, query="name=bob"))
            await bystander.join("r")
            tracemalloc.start()
            start = time.monotonic()
            try:
                await caller.send("rpc", {"method": "m", "data": 1}, "c1")
                ack = await bystander.request("send_message", {"room": "r", "message": "meanwhile"})
                reply = await caller.recv_type("error", timeout=10)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            elapsed = time.monotonic() - start
            assert ack["type"] == "ack"
            assert reply["id"] == "c1" and reply["payload"]["code"] == "unavailable", reply
            assert elapsed < server.settings.proxy_timeout + 1.5, elapsed
            assert peak < 4 * 1024 * 1024, peak
            ping = await caller.request("get_history", {"room": "r"})  # the connection lives on
            assert ping["payload"]["code"] == "not_in_room"
            await caller.close()
            await bystander.close()
        assert not elsewhere.heads  # a redirect is not followed
    no_tracebacks(caplog)


async def test_a_webhook_endpoint_that_redirects_or_streams_a_gigabyte_costs_one_bounded_post(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A redirect is the endpoint saying no (given up, never followed, counted `rejected`); a 200 that
    streams a gigabyte is read for 64 KiB, then its connection is closed and the event counts as sent."""
    async with RawApp(lambda _: answer(b"{}")) as elsewhere:
        async with (
            RawApp(lambda _: answer(b"", "302 Found", f"Location: {elsewhere.url()}\r\n")) as redirecting,
            RawApp(lambda _: endless("")) as streaming,
        ):
            server = await make_server(
                webhooks=(redirecting.url(), streaming.url()), webhook_secret=SECRET, webhook_timeout=2.0
            )
            registry = server.hub.metrics.registry
            start = time.monotonic()
            alice = await EventClient.open(ws_url(server, query="name=alice"))
            await alice.join("r")
            await alice.close()

            def sample(name: str, **labels: str) -> float:
                """The sum over the URLs (each has its own series) of the samples with these labels."""
                return sum(
                    float(s.value)
                    for metric in registry.collect()
                    for s in metric.samples
                    if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
                )

            await eventually(lambda: sample("hubbub_webhooks_dropped_total", reason="rejected") >= 5, timeout=8)
            await eventually(lambda: sample("hubbub_webhooks_sent_total") >= 5, timeout=8)
            elapsed = time.monotonic() - start
        assert not elsewhere.heads
    assert elapsed < 6, elapsed  # each POST ended well within the timeout: nothing waited for the gigabyte
    assert sample("hubbub_webhooks_failed_attempts_total") == sample("hubbub_webhooks_dropped_total", reason="rejected")
    no_tracebacks(caplog)


async def test_a_head_trickled_in_tiny_segments_costs_the_server_a_bounded_time_per_read(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slowloris on the port in tiny segments: each read copies the unfinished head (at most 64 KiB)
    twice, so a read costs the server tens of microseconds whatever the head's length (measured: about
    25 us a read for a 40 KB head in 8-byte segments, 0.12 s in all); 10 s (`HEAD_TIMEOUT`), or 30 s
    on a kept-alive API socket (`IDLE_TIMEOUT`), bound how long. docs/security.md has the arithmetic."""
    spent = [0.0, 0]
    updated = FramePacer.buffer_updated

    def timed(self: FramePacer, nbytes: int) -> None:
        start = time.perf_counter()
        try:
            updated(self, nbytes)
        finally:
            spent[0] += time.perf_counter() - start
            spent[1] += 1

    monkeypatch.setattr(FramePacer, "buffer_updated", timed)
    server = await api_server(make_server)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = request("GET", "/api/rooms", extra="X-Pad: " + "p" * 40_000 + "\r\n")
    for n in range(len(head) - 1):
        writer.write(head[n : n + 1])
        if n % 8 == 0:
            await asyncio.sleep(0)  # let the server read: about a byte per read
    writer.write(head[-1:])
    got = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert got.startswith(b"HTTP/1.1 200"), got
    reads, seconds = spent[1], spent[0]
    assert reads > 2_000, reads  # it was trickled
    assert seconds / reads < 200e-6, (seconds, reads)  # per read, generous for a loaded machine


async def test_broadcasts_to_a_thousand_new_rooms_repeated_keep_history_in_its_budget_and_clients_served(
    make_server: ServerFactory,
) -> None:
    """A key holder's loop: `/api/broadcast` to 1000 rooms nobody is in, 1 KB each, over and over, every
    call new rooms. Each is 1000 publishes and 1000 rooms of history; history stays within
    `--history-max-bytes` (rooms counted at `ROOM_OVERHEAD`), and a client chatting meanwhile is served."""
    budget = 4 * 1024 * 1024
    server = await api_server(make_server, history_max_bytes=budget)
    chatter = await EventClient.open(ws_url(server, query="name=bob"))
    await chatter.join("chat")
    slowest = 0.0
    took: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", headers=AUTH, timeout=10) as api:

        async def storm() -> None:
            for n in range(20):
                rooms = [f"b{n}-{r}" for r in range(1000)]
                start = time.monotonic()
                reply = await api.post("/api/broadcast", json={"rooms": rooms, "message": "x" * 1000})
                took.append(time.monotonic() - start)
                assert reply.status_code == 200 and len(reply.json()["offsets"]) == 1000

        storming = asyncio.create_task(storm())
        while not storming.done():
            start = time.monotonic()
            reply = await chatter.request("send_message", {"room": "chat", "message": "still here"})
            assert reply["type"] == "ack", reply
            slowest = max(slowest, time.monotonic() - start)
            await asyncio.sleep(0.02)
        await storming
    await chatter.close()
    held = server.hub.broker.held_bytes  # type: ignore[attr-defined]
    assert held <= budget, held
    assert slowest < 1.0, slowest
    median = sorted(took)[len(took) // 2]
    print(
        f"\nbroadcast to 1000 rooms: median {median * 1000:.0f} ms; the chatter's slowest ack {slowest * 1000:.0f} ms"
    )


async def test_a_socket_without_a_key_cannot_be_kept_alive(make_server: ServerFactory) -> None:
    """Without a key, a request that is refused 403 (a foreign Origin or Host) used to keep the
    connection, so a request every `IDLE_TIMEOUT` held a socket for ever with no credential. A 401 or
    403 now closes it, as a wrong key always did: a keyless socket lives one request, at most 10 s."""
    server = await api_server(make_server)
    foreign = b"GET /api/rooms HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n\r\n"
    for data in (foreign * 3, request("GET", "/api/rooms", key="wrong-key-0123456789") * 3):
        start = time.monotonic()
        got = await exchange(server.port, data)
        assert len(re.findall(rb"HTTP/1\.1 40[13] ", got)) == 1, got
        assert b"Connection: close" in got and time.monotonic() - start < 3


async def held_handshake(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A `/ws` handshake without a credential from `source` (a loopback address), its answer not read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(WS_HEAD + b"Cookie: s=1\r\n\r\n")
    await writer.drain()
    return reader, writer


async def test_one_address_cannot_take_every_place_waiting_on_the_connect_proxy(make_server: ServerFactory) -> None:
    """An app that answers in a second, and one address that keeps handshakes coming: before, it held all
    `--proxy-max-waiting` places and every other client got 503. Now an address holds its share (as of
    the connections: `--max-connections-per-ip` of `--max-connections`, at least 16)."""
    release = asyncio.Event()

    async def slow(_: bytes) -> Chunks:
        await release.wait()
        yield answer(b'{"user": "alice"}')

    writers: list[asyncio.StreamWriter] = []
    async with RawApp(slow) as app:
        server = await make_server(
            connect_proxy=app.url(),
            webhook_secret=PROXY_SECRET,
            proxy_max_waiting=64,
            proxy_timeout=5,
            max_connections_per_ip=100,
            max_connections=400,
        )
        assert server.proxy is not None and server.proxy.per_address == 16
        attacker = [await held_handshake(server.port, "127.0.0.2") for _ in range(70)]
        writers += [w for _, w in attacker]
        await eventually(lambda: len(app.heads) == 16)
        refused = 0
        for reader, _ in attacker:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 0.05)
            except TimeoutError:
                continue
            assert line.startswith(b"HTTP/1.1 503"), line
            refused += 1
        assert refused == 70 - 16
        honest, writer = await held_handshake(server.port, "127.0.0.1")
        writers.append(writer)
        await eventually(lambda: len(app.heads) == 17)  # asked, not refused
        release.set()
        line = await asyncio.wait_for(honest.readuntil(b"\r\n"), 5)
        assert line.startswith(b"HTTP/1.1 101"), line
    for writer in writers:
        writer.transport.abort()
    await eventually(lambda: server.proxy is not None and server.proxy.waiting == 0)


async def test_rooms_made_by_clients_cost_a_bounded_api_rooms_answer(make_server: ServerFactory) -> None:
    """Every client may be in 128 rooms, so clients decide how many rooms `GET /api/rooms` lists: 20,000
    (157 clients' worth) made a 20,000-entry answer and a Redis reply of every room. Now at most
    `MAX_ROOMS_LISTED`, and the answer says it was cut."""
    server = await api_server(make_server)
    presence = server.hub.presence
    for n in range(server_api.MAX_ROOMS_LISTED * 2):  # as 157 clients in 128 rooms each would have them
        await presence.add(f"room-{n:05}", f"user{n // 128}", f"conn-{n // 128}")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", headers=AUTH, timeout=10) as api:
        reply = await api.get("/api/rooms")
    body = reply.json()
    assert reply.status_code == 200 and body["truncated"] is True
    assert len(body["rooms"]) == server_api.MAX_ROOMS_LISTED
    assert len(reply.content) < 600_000


async def test_a_caller_without_a_key_is_refused_before_its_body_is_read(make_server: ServerFactory) -> None:
    """The key was checked after the body: a socket without a key could announce 64 KiB, send it slowly
    and hold it for 10 s (16,384 such sockets per address: 1 GiB). Now the head is judged first."""
    server = await api_server(make_server)
    announced = "Content-Length: 60000\r\n"
    start = time.monotonic()
    got = await exchange(server.port, request("POST", "/api/publish", b"{", announced, key="wrong-key-0123456789"))
    assert got.startswith(b"HTTP/1.1 401") and time.monotonic() - start < 1.0, got  # the body never came
    # with the key, the body is waited for (until BODY_TIMEOUT, then 408)
    assert await exchange(server.port, request("POST", "/api/publish", b"{", announced), timeout=0.5) == b""


# ---- the join proxy ---------------------------------------------------------------------------

JOIN_INFO_1MB = answer(msgspec.json.encode({"info": {"bio": "x" * 1_000_000}}))
HOSTILE_JOIN_ANSWERS: dict[str, Callable[[str], bytes | Chunks]] = {
    "trickle": lambda _: trickled(answer(b"{}"), 0.05),
    "1GB": lambda _: endless("Content-Type: application/json\r\n"),
    "redirect": lambda target: answer(b"", "307 Temporary Redirect", f"Location: {target}\r\n"),
    "hang": lambda _: hanging(),
    "gzip": lambda _: answer(gzip.compress(b"{}"), extra="Content-Encoding: gzip\r\n"),
    "1MB-info": lambda _: JOIN_INFO_1MB,
    "deep-info": lambda _: answer(b'{"info": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"),
    "not-json": lambda _: answer(b"<html>welcome</html>"),
}


async def hanging() -> Chunks:
    """An app that takes the request and never answers."""
    await asyncio.sleep(3600)
    yield b""


@pytest.mark.parametrize("hostile", list(HOSTILE_JOIN_ANSWERS))
async def test_a_hostile_join_proxy_answer_is_unavailable_in_bounded_time_and_memory(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture, hostile: str
) -> None:
    """The app behind `--join-proxy` trickles, streams a gigabyte, redirects (to an app that would admit
    anyone), hangs, compresses, or answers 1 MB of info, info 100,000 deep or HTML: the join gets
    `unavailable` within the timeout, at most the 16 KiB answer bound read, and the client goes on."""
    async with RawApp(lambda _: answer(b"{}")) as elsewhere:
        async with RawApp(lambda _: HOSTILE_JOIN_ANSWERS[hostile](elsewhere.url())) as app:
            server = await make_server(join_proxy=app.url(), webhook_secret=PROXY_SECRET)
            client = await EventClient.open(ws_url(server))
            tracemalloc.start()
            start = time.monotonic()
            try:
                reply = await client.request("join_room", {"room": "r"})
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            elapsed = time.monotonic() - start
            assert reply["type"] == "error" and reply["payload"]["code"] == "unavailable", reply
            assert (await client.request("get_presence", {"room": "r"}))["payload"]["code"] == "not_in_room"
            await client.close()
        assert not elsewhere.heads  # a redirect is not followed
    assert elapsed < server.settings.proxy_timeout + 1.5, elapsed
    assert peak < 4 * 1024 * 1024, peak
    no_tracebacks(caplog)


async def test_one_address_cannot_take_every_place_waiting_on_the_join_proxy(make_server: ServerFactory) -> None:
    """Joins waiting on a slow join proxy are bounded as handshakes are: `--proxy-max-waiting` in all, and
    an address holds its share (16 here); past it a join is `unavailable` at once, and a client of another
    address is still asked."""
    release = asyncio.Event()

    async def slow(_: bytes) -> Chunks:
        await release.wait()
        yield answer(b"{}")

    async with RawApp(slow) as app:
        server = await make_server(
            join_proxy=app.url(),
            webhook_secret=PROXY_SECRET,
            proxy_max_waiting=64,
            proxy_timeout=5,
            max_connections_per_ip=100,
            max_connections=400,
        )
        assert server.proxy is not None and server.proxy.joins.per_address == 16
        attacker = [await EventClient.open(ws_url(server), local_addr=("127.0.0.2", 0)) for _ in range(20)]
        for n, client in enumerate(attacker):
            await client.send("join_room", {"room": f"r{n}"}, f"j{n}")
        await eventually(lambda: len(app.heads) == 16)
        refused = [await client.recv(timeout=1) for client in attacker[16:]]
        assert all(r["payload"]["code"] == "unavailable" for r in refused), refused
        honest = await EventClient.open(ws_url(server))
        await honest.send("join_room", {"room": "lobby"}, "h")
        await eventually(lambda: len(app.heads) == 17)  # asked, not refused
        assert server.proxy.joins.waiting == 17
        release.set()
        assert (await honest.recv())["type"] == "ack"
        for client in (*attacker, honest):
            await client.close()
    await eventually(lambda: server.proxy is not None and server.proxy.joins.waiting == 0)
