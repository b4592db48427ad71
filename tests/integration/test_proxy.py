"""The proxy to the app on real sockets: a small application server in the test decides each answer.

Connect proxy (`--connect-proxy`): identity, rooms and info from the app's session cookie, refusals passed
on, every failure a 503 in bounded time, the waiting bound. Publish proxy (`--publish-proxy`): rewriting,
refusing, timing out, the client's order kept, other clients not slowed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hubbub.auth.logins import mint_token
from hubbub.auth.passwords import hash_password
from hubbub.auth.signing import HEADER, verify
from hubbub.backends.redis import RedisBroker
from hubbub.backends.redis_presence import RedisPresence
from hubbub.cli.main import build_parser
from hubbub.cli.settings import settings_from
from hubbub.client import client as hubbub_client
from hubbub.client.errors import HandshakeRefused
from hubbub.core.hub import Hub
from hubbub.core.settings import Settings
from hubbub.server.server import Server
from tests.app_server import Answer, AppServer, Request, reply
from tests.cluster import free_port
from tests.conftest import ServerFactory
from tests.helpers import EventClient, ws_url

SESSIONS = {"s-alice": "alice", "s-bob": "bob"}
SECRET = "proxy-webhook-secret"
REDIS_URL = "redis://127.0.0.1:6379/0"


async def sessions(request: Request) -> Answer:
    """The app's connect endpoint: a user by the session cookie; alice may only join `team-*` rooms."""
    cookie = request.json()["headers"].get("Cookie", "")
    session = cookie.removeprefix("session=")
    user = SESSIONS.get(session)
    if user is None:
        return reply(401, {"error": "log in"})
    if user == "bob" and request.json()["query"].get("room") == "secret":
        return reply(403, {"error": "not for you"})
    return reply(200, {"user": user, "rooms": ["team-*"], "info": {"role": "admin" if user == "alice" else "dev"}})


@pytest.fixture
async def app() -> AsyncIterator[AppServer]:
    server = await AppServer(sessions).start()
    yield server
    await server.close()


async def status_of(url: str, **kwargs: Any) -> int:
    """The status a handshake was refused with."""
    with pytest.raises(InvalidStatus) as caught:
        await connect(url, **kwargs)
    return caught.value.response.status_code


def calls(server: Server, proxy: str, outcome: str) -> float:
    """`hubbub_proxy_calls_total{proxy, outcome}` of `server`, as /metrics shows it."""
    value = server.hub.metrics.registry.get_sample_value(
        "hubbub_proxy_calls_total", {"proxy": proxy, "outcome": outcome}
    )
    return value or 0.0


def cookie(session: str) -> dict[str, str]:
    return {"Cookie": f"session={session}", "X-Private": "never-forwarded"}


# ---- connect proxy -------------------------------------------------------------------


async def test_connect_proxy_admits_by_cookie_with_rooms_and_info(make_server: ServerFactory, app: AppServer) -> None:
    server: Server = await make_server(webhook_secret=SECRET, connect_proxy=app.url())
    alice = EventClient(await connect(ws_url(server, query="name=mallory&x=1"), additional_headers=cookie("s-alice")))
    asked = app.requests[0]
    assert asked.method == "POST" and asked.path == "/hubbub"
    body = asked.json()
    assert body["client"].startswith("127.0.0.1:") and int(body["client"].split(":")[1]) > 0
    assert body["query"] == {"name": "mallory", "x": "1"}
    assert body["headers"] == {"Cookie": "session=s-alice"}  # only the allow-listed headers leave hubbub
    assert verify(SECRET, asked.body, asked.headers[HEADER.lower()])  # signed with --webhook-secret

    await alice.join("team-a")
    refused = await alice.request("join_room", {"room": "lobby"})
    assert refused["type"] == "error" and refused["payload"]["code"] == "forbidden"
    await alice.request("send_message", {"room": "team-a", "message": "hi", "from": "mallory"})
    assert (await alice.recv_type("new_message"))["payload"]["from"] == "alice"

    bob = EventClient(await connect(ws_url(server), additional_headers=cookie("s-bob")))
    await bob.join("team-a")
    while (joined := await alice.recv_type("member_joined"))["payload"]["name"] == "alice":
        pass  # her own, announced at the presence flush after her join
    assert joined["payload"] == {"room": "team-a", "name": "bob", "info": {"role": "dev"}}
    presence = await bob.request("get_presence", {"room": "team-a"})
    assert presence["payload"]["members"] == [
        {"name": "alice", "connections": 1, "info": {"role": "admin"}},
        {"name": "bob", "connections": 1, "info": {"role": "dev"}},
    ]
    await alice.close()
    await bob.close()


async def test_connect_proxy_refusals_are_passed_on(make_server: ServerFactory, app: AppServer) -> None:
    server: Server = await make_server(webhook_secret=SECRET, connect_proxy=app.url())
    assert await status_of(ws_url(server)) == 401  # no cookie: the app says 401
    assert await status_of(ws_url(server), additional_headers=cookie("s-nobody")) == 401
    assert await status_of(ws_url(server, query="room=secret"), additional_headers=cookie("s-bob")) == 403
    assert len(app.requests) == 3
    assert calls(server, "connect", "refused") == 3 and calls(server, "connect", "accepted") == 0


async def test_the_python_client_sends_a_cookie_and_says_the_apps_refusals(
    make_server: ServerFactory, app: AppServer
) -> None:
    """`hubbub.client.client.connect(headers=...)` logs in through a cookie-based connect proxy; a refusal and an
    app that does not answer are told in the proxy's words, not as a missing hubbub login or a full hub."""
    server: Server = await make_server(webhook_secret=SECRET, connect_proxy=app.url())
    async with asyncio.timeout(20):
        async with hubbub_client.connect(ws_url(server), headers={"Cookie": "session=s-alice"}) as alice:
            await alice.join("team-a")
            assert await alice.presence("team-a") == [{"name": "alice", "connections": 1, "info": {"role": "admin"}}]
        assert app.requests[0].json()["headers"] == {"Cookie": "session=s-alice"}
        with pytest.raises(HandshakeRefused) as refused:
            await hubbub_client.Client(ws_url(server), headers={"Cookie": "session=s-nobody"}).start()
        assert refused.value.status == 401 and "the application did not recognize you" in str(refused.value)
        assert "ticket" not in str(refused.value)
    down: Server = await make_server(webhook_secret=SECRET, connect_proxy=f"http://127.0.0.1:{free_port()}/hubbub")
    started = time.monotonic()
    with pytest.raises(HandshakeRefused) as unanswered:
        async with asyncio.timeout(20):
            await hubbub_client.Client(ws_url(down), connect_timeout=1.0).start()
    assert unanswered.value.status == 503 and "the application did not answer" in str(unanswered.value)
    assert "full" not in str(unanswered.value) and time.monotonic() - started < 10


async def test_connect_proxy_asks_nothing_for_a_foreign_origin_or_a_stray_credential(
    make_server: ServerFactory, app: AppServer
) -> None:
    server: Server = await make_server(webhook_secret=SECRET, connect_proxy=app.url())
    foreign = {**cookie("s-alice"), "Origin": "https://evil.example"}
    assert await status_of(ws_url(server), additional_headers=foreign) == 403
    # a token or ticket without --auth-secret or --users is no way around the app: 401, never anonymous
    assert await status_of(ws_url(server, query="token=x"), additional_headers=cookie("s-alice")) == 401
    assert await status_of(ws_url(server, query="ticket=x"), additional_headers=cookie("s-alice")) == 401
    assert app.requests == []


async def test_connect_proxy_down_is_503(make_server: ServerFactory) -> None:
    server: Server = await make_server(webhook_secret=SECRET, connect_proxy=f"http://127.0.0.1:{free_port()}/hubbub")
    started = time.monotonic()
    assert await status_of(ws_url(server), additional_headers=cookie("s-alice")) == 503
    assert time.monotonic() - started < 3.0
    assert calls(server, "connect", "unreachable") == 1


async def test_connect_proxy_slow_is_503_within_the_timeout(make_server: ServerFactory) -> None:
    async def slow(request: Request) -> Answer:
        await asyncio.sleep(30)
        return reply(200, {"user": "alice"})

    app = await AppServer(slow).start()
    try:
        server: Server = await make_server(webhook_secret=SECRET, connect_proxy=app.url(), proxy_timeout=0.5)
        started = time.monotonic()
        assert await status_of(ws_url(server), additional_headers=cookie("s-alice")) == 503
        elapsed = time.monotonic() - started
        assert 0.4 < elapsed < 0.5 + 2.5, elapsed  # the timeout, plus a generous margin for a loaded box
    finally:
        await app.close()


@pytest.mark.parametrize(
    "answer",
    [
        (200, b"not json"),
        (200, b"{}"),  # no user
        (200, b'{"user": "bad\\nname"}'),  # not a valid name
        (200, b'{"user": ""}'),
        (200, b'{"user": "alice", "rooms": "team-*"}'),  # rooms not a list
        (200, b'{"user": "alice", "info": [1, 2]}'),  # info not an object
        (200, json.dumps({"user": "alice", "info": {"bio": "x" * 5000}}).encode()),  # info too large
        (500, b'{"user": "alice"}'),
        (302, b""),
    ],
    ids=["not-json", "no-user", "newline", "empty-user", "rooms", "info-list", "info-large", "500", "302"],
)
async def test_connect_proxy_bad_answers_are_503(make_server: ServerFactory, answer: Answer) -> None:
    async def bad(request: Request) -> Answer:
        return answer

    app = await AppServer(bad).start()
    try:
        server: Server = await make_server(webhook_secret=SECRET, connect_proxy=app.url())
        assert await status_of(ws_url(server), additional_headers=cookie("s-alice")) == 503
    finally:
        await app.close()


async def handshake(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw WebSocket handshake sent (its answer not read yet)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nCookie: session=s-alice\r\n\r\n".encode()
    )
    await writer.drain()
    return reader, writer


async def test_connect_proxy_bounds_the_handshakes_waiting_on_the_app(make_server: ServerFactory) -> None:
    release = asyncio.Event()

    async def held(request: Request) -> Answer:
        await release.wait()
        return reply(200, {"user": "alice"})

    app = await AppServer(held).start()
    opened: list[asyncio.StreamWriter] = []
    try:
        server: Server = await make_server(
            webhook_secret=SECRET, connect_proxy=app.url(), proxy_max_waiting=3, proxy_timeout=5
        )
        waiting = [await handshake(server.port) for _ in range(3)]
        opened += [w for _, w in waiting]
        for _ in range(500):  # the three are with the app
            if len(app.requests) == 3:
                break
            await asyncio.sleep(0.01)
        assert len(app.requests) == 3
        reader, writer = await handshake(server.port)  # a fourth: answered at once, unasked
        opened.append(writer)
        status = await asyncio.wait_for(reader.readuntil(b"\r\n"), 3)
        assert status.startswith(b"HTTP/1.1 503"), status
        assert len(app.requests) == 3
        assert calls(server, "connect", "too_many_waiting") == 1
        assert server.hub.metrics.registry.get_sample_value("hubbub_proxy_waiting") == 3
        assert server.proxy is not None and server.proxy.waiting == 3
        release.set()
        for reader, _ in waiting:
            status = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
            assert status.startswith(b"HTTP/1.1 101"), status
        assert server.proxy.waiting == 0
    finally:
        for writer in opened:
            writer.transport.abort()
        await app.close()


async def test_a_held_handshake_is_answered_503_at_shutdown(make_server: ServerFactory) -> None:
    release = asyncio.Event()

    async def held(request: Request) -> Answer:
        await release.wait()
        return reply(200, {"user": "alice"})

    app = await AppServer(held).start()
    try:
        server: Server = await make_server(webhook_secret=SECRET, connect_proxy=app.url(), proxy_timeout=5)
        reader, writer = await handshake(server.port)
        for _ in range(500):
            if app.requests:
                break
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await server.stop()
        assert time.monotonic() - started < 3.0  # the app's answer is not waited for
        status = await asyncio.wait_for(reader.readuntil(b"\r\n"), 3)
        assert status.startswith(b"HTTP/1.1 503"), status
        assert server.proxy is not None and server.proxy.waiting == 0
        writer.transport.abort()
    finally:
        release.set()
        await app.close()


async def test_info_is_shown_across_two_nodes_sharing_redis(app: AppServer) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    servers: list[Server] = []
    try:
        for node in ("a", "b"):
            broker = RedisBroker(REDIS_URL, node, 100, 60.0, prefix=prefix)
            presence = RedisPresence(REDIS_URL, node, 30.0, prefix + "presence:")
            settings = Settings(port=0, broker=REDIS_URL, node_id=node, connect_proxy=app.url(), webhook_secret=SECRET)
            server = Server(Hub(settings, broker, presence))
            await server.start()
            servers.append(server)
        a, b = servers
        alice = EventClient(await connect(ws_url(a), additional_headers=cookie("s-alice")))
        bob = EventClient(await connect(ws_url(b), additional_headers=cookie("s-bob")))
        await alice.join("team-a")
        await bob.join("team-a")
        joined = await alice.recv_type("member_joined")
        while joined["payload"]["name"] != "bob":
            joined = await alice.recv_type("member_joined")
        assert joined["payload"]["info"] == {"role": "dev"}
        presence_a = await alice.request("get_presence", {"room": "team-a"})
        presence_b = await bob.request("get_presence", {"room": "team-a"})
        expected = [
            {"name": "alice", "connections": 1, "info": {"role": "admin"}},
            {"name": "bob", "connections": 1, "info": {"role": "dev"}},
        ]
        assert presence_a["payload"]["members"] == expected == presence_b["payload"]["members"]
        await alice.close()
        await bob.close()
    finally:
        for server in servers:
            await server.stop()


# ---- publish proxy -------------------------------------------------------------------


async def judge(request: Request) -> Answer:
    """The app's publish endpoint: rewrites rude words, refuses `forbidden`, is slow for `slow`."""
    body = request.json()
    message, user = body["message"], body["user"]
    if user == "slow":
        await asyncio.sleep(3.5)
    if message == "forbidden":
        return reply(403, {"error": "no"})
    if message == "timeout":
        await asyncio.sleep(30)
    if message == "teapot":
        return reply(418, {})
    if isinstance(message, str) and "darn" in message:
        return reply(200, {"message": message.replace("darn", "****")})
    if isinstance(message, dict) and "delay" in message:
        await asyncio.sleep(message["delay"])
    return reply(200, {})


@pytest.fixture
async def judging() -> AsyncIterator[AppServer]:
    server = await AppServer(judge).start()
    yield server
    await server.close()


async def test_publish_proxy_publishes_rewrites_and_refuses(make_server: ServerFactory, judging: AppServer) -> None:
    server: Server = await make_server(webhook_secret=SECRET, publish_proxy=judging.url("/publish"))
    client = await EventClient.open(ws_url(server, query="name=carol"))
    await client.join("lobby")

    ack = await client.request("send_message", {"room": "lobby", "message": "hello"})
    assert ack["type"] == "ack" and ack["payload"]["offset"] >= 1
    assert (await client.recv_type("new_message"))["payload"]["message"] == "hello"
    asked = judging.requests[-1]
    assert asked.json() == {"user": "carol", "room": "lobby", "message": "hello"}
    assert verify(SECRET, asked.body, asked.headers[HEADER.lower()])

    await client.request("send_message", {"room": "lobby", "message": "darn it"})
    assert (await client.recv_type("new_message"))["payload"]["message"] == "**** it"

    refused = await client.request("send_message", {"room": "lobby", "message": "forbidden"})
    assert refused["type"] == "error" and refused["payload"]["code"] == "forbidden"
    other = await client.request("send_message", {"room": "lobby", "message": "teapot"})
    assert other["type"] == "error" and other["payload"]["code"] == "unavailable"
    # not in the room: answered by hubbub, the app is not asked
    count = len(judging.requests)
    outside = await client.request("send_message", {"room": "elsewhere", "message": "x"})
    assert outside["payload"]["code"] == "not_in_room" and len(judging.requests) == count
    # the refused messages were never published: the next one is the room's next offset
    ack = await client.request("send_message", {"room": "lobby", "message": "again"})
    assert (await client.recv_type("new_message"))["payload"]["message"] == "again"
    assert calls(server, "publish", "accepted") == 3 and calls(server, "publish", "refused") == 1
    assert calls(server, "publish", "unexpected_status") == 1
    await client.close()


async def test_publish_proxy_timeout_and_unreachable_are_unavailable(
    make_server: ServerFactory, judging: AppServer
) -> None:
    server: Server = await make_server(webhook_secret=SECRET, publish_proxy=judging.url("/publish"), proxy_timeout=0.5)
    client = await EventClient.open(ws_url(server, query="name=carol"))
    await client.join("lobby")
    started = time.monotonic()
    late = await client.request("send_message", {"room": "lobby", "message": "timeout"})
    assert late["type"] == "error" and late["payload"]["code"] == "unavailable"
    assert time.monotonic() - started < 0.5 + 2.5
    await client.close()

    down: Server = await make_server(webhook_secret=SECRET, publish_proxy=f"http://127.0.0.1:{free_port()}/publish")
    client = await EventClient.open(ws_url(down, query="name=carol"))
    await client.join("lobby")
    unreachable = await client.request("send_message", {"room": "lobby", "message": "hi"})
    assert unreachable["type"] == "error" and unreachable["payload"]["code"] == "unavailable"
    await client.close()


async def test_publish_proxy_keeps_the_clients_order(make_server: ServerFactory, judging: AppServer) -> None:
    server: Server = await make_server(webhook_secret=SECRET, publish_proxy=judging.url("/publish"))
    client = await EventClient.open(ws_url(server, query="name=carol"))
    await client.join("lobby")
    rng = random.Random(11)
    for i in range(10):  # sent at once; the app answers each after a random delay
        await client.send("send_message", {"room": "lobby", "message": {"n": i, "delay": rng.uniform(0, 0.2)}}, i)
    acks: list[int] = []
    seen: list[int] = []
    while len(acks) < 10 or len(seen) < 10:
        event = await client.recv(timeout=10)
        if event["type"] == "ack":
            acks.append(event["id"])
        elif event["type"] == "new_message":
            seen.append(event["payload"]["message"]["n"])
    assert seen == list(range(10))
    assert acks == list(range(10))
    await client.close()


async def test_publish_proxy_slows_only_the_slow_client(make_server: ServerFactory, judging: AppServer) -> None:
    server: Server = await make_server(webhook_secret=SECRET, publish_proxy=judging.url("/publish"), proxy_timeout=5)
    slow = await EventClient.open(ws_url(server, query="name=slow"))
    quick = await EventClient.open(ws_url(server, query="name=quick"))
    await slow.join("lobby")
    await quick.join("lobby")
    await slow.send("send_message", {"room": "lobby", "message": "in no hurry"}, "s1")  # the app takes 3.5 s
    for _ in range(100):
        if judging.requests:
            break
        await asyncio.sleep(0.01)
    started = time.monotonic()
    for i in range(5):
        ack = await quick.request("send_message", {"room": "lobby", "message": f"quick {i}"})
        assert ack["type"] == "ack"
    assert time.monotonic() - started < 2.5  # five round trips through the app, while slow's call is pending
    reply_ = await slow.recv_type("ack", timeout=10)
    assert reply_["id"] == "s1"
    await slow.close()
    await quick.close()


async def test_server_api_style_publishes_skip_the_publish_proxy(make_server: ServerFactory) -> None:
    async def refuse_all(request: Request) -> Answer:
        return reply(403, {})

    app = await AppServer(refuse_all).start()
    try:
        server: Server = await make_server(webhook_secret=SECRET, publish_proxy=app.url("/publish"))
        client = await EventClient.open(ws_url(server, query="name=carol"))
        await client.join("lobby")
        await server.hub.publish("lobby", "from the app", "app")  # what /api/publish calls: not proxied
        assert (await client.recv_type("new_message"))["payload"]["message"] == "from the app"
        assert app.requests == []
        await client.close()
    finally:
        await app.close()


async def test_a_token_or_a_ticket_goes_to_its_own_check_not_to_the_app(
    make_server: ServerFactory, app: AppServer, tmp_path: Path
) -> None:
    secret = "proxy-auth-secret-" + "k" * 32
    users = tmp_path / "users"
    users.write_text(f"dave:{hash_password('pw')}\n")
    server: Server = await make_server(
        webhook_secret=SECRET, connect_proxy=app.url(), auth_secret=secret, users_file=str(users)
    )
    by_token = EventClient(await connect(ws_url(server, query=f"token={mint_token(secret, 'erin', 60)}")))
    await by_token.request("join_room", {"room": "lobby"})  # the token has no rooms: any room
    await by_token.request("send_message", {"room": "lobby", "message": "hi"})
    assert (await by_token.recv_type("new_message"))["payload"]["from"] == "erin"
    assert await status_of(ws_url(server, query="token=forged")) == 401
    assert await status_of(ws_url(server, query="ticket=unknown")) == 401
    assert app.requests == []
    by_cookie = EventClient(await connect(ws_url(server), additional_headers=cookie("s-alice")))
    await by_cookie.join("team-x")
    assert len(app.requests) == 1
    await by_token.close()
    await by_cookie.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--connect-proxy", "ftp://app/hubbub"], "--connect-proxy must be an http:// or https:// URL"),
        (["--publish-proxy", "app:8000"], "--publish-proxy must be an http:// or https:// URL"),
        (["--proxy-timeout", "0"], "--proxy-timeout must be more than 0"),
        (["--proxy-timeout", "9"], "at most 5 seconds"),
        (["--proxy-max-waiting", "0"], "must be a positive integer"),
        (["--proxy-header", "Bad Header"], "--proxy-header must be an HTTP header name"),
        (["--connect-proxy", "http://app/c"], "hubbub serve: --connect-proxy needs --webhook-secret"),
        (["--publish-proxy", "http://app/p"], "hubbub serve: --publish-proxy needs --webhook-secret"),
        (["--rpc-proxy", "http://app/r"], "hubbub serve: --rpc-proxy needs --webhook-secret"),
        (["--rpc-proxy", "app:8000"], "--rpc-proxy must be an http:// or https:// URL"),
    ],
)
def test_bad_proxy_flags_get_a_message_and_exit_2(args: list[str], message: str) -> None:
    """A proxy without --webhook-secret is refused as --webhook is: the app could not tell hubbub's
    requests from anyone's (no unsigned request is ever sent)."""
    env = {k: v for k, v in os.environ.items() if k != "HUBBUB_WEBHOOK_SECRET"}
    out = subprocess.run(
        [sys.executable, "-m", "hubbub", "serve", *args], capture_output=True, text=True, timeout=30, env=env
    )
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr and out.stderr.count("\n") == 1


def test_proxy_flags_becomesettings_from() -> None:
    flags = "--connect-proxy http://app/c --publish-proxy https://app/p --proxy-timeout 2.5 --webhook-secret s"
    flags += " --proxy-header Cookie --proxy-header X-Session --proxy-max-waiting 9 --rpc-proxy http://app/r"
    args = build_parser().parse_args(["serve", *flags.split()])
    s = settings_from(args)
    assert s.rpc_proxy == "http://app/r"
    assert (s.connect_proxy, s.publish_proxy, s.proxy_timeout) == ("http://app/c", "https://app/p", 2.5)
    assert (s.proxy_headers, s.proxy_max_waiting) == (("Cookie", "X-Session"), 9)
    default = settings_from(build_parser().parse_args(["serve"]))
    assert (default.connect_proxy, default.proxy_headers, default.proxy_timeout) == (
        "",
        ("Cookie", "Authorization"),
        1.0,
    )
