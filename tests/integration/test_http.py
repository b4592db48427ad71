"""HTTP on the WebSocket port: the page, health, metrics, 404, origin checks (403)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hubbub.server.server import Server, origin_allowed
from tests.conftest import ServerFactory
from tests.helpers import EventClient, eventually, ws_url


async def http_get(port: int, path: str, headers: str = "") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_routes(server: Server) -> None:
    status, body = await http_get(server.port, "/")
    assert status == 200 and b"<title>hubbub chat</title>" in body
    assert await http_get(server.port, "/healthz") == (200, b"ok\n")
    assert (await http_get(server.port, "/nothing-here"))[0] == 404
    assert (await http_get(server.port, "/echo"))[0] == 404


async def test_metrics_are_exact(server: Server) -> None:
    clients = [await EventClient.open(ws_url(server)) for _ in range(3)]
    await clients[0].join("a")
    await clients[1].join("b")
    await clients[0].request("send_message", {"room": "a", "message": "x"})
    await clients[2].ws.send("garbage")
    await clients[2].recv()
    await clients[1].recv_type("member_joined")  # announced at the next presence flush
    await clients[0].recv_type("member_joined")
    _, text = await http_get(server.port, "/metrics")
    lines = text.decode().splitlines()
    assert "hubbub_connections 3.0" in lines
    assert "hubbub_rooms 2.0" in lines
    # two member_joined events (one per room) and the message, each to one member
    assert "hubbub_messages_delivered_total 3.0" in lines
    assert 'hubbub_errors_total{code="bad_json"} 1.0' in lines
    assert "hubbub_slow_consumers_dropped_total 0.0" in lines
    for c in clients:
        await c.close()
    await eventually(lambda: not server.hub.connections)
    _, text = await http_get(server.port, "/metrics")
    lines = text.decode().splitlines()
    assert "hubbub_connections 0.0" in lines and "hubbub_rooms 0.0" in lines
    assert 'hubbub_closes_total{code="1000"} 3.0' in lines
    assert "hubbub_messages_received_total 4.0" in lines


async def test_foreign_origin_is_refused_with_403(server: Server) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await connect(ws_url(server), origin="https://evil.example")  # type: ignore[arg-type]
    assert caught.value.response.status_code == 403
    same = await connect(ws_url(server), origin=f"http://127.0.0.1:{server.port}")  # type: ignore[arg-type]
    await same.close()
    no_origin = await connect(ws_url(server))
    await no_origin.close()


async def test_allowlist_is_exact(make_server: ServerFactory) -> None:
    server = await make_server(allowed_origins=("https://chat.example",))
    ok = await connect(ws_url(server), origin="https://chat.example")  # type: ignore[arg-type]
    await ok.close()
    for origin in ("https://chat.example.evil", f"http://127.0.0.1:{server.port}"):
        with pytest.raises(InvalidStatus) as caught:
            await connect(ws_url(server), origin=origin)  # type: ignore[arg-type]
        assert caught.value.response.status_code == 403


async def test_bad_name_is_refused_with_400(server: Server) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await connect(ws_url(server, query="name=" + "n" * 65))
    assert caught.value.response.status_code == 400


def test_origin_rule() -> None:
    assert origin_allowed(None, "h:1", ())
    assert origin_allowed("http://h:1", "h:1", ())
    assert origin_allowed("http://H:1", "h:1", ())
    assert not origin_allowed("https://h:1", "h:1", ())  # the server speaks http: an https page is another origin
    assert not origin_allowed("http://h:2", "h:1", ())
    assert not origin_allowed("null", "h:1", ())
    assert not origin_allowed("http://h:1", None, ())
    assert origin_allowed("https://a", "h:1", ("https://a",))
    assert not origin_allowed("https://a/", "h:1", ("https://a",))


async def _raw(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Send one raw request; the answer's head and body (the server closes after it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def _request(method: str, path: str, port: int, body: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.mark.parametrize("kind", ["plain", "api", "users"])
async def test_other_methods_get_a_clean_405_and_api_off_a_404(
    make_server: ServerFactory, kind: str, tmp_path: Path
) -> None:
    """Not picows' "Unsupported HTTP method: b'POST'": 405 with `Allow: GET` in words, whichever pacer reads;
    and without `--api-key`, `/api` says the API is off in the API's own error format."""
    settings: dict[str, Any] = {}
    if kind == "api":
        settings["api_keys"] = ("test-key-0123456789",)
    if kind == "users":
        from hubbub.auth.passwords import hash_password

        users = tmp_path / "users"
        users.write_text(f"ada:{hash_password('correct horse')}\n")
        settings["users_file"] = str(users)
    server = await make_server(**settings)
    port = server.port
    for method, path in [("POST", "/"), ("PUT", "/ws"), ("DELETE", "/healthz"), ("POST", "/nothing"), ("HEAD", "/")]:
        head, body = await _raw(port, _request(method, path, port, b'{"a":1}' if method != "HEAD" else b""))
        assert head.startswith(b"HTTP/1.1 405 "), (method, path, head)
        assert b"\r\nAllow: GET\r\n" in head and b"Content-Type: text/plain" in head
        assert body.startswith(b"method not allowed") and b"b'" not in body
    if kind == "plain":
        head, body = await _raw(port, _request("POST", "/login", port, b"{}"))
        assert head.startswith(b"HTTP/1.1 404 ") and b"--users" in body  # no --users: no login
    if kind != "api":
        for method in ("POST", "GET"):
            head, body = await _raw(port, _request(method, "/api/publish", port, b'{"room":"r","message":1}'))
            assert head.startswith(b"HTTP/1.1 404 ") and b"application/json" in head, head
            error = json.loads(body)["error"]
            assert error["code"] == "not_found" and "--api-key" in error["message"]
    # a malformed request line is still picows' to refuse, and GETs are served as before
    head, _ = await _raw(port, b"post / HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert await http_get(port, "/healthz") == (200, b"ok\n")
