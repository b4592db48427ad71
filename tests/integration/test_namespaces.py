"""Namespaces on real sockets: each `[[namespaces]]` rule as a client, the app and the API see it.

Publish: "server" refuses clients (`forbidden`) while the API, `hubbub publish` and in-process apps
publish; "members" skips the publish proxy, "proxy" and rooms outside namespaces go through it. Join:
"token" wants credentials naming rooms. History and presence per namespace, and the `authorize_join`
hook on top. How to choose: docs/topics/channels.md.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from hubbub.auth.tokens import mint_token
from hubbub.backends.redis import RedisBroker
from hubbub.core.hub import Hub
from hubbub.core.settings import Settings
from hubbub.protocol.namespaces import JoinRule, Namespace, PublishRule
from hubbub.server.server import Server
from tests.app_server import AppServer, Request, reply
from tests.conftest import ServerFactory
from tests.helpers import EventClient, ws_url

KEY = "namespace-api-key-0123456789"
SECRET = "namespace-webhook-secret"
AUTH_SECRET = "a" * 32
NEWS = Namespace("news:*", publish=PublishRule.SERVER, history_size=0, presence=False)
DM = Namespace("dm:*", join=JoinRule.TOKEN)
REDIS_URL = "redis://127.0.0.1:6379/0"
CHAT = Namespace("chat:*", history_size=2, history_ttl=60)


async def test_a_server_only_room_refuses_clients_and_takes_the_api_and_apps(make_server: ServerFactory) -> None:
    server: Server = await make_server(namespaces=(NEWS,), api_keys=(KEY,))
    reader = await EventClient.open(ws_url(server, query="name=reader"))
    writer = await EventClient.open(ws_url(server, query="name=writer"))
    await reader.join("news:sport")
    await writer.join("news:sport")
    refused = await writer.request("send_message", {"room": "news:sport", "message": "fake score"})
    assert refused["type"] == "error" and refused["payload"]["code"] == "forbidden", refused
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as api:
        answer = await api.post(
            "/api/publish", json={"room": "news:sport", "message": "2-1"}, headers={"Authorization": f"apikey {KEY}"}
        )
        assert answer.status_code == 200, answer.text
    await server.hub.publish("news:sport", "3-1", "app")  # an in-process app
    got = [(await reader.recv_type("new_message"))["payload"]["message"] for _ in range(2)]
    assert got == ["2-1", "3-1"]  # and not the client's
    lobby = await writer.join("lobby")  # outside every namespace: today's rules
    assert lobby["type"] == "ack"
    sent = await writer.request("send_message", {"room": "lobby", "message": "hi"})
    assert sent["type"] == "ack"
    await reader.close()
    await writer.close()


async def test_members_skip_the_publish_proxy_that_proxy_rooms_and_rooms_outside_go_through(
    make_server: ServerFactory,
) -> None:
    async def refuse(_: Request) -> tuple[int, bytes]:
        return reply(403, {"error": "no"})

    app = await AppServer(refuse).start()
    try:
        server = await make_server(
            webhook_secret=SECRET,
            publish_proxy=app.url(),
            namespaces=(Namespace("chat:*"), Namespace("mod:*", publish=PublishRule.PROXY)),
        )
        client = await EventClient.open(ws_url(server, query="name=alice"))
        for room in ("chat:a", "mod:a", "lobby"):
            await client.join(room)
        sent = await client.request("send_message", {"room": "chat:a", "message": "hi"})
        assert sent["type"] == "ack" and not app.requests  # "members": not asked
        for room in ("mod:a", "lobby"):
            refused = await client.request("send_message", {"room": room, "message": "hi"})
            assert refused["type"] == "error" and refused["payload"]["code"] == "forbidden", refused
        assert [r.json()["room"] for r in app.requests] == ["mod:a", "lobby"]
        await client.close()
    finally:
        await app.close()


async def test_a_token_namespace_wants_credentials_that_name_the_room(make_server: ServerFactory) -> None:
    server = await make_server(namespaces=(DM,), auth_secret=AUTH_SECRET, allow_anonymous=True)
    anonymous = await EventClient.open(ws_url(server))
    refused = await anonymous.request("join_room", {"room": "dm:alice"})
    assert refused["type"] == "error" and refused["payload"]["code"] == "forbidden", refused
    await anonymous.join("lobby")  # outside: open, as today
    unlimited = mint_token(AUTH_SECRET, "bob", 60)  # a token without a rooms claim
    bob = await EventClient.open(ws_url(server, query=f"token={unlimited}"))
    refused = await bob.request("join_room", {"room": "dm:bob"})
    assert refused["type"] == "error" and refused["payload"]["code"] == "forbidden", refused
    token = mint_token(AUTH_SECRET, "alice", 60, rooms=["dm:alice", "lobby"])
    alice = await EventClient.open(ws_url(server, query=f"token={token}"))
    await alice.join("dm:alice")
    refused = await alice.request("join_room", {"room": "dm:bob"})
    assert refused["type"] == "error" and refused["payload"]["code"] == "forbidden", refused
    for client in (anonymous, bob, alice):
        await client.close()


async def test_history_is_kept_per_namespace(make_server: ServerFactory) -> None:
    server = await make_server(namespaces=(NEWS, CHAT), history_size=5)
    hub = server.hub
    for room in ("news:a", "chat:a", "lobby"):
        for n in range(4):
            await hub.publish(room, n, "app")
    client = await EventClient.open(ws_url(server))
    for room, kept in (("news:a", []), ("chat:a", [2, 3]), ("lobby", [0, 1, 2, 3])):
        await client.join(room)
        history = await client.request("get_history", {"room": room})
        assert [m["message"] for m in history["payload"]["messages"]] == kept, room
    resumed = await client.request("join_room", {"room": "news:b", "since": 0})
    assert resumed["payload"]["recovered"] is True  # nothing was missed
    await hub.publish("news:b", "x", "app")
    await client.request("leave_room", {"room": "news:b"})
    await hub.publish("news:b", "y", "app")
    resumed = await client.request("join_room", {"room": "news:b", "since": 1})
    assert resumed["payload"]["recovered"] is False  # missed one, and history_size 0 kept none
    await client.close()


async def test_a_namespace_ttl_expires_its_rooms_history_alone() -> None:
    hub = Hub(Settings(namespaces=(Namespace("fast:*", history_ttl=0.05),), history_ttl=60))
    await hub.start()
    try:
        await hub.publish("fast:a", 1, "app")
        await hub.publish("slow", 1, "app")
        await asyncio.sleep(0.4)  # the sweep runs every quarter second when TTLs differ
        assert not (await hub.history.latest("fast:a", 10)).messages
        assert len((await hub.history.latest("slow", 10)).messages) == 1
    finally:
        await hub.shutdown()


async def test_a_room_without_presence_has_no_member_list_and_no_member_events(make_server: ServerFactory) -> None:
    server = await make_server(namespaces=(NEWS,), presence_interval=0)
    first = await EventClient.open(ws_url(server, query="name=first"))
    second = await EventClient.open(ws_url(server, query="name=second"))
    await first.join("news:a")
    await first.join("lobby")
    await second.join("news:a")
    await second.join("lobby")
    refused = await first.request("get_presence", {"room": "news:a"})
    assert refused["type"] == "error" and refused["payload"]["code"] == "forbidden", refused
    assert not await server.hub.presence.members("news:a")
    joined = await first.recv_type("member_joined")
    assert joined["payload"]["room"] == "lobby"  # the news room announced nothing before it
    lobby = await first.request("get_presence", {"room": "lobby"})
    assert [m["name"] for m in lobby["payload"]["members"]] == ["first", "second"]
    await first.close()
    await second.close()


async def test_the_authorize_join_hook_applies_on_top_of_the_namespace(make_server: ServerFactory) -> None:
    hub = Hub(Settings(port=0, namespaces=(NEWS,)))

    @hub.authorize_join
    def only_sport(conn: object, room: str) -> bool:
        return room != "news:politics"

    server = await make_server(hub)
    client = await EventClient.open(ws_url(server))
    await client.join("news:sport")
    refused = await client.request("join_room", {"room": "news:politics"})
    assert refused["type"] == "error" and refused["payload"]["code"] == "forbidden"
    await client.close()


def test_a_namespace_is_checked_where_python_makes_it() -> None:
    assert Namespace("a*", publish="server").publish is PublishRule.SERVER  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="publish must be one of"):
        Namespace("a*", publish="nobody")  # type: ignore[arg-type]
    assert Settings(namespaces=[Namespace("a*")]).namespaces == (Namespace("a*"),)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be a tuple of Namespace"):
        Settings(namespaces=({"pattern": "a*"},))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='join = "proxy" needs --join-proxy'):
        Settings(namespaces=(Namespace("a*", join=JoinRule.PROXY),))


async def test_history_is_kept_per_namespace_in_redis() -> None:
    prefix = f"hubbub-test-{uuid.uuid4().hex[:8]}:"
    broker = RedisBroker(REDIS_URL, "n", 5, 60.0, prefix=prefix)
    hub = Hub(Settings(broker=REDIS_URL, history_size=5, namespaces=(NEWS, CHAT)), broker)
    await hub.start()
    try:
        for room in ("news:a", "chat:a", "lobby"):
            for n in range(4):
                await hub.publish(room, n, "app")
        for room, kept in (("news:a", 0), ("chat:a", 2), ("lobby", 4)):
            assert len((await hub.history.latest(room, 10)).messages) == kept, room
    finally:
        await hub.shutdown()
        client = aioredis.Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.mark.parametrize(
    ("toml", "args", "message"),
    [
        ("[[namespaces]]\npattern = 'a*'\nsize = 1\ncolour = 2\n", [], "namespaces[1]: unknown keys 'colour', 'size'"),
        ("[[namespaces]]\npattern = 'a*'\npublish = 'all'\n", [], "publish must be one of"),
        ("[[namespaces]]\npattern = 'a*'\njoin = 'proxy'\n", [], 'join = "proxy" needs --join-proxy'),
        ("", ["--join-proxy", "http://127.0.0.1:9/join"], "--join-proxy needs --webhook-secret"),
    ],
)
def test_bad_namespaces_get_one_line_and_exit_2(tmp_path: Path, toml: str, args: list[str], message: str) -> None:
    config = tmp_path / "hubbub.toml"
    config.write_text(toml)
    env = {k: v for k, v in os.environ.items() if k != "HUBBUB_WEBHOOK_SECRET"}
    out = subprocess.run(
        [sys.executable, "-m", "hubbub", "serve", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    if toml:  # the file's mistakes, its namespace cross checks too, name it
        assert out.stderr.startswith(f"hubbub serve: {config}: "), out.stderr
