"""The server API on one node (memory broker): every call, its errors and its bounds, on real sockets."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

import hubbub
from hubbub.integration import server_api
from hubbub.protocol.envelope import MAX_DEPTH
from hubbub.server import frontdoor
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import EventClient, eventually, exchange, ws_url

KEY = "test-key-0123456789"
OTHER_KEY = "second-key-0123456789"
AUTH = {"Authorization": f"apikey {KEY}"}


@pytest.fixture
async def api(make_server: ServerFactory) -> AsyncIterator[tuple[Server, httpx.AsyncClient]]:
    server: Server = await make_server(api_keys=(KEY, OTHER_KEY), max_rooms_per_connection=2)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", headers=AUTH, timeout=10) as client:
        yield server, client


def _error(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    code: str = response.json()["error"]["code"]
    assert response.json()["error"]["message"]
    return code


async def _quiet(client: EventClient, seconds: float = 0.3) -> list[dict[str, Any]]:
    """What the client gets within `seconds` (nothing, usually)."""
    got = []
    try:
        while True:
            got.append(await client.recv(timeout=seconds))
    except TimeoutError:
        return got


async def _closed(client: EventClient) -> None:
    """Read until the server closes the connection."""
    while True:
        try:
            await client.recv(timeout=5)
        except ConnectionClosed:
            return


async def _event(client: EventClient, type_: str, payload: dict[str, Any]) -> None:
    """Read until an event of `type_` with `payload` comes (others are skipped)."""
    while (await client.recv_type(type_))["payload"] != payload:
        pass


async def test_publish_reaches_members_as_a_client_message(api: tuple[Server, httpx.AsyncClient]) -> None:
    server, client = api
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    await alice.join("news")
    reply = await client.post("/api/publish", json={"room": "news", "message": {"text": "hello"}})
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    assert reply.json() == {"offset": 1}
    event = await alice.recv_type("new_message")
    assert event["payload"]["message"] == {"text": "hello"}
    assert event["payload"]["from"] == "server" and event["payload"]["offset"] == 1
    reply = await client.post("/api/publish", json={"room": "news", "message": "two", "from": "bot"})
    assert reply.json() == {"offset": 2}
    assert (await alice.recv_type("new_message"))["payload"]["from"] == "bot"
    history = (await client.get("/api/history", params={"room": "news"})).json()
    assert [m["message"] for m in history["messages"]] == [{"text": "hello"}, "two"] and history["offset"] == 2
    since = (await client.get("/api/history", params={"room": "news", "since": 1, "limit": 5})).json()
    assert [m["offset"] for m in since["messages"]] == [2]
    await alice.close()


async def test_broadcast_publishes_to_each_room(api: tuple[Server, httpx.AsyncClient]) -> None:
    server, client = api
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    await alice.join("a")
    await alice.join("b")
    await client.post("/api/publish", json={"room": "b", "message": 0})
    reply = await client.post("/api/broadcast", json={"rooms": ["a", "b", "c"], "message": "all"})
    assert reply.json() == {"offsets": {"a": 1, "b": 2, "c": 1}}
    rooms = {(await alice.recv_type("new_message"))["payload"]["room"] for _ in range(3)}
    assert rooms == {"a", "b"}
    duplicate = await client.post("/api/broadcast", json={"rooms": ["a", "a"], "message": 1})
    assert duplicate.status_code == 400 and _error(duplicate) == "bad_payload"
    too_many = [f"r{i}" for i in range(server_api.MAX_BROADCAST_ROOMS + 1)]
    reply = await client.post("/api/broadcast", json={"rooms": too_many, "message": 1})
    assert reply.status_code == 400 and _error(reply) == "bad_payload"
    assert _error(await client.post("/api/broadcast", json={"rooms": [], "message": 1})) == "bad_payload"
    await alice.close()


async def test_disconnect_closes_every_connection_of_the_identity(api: tuple[Server, httpx.AsyncClient]) -> None:
    server, client = api
    phone = await EventClient.open(ws_url(server, query="name=alice"))
    laptop = await EventClient.open(ws_url(server, query="name=alice"))
    bob = await EventClient.open(ws_url(server, query="name=bob"))
    reply = await client.post("/api/disconnect", json={"user": "alice", "code": 4321, "reason": "banned"})
    assert reply.status_code == 200 and reply.json() == {}
    for conn in (phone, laptop):
        with pytest.raises(ConnectionClosed):
            await conn.recv(timeout=5)
        assert conn.ws.close_code == 4321 and conn.ws.close_reason == "banned"
    await bob.join("still-here")  # bob is untouched
    reply = await client.post("/api/disconnect", json={"user": "bob"})
    await _closed(bob)
    assert bob.ws.close_code == 4000  # the default
    for bad in ({"user": "x", "code": 1000}, {"user": "x", "code": 5000}, {"user": "x", "reason": "é" * 62}, {}):
        reply = await client.post("/api/disconnect", json=bad)
        assert reply.status_code == 400 and _error(reply) == "bad_payload", bad


async def test_subscribe_and_unsubscribe_act_as_join_and_leave(api: tuple[Server, httpx.AsyncClient]) -> None:
    server, client = api
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    watcher = await EventClient.open(ws_url(server, query="name=watcher"))
    await watcher.join("lobby")
    await client.post("/api/publish", json={"room": "lobby", "message": "before"})
    reply = await client.post("/api/subscribe", json={"user": "alice", "room": "lobby"})
    assert reply.status_code == 200 and reply.json() == {}
    subscribed = await alice.recv_type("subscribed")
    assert subscribed["payload"] == {"room": "lobby", "offset": 1} and "id" not in subscribed
    await _event(watcher, "member_joined", {"room": "lobby", "name": "alice"})
    await client.post("/api/publish", json={"room": "lobby", "message": "after"})
    assert (await alice.recv_type("new_message"))["payload"]["message"] == "after"
    presence = (await client.get("/api/presence", params={"room": "lobby"})).json()
    assert presence == {
        "room": "lobby",
        "members": [{"name": "alice", "connections": 1}, {"name": "watcher", "connections": 1}],
    }
    # a client request is still answered as usual afterwards
    assert (await alice.request("get_presence", {"room": "lobby"}))["type"] == "ack"
    reply = await client.post("/api/unsubscribe", json={"user": "alice", "room": "lobby"})
    assert reply.status_code == 200
    assert (await alice.recv_type("unsubscribed"))["payload"] == {"room": "lobby"}
    await _event(watcher, "member_left", {"room": "lobby", "name": "alice"})
    await client.post("/api/publish", json={"room": "lobby", "message": "gone"})
    assert [e for e in await _quiet(alice) if e["type"] == "new_message"] == []
    # the room limit per connection applies (2 here): a third room is not joined
    await alice.join("one")
    await alice.join("two")
    await _quiet(alice)  # her own member_joined of both
    await client.post("/api/subscribe", json={"user": "alice", "room": "three"})
    assert [e["type"] for e in await _quiet(alice)] == []
    assert (await client.get("/api/presence", params={"room": "three"})).json()["members"] == []
    await alice.close()
    await watcher.close()


async def test_rooms_and_info(api: tuple[Server, httpx.AsyncClient]) -> None:
    server, client = api
    assert (await client.get("/api/rooms")).json() == {"rooms": []}
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    alice2 = await EventClient.open(ws_url(server, query="name=alice"))
    bob = await EventClient.open(ws_url(server, query="name=bob"))
    for conn, room in ((alice, "b"), (alice2, "b"), (bob, "b"), (bob, "a")):
        await conn.join(room)
    rooms = (await client.get("/api/rooms")).json()
    assert rooms == {"rooms": [{"room": "a", "members": 1}, {"room": "b", "members": 2}]}
    info = (await client.get("/api/info")).json()
    assert info == {
        "version": hubbub.__version__,
        "nodes": [{"id": server.hub.node_id, "connections": 3, "rooms": 2}],
    }
    for conn in (alice, alice2, bob):
        await conn.close()


async def test_keys_are_required(api: tuple[Server, httpx.AsyncClient]) -> None:
    server, client = api
    base = f"http://127.0.0.1:{server.port}"
    for headers in ({}, {"Authorization": "apikey wrong-key-0123456789"}, {"Authorization": f"Bearer {KEY}"}):
        async with httpx.AsyncClient(base_url=base, headers=headers) as other:
            reply = await other.get("/api/rooms")
            assert reply.status_code == 401 and _error(reply) == "unauthorized", headers
            assert reply.headers["connection"] == "close"  # every guess costs a connection
            reply = await other.get("/api/nowhere")
            assert reply.status_code == 401  # what exists is not told before the key is right
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"apikey {OTHER_KEY}"}) as other:
        assert (await other.get("/api/rooms")).status_code == 200  # any configured key
    two = [("authorization", f"apikey {KEY}"), ("authorization", f"apikey {KEY}")]
    async with httpx.AsyncClient(base_url=base) as other:
        assert (await other.get("/api/rooms", headers=two)).status_code == 401
    metrics = (await client.get("/metrics")).text
    assert 'hubbub_api_requests_total{call="rooms",status="401"} 4.0' in metrics
    assert 'hubbub_api_requests_total{call="rooms",status="200"} 1.0' in metrics


def _nested(depth: int) -> bytes:
    return b'{"room":"r","message":' + b"[" * depth + b"]" * depth + b"}"


async def test_bad_requests_get_coded_errors(api: tuple[Server, httpx.AsyncClient]) -> None:
    _, client = api
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/api/publish", b"{not json", 400, "bad_json"),
        ("POST", "/api/publish", b"", 400, "bad_json"),
        ("POST", "/api/publish", _nested(5000), 400, "bad_json"),
        ("POST", "/api/publish", _nested(MAX_DEPTH), 400, "bad_json"),  # the body's braces count too
        ("POST", "/api/publish", {"room": "bad room", "message": 1}, 400, "bad_payload"),
        ("POST", "/api/publish", {"room": "r"}, 400, "bad_payload"),
        ("POST", "/api/publish", {"room": "r", "message": 1, "extra": 2}, 400, "bad_payload"),
        ("POST", "/api/publish", {"room": "r", "message": 1, "from": "a\u202eb"}, 400, "bad_payload"),
        ("POST", "/api/publish", [1, 2], 400, "bad_payload"),
        ("POST", "/api/subscribe", {"user": "", "room": "r"}, 400, "bad_payload"),
        ("POST", "/api/subscribe", {"user": "a\nb", "room": "r"}, 400, "bad_payload"),
        ("POST", "/api/unsubscribe", {"user": "a", "room": "r" * 129}, 400, "bad_payload"),
        ("GET", "/api/presence", None, 400, "bad_payload"),
        ("GET", "/api/presence?room=a%20b", None, 400, "bad_payload"),
        ("GET", "/api/presence?room=a&room=b", None, 400, "bad_payload"),
        ("GET", "/api/history?room=a&since=-1", None, 400, "bad_payload"),
        ("GET", "/api/history?room=a&limit=0", None, 400, "bad_payload"),
        ("GET", "/api/history?room=a&limit=x", None, 400, "bad_payload"),
        ("GET", "/api/rooms?x=1", None, 400, "bad_payload"),
        ("GET", "/api/nowhere", None, 404, "not_found"),
        ("GET", "/api", None, 404, "not_found"),
        ("GET", "/api/publish", None, 405, "method_not_allowed"),
        ("POST", "/api/rooms", {}, 405, "method_not_allowed"),
        ("POST", "/api/publish", b"x" * (server_api.MAX_BODY + 1), 413, "too_large"),
        ("POST", "/api/publish", {"room": "r", "message": "x" * 70000}, 413, "too_large"),
    ]
    for method, path, body, status, code in cases:
        kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
        if body is None:
            kwargs = {}
        reply = await client.request(method, path, **kwargs)
        assert (reply.status_code, _error(reply)) == (status, code), (method, path)
    # the message bound is the server's --max-message-size (64 KiB here), as for a client's message
    reply = await client.post("/api/publish", json={"room": "r", "message": "x" * 65000})
    assert reply.status_code == 200


async def test_schema_errors_are_in_words_for_every_field(api: tuple[Server, httpx.AsyncClient]) -> None:
    """No regex and no msgspec type jargon reaches a caller: each field's rule, in words, with where."""
    server, client = api
    room_rule = "room must be 1 to 128 letters, digits and _ - . : @"
    cases: list[tuple[str, str, Any, str]] = [
        ("POST", "/api/publish", {"room": "not a room!", "message": 1}, f"{room_rule} - at `$.room`"),
        ("POST", "/api/publish", {"room": "", "message": 1}, f"{room_rule} - at `$.room`"),
        ("POST", "/api/publish", {"room": 7, "message": 1}, f"{room_rule} - at `$.room`"),
        ("POST", "/api/broadcast", {"rooms": ["a", "b c"], "message": 1}, f"{room_rule} - at `$.rooms[1]`"),
        ("POST", "/api/broadcast", {"rooms": [], "message": 1}, "rooms must be a list of 1 to 1000"),
        ("POST", "/api/broadcast", {"rooms": "a", "message": 1}, "rooms must be a list of 1 to 1000"),
        ("POST", "/api/publish", {"room": "r", "message": 1, "from": ""}, "from must be a name: 1 to 64"),
        ("POST", "/api/subscribe", {"user": "u" * 65, "room": "r"}, "user must be a name: 1 to 64"),
        ("POST", "/api/unsubscribe", {"user": "u", "room": "a b"}, f"{room_rule} - at `$.room`"),
        ("POST", "/api/disconnect", {"user": "u", "code": 1000}, "code must be an integer from 4000 to 4999"),
        ("POST", "/api/disconnect", {"user": "u", "reason": 5}, "reason must be a string of at most 123 bytes"),
        ("GET", "/api/presence?room=a%20b", None, f"{room_rule} - at `room`"),
        ("GET", "/api/history?room=a%20b", None, f"{room_rule} - at `$.room`"),
        ("GET", "/api/history?room=a&limit=5000", None, "limit must be an integer from 1 to 1000"),
    ]
    for method, path, body, words in cases:
        reply = await client.request(method, path, **({} if body is None else {"json": body}))
        message = reply.json()["error"]["message"]
        assert reply.status_code == 400 and message.startswith(words), (path, body, message)
        assert "regex" not in message and "Expected" not in message, message
    # the WebSocket protocol says it the same way
    alice = await EventClient.open(ws_url(server))
    for type_ in ("join_room", "leave_room", "get_history", "get_presence", "send_message"):
        await alice.send(type_, {"room": "not a room!", "message": 1}, type_)
        error = await alice.recv_type("error")
        assert error["payload"]["code"] == "bad_payload", error
        assert error["payload"]["message"] == f"{room_rule} - at `$.room`", error
    await alice.close()


async def test_without_a_key_the_api_does_not_exist(make_server: ServerFactory) -> None:
    server = await make_server()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", headers=AUTH) as client:
        for reply in (await client.get("/api/rooms"), await client.post("/api/publish", json={"room": "r"})):
            assert reply.status_code == 404 and _error(reply) == "not_found"
            assert "--api-key" in reply.json()["error"]["message"]


async def test_browsers_of_other_sites_and_foreign_hosts_are_refused(api: tuple[Server, httpx.AsyncClient]) -> None:
    _, client = api
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Host": "evil.example"}):
        reply = await client.get("/api/rooms", headers=headers)
        assert reply.status_code == 403 and _error(reply) == "forbidden", headers
    assert (await client.get("/api/rooms", headers={"Sec-Fetch-Site": "same-origin"})).status_code == 200


def _request(method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: apikey {KEY}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


async def test_keep_alive_pipelining_and_then_picows(api: tuple[Server, httpx.AsyncClient]) -> None:
    """Three pipelined calls in one write get three answers in order; a plain route after them is picows'."""
    server, _ = api
    body = b'{"room":"p","message":1}'
    burst = _request("POST", "/api/publish", body) * 3 + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    got = await exchange(server.port, burst, until=b"ok\n")
    assert got.count(b"HTTP/1.1 200 OK") == 4
    assert [got.index(f'"offset":{n}'.encode()) for n in (1, 2, 3)] == sorted(
        got.index(f'"offset":{n}'.encode()) for n in (1, 2, 3)
    )
    assert got.endswith(b"ok\n")


async def test_idle_body_and_head_timeouts(make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frontdoor, "IDLE_TIMEOUT", 0.3)
    monkeypatch.setattr(frontdoor, "HEAD_TIMEOUT", 0.3)
    monkeypatch.setattr(server_api, "BODY_TIMEOUT", 0.3)
    server = await make_server(api_keys=(KEY,))
    start = time.monotonic()
    got = await exchange(server.port, _request("GET", "/api/rooms"))  # answered, then closed when idle
    assert got.startswith(b"HTTP/1.1 200 OK") and time.monotonic() - start < 3
    half = _request("POST", "/api/publish", b'{"room":"r","message":1}')[:-10]
    got = await exchange(server.port, half)
    assert got.startswith(b"HTTP/1.1 408") and b'"code":"bad_payload"' in got
    assert await exchange(server.port, b"GET /api/rooms HTTP/1.1\r\n") == b""  # an unfinished head: closed
    chunked = _request("POST", "/api/publish", extra="Transfer-Encoding: chunked\r\n")
    assert (await exchange(server.port, chunked)).startswith(b"HTTP/1.1 411")


async def test_calls_in_flight_are_bounded(
    api: tuple[Server, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, client = api
    monkeypatch.setattr(server_api, "MAX_IN_FLIGHT", 0)
    reply = await client.get("/api/rooms")
    assert reply.status_code == 503 and _error(reply) == "unavailable"


async def test_login_and_the_api_on_one_server(make_server: ServerFactory, tmp_path: Any) -> None:
    """With --users too, /api is served by the same pacer that answers POST /login."""
    from hubbub.auth.passwords import hash_password

    users = tmp_path / "users"
    users.write_text(f"ada:{hash_password('correct horse')}\n")
    server = await make_server(api_keys=(KEY,), users_file=str(users))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        login = await client.post("/login", json={"username": "ada", "password": "correct horse"})
        assert login.status_code == 200 and "ticket" in login.json()
        reply = await client.post("/api/publish", json={"room": "r", "message": 1}, headers=AUTH)
        assert reply.json() == {"offset": 1}
        ada = await EventClient.open(ws_url(server, query=f"ticket={login.json()['ticket']}"))
        await ada.join("r")
        await client.post("/api/subscribe", json={"user": "ada", "room": "s"}, headers=AUTH)
        assert (await ada.recv_type("subscribed"))["payload"]["room"] == "s"
        await ada.close()


async def test_publish_rate_on_one_keep_alive_connection(api: tuple[Server, httpx.AsyncClient]) -> None:
    """Measured, not a benchmark: how many calls one client gets answered in a second (printed)."""
    server, client = api
    count = 0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        reply = await client.post("/api/publish", json={"room": "rate", "message": {"n": count}})
        assert reply.status_code == 200
        count += 1
    print(f"\napi publish, memory broker, one keep-alive client: {count}/s")
    assert count > 20
    await eventually(lambda: server.hub.metrics.published.value >= count)
