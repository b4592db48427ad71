"""The server API on two nodes sharing a private Redis, as real processes: every call acts cluster-wide."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed

from tests.cluster import Node, RedisProcess
from tests.helpers import EventClient, eventually

pytestmark = pytest.mark.timeout(90)

KEY = "cluster-key-0123456789"
AUTH = {"Authorization": f"apikey {KEY}"}


@pytest.fixture
async def nodes(redis: RedisProcess) -> AsyncIterator[list[Node]]:
    started = [
        await Node(redis.url, "--api-key", KEY, "--presence-ttl", "3", node_id=f"node-{name}").start()
        for name in ("a", "b")
    ]
    yield started
    for node in started:
        node.stop()


def _api(node: Node) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}", headers=AUTH, timeout=10)


async def _event(client: EventClient, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Read until an event of `type_` with `payload` comes (others are skipped)."""
    while True:
        event = await client.recv_type(type_, timeout=10)
        if event["payload"] == payload:
            return event


async def _closed(client: EventClient) -> None:
    """Read until the server closes the connection."""
    while True:
        try:
            await client.recv(timeout=10)
        except ConnectionClosed:
            return


async def _until(check: Any, timeout: float = 10.0) -> Any:
    """Await `check()` until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.1)


async def test_every_call_reaches_the_other_node(nodes: list[Node]) -> None:
    a, b = nodes
    bob = await EventClient.open(b.url + "?name=bob")
    bob2 = await EventClient.open(b.url + "?name=bob")
    carol = await EventClient.open(a.url + "?name=carol")
    await bob.join("news")
    await carol.join("news")
    async with _api(a) as api:
        # publish and broadcast on A reach a member on B
        assert (await api.post("/api/publish", json={"room": "news", "message": "hi"})).json() == {"offset": 1}
        got = await bob.recv_type("new_message", timeout=10)
        assert got["payload"]["message"] == "hi" and got["payload"]["from"] == "server"
        offsets = (await api.post("/api/broadcast", json={"rooms": ["news", "other"], "message": 2})).json()
        assert offsets == {"offsets": {"news": 2, "other": 1}}
        assert (await bob.recv_type("new_message", timeout=10))["payload"]["offset"] == 2
        # subscribe on A joins both of bob's connections on B; carol on A sees him arrive
        assert (await api.post("/api/subscribe", json={"user": "bob", "room": "extra"})).status_code == 200
        for conn in (bob, bob2):
            assert (await conn.recv_type("subscribed", timeout=10))["payload"] == {"room": "extra", "offset": 0}
        await api.post("/api/subscribe", json={"user": "carol", "room": "extra"})
        await _event(carol, "subscribed", {"room": "extra", "offset": 0})
        await api.post("/api/publish", json={"room": "extra", "message": "x"})
        assert (await bob2.recv_type("new_message", timeout=10))["payload"]["room"] == "extra"
        # presence and rooms are cluster-wide
        members = (await api.get("/api/presence", params={"room": "extra"})).json()["members"]
        assert members == [{"name": "bob", "connections": 2}, {"name": "carol", "connections": 1}]
        rooms = (await api.get("/api/rooms")).json()["rooms"]
        assert rooms == [{"room": "extra", "members": 2}, {"room": "news", "members": 2}]
        history = (await api.get("/api/history", params={"room": "news", "since": 1})).json()
        assert [m["message"] for m in history["messages"]] == [2]

        # info lists both nodes with their numbers (B's report is at most a couple of seconds old)
        async def both() -> Any:
            info = (await api.get("/api/info")).json()
            return (
                info
                if info["nodes"]
                == [
                    {"id": "node-a", "connections": 1, "rooms": 2},
                    {"id": "node-b", "connections": 2, "rooms": 2},
                ]
                else None
            )

        await _until(both)
        # unsubscribe on A: bob leaves on B, carol hears he left
        await api.post("/api/unsubscribe", json={"user": "bob", "room": "extra"})
        for conn in (bob, bob2):
            await _event(conn, "unsubscribed", {"room": "extra"})
        await _event(carol, "member_left", {"room": "extra", "name": "bob"})
        # disconnect on A closes bob's connections on B
        await api.post("/api/disconnect", json={"user": "bob", "code": 4003, "reason": "bye"})
        for conn in (bob, bob2):
            await _closed(conn)
            assert conn.ws.close_code == 4003
        assert (await api.get("/api/presence", params={"room": "news"})).json()["members"] == [
            {"name": "carol", "connections": 1}
        ]
    await carol.close()


async def test_publish_is_one_redis_command_and_its_rate(redis: RedisProcess, nodes: list[Node]) -> None:
    """MONITOR around one call: the node sends Redis one command for the room (the publish script;
    the commands the script runs are Redis' own), in one pipeline. Then a short loop measures
    the calls one keep-alive client gets answered per second (printed)."""
    a, _ = nodes
    client = aioredis.Redis.from_url(redis.url)
    seen: list[str] = []
    async with _api(a) as api:
        await api.post("/api/publish", json={"room": "warm-up", "message": 0})  # the script is loaded
        async with client.monitor() as monitor:

            async def watch() -> None:
                async for command in monitor.listen():
                    if command.get("client_type") != "lua" and "round-trip" in command["command"]:
                        seen.append(command["command"])

            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0.3)
            reply = await api.post("/api/publish", json={"room": "round-trip", "message": "once"})
            assert reply.status_code == 200
            await asyncio.sleep(0.5)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        assert len(seen) == 1 and seen[0].startswith("EVALSHA"), seen
        count = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert (await api.post("/api/publish", json={"room": "rate", "message": count})).status_code == 200
            count += 1
        print(f"\napi publish, Redis broker, one keep-alive client: {count}/s")
        assert count > 20
    await client.aclose()


async def test_calls_answer_503_while_redis_is_down(redis: RedisProcess, nodes: list[Node]) -> None:
    a, _ = nodes
    async with _api(a) as api:
        assert (await api.get("/api/rooms")).status_code == 200
        redis.stop()
        await eventually(lambda: a.health() == 503, timeout=10)
        for method, path, body in (
            ("POST", "/api/publish", {"room": "r", "message": 1}),
            ("POST", "/api/disconnect", {"user": "u"}),
            ("GET", "/api/rooms", None),
            ("GET", "/api/info", None),
        ):
            reply = await api.request(method, path, json=body)
            assert reply.status_code == 503, (path, reply.text)
            assert reply.json()["error"]["code"] == "unavailable"
