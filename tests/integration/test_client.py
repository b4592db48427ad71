"""hubbub.client.client and `hubbub chat` against a real server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hubbub.client.client import (
    Client,
    ClientState,
    HandshakeRefused,
    HubUnreachable,
    InvalidURL,
    RequestFailed,
    connect,
)
from hubbub.server.server import Server
from tests.cluster import free_port
from tests.conftest import ServerFactory
from tests.helpers import EventClient, eventually, ws_url


async def test_client_api(server: Server) -> None:
    async with connect(ws_url(server), name="ada") as ada:
        ack = await ada.join("lab")
        assert ack == {"room": "lab", "offset": 0}
        assert await ada.send("lab", "first") == 1
        assert await ada.send("lab", {"structured": True}) == 2
        events = [await ada.next_event(timeout=5) for _ in range(3)]
        # member_joined comes at the next presence flush: before, between or after the messages
        assert [e["type"] for e in events if e["type"] != "new_message"] == ["member_joined"]
        messages = [e["payload"]["message"] for e in events if e["type"] == "new_message"]
        assert messages == ["first", {"structured": True}]
        history = await ada.history("lab", since=1)
        assert [m["message"] for m in history["messages"]] == [{"structured": True}]
        assert await ada.presence("lab") == [{"name": "ada", "connections": 1}]
        with pytest.raises(RequestFailed) as failed:
            await ada.send("elsewhere", "x")
        assert failed.value.code == "not_in_room"


async def test_client_resumes_after_a_drop_without_gaps_or_repeats(server: Server) -> None:
    writer = await EventClient.open(ws_url(server))
    await writer.join("r")
    async with connect(ws_url(server), name="bo", backoff=0.05, max_backoff=0.2) as bo:
        await bo.join("r")
        await writer.request("send_message", {"room": "r", "message": 0})
        for conn in list(server.hub.connections):
            if conn.identity == "bo":
                conn.abort()  # the network drops bo's connection
        for k in range(1, 6):  # published in process while bo is away
            await server.hub.publish("r", k, "writer")
        got: list[int] = []
        while len(got) < 8:
            event = await bo.next_event(timeout=5)
            if event["type"] == "new_message":
                got.append(event["payload"]["message"])
                if len(got) == 6:
                    await writer.request("send_message", {"room": "r", "message": 6})
                    await writer.request("send_message", {"room": "r", "message": 7})
        assert got == list(range(8))
        assert bo.reconnects == 1
    await writer.close()


async def test_client_reports_a_room_it_could_not_recover(make_server: ServerFactory) -> None:
    server = await make_server(history_size=3)
    writer = await EventClient.open(ws_url(server))
    await writer.join("r")
    async with connect(ws_url(server), name="cy", backoff=0.05, max_backoff=0.2) as cy:
        await cy.join("r")
        for conn in list(server.hub.connections):
            if conn.identity == "cy":
                conn.abort()
        for k in range(10):  # in process: all published before cy can be back
            await server.hub.publish("r", k, "writer")
        while (event := await cy.next_event(timeout=5))["type"] != "room_reset":
            pass
        assert event["payload"] == {"room": "r", "offset": 10}
    await writer.close()


async def test_client_refused_by_the_server_is_told(server: Server) -> None:
    client = Client(ws_url(server), name="n" * 100)
    with pytest.raises(ConnectionRefusedError, match="HTTP 400"):
        await client.start()


async def test_terminal_chat(server: Server) -> None:
    watcher = await EventClient.open(ws_url(server, query="name=watcher"))
    await watcher.join("tty")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hubbub",
        "chat",
        ws_url(server),
        "--room",
        "tty",
        "--name",
        "term",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    await eventually(lambda: any(c.identity == "term" and c.rooms for c in server.hub.connections), timeout=10)
    await watcher.request("send_message", {"room": "tty", "message": "hello terminal"})
    proc.stdin.write(b"hello room\n/who\n")
    await proc.stdin.drain()
    said = await watcher.recv_type("new_message")
    while said["payload"]["from"] != "term":
        said = await watcher.recv_type("new_message")
    assert said["payload"]["message"] == "hello room"
    await asyncio.sleep(0.5)
    proc.stdin.close()
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "#tty watcher: hello terminal" in text
    assert "#tty term: hello room" in text
    assert "* in #tty: term (1), watcher (1)" in text
    await watcher.close()


# ---- failure modes: each a clear exception within a bounded time ---------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:8000/", "a hub's WebSocket URL is ws://127.0.0.1:8000/ws"),
        ("https://chat.example.com/", "wss://chat.example.com/ws"),
        ("127.0.0.1:8000/ws", "has no scheme: write ws://127.0.0.1:8000/ws"),
        ("ftp://127.0.0.1/ws", "the scheme must be ws:// or wss://"),
        ("ws://127.0.0.1:99999/ws", "the port is not a number"),
        ("ws:///ws", "no host"),
    ],
)
def test_a_bad_url_raises_at_once_saying_what_to_write(url: str, words: str) -> None:
    with pytest.raises(InvalidURL, match=re.escape(words)):
        Client(url)


async def _refused(url: str, connect_timeout: float = 10.0) -> tuple[HandshakeRefused, float]:
    started = time.monotonic()
    with pytest.raises(HandshakeRefused) as refused:
        async with asyncio.timeout(20), connect(url, connect_timeout=connect_timeout):
            pass
    return refused.value, time.monotonic() - started


async def test_a_refused_handshake_is_final_at_once_with_its_status(make_server: ServerFactory) -> None:
    """401 (no credential), 403 (a Host not allowed), 404 (a wrong path): retrying cannot help."""
    locked = await make_server(auth_secret="s" * 32)
    error, took = await _refused(ws_url(locked))
    # the hub's own plain-text reason names the cause, rather than a guess among several
    assert error.status == 401 and "HTTP 401 Unauthorized: a token is required" in str(error) and took < 5
    named = await make_server(allowed_hosts=("chat.example.com",))
    error, took = await _refused(ws_url(named))
    assert error.status == 403 and "HTTP 403 Forbidden: host not allowed" in str(error) and took < 5
    error, took = await _refused(ws_url(named).replace("/ws", "/nope").replace("127.0.0.1", "localhost"))
    assert error.status == 403  # the Host check comes first
    plain = await make_server()
    error, took = await _refused(ws_url(plain, path="/nope"))
    assert error.status == 404 and "HTTP 404 Not Found: no hub at this path (it is usually /ws)" in str(error)
    assert took < 5


async def test_a_page_instead_of_a_hub_says_there_is_no_hub_at_this_path(make_server: ServerFactory) -> None:
    """`ws://host:port/` reaches the chat page: a 200 to a handshake means no hub there, said as for a 404,
    never "refused ... 200 OK" alone, and never the page's HTML."""
    plain = await make_server()
    error, took = await _refused(ws_url(plain, path="/"))
    assert error.status == 200 and took < 5
    assert str(error) == "the hub refused the connection: HTTP 200 OK: no hub at this path (it is usually /ws)"


def test_a_refusal_without_a_reason_lists_every_cause_of_its_status() -> None:
    """No plain-text body (a proxy in front, an old hub): the words cover the connect proxy's causes too."""
    unauthorized = str(HandshakeRefused(401))
    assert "a ticket (POST /login) or a token" in unauthorized and "--connect-proxy" in unauthorized
    unavailable = str(HandshakeRefused(503))
    assert "full" in unavailable and "broker" in unavailable and "--connect-proxy) did not answer" in unavailable
    assert "--max-connections-per-ip" in str(HandshakeRefused(429))
    assert str(HandshakeRefused(503, "the application did not answer: try again later")).endswith(
        "HTTP 503 Service Unavailable: the application did not answer: try again later"
    )


async def test_a_host_name_that_does_not_resolve_says_so() -> None:
    """`.invalid` never resolves (RFC 6761): the words name the host, not "Unknown error -2"."""
    started = time.monotonic()
    with pytest.raises(HubUnreachable, match=r"the host name hub\.example\.invalid was not found"):
        async with asyncio.timeout(20):
            await Client("wss://hub.example.invalid/ws", connect_timeout=1.0, open_timeout=0.5).start()
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(("cap", "status"), [({"max_connections": 1}, 503), ({"max_connections_per_ip": 1}, 429)])
async def test_a_full_hub_is_retried_then_reported_with_its_status(
    make_server: ServerFactory, cap: dict[str, int], status: int
) -> None:
    """503 and 429 can pass (someone leaves): retried within connect_timeout, then the status."""
    server = await make_server(**cap)
    holder = await EventClient.open(ws_url(server))
    try:
        error, took = await _refused(ws_url(server), connect_timeout=1.5)
        assert error.status == status and str(error).endswith("(still after 1.5 s of retries)")
        assert 1.4 < took < 8
    finally:
        await holder.close()


async def test_a_dead_port_is_reported_within_connect_timeout() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    started = time.monotonic()
    with pytest.raises(
        HubUnreachable, match=r"no connection to ws://127\.0\.0\.1:\d+/ws within 1 s: Connection refused"
    ):
        await Client(url, connect_timeout=1.0).start()
    assert time.monotonic() - started < 6


async def test_no_credential_of_the_url_is_in_an_exception() -> None:
    """A token, ticket or otp in the query, a password before the host: none is repeated when it fails."""
    url = f"ws://ada:pass-SECRET@127.0.0.1:{free_port()}/ws?token=tok-SECRET&otp=otp-SECRET"
    with pytest.raises(HubUnreachable) as failed:
        await Client(url, connect_timeout=0.5).start()
    assert "SECRET" not in str(failed.value) and "ws://ada:***@127.0.0.1:" in str(failed.value)


async def test_a_host_that_never_answers_is_reported_within_connect_timeout() -> None:
    """A socket that accepts (the kernel's backlog) but never answers the handshake: each attempt
    ends at open_timeout, the whole at connect_timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        started = time.monotonic()
        with pytest.raises(HubUnreachable, match="no answer within"):
            await Client(f"ws://127.0.0.1:{silent.getsockname()[1]}/ws", connect_timeout=1.5, open_timeout=0.5).start()
        assert 1.4 < time.monotonic() - started < 8


async def test_wss_to_a_plain_server_says_so(server: Server) -> None:
    """The plain server waits for an HTTP request that never comes: bounded, and the hint names TLS."""
    with pytest.raises(HubUnreachable, match=r"no answer within [\d.]+ s \(does the server speak TLS"):
        async with asyncio.timeout(10):
            await Client(f"wss://127.0.0.1:{server.port}/ws", connect_timeout=1.5, open_timeout=1).start()


async def test_after_a_drop_the_client_says_so_and_reconnects_when_the_hub_is_back(make_server: ServerFactory) -> None:
    """Unbounded by default: a hub that went away and came back on the same port is found again."""
    first = await make_server()
    port = first.port
    async with connect(ws_url(first), name="ed", backoff=0.05, max_backoff=0.3) as ed:
        await ed.join("r")
        assert (await ed.next_event(timeout=5))["type"] == "member_joined"
        await first.stop()
        gone = await ed.next_event(timeout=10)
        assert gone == {
            "type": "disconnected",
            "payload": {"reason": "the hub closed the connection (1001: going away)"},
        }
        assert not ed.connected
        await asyncio.sleep(1.0)  # down for a while: attempts are refused meanwhile
        again = await make_server(port=port)
        while (event := await ed.next_event(timeout=10))["type"] == "member_joined":
            pass  # its own join again, announced while its rooms are rejoined
        assert event == {"type": "reconnected", "payload": {"reconnects": 1}}
        assert ed.connected and await ed.send("r", "back") >= 1
        assert any(c.identity == "ed" and "r" in c.rooms for c in again.hub.connections)


async def _drain(client: Client) -> None:
    """Read events until the client raises."""
    while True:
        await client.next_event(timeout=10)


async def test_with_a_reconnect_timeout_the_client_gives_up_and_says_why(make_server: ServerFactory) -> None:
    server = await make_server()
    client = Client(ws_url(server), backoff=0.05, max_backoff=0.2, reconnect_timeout=1.0)
    await client.start()
    try:
        await client.join("r")
        await server.stop()
        assert (await client.next_event(timeout=5))["type"] in ("member_joined", "disconnected")
        started = time.monotonic()
        with pytest.raises(HubUnreachable, match="within 1 s"):
            await _drain(client)
        assert time.monotonic() - started < 6 and client.state is ClientState.CLOSED
        with pytest.raises(HubUnreachable):
            await client.send("r", "anyone?")
    finally:
        await client.close()


async def test_iterating_ends_when_the_client_is_closed(server: Server) -> None:
    client = Client(ws_url(server))
    await client.start()
    seen: list[dict[str, object]] = []

    async def read() -> None:
        async for event in client:
            seen.append(event)

    reader = asyncio.create_task(read())
    await client.join("r")
    await eventually(lambda: len(seen) == 1)
    await client.close()
    await asyncio.wait_for(reader, 5)
    assert client.state is ClientState.CLOSED and seen[0]["type"] == "member_joined"


def readme_example(name: str) -> str:
    """The README's code block marked `<!-- example: NAME -->`."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    marked = rf"<!-- example: {re.escape(name)} -->\n(?:<!-- doc-test: [^\n]*-->\n)?```python\n(.*?)```"
    match = re.search(marked, text, re.S)  # a doc-test marker may stand between the two
    assert match is not None, f"README.md has no example {name}"
    return match.group(1)


async def test_the_readme_client_example_runs_as_a_script(server: Server, tmp_path: Path) -> None:
    """It is a complete script, not a fragment: run as it
    stands (on the test server's port): it prints its own hello, and Ctrl-C ends it quietly."""
    script = tmp_path / "client.py"
    script.write_text(readme_example("client.py").replace("ws://127.0.0.1:8000/ws", ws_url(server)))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(20):
            while not (line := (await proc.stdout.readline()).decode()).startswith("new_message"):
                assert line, "the example ended without printing its message"
        assert "'message': 'hello'" in line and "'from': 'ada'" in line
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0 and b"Traceback" not in err, err.decode()


class _FreezingRelay:
    """A TCP relay to a server that can freeze: both sockets stay open but nothing passes any
    more, as when a host vanishes from the network (no FIN, no RST)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.frozen = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if self.frozen:
                    await asyncio.Event().wait()  # hold the bytes and the sockets for ever
                sink.write(data)
        sink.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server.close()


async def test_a_hub_that_vanishes_after_connecting_is_noticed_by_ping_and_found_again(server: Server) -> None:
    """No FIN, no RST: the ping unanswered within ping_timeout drops the connection, and the
    client dials again; an idle connection whose pings are answered stays up."""
    relay = _FreezingRelay(server.port)
    port = await relay.start()
    client = Client(f"ws://127.0.0.1:{port}/ws", backoff=0.05, max_backoff=0.2, ping_interval=0.5, ping_timeout=0.5)
    try:
        await client.start()
        await client.join("r")
        await asyncio.sleep(1.5)  # several pings answered
        assert client.connected and client.reconnects == 0
        relay.frozen = True
        started = time.monotonic()
        while (event := await client.next_event(timeout=10))["type"] != "disconnected":
            pass
        assert time.monotonic() - started < 5 and event["payload"]["reason"] == "the connection dropped"
        relay.frozen = False  # the next connection passes
        while (event := await client.next_event(timeout=10))["type"] != "reconnected":
            pass
        assert await client.send("r", "still here") >= 1
    finally:
        await client.close()
        await relay.close()
