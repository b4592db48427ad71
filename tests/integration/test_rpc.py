"""The `rpc` event on real sockets: in-process methods (`@hub.rpc`), the RPC proxy (`--rpc-proxy`), both.

The proxy's app is a small HTTP server in the test (tests/app_server.py). Hostile apps (trickle, 1 GB,
redirect, hang) are in tests/integration/test_hostile_integrations.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from hubbub.auth.signing import HEADER, verify
from hubbub.client import client as hubbub_client
from hubbub.core.connection import Connection
from hubbub.core.hub import Hub
from hubbub.core.settings import Settings
from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.server.server import Server
from tests.app_server import Answer, AppServer, Request, reply
from tests.cluster import free_port
from tests.conftest import ServerFactory
from tests.helpers import EventClient, ws_url

SECRET = "rpc-webhook-secret"


async def methods(request: Request) -> Answer:
    """The app's RPC endpoint: each method answers as its name says (any other name: 418)."""
    body = request.json()
    method, data = body["method"], body["data"]
    if method == "echo":
        return reply(200, {"data": data})
    if method == "whoami":
        return reply(200, {"data": {"user": body["user"], "client": body["client"], "info": body.get("info")}})
    if method == "secret":
        return reply(403, {"error": "no"})
    if method == "slow":
        await asyncio.sleep(30)
    if method == "sleep":
        await asyncio.sleep(data)
        return reply(200, {"data": data})
    if method == "double":
        return reply(200, {"data": data * 2})
    if method == "nodata":
        return reply(200, {"result": 1})
    if method == "notjson":
        return reply(200, b"<html>oops</html>")
    return reply(418, {})


@pytest.fixture
async def app() -> AsyncIterator[AppServer]:
    server = await AppServer(methods).start()
    yield server
    await server.close()


def calls(server: Server, outcome: str) -> float:
    value = server.hub.metrics.registry.get_sample_value(
        "hubbub_proxy_calls_total", {"proxy": "rpc", "outcome": outcome}
    )
    return value or 0.0


async def call(client: EventClient, method: Any, data: Any = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"method": method}
    if data is not None:
        payload["data"] = data
    return await client.request("rpc", payload)


def code(answer: dict[str, Any]) -> str:
    assert answer["type"] == "error", answer
    result: str = answer["payload"]["code"]
    return result


# ---- the proxy ----------------------------------------------------------------------------------


async def test_rpc_proxy_answers_refuses_and_fails_with_the_contracts_codes(
    make_server: ServerFactory, app: AppServer
) -> None:
    server: Server = await make_server(webhook_secret=SECRET, rpc_proxy=app.url("/rpc"))
    client = await EventClient.open(ws_url(server, query="name=carol"))

    answer = await call(client, "echo", {"a": [1, 2, {"b": None}]})
    assert answer["type"] == "ack" and answer["payload"] == {"data": {"a": [1, 2, {"b": None}]}}
    asked = app.requests[-1]
    assert asked.json()["user"] == "carol" and asked.json()["method"] == "echo"
    assert verify(SECRET, asked.body, asked.headers[HEADER.lower()])  # signed as the other proxies
    assert (await call(client, "echo"))["payload"] == {"data": None}  # no data: null, passed on as null
    who = await call(client, "whoami")
    assert who["payload"]["data"]["user"] == "carol" and who["payload"]["data"]["client"].startswith("127.0.0.1:")

    assert code(await call(client, "secret")) == "forbidden"
    for failing in ("teapot", "nodata", "notjson"):  # any other status, no `data`, not JSON
        assert code(await call(client, failing)) == "unavailable", failing
    for bad in (None, 7, "", "x" * 129, ["echo"]):  # not a string of 1-128 characters: not sent to the app
        asked_before = len(app.requests)
        answer = await client.request("rpc", {"data": 1} if bad is None else {"method": bad})
        assert code(answer) == "bad_payload" and len(app.requests) == asked_before, bad
    assert calls(server, "accepted") == 3 and calls(server, "refused") == 1
    assert calls(server, "unexpected_status") == 1 and calls(server, "malformed_answer") == 2
    # the connection lives on
    assert (await call(client, "echo", "still here"))["payload"] == {"data": "still here"}
    await client.close()


async def test_rpc_proxy_timeout_and_unreachable_are_unavailable(make_server: ServerFactory, app: AppServer) -> None:
    server: Server = await make_server(webhook_secret=SECRET, rpc_proxy=app.url("/rpc"), proxy_timeout=0.5)
    client = await EventClient.open(ws_url(server, query="name=carol"))
    started = time.monotonic()
    assert code(await call(client, "slow")) == "unavailable"
    assert time.monotonic() - started < 0.5 + 2.0
    assert calls(server, "timeout") == 1
    await client.close()

    down: Server = await make_server(webhook_secret=SECRET, rpc_proxy=f"http://127.0.0.1:{free_port()}/rpc")
    client = await EventClient.open(ws_url(down, query="name=carol"))
    assert code(await call(client, "echo", 1)) == "unavailable"
    await client.close()


async def test_rpc_without_an_id_is_called_and_not_answered(make_server: ServerFactory, app: AppServer) -> None:
    """A call without an `id` is a notification: the app is called, the client gets no `ack`."""
    server: Server = await make_server(webhook_secret=SECRET, rpc_proxy=app.url("/rpc"))
    client = await EventClient.open(ws_url(server, query="name=carol"))
    await client.send("rpc", {"method": "echo", "data": "fire and forget"})
    answer = await call(client, "echo", "next")  # answered after the first: one call at a time per connection
    assert answer["payload"] == {"data": "next"}
    assert [r.json()["data"] for r in app.requests] == ["fire and forget", "next"]
    with pytest.raises(TimeoutError):
        await client.recv(timeout=0.3)  # nothing else came
    await client.close()


async def test_rpc_calls_keep_the_clients_order_and_slow_only_their_caller(
    make_server: ServerFactory, app: AppServer
) -> None:
    server: Server = await make_server(webhook_secret=SECRET, rpc_proxy=app.url("/rpc"), proxy_timeout=5)
    slow = await EventClient.open(ws_url(server, query="name=slow"))
    quick = await EventClient.open(ws_url(server, query="name=quick"))
    for n, delay in enumerate((1.5, 0.0, 0.2)):  # answered in 1.7 s, in order
        await slow.send("rpc", {"method": "sleep", "data": delay}, n)
    started = time.monotonic()
    for _ in range(5):
        assert (await call(quick, "echo", 1))["type"] == "ack"
    assert time.monotonic() - started < 1.0  # not behind slow's calls
    ids = [(await slow.recv_type("ack"))["id"] for _ in range(3)]
    assert ids == [0, 1, 2]
    await slow.close()
    await quick.close()


async def test_rpc_calls_waiting_on_the_app_are_bounded_per_node(make_server: ServerFactory, app: AppServer) -> None:
    """Past `--proxy-max-waiting` calls in flight across the node, the next is `unavailable` at once."""
    server: Server = await make_server(
        webhook_secret=SECRET, rpc_proxy=app.url("/rpc"), proxy_max_waiting=3, proxy_timeout=5
    )
    waiting = [await EventClient.open(ws_url(server, query=f"name=w{n}")) for n in range(3)]
    for client in waiting:
        await client.send("rpc", {"method": "sleep", "data": 1.0}, "held")
    late = await EventClient.open(ws_url(server, query="name=late"))
    for _ in range(100):
        if len(app.requests) == 3:
            break
        await asyncio.sleep(0.01)
    started = time.monotonic()
    assert code(await call(late, "echo", 1)) == "unavailable"
    assert time.monotonic() - started < 0.8  # at once, not after the held calls' second
    assert calls(server, "too_many_waiting") == 1
    for client in waiting:
        assert (await client.recv_type("ack"))["payload"] == {"data": 1.0}
    assert (await call(late, "echo", 2))["payload"] == {"data": 2}  # the places are free again
    for client in [*waiting, late]:
        await client.close()


# ---- in-process methods -------------------------------------------------------------------------


def rpc_app() -> Hub:
    hub = Hub(Settings(port=0, max_message_size=4096))

    @hub.rpc("add")
    def add(conn: Connection, data: Any) -> Any:
        return {"sum": data["a"] + data["b"], "user": conn.identity}

    @hub.rpc("later")
    async def later(conn: Connection, data: Any) -> Any:
        await asyncio.sleep(0.01)
        return data

    @hub.rpc("admin")
    def admin(conn: Connection, data: Any) -> Any:
        if conn.identity != "root":
            raise EventError(ErrorCode.FORBIDDEN, "admins only")
        return "ok"

    @hub.rpc("big")
    def big(conn: Connection, data: Any) -> Any:
        return "x" * 5000

    @hub.rpc("broken")
    def broken(conn: Connection, data: Any) -> Any:
        return {"a": data["missing"]}

    return hub


async def test_in_process_methods_answer_refuse_and_fail(make_server: ServerFactory) -> None:
    server = await make_server(rpc_app())
    client = await EventClient.open(ws_url(server, query="name=carol"))
    assert (await call(client, "add", {"a": 2, "b": 3}))["payload"] == {"data": {"sum": 5, "user": "carol"}}
    assert (await call(client, "later", [1, "two"]))["payload"] == {"data": [1, "two"]}
    assert code(await call(client, "admin")) == "forbidden"
    assert code(await call(client, "big")) == "unavailable"  # over --max-message-size
    assert code(await call(client, "broken", {})) == "internal"  # the app's bug: logged, the client told
    assert code(await call(client, "nowhere")) == "bad_payload"  # no such method, and no proxy
    assert (await call(client, "add", {"a": 1, "b": 1}))["type"] == "ack"
    await client.close()


async def test_in_process_methods_come_before_the_proxy(make_server: ServerFactory, app: AppServer) -> None:
    hub = rpc_app()
    hub.configure(Settings(port=0, webhook_secret=SECRET, rpc_proxy=app.url("/rpc")))
    server = await make_server(hub)
    client = await EventClient.open(ws_url(server, query="name=carol"))
    assert (await call(client, "add", {"a": 1, "b": 2}))["payload"]["data"]["sum"] == 3
    assert app.requests == []
    assert (await call(client, "echo", "via the app"))["payload"] == {"data": "via the app"}
    assert len(app.requests) == 1
    await client.close()


def test_a_method_name_is_registered_once() -> None:
    hub = Hub()
    hub.rpc("m")(lambda conn, data: None)
    with pytest.raises(ValueError, match="already registered"):
        hub.rpc("m")(lambda conn, data: None)
    with pytest.raises(ValueError, match="1 to 128"):
        hub.rpc("")(lambda conn, data: None)


# ---- bounds -------------------------------------------------------------------------------------


async def flood_until_closed(client: EventClient) -> None:
    """Send 300 calls at once, then read until the server closes (ConnectionClosed)."""
    for n in range(300):
        await client.send("rpc", {"method": "echo", "data": n}, n)
    while True:
        await client.recv(timeout=10)


async def test_rpc_spends_the_rate_limit_and_a_flood_leaves_others_served(
    make_server: ServerFactory, app: AppServer
) -> None:
    """100 calls at once over a budget of 5/s (burst 10): the ones past the burst are `rate_limited`
    without reaching the app; another client's calls go on being answered meanwhile. A flood that goes
    on (100 refusals in a row) is closed with 1008, as for any event."""
    server: Server = await make_server(webhook_secret=SECRET, rpc_proxy=app.url("/rpc"), rate_limit=5, rate_burst=10)
    flooder = await EventClient.open(ws_url(server, query="name=flood"))
    other = await EventClient.open(ws_url(server, query="name=other"))
    for n in range(100):
        await flooder.send("rpc", {"method": "echo", "data": n}, n)
    started = time.monotonic()
    assert (await call(other, "echo", "me"))["payload"] == {"data": "me"}
    assert time.monotonic() - started < 2.0
    codes: dict[str, int] = {}
    for _ in range(100):
        event = await flooder.recv(timeout=10)
        key = event["type"] if event["type"] == "ack" else event["payload"]["code"]
        codes[key] = codes.get(key, 0) + 1
    assert codes.get("rate_limited", 0) >= 80 and codes.get("ack", 0) <= 20, codes
    assert len([r for r in app.requests if r.json()["user"] == "flood"]) == codes["ack"]
    with pytest.raises(ConnectionClosed) as closed:
        await flood_until_closed(flooder)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert (await call(other, "echo", "still me"))["payload"] == {"data": "still me"}
    await other.close()


async def test_an_answer_over_the_message_size_is_unavailable(make_server: ServerFactory, app: AppServer) -> None:
    server: Server = await make_server(webhook_secret=SECRET, rpc_proxy=app.url("/rpc"), max_message_size=2048)
    client = await EventClient.open(ws_url(server, query="name=carol"))
    assert (await call(client, "echo", "x" * 1500))["type"] == "ack"
    # what a client could not send, it is not sent back either
    assert code(await call(client, "double", "x" * 1500)) == "unavailable"
    assert calls(server, "malformed_answer") == 1
    await client.close()


# ---- the Python client --------------------------------------------------------------------------


async def test_the_python_client_calls_and_raises_the_code(make_server: ServerFactory, app: AppServer) -> None:
    server: Server = await make_server(webhook_secret=SECRET, rpc_proxy=app.url("/rpc"))
    async with hubbub_client.connect(ws_url(server, query="name=carol")) as client:
        assert await client.rpc("echo", {"n": 1}) == {"n": 1}
        assert await client.rpc("echo") is None
        with pytest.raises(hubbub_client.RequestFailed) as refused:
            await client.rpc("secret", {})
        assert refused.value.code == "forbidden"
        with pytest.raises(hubbub_client.RequestFailed) as failed:
            await client.rpc("teapot")
        assert failed.value.code == "unavailable"
