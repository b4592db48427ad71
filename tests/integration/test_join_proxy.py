"""The join proxy (`--join-proxy`) on real sockets: a small application server decides each join.

What it is sent (signed), what its answers do (200 admits with info for presence, 403 `forbidden`,
anything else or nothing in time `unavailable`), which rooms it is asked about (namespaces with
`join = "proxy"`, rooms outside every namespace; never the others), resumes, and its settings.
The hostile apps (trickle, 1 GB, redirect, hang) are in test_hostile_integrations.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hubbub.auth.signing import HEADER, verify
from hubbub.core.settings import Settings
from hubbub.errors import ConfigError
from hubbub.protocol.namespaces import JoinRule, Namespace
from hubbub.server.server import Server
from tests.app_server import Answer, AppServer, Request, reply
from tests.conftest import ServerFactory
from tests.helpers import EventClient, ws_url

SECRET = "join-proxy-webhook-secret"


async def decide(request: Request) -> Answer:
    """The app's join endpoint: nobody joins `vip:*` but alice; `broken:*` fails; `slow:*` hangs."""
    body = request.json()
    room, user = body["room"], body["user"]
    if room.startswith("slow:"):
        await asyncio.sleep(30)
    if room.startswith("broken:"):
        return reply(500, {"error": "bug"})
    if room.startswith("vip:") and user != "alice":
        return reply(403, {"error": "members only"})
    if room.startswith("vip:"):
        return reply(200, {"info": {"badge": "gold"}})
    return reply(200, b"")


@pytest.fixture
async def app() -> AsyncIterator[AppServer]:
    server = await AppServer(decide).start()
    yield server
    await server.close()


async def joined(client: EventClient, room: str, since: int | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"room": room}
    if since is not None:
        payload["since"] = since
    return await client.request("join_room", payload)


async def test_the_join_proxy_admits_refuses_and_gives_presence_info(
    make_server: ServerFactory, app: AppServer
) -> None:
    server: Server = await make_server(
        webhook_secret=SECRET,
        join_proxy=app.url(),
        namespaces=(Namespace("vip:*", join=JoinRule.PROXY),),
        presence_interval=0,
    )
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    bob = await EventClient.open(ws_url(server, query="name=bob"))
    assert (await joined(alice, "vip:lounge"))["type"] == "ack"
    asked = app.requests[0]
    assert asked.json() == {"user": "alice", "room": "vip:lounge", "info": None, "since": None}
    assert verify(SECRET, asked.body, asked.headers[HEADER.lower()])  # signed with --webhook-secret
    refused = await joined(bob, "vip:lounge")
    assert refused["type"] == "error" and refused["payload"]["code"] == "forbidden", refused
    presence = await alice.request("get_presence", {"room": "vip:lounge"})
    assert presence["payload"]["members"] == [{"name": "alice", "connections": 1, "info": {"badge": "gold"}}]
    assert (await joined(bob, "lobby"))["type"] == "ack"  # outside every namespace: asked too (an empty 200)
    assert [r.json()["room"] for r in app.requests] == ["vip:lounge", "vip:lounge", "lobby"]
    await alice.close()
    await bob.close()


async def test_a_join_the_app_fails_or_leaves_unanswered_is_unavailable_in_bounded_time(
    make_server: ServerFactory, app: AppServer
) -> None:
    server = await make_server(webhook_secret=SECRET, join_proxy=app.url(), proxy_timeout=0.5)
    client = await EventClient.open(ws_url(server))
    for room in ("broken:a", "slow:a"):
        start = time.monotonic()
        failed = await joined(client, room)
        assert failed["type"] == "error" and failed["payload"]["code"] == "unavailable", failed
        assert time.monotonic() - start < 2.0
        assert room not in server.hub.rooms
    assert (await joined(client, "ok"))["type"] == "ack"  # the connection goes on
    await client.close()


async def test_a_resume_goes_through_the_join_proxy(make_server: ServerFactory, app: AppServer) -> None:
    server = await make_server(webhook_secret=SECRET, join_proxy=app.url())
    await server.hub.publish("vip:news", "first", "app")
    bob = await EventClient.open(ws_url(server, query="name=bob"))
    refused = await joined(bob, "vip:news", since=0)
    assert refused["type"] == "error" and refused["payload"]["code"] == "forbidden"
    assert app.requests[-1].json()["since"] == 0
    alice = await EventClient.open(ws_url(server, query="name=alice"))
    resumed = await joined(alice, "vip:news", since=0)
    assert resumed["type"] == "ack" and resumed["payload"]["recovered"] is True
    assert (await alice.recv_type("new_message"))["payload"]["message"] == "first"
    await alice.close()
    await bob.close()


async def test_rooms_of_other_join_rules_are_never_asked_about(make_server: ServerFactory, app: AppServer) -> None:
    server = await make_server(
        webhook_secret=SECRET, join_proxy=app.url(), namespaces=(Namespace("chat:*", join=JoinRule.OPEN),)
    )
    client = await EventClient.open(ws_url(server, query="name=bob"))
    assert (await joined(client, "chat:vip:x"))["type"] == "ack"
    assert not app.requests
    bad = await joined(client, "")
    assert bad["type"] == "error" and bad["payload"]["code"] == "bad_payload"
    assert not app.requests  # a room that cannot be is not asked about
    await client.close()


def test_the_join_proxy_needs_the_secret_and_a_good_url() -> None:
    with pytest.raises(ConfigError, match=r"--join-proxy needs --webhook-secret"):
        Settings(join_proxy="http://127.0.0.1:9/join")
    with pytest.raises(ConfigError, match=r"^--join-proxy"):
        Settings(join_proxy="ftp://app/join", webhook_secret=SECRET)
