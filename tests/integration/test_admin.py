"""The admin dashboard's HTTP side (`/admin`, `--admin-password`) on real sockets: off without the
password, the login and its bounds, the session cookie, what is refused without a session or a CSRF
token, live numbers, and the actions reaching real WebSocket clients, on one node and across two."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from hubbub.server import admin as admin_module
from hubbub.server.run import start_line
from hubbub.server.server import Server
from tests.cluster import Node, RedisProcess
from tests.conftest import ServerFactory
from tests.helpers import EventClient, eventually, ws_url

pytestmark = pytest.mark.timeout(60)

PASSWORD = "correct-horse-battery"
API_CALLS = ["session", "stats", "series", "rooms", "room?room=lobby", "find?name=bob"]
ACTIONS = [
    ("disconnect", {"user": "bob"}),
    ("remove", {"user": "bob", "room": "lobby"}),
    ("notice", {"room": "lobby", "text": "hello"}),
]


def _origin(port: int) -> dict[str, str]:
    return {"Origin": f"http://127.0.0.1:{port}"}


def _client(port: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)


async def _login(client: httpx.AsyncClient, port: int, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/admin/login", json={"password": password}, headers=_origin(port))


class Admin:
    """A logged-in dashboard session: its HTTP client (holding the cookie) and CSRF token."""

    def __init__(self, client: httpx.AsyncClient, port: int, csrf: str) -> None:
        self.client = client
        self.port = port
        self.csrf = csrf

    async def get(self, call: str) -> Any:
        response = await self.client.get(f"/admin/api/{call}")
        assert response.status_code == 200, response.text
        return response.json()

    async def act(self, call: str, body: dict[str, Any]) -> httpx.Response:
        headers = {**_origin(self.port), "X-CSRF-Token": self.csrf}
        return await self.client.post(f"/admin/api/{call}", json=body, headers=headers)


@pytest.fixture
async def admin_server(make_server: ServerFactory) -> Server:
    server: Server = await make_server(admin_password=PASSWORD, rate_limit=0)
    return server


@pytest.fixture
async def admin(admin_server: Server) -> AsyncIterator[Admin]:
    async with _client(admin_server.port) as client:
        response = await _login(client, admin_server.port)
        assert response.status_code == 200, response.text
        yield Admin(client, admin_server.port, response.json()["csrf"])


async def test_admin_is_404_without_the_password(server: Server) -> None:
    async with _client(server.port) as client:
        for path in ["/admin", "/admin/", "/admin/admin.js", "/admin/api/stats"]:
            assert (await client.get(path)).status_code == 404, path
        assert (await _login(client, server.port)).status_code == 404
        assert (await client.post("/admin/api/disconnect", json={"user": "bob"})).status_code == 404


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_short_password_is_one_line_and_exit_2(how: str) -> None:
    secret = "short-pw-1"
    args = ["--admin-password", secret] if how == "flag" else []
    env = {**os.environ, "HUBBUB_ADMIN_PASSWORD": secret} if how == "env" else dict(os.environ)
    command = [sys.executable, "-m", "hubbub", "serve", "--port", "0", *args]
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "must be at least 12 characters" in lines[0], out.stderr
    assert secret not in out.stderr  # the password is never shown


async def test_the_start_line_says_where_the_dashboard_is(admin_server: Server, server: Server) -> None:
    assert start_line(admin_server).endswith(f", admin at http://127.0.0.1:{admin_server.port}/admin")
    assert "admin" not in start_line(server)


async def test_the_page_is_served_with_a_strict_policy(admin_server: Server) -> None:
    async with _client(admin_server.port) as client:
        page = await client.get("/admin")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "http" not in page.text.replace("http-equiv", "")  # no absolute URL to anywhere
        script = await client.get("/admin/admin.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert "http://" not in script.text and "https://" not in script.text
        assert (await client.get("/admin/admin.css")).status_code == 200
        assert (await client.get("/admin/nothing-here")).status_code == 404


async def test_login_refused_then_accepted_with_the_cookie_flags(admin_server: Server) -> None:
    port = admin_server.port
    async with _client(port) as client:
        wrong = await _login(client, port, "not-the-password")
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        assert (await client.get("/admin/api/stats")).status_code == 401
        right = await _login(client, port)
        assert right.status_code == 200
        cookie = right.headers["set-cookie"]
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert cookie.startswith("hubbub_admin=v1.")
        assert {"httponly", "samesite", "path", "max-age"} <= flags and "secure" not in flags  # no TLS here
        assert "SameSite=Strict" in cookie and "Path=/admin" in cookie and "Max-Age=43200" in cookie
        assert PASSWORD not in cookie
        assert (await client.get("/admin/api/stats")).status_code == 200
        session = (await client.get("/admin/api/session")).json()
        assert session["csrf"] == right.json()["csrf"]
        # the logout: the cookie is cleared, and the old one is refused here
        old = client.cookies["hubbub_admin"]
        out = await client.post("/admin/logout", headers={**_origin(port), "X-CSRF-Token": session["csrf"]})
        assert out.status_code == 200 and "Max-Age=0" in out.headers["set-cookie"]
        replay = await client.get("/admin/api/stats", headers={"Cookie": f"hubbub_admin={old}"})
        assert replay.status_code == 401


async def test_no_password_reaches_the_log(make_server: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = await make_server(admin_password=PASSWORD)
    async with _client(server.port) as client:
        assert (await _login(client, server.port, "a-wrong-guess-here")).status_code == 401
        assert (await _login(client, server.port)).status_code == 200
        cookie = client.cookies["hubbub_admin"]
    ours = [record for record in caplog.records if record.name.startswith(("hubbub", "picows"))]  # not httpx's
    logged = "".join(f"{record.getMessage()} {record.__dict__}" for record in ours)
    assert "admin.login" in logged
    assert PASSWORD not in logged and "a-wrong-guess-here" not in logged and cookie not in logged


async def test_a_login_needs_an_origin_of_this_server(admin_server: Server) -> None:
    port = admin_server.port
    async with _client(port) as client:
        bare = await client.post("/admin/login", json={"password": PASSWORD})
        foreign = await client.post(
            "/admin/login", json={"password": PASSWORD}, headers={"Origin": "http://evil.example"}
        )
        assert bare.status_code == 403 and foreign.status_code == 403


async def test_behind_a_tls_proxy_the_allowed_origin_logs_in_with_a_secure_cookie(make_server: ServerFactory) -> None:
    """A TLS-terminating proxy forwards the page's `https://` origin: the rule of `/ws`
    (`--allowed-origin`) admits it, and the session's cookies are `Secure` although hubbub speaks HTTP."""
    public = "https://admin.example.com"
    server = await make_server(admin_password=PASSWORD, allowed_origins=(public,))
    async with _client(server.port) as client:
        login = await client.post("/admin/login", json={"password": PASSWORD}, headers={"Origin": public})
        assert login.status_code == 200, login.text
        parts = [part.strip() for part in login.headers["set-cookie"].split(";")]
        assert "Secure" in parts
        own = await client.post("/admin/login", json={"password": PASSWORD}, headers=_origin(server.port))
        assert own.status_code == 403  # not in the list: as for /ws


async def test_logins_are_limited_per_address(admin_server: Server) -> None:
    port = admin_server.port
    async with _client(port) as client:
        answers = [(await _login(client, port, f"guess-number-{i}")).status_code for i in range(10)]
        assert answers == [401] * 10
        limited = await _login(client, port)  # even the right password, now
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


async def test_data_is_refused_without_a_session(admin_server: Server) -> None:
    async with _client(admin_server.port) as client:
        for call in API_CALLS:
            assert (await client.get(f"/admin/api/{call}")).status_code == 401, call
        forged = {"Cookie": "hubbub_admin=v1.1.9999999999.x.AAAA"}
        for call in API_CALLS:
            assert (await client.get(f"/admin/api/{call}", headers=forged)).status_code == 401, call
        for call, body in ACTIONS:
            answer = await client.post(f"/admin/api/{call}", json=body, headers=_origin(admin_server.port))
            assert answer.status_code == 401, call


async def test_actions_need_the_csrf_token_and_a_same_origin(admin: Admin) -> None:
    client, port = admin.client, admin.port
    for call, body in ACTIONS:
        no_token = await client.post(f"/admin/api/{call}", json=body, headers=_origin(port))
        wrong = await client.post(f"/admin/api/{call}", json=body, headers={**_origin(port), "X-CSRF-Token": "x"})
        no_origin = await client.post(f"/admin/api/{call}", json=body, headers={"X-CSRF-Token": admin.csrf})
        other = await client.post(
            f"/admin/api/{call}",
            json=body,
            headers={"Origin": "http://127.0.0.1:1", "X-CSRF-Token": admin.csrf},
        )
        cross_site = await client.post(
            f"/admin/api/{call}",
            json=body,
            headers={**_origin(port), "X-CSRF-Token": admin.csrf, "Sec-Fetch-Site": "cross-site"},
        )
        codes = [r.status_code for r in (no_token, wrong, no_origin, other, cross_site)]
        assert codes == [403] * 5, (call, codes)
    assert (await admin.act("notice", {"room": "lobby", "text": "hello"})).status_code == 200


async def test_bad_action_bodies_are_400(admin: Admin) -> None:
    assert (await admin.act("disconnect", {"user": ""})).status_code == 400
    assert (await admin.act("remove", {"user": "bob"})).status_code == 400
    assert (await admin.act("notice", {"room": "lobby", "text": "x" * 2001})).status_code == 400
    assert (await admin.act("notice", {"room": "", "text": "hi"})).status_code == 400
    assert (await admin.act("nothing", {})).status_code == 404
    assert (await admin.client.get("/admin/api/find?name=")).status_code == 400


async def test_live_counts_change_when_clients_connect(admin_server: Server, admin: Admin) -> None:
    async def connections() -> int:
        return int((await admin.get("stats"))["totals"]["connections"])

    assert await connections() == 0
    clients = [await EventClient.open(ws_url(admin_server, query=f"name=user{i}")) for i in range(3)]
    await clients[0].join("lobby")
    for _ in range(50):
        if await connections() == 3:
            break
        await asyncio.sleep(0.1)
    assert await connections() == 3
    stats = await admin.get("stats")
    node = stats["nodes"][0]
    assert node["node"] == admin_server.hub.node_id and node["rss"] > 0 and node["at"] >= node["started"]
    rooms = await admin.get("rooms")
    assert rooms["rooms"][0]["room"] == "lobby" and rooms["rooms"][0]["members"] == 1
    series = (await admin.get("series"))["series"]
    assert len(series) >= 2 and series[-1][1] == 3.0
    for client in clients:
        await client.close()


async def test_rooms_have_message_rates(admin_server: Server, admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_module, "ROOMS_CACHE", 0.0)
    bob = await EventClient.open(ws_url(admin_server, query="name=bob"))
    await bob.join("lobby")
    first = (await admin.get("rooms"))["rooms"][0]
    assert first["room"] == "lobby" and first["rate"] is None  # nothing to compare with yet
    for k in range(20):
        await admin_server.hub.publish("lobby", k, "carol")
    await asyncio.sleep(0.2)
    rate = (await admin.get("rooms"))["rooms"][0]["rate"]
    assert 20 / 1.0 < rate < 20 / 0.2 + 1  # 20 messages in a little over 0.2 s
    await bob.close()


async def test_a_room_its_members_and_last_messages(admin_server: Server, admin: Admin) -> None:
    bob = await EventClient.open(ws_url(admin_server, query="name=bob"))
    await bob.join("lobby")
    await bob.send("send_message", {"room": "lobby", "message": {"text": "hi all"}})
    await bob.recv_type("new_message")
    room = await admin.get("room?room=lobby")
    assert [(m["name"], m["node"]) for m in room["members"]] == [("bob", admin_server.hub.node_id)]
    assert room["members"][0]["since"] > 0
    assert room["messages"][-1]["message"] == {"text": "hi all"} and room["messages"][-1]["from"] == "bob"
    found = await admin.get("find?name=BO")
    assert [c["user"] for c in found["connections"]] == ["bob"] and found["connections"][0]["rooms"] == ["lobby"]
    await bob.close()


async def test_disconnect_closes_the_users_socket(admin_server: Server, admin: Admin) -> None:
    bob = await EventClient.open(ws_url(admin_server, query="name=bob"))
    carol = await EventClient.open(ws_url(admin_server, query="name=carol"))
    assert (await admin.act("disconnect", {"user": "bob"})).status_code == 200
    with pytest.raises(ConnectionClosed) as closed:
        await bob.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    await eventually(lambda: len(admin_server.hub.connections) == 1)
    await carol.close()


async def test_remove_a_user_from_a_room(admin_server: Server, admin: Admin) -> None:
    bob = await EventClient.open(ws_url(admin_server, query="name=bob"))
    await bob.join("lobby")
    assert (await admin.act("remove", {"user": "bob", "room": "lobby"})).status_code == 200
    left = await bob.recv_type("unsubscribed")
    assert left["payload"] == {"room": "lobby"}
    await eventually(lambda: "lobby" not in admin_server.hub.rooms)
    await bob.close()


async def test_publish_a_notice_into_a_room(admin_server: Server, admin: Admin) -> None:
    bob = await EventClient.open(ws_url(admin_server, query="name=bob"))
    await bob.join("lobby")
    answer = await admin.act("notice", {"room": "lobby", "text": "maintenance at 10"})
    assert answer.status_code == 200 and answer.json()["offset"] >= 1
    got = await bob.recv_type("new_message")
    assert got["payload"]["from"] == "admin"
    assert got["payload"]["message"] == {"text": "maintenance at 10", "notice": True}
    await bob.close()


async def test_a_session_is_accepted_by_another_node_with_the_same_password(make_server: ServerFactory) -> None:
    a = await make_server(admin_password=PASSWORD)
    b = await make_server(admin_password=PASSWORD)
    c = await make_server(admin_password="another-password-12")
    async with _client(a.port) as client:
        assert (await _login(client, a.port)).status_code == 200
        cookie = {"Cookie": f"hubbub_admin={client.cookies['hubbub_admin']}"}
    async with _client(b.port) as other:
        assert (await other.get("/admin/api/stats", headers=cookie)).status_code == 200
    async with _client(c.port) as foreign:
        assert (await foreign.get("/admin/api/stats", headers=cookie)).status_code == 401


@pytest.fixture
async def nodes(redis: RedisProcess) -> AsyncIterator[list[Node]]:
    started = [
        await Node(redis.url, "--admin-password", PASSWORD, "--presence-ttl", "3", node_id=f"node-{name}").start()
        for name in ("a", "b")
    ]
    yield started
    for node in started:
        node.stop()


async def test_two_nodes_one_dashboard(nodes: list[Node]) -> None:
    """A dashboard on node A sees node B's numbers and members, and its disconnect closes a socket on B."""
    a, b = nodes
    bob = await EventClient.open(b.url + "?name=bob")
    await bob.join("lobby")
    async with _client(a.port) as client:
        login = await _login(client, a.port)
        admin = Admin(client, a.port, login.json()["csrf"])
        for _ in range(60):
            stats = await admin.get("stats")
            if len(stats["nodes"]) == 2 and stats["totals"]["connections"] == 1:
                break
            await asyncio.sleep(0.1)
        assert sorted(n["node"] for n in stats["nodes"]) == ["node-a", "node-b"]
        assert stats["totals"]["connections"] == 1
        room = await admin.get("room?room=lobby")
        assert [(m["name"], m["node"]) for m in room["members"]] == [("bob", "node-b")]
        assert abs(room["members"][0]["since"] - time.time()) < 60  # known on another node too
        rooms = await admin.get("rooms")
        assert [(r["room"], r["members"], r["here"]) for r in rooms["rooms"]] == [("lobby", 1, 0)]
        assert (await admin.act("disconnect", {"user": "bob"})).status_code == 200
        with pytest.raises(ConnectionClosed):
            await _read_until_closed(bob)


async def _read_until_closed(client: EventClient) -> None:
    while True:
        await client.recv(timeout=10)


async def _raw(port: int, request: bytes) -> bytes:
    """One raw request (bytes as given, not as an HTTP library would clean them) and the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_a_cookie_with_non_ascii_bytes_is_401_not_a_traceback(
    admin_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """A forged cookie whose MAC part holds bytes past ASCII: `hmac.compare_digest` refuses to compare
    such a str (TypeError); the answer must be the 401 of any bad cookie, with nothing in the log."""
    port = admin_server.port
    caplog.set_level(logging.DEBUG)
    for cookie in (b"v1.1.1.x.-.\xe9\xe9", b"v1.\xe9.1.x.-.AAAA"):
        answer = await _raw(
            port,
            b"GET /admin/api/stats HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nCookie: hubbub_admin=%s\r\n"
            b"Connection: close\r\n\r\n" % (port, cookie),
        )
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
