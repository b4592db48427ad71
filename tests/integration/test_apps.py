"""Apps on the library: `serve --app`, `--static`, hooks, replacing a built-in, presence events off.

The `--app` tests run `hubbub serve` as a real process in `tmp_path` (the app
module is written there); the rest run a `Server` on loopback in the test's loop.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from hubbub import Connection, ErrorCode, EventError, Hub, Refused, Settings
from hubbub.errors import ConfigError
from hubbub.integration.apps import load_app
from hubbub.protocol.events import SendMessage
from tests.cluster import free_port
from tests.conftest import ServerFactory
from tests.helpers import EventClient, eventually, ws_url
from tests.integration.test_cli import _wait_listening
from tests.integration.test_http import http_get

DOCS = Path(__file__).parents[2] / "docs" / "apps.md"
SRC = str(Path(__file__).parents[2] / "src")


def _docs_example() -> str:
    text = DOCS.read_text()
    match = re.search(r"<!-- example: quiz.py -->\n```python\n(.*?)```", text, re.S)
    assert match is not None
    return match.group(1)


def _serve(cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-m", "hubbub", "serve", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


async def _stop(proc: subprocess.Popen[bytes]) -> bytes:
    proc.terminate()
    await asyncio.to_thread(proc.wait, 10)
    assert proc.stdout is not None
    return proc.stdout.read()


async def test_docs_example_runs_under_serve_app(tmp_path: Path) -> None:
    (tmp_path / "quiz.py").write_text(_docs_example())
    port = free_port()
    proc = _serve(tmp_path, "--app", "quiz:hub", "--port", str(port), "--no-presence-events")
    try:
        await _wait_listening(port, proc)
        url = f"ws://127.0.0.1:{port}/ws"
        alice = await EventClient.open(url + "?name=alice")
        welcome = await alice.recv()
        assert welcome == {"type": "welcome", "payload": {"rooms": ["lobby"]}}
        reply = await alice.request("answer", {"room": "lobby", "text": "42"})
        assert reply["payload"] == {"score": 1}
        message = await alice.recv_type("new_message")
        assert message["payload"]["message"] == {"answer": "42"}
        forbidden = await alice.request("join_room", {"room": "staff-only"})
        assert forbidden["payload"]["code"] == "forbidden"
        mallory = await EventClient.open(url + "?name=mallory")
        await asyncio.wait_for(mallory.ws.wait_closed(), 5)
        assert mallory.ws.close_code == 4003
        await alice.close()
    finally:
        out = await _stop(proc)
    assert b"alice left with 1000, score 1" in out
    assert proc.returncode == 0


FACTORY = """
from hubbub import Hub, Settings

def make(settings: Settings) -> Hub:
    hub = Hub(settings)

    @hub.on("where")
    def where(payload: object, conn: object) -> dict[str, object]:
        return {"port": settings.port, "rate_limit": hub.settings.rate_limit}

    return hub
"""


async def test_factory_gets_the_command_line_settings(tmp_path: Path) -> None:
    (tmp_path / "factory_app.py").write_text(FACTORY)
    port = free_port()
    proc = _serve(tmp_path, "--app", "factory_app:make", "--port", str(port), "--rate-limit", "7")
    try:
        await _wait_listening(port, proc)
        client = await EventClient.open(f"ws://127.0.0.1:{port}/ws")
        assert (await client.request("where", {}))["payload"] == {"port": port, "rate_limit": 7.0}
        await client.close()
    finally:
        await _stop(proc)


BAD_APP = """
from hubbub import Hub
hub = Hub()
not_a_hub = 3
def returns_int() -> int:
    return 1
def raises() -> Hub:
    raise RuntimeError("no database")
"""


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("badapp", "MODULE:ATTR"),
        ("badapp:", "MODULE:ATTR"),
        (":hub", "MODULE:ATTR"),
        ("nosuchmodule:hub", "no module named 'nosuchmodule'"),
        ("badapp:nothing", "has no attribute 'nothing'"),
        ("badapp:not_a_hub", "not a Hub"),
        ("badapp:returns_int", "returned a int, not a Hub"),
        ("badapp:raises", "RuntimeError: no database"),
        ("broken:hub", "importing 'broken' failed: ZeroDivisionError"),
    ],
)
async def test_bad_app_is_one_line_and_exit_2(tmp_path: Path, spec: str, says: str) -> None:
    (tmp_path / "badapp.py").write_text(BAD_APP)
    (tmp_path / "broken.py").write_text("x = 1 / 0\n")
    proc = _serve(tmp_path, "--app", spec, "--port", str(free_port()))
    _, err = await asyncio.to_thread(proc.communicate, None, 20)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines


def test_factory_without_argument_and_dotted_attribute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "noarg_app.py").write_text(
        "from hubbub import Hub\nclass Holder:\n    hub = Hub()\ndef make():\n    return Hub()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert isinstance(load_app("noarg_app:make", Settings()), Hub)
    assert isinstance(load_app("noarg_app:Holder.hub", Settings()), Hub)
    with pytest.raises(ConfigError):
        load_app("noarg_app:Holder.nope", Settings())


# ---- --static ---------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "css").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "index.html").write_text("<h1>my app</h1>")
    (root / "css" / "app.css").write_text("body { color: red }")
    (root / "docs" / "index.html").write_text("docs index")
    (root / "healthz").write_text("shadowed")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (root / "leakdir").symlink_to(tmp_path)
    return root


async def _raw_get(port: int, target: bytes, method: bytes = b"GET") -> tuple[int, bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1:" + str(port).encode() + b"\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]) if head else 0, head, body


async def test_static_serves_files_with_their_types(make_server: ServerFactory, site: Path) -> None:
    server = await make_server(static_dir=str(site))
    status, head, body = await _raw_get(server.port, b"/")
    assert status == 200 and body == b"<h1>my app</h1>" and b"text/html; charset=utf-8" in head
    status, head, body = await _raw_get(server.port, b"/css/app.css")
    assert status == 200 and body == b"body { color: red }"
    assert b"Content-Type: text/css; charset=utf-8" in head and b"nosniff" in head
    assert (await http_get(server.port, "/docs"))[1] == b"docs index"
    assert (await http_get(server.port, "/docs/"))[1] == b"docs index"
    assert await http_get(server.port, "/healthz") == (200, b"ok\n")  # the route keeps priority
    assert (await http_get(server.port, "/metrics"))[0] == 200
    assert (await http_get(server.port, "/missing.js"))[0] == 404
    for method in (b"POST", b"HEAD"):  # GET only (picows itself refuses other methods with 400)
        status, _, body = await _raw_get(server.port, b"/", method)
        assert status in (400, 405) and b"my app" not in body
    client = await EventClient.open(ws_url(server))
    assert (await client.join("r"))["type"] == "ack"
    await client.close()


@pytest.mark.parametrize(
    "target",
    [
        b"/../secret.txt",
        b"/css/../../secret.txt",
        b"/%2e%2e/secret.txt",
        b"/%2E%2E/secret.txt",
        b"/%2e%2e%2fsecret.txt",
        b"/css/..%2f..%2fsecret.txt",
        b"/%252e%252e/secret.txt",
        b"/..%5csecret.txt",
        b"/leak.txt",
        b"/leakdir/secret.txt",
        b"//etc/passwd",
        b"/%2fetc%2fpasswd",
        b"/index.html%00.css",
        b"/%ff%fe",
    ],
)
async def test_static_never_leaves_its_directory(make_server: ServerFactory, site: Path, target: bytes) -> None:
    server = await make_server(static_dir=str(site))
    status, _, body = await _raw_get(server.port, target)
    assert status in (400, 403, 404), (status, body)
    assert b"SECRET" not in body and b"root:" not in body


async def test_without_static_the_chat_page_is_served(server: Any) -> None:
    status, body = await http_get(server.port, "/")
    assert status == 200 and b"<title>hubbub chat</title>" in body


async def test_static_bad_directory_is_exit_2(tmp_path: Path) -> None:
    proc = _serve(tmp_path, "--static", str(tmp_path / "nope"), "--port", str(free_port()))
    _, err = await asyncio.to_thread(proc.communicate, None, 20)
    assert proc.returncode == 2 and len(err.decode().strip().splitlines()) == 1


# ---- hooks ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_on_connect_joins_and_sets_data_on_disconnect_sees_code(make_server: ServerFactory, kind: str) -> None:
    hub = Hub(Settings(port=0))
    gone: list[tuple[str | None, int, set[str], dict[str, Any]]] = []

    if kind == "async":

        @hub.on_connect
        async def connect(conn: Connection) -> None:
            await asyncio.sleep(0.01)
            conn.data["seen"] = True
            await conn.join("home")

        @hub.on_disconnect
        async def disconnect(conn: Connection, code: int) -> None:
            rooms = set(conn.rooms)  # an async hook's body starts after the rooms were left
            await asyncio.sleep(0)
            gone.append((conn.identity, code, rooms, dict(conn.data)))
    else:

        @hub.on_connect
        def connect(conn: Connection) -> None:
            conn.data["seen"] = True
            conn.send("hello", {"id": conn.id})

        @hub.on_disconnect
        def disconnect(conn: Connection, code: int) -> None:
            gone.append((conn.identity, code, set(conn.rooms), dict(conn.data)))

    @hub.on("mine")
    def mine(payload: object, conn: Connection) -> dict[str, Any]:
        return {"rooms": sorted(conn.rooms), "data": conn.data}

    server = await make_server(hub)
    client = await EventClient.open(ws_url(server, query="name=ann"))
    reply = await client.request("mine", {})  # sent at once: waits behind an async hook
    expected_rooms = ["home"] if kind == "async" else []
    assert reply["payload"] == {"rooms": expected_rooms, "data": {"seen": True}}
    await client.ws.close(code=4321)
    await eventually(lambda: bool(gone))
    assert gone == [("ann", 4321, set(expected_rooms if kind == "sync" else ()), {"seen": True})]


@pytest.mark.parametrize("how", ["return", "raise", "async-raise"])
async def test_on_connect_refuses_with_an_application_close_code(make_server: ServerFactory, how: str) -> None:
    hub = Hub(Settings(port=0))
    codes: list[int] = []

    if how == "return":

        @hub.on_connect
        def refuse(conn: Connection) -> int:
            return 4001
    elif how == "raise":

        @hub.on_connect
        def refuse(conn: Connection) -> None:
            raise Refused(4001, "no entry")
    else:

        @hub.on_connect
        async def refuse(conn: Connection) -> None:
            await asyncio.sleep(0)
            raise Refused(4001, "no entry")

    hub.on_disconnect(lambda conn, code: codes.append(code))
    server = await make_server(hub)
    client = await EventClient.open(ws_url(server))
    with pytest.raises(ConnectionClosed):
        await client.recv()
    assert client.ws.close_code == 4001
    await eventually(lambda: codes == [4001])


async def test_a_failing_on_connect_closes_with_1011(make_server: ServerFactory) -> None:
    hub = Hub(Settings(port=0))
    hub.on_connect(lambda conn: 1 / 0)
    server = await make_server(hub)
    client = await EventClient.open(ws_url(server))
    await asyncio.wait_for(client.ws.wait_closed(), 5)
    assert client.ws.close_code == 1011


async def test_connection_close_sends_application_codes(make_server: ServerFactory) -> None:
    hub = Hub(Settings(port=0))

    @hub.on("kick")
    def kick(payload: object, conn: Connection) -> None:
        conn.close(4999, "kicked")

    server = await make_server(hub)
    client = await EventClient.open(ws_url(server))
    await client.send("kick", {})
    await asyncio.wait_for(client.ws.wait_closed(), 5)
    assert client.ws.close_code == 4999 and client.ws.close_reason == "kicked"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_authorize_join(make_server: ServerFactory, kind: str) -> None:
    hub = Hub(Settings(port=0))

    def judge(conn: Connection, room: str) -> bool:
        if room == "vault":
            raise EventError(ErrorCode.LIMIT_EXCEEDED, "the vault is full")
        return room != "secret"

    async def judge_async(conn: Connection, room: str) -> bool:
        await asyncio.sleep(0)
        return judge(conn, room)

    hub.authorize_join(judge_async if kind == "async" else judge)
    server = await make_server(hub)
    client = await EventClient.open(ws_url(server))
    refused = await client.request("join_room", {"room": "secret"})
    assert refused["type"] == "error" and refused["payload"]["code"] == "forbidden"
    assert (await client.request("join_room", {"room": "vault"}))["payload"]["code"] == "limit_exceeded"
    assert not server.hub.rooms and not server.hub.room_table.subscribed
    assert (await client.join("open"))["payload"]["room"] == "open"
    await client.close()


def test_a_hook_kind_is_registered_once() -> None:
    hub = Hub()
    hub.on_connect(lambda conn: None)
    with pytest.raises(ValueError, match="on_connect"):
        hub.on_connect(lambda conn: None)


# ---- replacing a built-in, presence events --------------------------------------


async def test_an_app_replaces_send_message(make_server: ServerFactory) -> None:
    hub = Hub(Settings(port=0))

    @hub.on("send_message", SendMessage)
    def shout(payload: SendMessage, conn: Connection) -> dict[str, Any]:
        loud = str(msgspec.json.decode(payload.message)).upper()
        offset = conn.publish(payload.room, loud, conn.identity or "anonymous")
        assert isinstance(offset, int)
        return {"room": payload.room, "offset": offset, "shouted": True}

    with pytest.raises(ValueError, match="already registered"):
        hub.on("send_message", SendMessage)(shout)
    server = await make_server(hub)
    client = await EventClient.open(ws_url(server))
    await client.join("r")
    reply = await client.request("send_message", {"room": "r", "message": "hi"})
    assert reply["payload"] == {"room": "r", "offset": 1, "shouted": True}
    assert (await client.recv_type("new_message"))["payload"]["message"] == "HI"
    await client.close()


def test_two_app_handlers_for_one_type_are_an_error() -> None:
    hub = Hub()
    hub.on("custom")(lambda p, c: None)
    with pytest.raises(ValueError, match="already registered"):
        hub.on("custom")(lambda p, c: None)


@pytest.mark.parametrize("how", ["settings", "hub"])
async def test_presence_events_off(make_server: ServerFactory, how: str) -> None:
    if how == "settings":
        hub = Hub(Settings(port=0, presence_events=False))
    else:
        hub = Hub(Settings(port=0), presence_events=False)
        hub.configure(Settings(port=0))  # the app's choice survives the CLI's settings
    server = await make_server(hub)
    a = await EventClient.open(ws_url(server, query="name=a"))
    b = await EventClient.open(ws_url(server, query="name=b"))
    await a.join("r")
    await b.join("r")
    presence = await a.request("get_presence", {"room": "r"})
    assert {m["name"] for m in presence["payload"]["members"]} == {"a", "b"}
    await b.close()
    await a.request("send_message", {"room": "r", "message": "last"})
    first = await a.recv()  # with events on: member_joined (a), member_joined (b), member_left (b) first
    assert first["type"] == "new_message"
    await a.close()
