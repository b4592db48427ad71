"""TLS on the one port (`--tls-cert`, `--tls-key`): https:// and wss:// on real loopback sockets.

The certificate is self-signed, made by `openssl` for `localhost` and
127.0.0.1 once per module; every client trusts exactly it.
"""

from __future__ import annotations

import asyncio
import io
import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from hubbub.client import chat
from hubbub.client.client import connect
from hubbub.server.server import Server
from tests.cluster import free_port
from tests.conftest import ServerFactory
from tests.helpers import EventClient, eventually
from tests.integration.test_cli import _spawn

OPENSSL_REQ = (
    *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"),
    *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "1"),
)
HUBBUB = (sys.executable, "-m", "hubbub")
KEY_MARKER = "THIS-IS-THE-SECRET-KEY-CONTENT"


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [*OPENSSL_REQ, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    return _self_signed(tmp_path_factory.mktemp("tls"), "server")


@pytest.fixture
def trusting(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that trusts only the test certificate."""
    return ssl.create_default_context(cafile=str(tls_files[0]))


@pytest.fixture
async def tls_server(make_server: ServerFactory, tls_files: tuple[Path, Path]) -> Server:
    server: Server = await make_server(tls_cert=str(tls_files[0]), tls_key=str(tls_files[1]))
    return server


async def _get(port: int, path: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    """One HTTPS GET on a fresh connection: the status and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        async with asyncio.timeout(5):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            length = next(
                int(line.split(":")[1]) for line in head.split("\r\n") if line.lower().startswith("content-length:")
            )
            body = await reader.readexactly(length)
        return int(head.split()[1]), body
    finally:
        writer.close()


def _tls_rejected(server: Server) -> float:
    value: float = server.hub.metrics.handshakes_rejected.labels("tls")._value.get()
    return value


def _wss(server: Server) -> str:
    return f"wss://127.0.0.1:{server.port}/ws"


async def test_https_serves_the_page_healthz_and_metrics(tls_server: Server, trusting: ssl.SSLContext) -> None:
    status, page = await _get(tls_server.port, "/", trusting)
    assert status == 200 and b"<html" in page.lower()
    assert await _get(tls_server.port, "/healthz", trusting) == (200, b"ok\n")
    status, metrics = await _get(tls_server.port, "/metrics", trusting)
    assert status == 200 and b'hubbub_handshakes_rejected_total{reason="tls"} 0.0' in metrics


async def test_wss_client_joins_a_room_and_gets_its_message(tls_server: Server, trusting: ssl.SSLContext) -> None:
    alice = await EventClient.open(_wss(tls_server) + "?name=alice", ssl=trusting)
    bob = await EventClient.open(_wss(tls_server) + "?name=bob", ssl=trusting)
    try:
        await alice.join("lobby")
        await bob.join("lobby")
        sent = await alice.request("send_message", {"room": "lobby", "message": "over tls"})
        assert sent["type"] == "ack", sent
        got = await bob.recv_type("new_message")
        assert got["payload"]["message"] == "over tls" and got["payload"]["from"] == "alice"
    finally:
        await alice.close()
        await bob.close()


async def test_python_client_over_wss_trusts_the_given_ca(tls_server: Server, tls_files: tuple[Path, Path]) -> None:
    async with connect(_wss(tls_server), name="ada", ca=str(tls_files[0])) as ada:
        await ada.join("lobby")
        offset = await ada.send("lobby", "hello")
        event = await ada.next_event(timeout=5)
        assert event["type"] in ("member_joined", "new_message")
        while event["type"] != "new_message":
            event = await ada.next_event(timeout=5)
        assert event["payload"]["offset"] == offset and event["payload"]["message"] == "hello"


async def test_python_client_refuses_an_untrusted_certificate_at_once(tls_server: Server) -> None:
    """Without the CA the system's store does not know the self-signed certificate: a clear
    error, not a client retrying forever."""
    with pytest.raises(ConnectionRefusedError, match="not trusted"):
        async with asyncio.timeout(5), connect(_wss(tls_server), name="eve"):
            pass


async def test_chat_over_wss_with_the_ca(tls_server: Server, tls_files: tuple[Path, Path]) -> None:
    out = io.StringIO()
    async with asyncio.timeout(10):
        code = await chat.run(
            _wss(tls_server), "lobby", "cy", io.StringIO("hi there\n/quit\n"), out, ca=str(tls_files[0])
        )
    assert code == 0
    assert "connected to wss://" in out.getvalue() and "cy: hi there" in out.getvalue()


@pytest.mark.parametrize("junk", [b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"\x00garbage\xff" * 40])
async def test_plain_bytes_on_the_tls_port_get_no_answer_are_counted_and_the_server_survives(
    tls_server: Server, trusting: ssl.SSLContext, junk: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_server.port)
    try:
        writer.write(junk)
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed, not a word (an answer in plain text would be a lie)
    finally:
        writer.close()
    await eventually(lambda: _tls_rejected(tls_server) == 1)
    assert await _get(tls_server.port, "/healthz", trusting) == (200, b"ok\n")
    assert tls_server.listener is not None and tls_server.listener.open <= 1  # the failed one gave its place back


async def test_same_host_origin_must_be_https_with_tls(tls_server: Server, trusting: ssl.SSLContext) -> None:
    assert tls_server.scheme == "https"
    port = tls_server.port
    with pytest.raises(InvalidStatus) as refused:
        await EventClient.open(_wss(tls_server), ssl=trusting, origin=f"http://127.0.0.1:{port}")
    assert refused.value.response.status_code == 403
    ok = await EventClient.open(_wss(tls_server), ssl=trusting, origin=f"https://127.0.0.1:{port}")
    await ok.close()


def _serve_fails(*args: str) -> str:
    """Run `hubbub serve` with bad TLS flags: it must exit 2 with one line; that line."""
    out = subprocess.run(
        [sys.executable, "-m", "hubbub", "serve", "--port", "0", *args], capture_output=True, text=True, timeout=20
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) <= 3, out.stderr  # usage + message
    return out.stderr.strip().splitlines()[-1]


def test_bad_tls_flags_exit_2_with_one_line(tls_files: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = (str(p) for p in tls_files)
    assert "go together" in _serve_fails("--tls-cert", cert)
    assert "go together" in _serve_fails("--tls-key", key)
    assert "cannot read" in _serve_fails("--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", key)
    assert "--tls-key: cannot read" in _serve_fails("--tls-cert", cert, "--tls-key", str(tmp_path / "missing.key"))
    _, other_key = _self_signed(tmp_path, "other")
    assert "KEY_VALUES_MISMATCH" in _serve_fails("--tls-cert", cert, "--tls-key", str(other_key))
    junk = tmp_path / "junk.key"
    junk.write_text(f"-----BEGIN PRIVATE KEY-----\n{KEY_MARKER}\n-----END PRIVATE KEY-----\n")
    message = _serve_fails("--tls-cert", cert, "--tls-key", str(junk))
    assert "not a PEM certificate and its unencrypted private key" in message and KEY_MARKER not in message


@pytest.mark.parametrize(
    "command", [["chat", "wss://127.0.0.1:1/ws"], ["bench", "smoke", "--url", "wss://127.0.0.1:1/ws"]]
)
def test_a_missing_ca_file_exits_2_with_one_line(command: list[str], tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hubbub", *command, "--ca", str(tmp_path / "nope.pem")],
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"hubbub {command[0]}: --ca: cannot read {tmp_path / 'nope.pem'}: No such file or directory"
    ]


def _listening(server: subprocess.Popen[bytes]) -> bool:
    """Read the server's log until it listens (True) or ends (False)."""
    assert server.stderr is not None
    return any(b"server.listening" in line for line in server.stderr)


@pytest.mark.timeout(60)
async def test_bench_over_wss_with_the_ca(tls_files: tuple[Path, Path]) -> None:
    port = free_port()
    ca = ("--ca", str(tls_files[0]))
    server = _spawn(
        "serve",
        "--port",
        str(port),
        "--rate-limit",
        "0",
        "--tls-cert",
        str(tls_files[0]),
        "--tls-key",
        str(tls_files[1]),
    )
    try:
        assert await asyncio.to_thread(_listening, server), "server did not start"
        out = await asyncio.to_thread(
            subprocess.run,
            [*HUBBUB, "bench", "smoke", "--procs", "1", "--url", f"wss://127.0.0.1:{port}/ws", *ca, "--json"],
            capture_output=True,
            text=True,
            timeout=50,
        )
    finally:
        server.terminate()
        server.wait(5)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["expected"] == result["received"] == 50 * 100
    assert result["slow_consumers_dropped"] == 0  # /metrics read over https with the same CA


async def test_a_silent_socket_is_closed_at_the_tls_handshake_timeout_and_frees_its_place(
    make_server: ServerFactory, tls_files: tuple[Path, Path]
) -> None:
    server: Server = await make_server(tls_cert=str(tls_files[0]), tls_key=str(tls_files[1]), tls_handshake_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        async with asyncio.timeout(5):
            assert await reader.read() == b""
    finally:
        writer.close()
    listener = server.listener
    assert listener is not None
    await eventually(lambda: _tls_rejected(server) == 1 and listener.open == 0)


async def test_past_the_cap_a_tls_socket_is_closed_without_a_plain_text_answer(
    make_server: ServerFactory, tls_files: tuple[Path, Path], trusting: ssl.SSLContext
) -> None:
    server: Server = await make_server(tls_cert=str(tls_files[0]), tls_key=str(tls_files[1]), max_connections=1)
    holder = await EventClient.open(_wss(server), ssl=trusting)
    try:
        with pytest.raises((ConnectionError, ssl.SSLError)):
            async with asyncio.timeout(5):
                await _get(server.port, "/healthz", trusting)
        assert server.hub.metrics.handshakes_rejected.labels("capacity")._value.get() == 1
    finally:
        await holder.close()


async def test_the_start_line_gives_https_and_wss_urls(tls_files: tuple[Path, Path]) -> None:
    port = free_port()
    server = _spawn("serve", "--port", str(port), "--tls-cert", str(tls_files[0]), "--tls-key", str(tls_files[1]))
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(server.stdout.readline), 30)
        assert line.decode() == f"hubbub: serving https://127.0.0.1:{port}/ (chat page), wss://127.0.0.1:{port}/ws\n"
    finally:
        server.terminate()
        server.wait(10)
