"""Typed events over real sockets: routing, acks, coded errors, custom handlers.

Proves lifecycle rule 7 (docs/lifecycle.md): bad input gets an `error` event
with the PROTOCOL.md code and the request's `id`, and the connection lives on.
The tests that take `any_server` run against hubbub and against the textbook
(`hubbub.textbook`): both keep those rules (docs/learn/rules.md).
"""

from __future__ import annotations

import asyncio
import json
import logging

import msgspec
import pytest

from hubbub.core.hub import Hub
from hubbub.core.settings import Settings
from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import EventClient, ws_url
from tests.integration.conftest import Running


async def test_join_send_and_receive(any_server: Running) -> None:
    alice = await EventClient.open(any_server.url("name=alice"))
    bob = await EventClient.open(any_server.url("name=bob"))
    assert (await alice.join("lobby"))["payload"] == {"room": "lobby", "offset": 0}
    await bob.join("lobby")
    reply = await alice.request("send_message", {"room": "lobby", "message": "hi"})
    assert reply == {"type": "ack", "payload": {"room": "lobby", "offset": 1}, "id": reply["id"]}
    for client in (alice, bob):
        event = await client.recv_type("new_message")
        payload = event["payload"]
        assert payload["room"] == "lobby" and payload["message"] == "hi"
        assert payload["from"] == "alice" and payload["offset"] == 1
        assert payload["sent"].endswith("Z")
    await alice.close()
    await bob.close()


async def test_identity_falls_back_to_payload_then_anonymous(any_server: Running) -> None:
    client = await EventClient.open(any_server.url())
    await client.join("r")
    await client.request("send_message", {"room": "r", "message": 1, "from": "carol"})
    assert (await client.recv_type("new_message"))["payload"]["from"] == "carol"
    await client.request("send_message", {"room": "r", "message": {"any": "json"}})
    event = await client.recv_type("new_message")
    assert event["payload"]["from"] == "anonymous"
    assert event["payload"]["message"] == {"any": "json"}
    await client.close()


async def test_leave_room_stops_delivery_and_keeps_connection(any_server: Running) -> None:
    a = await EventClient.open(any_server.url())
    b = await EventClient.open(any_server.url())
    await a.join("r")
    await b.join("r")
    assert (await b.request("leave_room", {"room": "r"}))["type"] == "ack"
    await a.request("send_message", {"room": "r", "message": "after"})
    not_in = await b.request("send_message", {"room": "r", "message": "x"})
    assert not_in["payload"]["code"] == "not_in_room"
    again = await b.request("leave_room", {"room": "r"})
    assert again["payload"]["code"] == "not_in_room"
    await a.close()
    await b.close()


BAD_INPUTS = [
    ("not json", "bad_json", None),
    ("[1, 2]", "bad_json", None),
    ('{"type": "join_room", "payload": {}', "bad_json", None),
    ('{"payload": {}, "id": "a"}', "bad_envelope", "a"),
    ('{"type": 5, "payload": {}, "id": 7}', "bad_envelope", 7),
    ('{"type": "join_room", "payload": [], "id": "b"}', "bad_envelope", "b"),
    ('{"type": "join_room", "id": "c"}', "bad_envelope", "c"),
    ('{"type": "join_room", "payload": {"room": "x"}, "id": [1]}', "bad_envelope", None),
    ('{"type": "fly", "payload": {}, "id": "d"}', "unknown_type", "d"),
    ('{"type": "join_room", "payload": {"room": ""}, "id": "e"}', "bad_payload", "e"),
    ('{"type": "join_room", "payload": {"room": "a b"}, "id": "f"}', "bad_payload", "f"),
    ('{"type": "join_room", "payload": {"room": "' + "x" * 129 + '"}, "id": "g"}', "bad_payload", "g"),
    ('{"type": "join_room", "payload": {"room": 3}, "id": "h"}', "bad_payload", "h"),
    ('{"type": "join_room", "payload": {"room": "a\\n"}, "id": "h2"}', "bad_payload", "h2"),
    ('{"type": "send_message", "payload": {"room": "r"}, "id": "i"}', "bad_payload", "i"),
    ('{"type": "send_message", "payload": {"room": "r", "message": "m"}, "id": "j"}', "not_in_room", "j"),
    ('{"type": "send_message", "payload": {"room": "a b", "message": "m"}, "id": "k"}', "bad_payload", "k"),
    ('{"type": "send_message", "payload": {"room": "", "message": "m"}, "id": "l"}', "bad_payload", "l"),
    ('{"type": "send_message", "payload": {"room": "' + "x" * 129 + '", "message": 1}, "id": "m"}', "bad_payload", "m"),
]


@pytest.mark.parametrize(("frame", "code", "event_id"), BAD_INPUTS)
async def test_bad_input_gets_coded_error_and_connection_lives(
    any_server: Running, frame: str, code: str, event_id: object
) -> None:
    client = await EventClient.open(any_server.url())
    await client.ws.send(frame)
    error = await client.recv()
    assert error["type"] == "error"
    assert error["payload"]["code"] == code
    assert error.get("id") == event_id
    assert isinstance(error["payload"]["message"], str) and error["payload"]["message"]
    assert (await client.join("still-alive"))["type"] == "ack"
    await client.close()


async def test_event_without_id_gets_no_ack(server: Server) -> None:
    client = await EventClient.open(ws_url(server))
    await client.send("join_room", {"room": "quiet"})
    await client.send("send_message", {"room": "quiet", "message": "m"})
    seen = [await client.recv(), await client.recv()]
    # (member_joined comes at the next presence flush, possibly after the message)
    assert sorted(e["type"] for e in seen) == ["member_joined", "new_message"]
    await client.close()


class Typing(msgspec.Struct):
    room: str
    active: bool


async def test_custom_event_type_and_failing_handler(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    hub = Hub(Settings(port=0))

    @hub.on("typing", Typing)
    async def typing(payload: Typing, client: object) -> dict[str, object]:
        return {"room": payload.room, "active": payload.active}

    @hub.on("explode")
    async def explode(payload: object, client: object) -> None:
        raise RuntimeError("kaboom")

    server = await make_server(hub)
    client = await EventClient.open(ws_url(server))
    reply = await client.request("typing", {"room": "r", "active": True})
    assert reply["payload"] == {"room": "r", "active": True}
    bad = await client.request("typing", {"room": "r", "active": "yes"})
    assert bad["payload"]["code"] == "bad_payload"
    with caplog.at_level(logging.ERROR, logger="hubbub"):
        failed = await client.request("explode", {})
    assert failed["type"] == "error" and failed["payload"]["code"] == "internal"
    logged = [r for r in caplog.records if r.name.startswith("hubbub") and r.levelno >= logging.ERROR]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert (await client.join("after-failure"))["type"] == "ack"
    await client.close()


async def test_plain_and_async_handlers_answer_in_the_order_events_were_sent(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain-function handler runs as its message is read; one sent after a slow async
    handler still waits for it, so the acks come back in the order of the events."""
    hub = Hub(Settings(port=0))

    @hub.on("slow", Typing)
    async def slow(payload: Typing, client: object) -> dict[str, object]:
        await asyncio.sleep(0.05)
        return {"slow": payload.room}

    @hub.on("quick", Typing)
    def quick(payload: Typing, client: object) -> dict[str, object]:
        if not payload.active:
            raise EventError(ErrorCode.FORBIDDEN, "not active")
        return {"quick": payload.room}

    @hub.on("broken")
    def broken(payload: object, client: object) -> None:
        raise RuntimeError("kaboom")

    server = await make_server(hub)
    client = await EventClient.open(ws_url(server))
    for i, kind in enumerate(["quick", "slow", "quick", "quick", "slow", "quick"]):
        await client.ws.send(json.dumps({"type": kind, "payload": {"room": f"r{i}", "active": True}, "id": i}))
    replies = [await client.recv() for _ in range(6)]
    assert [r["id"] for r in replies] == list(range(6))
    assert replies[1]["payload"] == {"slow": "r1"} and replies[2]["payload"] == {"quick": "r2"}
    refused = await client.request("quick", {"room": "r", "active": False})
    assert refused["payload"]["code"] == "forbidden"
    with caplog.at_level(logging.ERROR, logger="hubbub"):
        failed = await client.request("broken", {})
    assert failed["payload"]["code"] == "internal"
    assert (await client.request("quick", {"room": "still", "active": True}))["payload"] == {"quick": "still"}
    await client.close()


async def test_rate_limit_answers_rate_limited_then_closes_abusers(make_server: ServerFactory) -> None:
    server = await make_server(rate_limit=5, rate_burst=3)
    client = await EventClient.open(ws_url(server))
    replies = [await client.request("leave_room", {"room": "x"}) for _ in range(5)]
    codes = [r["payload"]["code"] for r in replies]
    assert codes[:3] == ["not_in_room"] * 3  # handled: within the burst
    assert "rate_limited" in codes[3:]  # refused, with the request's id
    await asyncio.sleep(0.5)
    assert (await client.request("leave_room", {"room": "x"}))["payload"]["code"] == "not_in_room"
    for _ in range(300):  # keeps pushing
        await client.send("leave_room", {"room": "x"})
    await client.ws.wait_closed()
    assert client.ws.close_code == 1008
