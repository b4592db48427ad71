"""`GET /sse` and `POST /sse/send`: protocol v1 over Server-Sent Events, read by a raw reader on real sockets.

The reader (`SseReader`) speaks HTTP/1.1 by hand over an asyncio stream, as `curl -N` would, so the
tests see exactly what is on the wire: the response head, `retry:`, comments, `event:`/`id:`/`data:`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from typing import Any

import pytest

from hubbub.auth.tokens import mint_token
from hubbub.core.hub import Hub
from hubbub.core.settings import Settings
from hubbub.protocol.session import State
from hubbub.server.server import Server
from hubbub.server.sse import BATCH_MAX, parse_resume_id
from tests.conftest import ServerFactory
from tests.helpers import EventClient, eventually, ws_url

pytestmark = pytest.mark.timeout(60)


class SseReader:
    """One `GET /sse` read from a raw socket: the head, then events as dicts (`event`, `id`, `data`)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.comments: list[str] = []
        self.retry: int | None = None

    @classmethod
    async def open(cls, port: int, target: str, headers: dict[str, str] | None = None) -> SseReader:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        peer = cls(reader, writer)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        peer.status = int(status_line.split(" ")[1])
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                peer.headers[name.strip().lower()] = value.strip()
        if peer.status != 200:
            length = int(peer.headers.get("content-length", "0"))
            peer.body = await asyncio.wait_for(reader.readexactly(length), 5)
        return peer

    async def event(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next event (comments and `retry:` recorded on the way)."""
        found: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while True:
            line = await asyncio.wait_for(self.reader.readline(), max(0.01, deadline - time.monotonic()))
            if not line:
                raise EOFError("the stream ended")
            text = line.decode().rstrip("\n")
            if not text:
                if "event" in found or "data" in found:
                    if "data" in found:
                        found["data"] = json.loads(found["data"])
                    return found
                continue
            if text.startswith(":"):
                self.comments.append(text)
                continue
            field, _, value = text.partition(": ")
            if field == "retry":
                self.retry = int(value)
            else:
                found[field] = value

    async def event_of(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next event of `kind` (others skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            found = await self.event(max(0.01, deadline - time.monotonic()))
            if found.get("event") == kind:
                return found

    async def ended(self, timeout: float = 5.0) -> bool:
        """True once the server closed the stream, or reset it (what comes before is read and dropped)."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except ConnectionError:
            return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.writer.close()


async def post(port: int, body: bytes, headers: dict[str, str], length: int | None = None) -> tuple[int, bytes]:
    """One `POST /sse/send`; its status and body (`length`: a Content-Length other than the body's)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    size = len(body) if length is None else length
    lines = ["POST /sse/send HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {size}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return int(answer.split(b" ")[1]), answer.partition(b"\r\n\r\n")[2]


async def send(port: int, session: str, envelopes: Any) -> int:
    status, _ = await post(port, json.dumps(envelopes).encode(), {"X-Hubbub-Session": session})
    return status


async def publish(server: Server, room: str, count: int, start: int = 0) -> None:
    for i in range(count):
        await server.hub.publish(room, {"n": start + i}, "api")


async def test_stream_headers_hello_and_messages(server: Server) -> None:
    sse = await SseReader.open(server.port, "/sse?rooms=a,b&name=ann")
    assert sse.status == 200
    assert sse.headers["content-type"] == "text/event-stream"
    assert sse.headers["cache-control"] == "no-cache"
    assert sse.headers["x-accel-buffering"] == "no"
    hello = await sse.event()
    assert sse.retry == 2000
    assert hello["event"] == "hello"
    assert len(hello["data"]["session"]) >= 22
    assert hello["data"]["rooms"] == {"a": {"offset": 0, "recovered": True}, "b": {"offset": 0, "recovered": True}}
    await server.hub.publish("a", {"text": "hi"}, "bob")
    message = await sse.event_of("new_message")
    assert message["id"] == "a=1,b=0"
    assert message["data"]["room"] == "a" and message["data"]["message"] == {"text": "hi"}
    assert message["data"]["offset"] == 1 and message["data"]["from"] == "bob"
    sse.close()


async def test_same_payload_as_websocket(server: Server) -> None:
    ws = await EventClient.open(ws_url(server))
    await ws.join("r")
    sse = await SseReader.open(server.port, "/sse?rooms=r")
    await sse.event_of("hello")
    await ws.send("send_message", {"room": "r", "message": {"x": [1, 2]}}, "m1")
    over_ws = await ws.recv_type("new_message")
    over_sse = await sse.event_of("new_message")
    assert over_sse["data"] == over_ws["payload"]
    assert over_sse["id"] == f"r={over_ws['payload']['offset']}"
    await ws.close()
    sse.close()


async def test_resume_across_two_rooms_with_last_event_id(server: Server) -> None:
    sse = await SseReader.open(server.port, "/sse?rooms=a,b")
    await sse.event_of("hello")
    await publish(server, "a", 2)
    await publish(server, "b", 1)
    last = None
    for _ in range(3):
        last = await sse.event_of("new_message")
    assert last is not None and parse_resume_id(last["id"]) == {"a": 2, "b": 1}
    sse.close()
    await publish(server, "a", 3, start=2)  # missed: a 3..5
    await publish(server, "b", 2, start=1)  # missed: b 2..3
    again = await SseReader.open(server.port, "/sse?rooms=a,b", {"Last-Event-ID": last["id"]})
    hello = await again.event_of("hello")
    assert hello["data"]["rooms"]["a"] == {"offset": 5, "recovered": True}
    got = [await again.event_of("new_message") for _ in range(5)]
    assert [(m["data"]["room"], m["data"]["offset"]) for m in got] == [("a", 3), ("a", 4), ("a", 5), ("b", 2), ("b", 3)]
    assert got[-1]["id"] == "a=5,b=3"
    await publish(server, "b", 1, start=3)  # then live
    live = await again.event_of("new_message")
    assert live["data"]["offset"] == 4 and live["id"] == "a=5,b=4"
    again.close()


async def test_resume_from_query_parameter_and_header_wins(server: Server) -> None:
    await publish(server, "q", 4)
    sse = await SseReader.open(server.port, "/sse?last_event_id=q=2")  # the room comes from the id alone
    assert (await sse.event_of("hello"))["data"]["rooms"] == {"q": {"offset": 4, "recovered": True}}
    assert [(await sse.event_of("new_message"))["data"]["offset"] for _ in range(2)] == [3, 4]
    sse.close()
    both = await SseReader.open(server.port, "/sse?last_event_id=q=0", {"Last-Event-ID": "q=3"})
    assert (await both.event_of("new_message"))["data"]["offset"] == 4
    both.close()


async def test_unrecoverable_room_gets_room_reset(make_server: ServerFactory) -> None:
    server = await make_server(history_size=2)
    await publish(server, "h", 6)
    sse = await SseReader.open(server.port, "/sse?rooms=h", {"Last-Event-ID": "h=1"})
    hello = await sse.event_of("hello")
    assert hello["data"]["rooms"]["h"]["recovered"] is False
    reset = await sse.event()
    assert reset["event"] == "room_reset"
    assert reset["data"] == {"room": "h", "since": 1, "offset": 6}
    sse.close()


@pytest.mark.parametrize(
    ("target", "status", "reason"),
    [
        ("/sse?rooms=bad%20room", 400, b"bad room name"),
        ("/sse?rooms=a&last_event_id=a=x", 400, b"Last-Event-ID"),
        ("/sse?name=%E2%80%AEevil", 400, b""),
    ],
)
async def test_bad_requests_refused_before_the_stream(server: Server, target: str, status: int, reason: bytes) -> None:
    sse = await SseReader.open(server.port, target)
    assert sse.status == status
    assert reason in sse.body
    assert sse.headers["content-type"].startswith("text/plain")


async def test_too_many_rooms_is_422(make_server: ServerFactory) -> None:
    server = await make_server(max_rooms_per_connection=2)
    sse = await SseReader.open(server.port, "/sse?rooms=a,b,c")
    assert sse.status == 422
    assert b"at most 2 rooms" in sse.body


async def test_bad_origin_is_403(server: Server) -> None:
    sse = await SseReader.open(server.port, "/sse?rooms=a", {"Origin": "https://evil.example"})
    assert sse.status == 403
    status, _ = await post(server.port, b"{}", {"Origin": "https://evil.example", "X-Hubbub-Session": "x"})
    assert status == 403


async def test_token_and_its_rooms(make_server: ServerFactory) -> None:
    server = await make_server(auth_secret="s" * 32)
    refused = await SseReader.open(server.port, "/sse?rooms=a")
    assert refused.status == 401 and b"/sse?token=T" in refused.body
    bad = await SseReader.open(server.port, "/sse?rooms=a&token=nope")
    assert bad.status == 401
    token = mint_token("s" * 32, "carol", 60, rooms=["a", "team-*"])
    forbidden = await SseReader.open(server.port, f"/sse?rooms=a,b&token={token}")
    assert forbidden.status == 403 and b"'b'" in forbidden.body
    sse = await SseReader.open(server.port, f"/sse?rooms=a,team-x&token={token}")
    assert sse.status == 200
    await sse.event_of("hello")
    await server.hub.publish("team-x", "hi", "api")
    assert (await sse.event_of("new_message"))["data"]["room"] == "team-x"
    assert [c.identity for c in server.hub.connections] == ["carol"]
    sse.close()


async def test_authorize_join_hook_refuses_with_403(make_server: ServerFactory) -> None:
    hub = Hub()

    @hub.authorize_join
    def only_public(conn: Any, room: str) -> bool:
        return room.startswith("public")

    server = await make_server(hub=hub)
    refused = await SseReader.open(server.port, "/sse?rooms=public,secret")
    assert refused.status == 403 and b"secret" in refused.body
    await eventually(lambda: not server.hub.connections and not server.hub.rooms)
    sse = await SseReader.open(server.port, "/sse?rooms=public")
    assert sse.status == 200
    sse.close()


async def test_namespace_rules_hold_for_streams_and_their_up_channel(make_server: ServerFactory) -> None:
    """A stream's rooms pass the same join rules as `join_room` (`builtins.admit`): a `join = "token"`
    room without credentials naming it is 403 before the stream; a `publish = "server"` room refuses
    a send over the up-channel with `forbidden`, while the server still publishes into it."""
    from hubbub.protocol.namespaces import JoinRule, Namespace, PublishRule

    namespaces = (Namespace("dm:*", join=JoinRule.TOKEN), Namespace("news:*", publish=PublishRule.SERVER))
    server = await make_server(namespaces=namespaces, auth_secret="s" * 32, allow_anonymous=True)
    refused = await SseReader.open(server.port, "/sse?rooms=dm:alice&name=eve")
    assert refused.status == 403 and b"dm:alice" in refused.body
    await eventually(lambda: not server.hub.connections and not server.hub.rooms)
    sse = await SseReader.open(server.port, "/sse?rooms=news:1&name=eve")
    assert sse.status == 200
    session = (await sse.event_of("hello"))["data"]["session"]
    sent = {"type": "send_message", "payload": {"room": "news:1", "message": "mine"}, "id": "c1"}
    assert await send(server.port, session, sent) == 202
    error = await sse.event_of("error")
    assert error["data"]["id"] == "c1" and error["data"]["payload"]["code"] == "forbidden"
    await publish(server, "news:1", 1)
    assert (await sse.event_of("new_message"))["data"]["room"] == "news:1"
    sse.close()


async def test_ticket(make_server: ServerFactory, tmp_path: Any) -> None:
    from hubbub.auth.passwords import hash_password

    users = tmp_path / "users"
    users.write_text(f"dave:{hash_password('pw')}\n")
    server = await make_server(users_file=str(users))
    status, body = await post_login(server.port)
    assert status == 200
    ticket = json.loads(body)["ticket"]
    anonymous = await SseReader.open(server.port, "/sse?rooms=a&name=eve")
    assert anonymous.status == 401
    sse = await SseReader.open(server.port, f"/sse?rooms=a&ticket={ticket}")
    assert sse.status == 200
    await sse.event_of("hello")
    assert [c.identity for c in server.hub.connections] == ["dave"]
    spent = await SseReader.open(server.port, f"/sse?rooms=a&ticket={ticket}")
    assert spent.status == 401
    sse.close()


async def post_login(port: int) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b'{"username": "dave", "password": "pw"}'
    writer.write(
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (port, len(body), body)
    )
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return int(answer.split(b" ")[1]), answer.partition(b"\r\n\r\n")[2]


async def test_heartbeat_comments(make_server: ServerFactory) -> None:
    server = await make_server(ping_interval=0.3, ping_timeout=0.3)
    sse = await SseReader.open(server.port, "/sse?rooms=a")
    await sse.event_of("hello")
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # presence events may come; the comments are what counts
        with contextlib.suppress(TimeoutError):
            await sse.event(timeout=deadline - time.monotonic())
    assert len(sse.comments) >= 3  # at least one every ping_interval (+ the sweep's granularity)
    assert set(sse.comments) == {": ping"}
    assert len(server.hub.connections) == 1  # never answered, never dropped: the TCP connection is its liveness
    sse.close()


async def test_stream_counts_as_a_connection_and_its_end_is_logged(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server(max_connections=1)
    sse = await SseReader.open(server.port, "/sse?rooms=a&name=ann")
    await sse.event_of("hello")
    assert len(server.hub.connections) == 1
    second = await SseReader.open(server.port, "/sse?rooms=a")
    assert second.status == 503
    caplog.set_level(logging.DEBUG, logger="hubbub.core.hub")
    sse.close()
    await eventually(lambda: not server.hub.connections and not server.hub.rooms)
    assert any(r.getMessage() == "conn.closed" and getattr(r, "user", None) == "ann" for r in caplog.records)


async def test_stalled_reader_dropped_while_others_keep_getting_messages(make_server: ServerFactory) -> None:
    server = await make_server(send_queue_bytes=64 * 1024, send_buffer=65536, rate_limit=0)
    stalled = await SseReader.open(server.port, "/sse?rooms=s")
    await stalled.event_of("hello")
    stalled.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.writer.transport.pause_reading()  # type: ignore[attr-defined]
    reading = await SseReader.open(server.port, "/sse?rooms=s")
    await reading.event_of("hello")
    text = "x" * 1000
    got = 0
    for i in range(400):
        await server.hub.publish("s", {"n": i, "text": text}, "api")
        if i % 20 == 19:
            while got < i + 1:
                await reading.event_of("new_message")
                got += 1
    assert server.hub.metrics.slow_dropped._value.get() == 1
    assert len(server.hub.connections) == 1  # the reader that reads
    stalled.writer.transport.resume_reading()  # type: ignore[attr-defined]
    assert await stalled.ended()  # what it was sent, then the end: EventSource reconnects with Last-Event-ID
    reading.close()


async def test_up_channel_join_send_ack_error_order(server: Server) -> None:
    sse = await SseReader.open(server.port, "/sse")
    hello = await sse.event_of("hello")
    assert hello["data"]["rooms"] == {}
    session = hello["data"]["session"]
    await publish(server, "u", 2)
    batch = [
        {"type": "join_room", "payload": {"room": "u", "since": 0}, "id": "c1"},
        {"type": "send_message", "payload": {"room": "u", "message": "hello"}, "id": "c2"},
        {"type": "send_message", "payload": {"room": "elsewhere", "message": "no"}, "id": "c3"},
    ]
    assert await send(server.port, session, batch) == 202
    seen = [await sse.event() for _ in range(6)]
    kinds = [(e["event"], e["data"]["id"] if e["event"] in ("ack", "error") else e["data"]["offset"]) for e in seen]
    # the join's ack before its replay, the replay in order, then the send's ack; the error of c3 and the
    # live copy of c2's message may pass each other (the error is written with the next flush)
    assert kinds[:4] == [("ack", "c1"), ("new_message", 1), ("new_message", 2), ("ack", "c2")]
    assert sorted(kinds[4:], key=str) == [("error", "c3"), ("new_message", 3)]
    assert seen[0]["data"] == {"type": "ack", "payload": {"room": "u", "offset": 2, "recovered": True}, "id": "c1"}
    error = next(e for e in seen if e["event"] == "error")
    assert error["data"]["payload"]["code"] == "not_in_room"
    live = next(e for e in seen if e["event"] == "new_message" and e["data"]["offset"] == 3)
    assert live["id"] == "u=3"
    # bad JSON and a bad envelope: coded errors on the stream, which lives on
    assert (await post(server.port, b"{nope", {"X-Hubbub-Session": session}))[0] == 202
    assert (await sse.event_of("error"))["data"]["payload"]["code"] == "bad_json"
    assert await send(server.port, session, {"payload": {}, "id": "c4"}) == 202
    assert (await sse.event_of("error"))["data"]["payload"]["code"] == "bad_envelope"
    # leave_room takes the room out of the stream and of its resume id
    assert await send(server.port, session, {"type": "join_room", "payload": {"room": "v"}, "id": "c5"}) == 202
    assert (await sse.event_of("ack"))["data"]["id"] == "c5"
    await publish(server, "v", 1)
    assert (await sse.event_of("new_message"))["id"] == "u=3,v=1"
    assert await send(server.port, session, {"type": "leave_room", "payload": {"room": "u"}, "id": "c6"}) == 202
    assert (await sse.event_of("ack"))["data"]["id"] == "c6"
    await publish(server, "v", 1, start=1)
    assert (await sse.event_of("new_message"))["id"] == "v=2"
    sse.close()


async def test_up_channel_refusals(server: Server) -> None:
    assert (await post(server.port, b"{}", {"X-Hubbub-Session": "nobody"}))[0] == 404
    status, body = await post(server.port, b"{}", {})
    assert status == 400 and b"X-Hubbub-Session" in body
    sse = await SseReader.open(server.port, "/sse")
    session = (await sse.event_of("hello"))["data"]["session"]
    too_many = [{"type": "ping_me", "payload": {}}] * (BATCH_MAX + 1)
    assert await send(server.port, session, too_many) == 413
    big = server.settings.max_message_size * BATCH_MAX + 1
    assert (await post(server.port, b" ", {"X-Hubbub-Session": session}, length=big))[0] == 413
    one_big = json.dumps({"type": "x", "payload": {"p": "y" * server.settings.max_message_size}}).encode()
    assert (await post(server.port, one_big, {"X-Hubbub-Session": session}))[0] == 413
    sse.close()
    await eventually(lambda: not server.hub.connections)
    assert await send(server.port, session, {"type": "join_room", "payload": {"room": "a"}}) == 404


async def test_up_channel_flood_is_429_with_nothing_handled(make_server: ServerFactory) -> None:
    server = await make_server(frame_rate=10, rate_limit=0)
    sse = await SseReader.open(server.port, "/sse")
    session = (await sse.event_of("hello"))["data"]["session"]
    statuses = []
    for i in range(100):  # the frame budget: 10 requests/s, burst 20
        statuses.append(await send(server.port, session, {"type": "get_presence", "payload": {"room": "x"}, "id": i}))
        if statuses[-1] == 429:
            break
    assert statuses[0] == 202 and statuses[-1] == 429
    assert 15 <= len(statuses) <= 40
    answered = [(await sse.event_of("error"))["data"]["id"] for _ in range(len(statuses) - 1)]
    assert answered == list(range(len(statuses) - 1))  # not_in_room for each accepted one, none for the 429
    with pytest.raises(TimeoutError):
        await sse.event_of("error", timeout=0.5)
    # the node keeps serving others meanwhile
    other = await SseReader.open(server.port, "/sse?rooms=calm")
    await other.event_of("hello")
    await server.hub.publish("calm", "still here", "api")
    assert (await other.event_of("new_message"))["data"]["message"] == "still here"
    other.close()
    sse.close()


async def test_up_channel_events_over_the_rate_limit_are_rate_limited_then_the_stream_ends(
    make_server: ServerFactory,
) -> None:
    server = await make_server(rate_limit=5, rate_burst=10)
    sse = await SseReader.open(server.port, "/sse")
    session = (await sse.event_of("hello"))["data"]["session"]
    batch = [{"type": "get_presence", "payload": {"room": "x"}, "id": i} for i in range(BATCH_MAX)]
    assert await send(server.port, session, batch) == 202  # accepted: each event judged as on /ws
    errors = [(await sse.event_of("error"))["data"] for _ in range(BATCH_MAX)]
    codes = {error["id"]: error["payload"]["code"] for error in errors}  # matched by id, as on /ws
    assert sorted(codes) == list(range(BATCH_MAX))
    assert codes[0] == "not_in_room" and codes[BATCH_MAX - 1] == "rate_limited"
    assert list(codes.values()).count("rate_limited") >= BATCH_MAX - 12  # burst 10, and what 5/s refilled
    statuses = [await send(server.port, session, batch) for _ in range(6)]
    assert statuses[-1] == 404  # refused again and again: the stream ended (the 1008 of /ws)
    assert await sse.ended()
    await eventually(lambda: not server.hub.connections)


async def test_shutdown_ends_the_stream(make_server: ServerFactory) -> None:
    server = await make_server()
    sse = await SseReader.open(server.port, "/sse?rooms=a")
    await sse.event_of("hello")
    await server.stop()
    assert await sse.ended()


async def test_api_disconnect_ends_the_stream(make_server: ServerFactory) -> None:
    server = await make_server()
    sse = await SseReader.open(server.port, "/sse?rooms=a&name=zed")
    await sse.event_of("hello")
    conn = next(iter(server.hub.connections))
    conn.close(4001, "bye")
    assert await sse.ended()
    await eventually(lambda: not server.hub.connections)


async def test_cross_origin_preflight_and_headers(make_server: ServerFactory) -> None:
    server = await make_server(allowed_origins=("https://app.example",))
    sse = await SseReader.open(server.port, "/sse?rooms=a", {"Origin": "https://app.example"})
    assert sse.headers["access-control-allow-origin"] == "https://app.example"
    # its cookies (the connect proxy's) may go along, as they do with a WebSocket of that origin
    assert sse.headers["access-control-allow-credentials"] == "true"
    session = (await sse.event_of("hello"))["data"]["session"]
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"OPTIONS /sse/send HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nOrigin: https://app.example\r\n"
        "Access-Control-Request-Method: POST\r\n"
        "Access-Control-Request-Headers: content-type,x-hubbub-session\r\n\r\n".encode()
    )
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 204")
    assert b"Access-Control-Allow-Headers: Content-Type, X-Hubbub-Session" in answer
    assert b"Access-Control-Allow-Credentials: true" in answer
    status, _ = await post(
        server.port,
        b'{"type":"join_room","payload":{"room":"b"}}',
        {"X-Hubbub-Session": session, "Origin": "https://app.example"},
    )
    assert status == 202
    sse.close()


async def test_connect_proxy_cookie_admits_with_the_apps_rooms(make_server: ServerFactory) -> None:
    from tests.app_server import AppServer
    from tests.integration.test_proxy import SECRET, cookie, sessions

    app = await AppServer(sessions).start()
    try:
        server = await make_server(webhook_secret=SECRET, connect_proxy=app.url())
        assert (await SseReader.open(server.port, "/sse?rooms=team-a")).status == 401  # no cookie: the app's 401
        outside = await SseReader.open(server.port, "/sse?rooms=lobby", cookie("s-alice"))
        assert outside.status == 403 and b"'lobby'" in outside.body  # the app's rooms: team-*
        sse = await SseReader.open(server.port, "/sse?rooms=team-a&name=mallory", cookie("s-alice"))
        assert sse.status == 200
        await sse.event_of("hello")
        assert [c.identity for c in server.hub.connections] == ["alice"]
        assert app.requests[-1].json()["headers"] == {"Cookie": "session=s-alice"}
        sse.close()
    finally:
        await app.close()


async def test_httpx_reads_a_room_without_an_sdk(server: Server) -> None:
    """The snippet of docs/protocol.md ("Without an SDK"), in a thread while the server runs here."""
    import httpx

    url = f"http://127.0.0.1:{server.port}/sse?rooms=lobby"

    def read_two() -> list[dict[str, str]]:
        events = []
        with httpx.stream("GET", url, timeout=10) as stream:
            event: dict[str, str] = {}
            for line in stream.iter_lines():
                if line.startswith(("event: ", "id: ", "data: ")):
                    field, _, value = line.partition(": ")
                    event[field] = value
                elif not line and event:
                    events.append(event)
                    event = {}
                    if len(events) == 2:
                        return events
        return events

    reading = asyncio.create_task(asyncio.to_thread(read_two))
    await eventually(lambda: bool(server.hub.rooms.get("lobby")))
    await server.hub.publish("lobby", {"text": "to curl and httpx alike"}, "ops")
    hello, message = await asyncio.wait_for(reading, 10)
    assert hello["event"] == "hello"
    assert message["event"] == "new_message" and message["id"] == "lobby=1"
    assert json.loads(message["data"])["message"] == {"text": "to curl and httpx alike"}


async def test_a_failing_join_hook_is_500_and_leaves_nothing(make_server: ServerFactory) -> None:
    hub = Hub()

    @hub.authorize_join
    def broken(conn: Any, room: str) -> bool:
        raise RuntimeError("the app's bug")

    server = await make_server(hub=hub)
    refused = await SseReader.open(server.port, "/sse?rooms=a")
    assert refused.status == 500 and refused.body == b"internal error\n"
    await eventually(lambda: not server.hub.connections and not server.hub.rooms and not server.sse.streams)


async def test_a_stream_has_at_most_four_requests_in_flight(server: Server) -> None:
    """Bodies that trickle in are held; a fifth request of the same stream is 429 unread, so that one stream's
    up-channel holds at most POSTS_IN_FLIGHT bodies."""
    from hubbub.server.sse import POSTS_IN_FLIGHT

    sse = await SseReader.open(server.port, "/sse")
    session = (await sse.event_of("hello"))["data"]["session"]
    body = b'{"type":"join_room","payload":{"room":"t"}}'
    slow = []
    for _ in range(POSTS_IN_FLIGHT):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            f"POST /sse/send HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nX-Hubbub-Session: {session}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:5]
        )
        slow.append((reader, writer))
    await asyncio.sleep(0.2)
    status, reason = await post(server.port, body, {"X-Hubbub-Session": session})
    assert status == 429 and b"at a time" in reason
    for reader, writer in slow:  # the bodies come: each accepted, and a place is free again
        writer.write(body[5:])
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 202")
        writer.close()
    assert await send(server.port, session, {"type": "leave_room", "payload": {"room": "t"}, "id": "l"}) == 202
    sse.close()


async def test_the_session_secret_never_reaches_a_log(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await make_server(rate_limit=1, rate_burst=1)
    sse = await SseReader.open(server.port, "/sse?rooms=a&name=ann")
    session = (await sse.event_of("hello"))["data"]["session"]
    batch = [{"type": "send_message", "payload": {"room": "a", "message": session}, "id": i} for i in range(3)]
    assert await send(server.port, session, batch) == 202
    assert (await post(server.port, b"{", {"X-Hubbub-Session": session + "x"}))[0] == 404
    sse.close()
    await eventually(lambda: not server.hub.connections)
    assert caplog.records
    for record in caplog.records:
        assert session not in record.getMessage() and session not in repr(record.__dict__)


def _blocking_hub() -> tuple[Hub, asyncio.Event]:
    """A hub whose `authorize_join` waits for an event that never comes: a stream stays in its joins."""
    hub = Hub()
    entered = asyncio.Event()

    @hub.authorize_join
    async def wait_forever(conn: Any, room: str) -> bool:
        entered.set()
        await asyncio.Event().wait()
        return True

    return hub, entered


async def test_a_client_that_leaves_mid_join_leaves_nothing(make_server: ServerFactory) -> None:
    hub, entered = _blocking_hub()
    server = await make_server(hub=hub)
    assert server.door is not None and server.door.names[0] == "SseDoor"  # the first stage, always there
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET /sse?rooms=a HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    await asyncio.wait_for(entered.wait(), 5)
    assert len(server.hub.connections) == 1 and len(server.sse.streams) == 1
    writer.transport.abort()
    await eventually(lambda: not server.hub.connections and not server.sse.streams)
    await eventually(lambda: not server.hub.rooms and not server.hub.room_table.subscribed)


async def test_shutdown_mid_join_answers_503(make_server: ServerFactory) -> None:
    hub, entered = _blocking_hub()
    server = await make_server(hub=hub)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET /sse?rooms=a HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    await asyncio.wait_for(entered.wait(), 5)
    await asyncio.wait_for(server.stop(), 10)
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 503") and answer.endswith(b"the server is shutting down\n")
    writer.close()


async def test_single_and_multi_room_streams_share_one_publish(server: Server) -> None:
    """One fan-out write, encoded once: the single-room stream gets the shared bytes, the two-room
    stream its own `id:` line, a WebSocket member its frame."""
    one = await SseReader.open(server.port, "/sse?rooms=a")
    two = await SseReader.open(server.port, "/sse?rooms=a,b")
    ws = await EventClient.open(ws_url(server))
    await ws.join("a")
    await one.event_of("hello")
    await two.event_of("hello")
    for i in range(3):
        await server.hub.publish("a", i, "api")
    await server.hub.publish("b", "b", "api")
    assert [(await one.event_of("new_message"))["id"] for _ in range(3)] == ["a=1", "a=2", "a=3"]
    got = [await two.event_of("new_message") for _ in range(4)]
    assert [m["id"] for m in got] == ["a=1,b=0", "a=2,b=0", "a=3,b=0", "a=3,b=1"]
    assert [m["data"]["message"] for m in got] == [0, 1, 2, "b"]
    assert [(await ws.recv_type("new_message"))["payload"]["message"] for _ in range(3)] == [0, 1, 2]
    one.close()
    two.close()
    await ws.close()


async def test_joining_and_leaving_many_rooms_holds_nothing_per_room_left(make_server: ServerFactory) -> None:
    """A stream that joins and leaves room after room over the up-channel: what it keeps per room (the
    join's ack for the `hello`, the resume offsets) goes with the room, so its memory is bounded by the
    rooms it is in, not by the rooms it ever joined."""
    server = await make_server(rate_limit=0)
    sse = await SseReader.open(server.port, "/sse?name=ann")
    session = (await sse.event_of("hello"))["data"]["session"]
    assert server.sse is not None
    conn = server.sse.streams[session]
    for batch in range(2):  # under the joins' rate limit
        envelopes = []
        for i in range(BATCH_MAX // 2):
            room = f"r{batch}-{i}"
            envelopes.append({"type": "join_room", "payload": {"room": room}, "id": f"j{room}"})
            envelopes.append({"type": "leave_room", "payload": {"room": room}, "id": f"l{room}"})
        assert await send(server.port, session, envelopes) == 202
        for _ in range(len(envelopes)):
            assert (await sse.event())["data"]["type"] == "ack"
    assert not conn.rooms
    assert conn.offsets == {} and conn.joined == {}
    sse.close()


async def test_live_messages_held_during_a_slow_join_are_bounded(make_server: ServerFactory) -> None:
    """`GET /sse?rooms=busy,slow`: while the join of `slow` waits (a slow `authorize_join`, a join
    proxy), what `busy` publishes is held until the stream starts. That hold is bounded by
    `--send-queue-bytes` (the stream is then refused 503, as a replay too large is), not by how long
    the join takes."""
    limit = 64 * 1024
    hub = Hub(Settings(port=0, send_queue_bytes=limit, rate_limit=0))
    entered = asyncio.Event()
    release = asyncio.Event()

    @hub.authorize_join
    async def slow(conn: Any, room: str) -> bool:
        if room == "slow":
            entered.set()
            await release.wait()
        return True

    server = await make_server(hub=hub)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET /sse?rooms=busy,slow HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    await asyncio.wait_for(entered.wait(), 5)
    assert server.sse is not None
    (conn,) = server.sse.streams.values()
    text = "x" * 1000
    for i in range(400):  # ~400 kB into the held stream, six times its bound
        await server.hub.publish("busy", {"n": i, "text": text}, "api")
    writer_of = conn._raw
    await eventually(lambda: writer_of.held_bytes > 4 * limit)  # the fan-out reached the stream
    held = writer_of._held
    assert held is not None and sum(len(chunk) for chunk in held) <= limit + 4096
    release.set()
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 503"), answer[:100]
    writer.close()
    await eventually(lambda: not server.hub.connections and not server.sse.streams)


async def test_a_deeply_nested_body_is_a_coded_error_not_a_traceback(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """`[[[[...]]]]` thousands deep: decoding it as a batch would recurse past Python's limit (a 500 and a
    traceback in the log per request); it is judged as /ws judges a frame that deep, `bad_json` on the
    stream, and the stream lives on."""
    caplog.set_level(logging.INFO)
    sse = await SseReader.open(server.port, "/sse?rooms=a")
    session = (await sse.event_of("hello"))["data"]["session"]
    for depth in (5000, 20000):
        status, _ = await post(server.port, b"[" * depth + b"]" * depth, {"X-Hubbub-Session": session})
        assert status == 202
        error = await sse.event_of("error")
        assert error["data"]["payload"]["code"] == "bad_json"
    assert await send(server.port, session, {"type": "send_message", "payload": {"room": "a", "message": 1}}) == 202
    assert (await sse.event_of("new_message"))["data"]["message"] == 1
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    sse.close()


async def test_a_cross_site_request_without_origin_is_refused_before_the_cookie_is_used(
    make_server: ServerFactory,
) -> None:
    """A page of another site can make the browser `GET /sse` with no `Origin` (an `<img>`, a `<script>`:
    no-cors requests carry none) and with the user's cookies: the connect proxy would admit the stream
    as that user (presence, joins, hooks) on another site's behalf. The browser says so in
    `Sec-Fetch-Site`; such a request is 403 before the app is asked. A same-origin page's EventSource
    (no `Origin` either) and non-browser clients (no `Sec-Fetch-Site`) are unchanged."""
    from tests.app_server import AppServer
    from tests.integration.test_proxy import SECRET, cookie, sessions

    app = await AppServer(sessions).start()
    try:
        server = await make_server(webhook_secret=SECRET, connect_proxy=app.url())
        for site in ("cross-site", "same-site"):
            asked = len(app.requests)
            headers = {**cookie("s-alice"), "Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors"}
            refused = await SseReader.open(server.port, "/sse?rooms=team-a", headers)
            assert refused.status == 403, site
            assert len(app.requests) == asked and not server.hub.connections
        for headers in ({"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}, {}):
            sse = await SseReader.open(server.port, "/sse?rooms=team-a", {**cookie("s-alice"), **headers})
            assert sse.status == 200
            await sse.event_of("hello")
            sse.close()
    finally:
        await app.close()


async def test_a_long_resume_id_does_not_multiply_what_a_stalled_stream_holds(make_server: ServerFactory) -> None:
    """A stream in 128 rooms of 128-character names: each `new_message` carries a 17 kB resume id for a
    ~200-byte frame. The outbox is bounded in frames, before they become events; the events the
    transport holds for a reader that reads nothing must be bounded too (--send-queue-bytes), not
    64 times that: the stream is dropped as a slow consumer instead."""
    limit = 256 * 1024
    hub = Hub(Settings(port=0, send_queue_bytes=limit, rate_limit=0, send_buffer=65536))
    server = await make_server(hub=hub)
    rooms = [f"{i:03d}" + "r" * 125 for i in range(128)]
    sse = await SseReader.open(server.port, "/sse?rooms=" + ",".join(rooms))
    assert sse.status == 200, sse.body
    await sse.event_of("hello")
    sse.writer.transport.pause_reading()  # type: ignore[attr-defined]  # reads nothing more
    assert server.sse is not None
    (conn,) = server.sse.streams.values()
    peak = 0
    for _ in range(10):
        for i in range(1000):  # ~250 kB of frames: under the outbox's bound
            await server.hub.publish(rooms[0], i, "api")
        await asyncio.sleep(0.01)
        peak = max(peak, conn._raw.get_write_buffer_size())
        if conn.state is not State.OPEN:
            break
    assert conn.state is not State.OPEN  # dropped as a slow consumer
    assert peak <= limit, peak
    sse.close()
    await eventually(lambda: not server.hub.connections and not server.sse.streams)
