"""Logins and tickets on real sockets: `POST /login`, single-use tickets on `/ws`, and their bounds."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hubbub.auth.logins import LOGIN_BURST
from hubbub.auth.passwords import hash_password
from hubbub.backends.redis import RedisBroker
from hubbub.backends.redis_pool import connect_redis
from hubbub.backends.tickets import RedisTickets
from hubbub.core.hub import Hub
from hubbub.core.settings import Settings
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import EventClient, ws_url
from tests.integration.test_tls import tls_files as tls_files  # the module's self-signed certificate

REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORDS = {"ada": "correct horse", "bob": "hunter2"}


@pytest.fixture(scope="module")
def users_text() -> str:
    return "".join(f"{name}:{hash_password(pw)}\n" for name, pw in PASSWORDS.items())


@pytest.fixture
def users_file(tmp_path: Path, users_text: str) -> str:
    path = tmp_path / "users"
    path.write_text("# hubbub users\n\n" + users_text)
    return str(path)


async def post(port: int, body: bytes, headers: str = "", path: str = "/login") -> tuple[int, bytes]:
    """One raw HTTP/1.1 POST; the status and body of its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    writer.write(head.encode() + body)
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head_bytes, _, answer = data.partition(b"\r\n\r\n")
    return int(head_bytes.split()[1]), answer


async def login(port: int, name: str = "ada", password: str | None = None) -> str:
    status, body = await post(port, json.dumps({"username": name, "password": password or PASSWORDS[name]}).encode())
    assert status == 200, (status, body)
    reply = json.loads(body)
    assert reply["ticket"] == reply["otp"] and reply["expires_in"] > 0
    ticket: str = reply["ticket"]
    return ticket


async def refused(url: str) -> int:
    with pytest.raises(InvalidStatus) as caught:
        await connect(url)
    return caught.value.response.status_code


def test_hash_password_round_trip() -> None:
    for given in (b"s3cret pass\n", b"s3cret pass"):
        out = subprocess.run([sys.executable, "-m", "hubbub", "hash-password"], input=given, capture_output=True)
        assert out.returncode == 0, out.stderr
        hashed = out.stdout.decode().strip()
        assert hashed.startswith("$argon2id$") and "\n" not in hashed
        assert PasswordHasher().verify(hashed, "s3cret pass")
    empty = subprocess.run([sys.executable, "-m", "hubbub", "hash-password"], input=b"\n", capture_output=True)
    assert empty.returncode == 2 and len(empty.stderr.decode().splitlines()) == 1


def test_a_bad_users_file_exits_2_naming_the_line(tmp_path: Path, users_text: str) -> None:
    path = tmp_path / "users"
    first = users_text.splitlines()[0]
    path.write_text(f"{first}\ncarol:$argon2id$broken\n")
    out = subprocess.run(
        [sys.executable, "-m", "hubbub", "serve", "--port", "0", "--users", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    [message] = out.stderr.strip().splitlines()
    assert "line 2" in message and "$argon2id$" not in out.stderr and "Traceback" not in out.stderr


async def test_login_with_json_of_any_type_or_basic(make_server: ServerFactory, users_file: str) -> None:
    server = await make_server(users_file=users_file)
    body = json.dumps({"username": "ada", "password": PASSWORDS["ada"]}).encode()
    for content_type in ("application/json", "text/plain;charset=UTF-8"):
        status, answer = await post(server.port, body, f"Content-Type: {content_type}\r\n")
        assert status == 200, answer
        assert set(json.loads(answer)) == {"ticket", "otp", "expires_in"}
    basic = base64.b64encode(b"bob:hunter2").decode()
    status, answer = await post(server.port, b"", f"Authorization: Basic {basic}\r\n")
    assert status == 200 and len(json.loads(answer)["ticket"]) >= 22


async def test_wrong_password_unknown_user_and_bad_bodies(make_server: ServerFactory, users_file: str) -> None:
    server = await make_server(users_file=users_file)
    assert (await post(server.port, b'{"username": "ada", "password": "nope"}'))[0] == 401
    assert (await post(server.port, b'{"username": "mallory", "password": "nope"}'))[0] == 401
    assert (await post(server.port, b"not json"))[0] == 400
    assert (await post(server.port, b"x" * 5000))[0] == 413
    assert (await post(server.port, b"", "Authorization: Basic !!!\r\n"))[0] == 400
    good = json.dumps({"username": "ada", "password": PASSWORDS["ada"]}).encode()
    assert (await post(server.port, good, "Origin: https://evil.example\r\n"))[0] == 403


async def test_login_obeys_the_host_rule(make_server: ServerFactory, users_file: str) -> None:
    server = await make_server(users_file=users_file)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /login HTTP/1.1\r\nHost: rebound.example\r\nContent-Length: 0\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 403 ")
    writer.close()


async def test_repeated_failed_logins_get_429(make_server: ServerFactory, users_file: str) -> None:
    server = await make_server(users_file=users_file)
    wrong = b'{"username": "ada", "password": "guess"}'
    statuses = await asyncio.gather(*(post(server.port, wrong) for _ in range(LOGIN_BURST)))
    assert [s for s, _ in statuses] == [401] * LOGIN_BURST
    assert (await post(server.port, wrong))[0] == 429
    # the right password too: the address has no attempts left (no check is made)
    assert (await post(server.port, b'{"username": "ada", "password": "correct horse"}'))[0] == 429


async def test_a_ticket_connects_once_as_its_user(make_server: ServerFactory, users_file: str) -> None:
    server = await make_server(users_file=users_file)
    ticket = await login(server.port)
    client = await EventClient.open(ws_url(server, query=f"ticket={ticket}&name=mallory"))
    await client.join("lobby")
    await client.request("send_message", {"room": "lobby", "message": "hi", "from": "mallory"})
    message = await client.recv_type("new_message")
    assert message["payload"]["from"] == "ada"
    assert await refused(ws_url(server, query=f"ticket={ticket}")) == 401
    await client.close()
    otp = await login(server.port, "bob")
    other = await EventClient.open(ws_url(server, query=f"otp={otp}"))
    await other.join("lobby")
    await other.request("send_message", {"room": "lobby", "message": "yo"})
    assert (await other.recv_type("new_message"))["payload"]["from"] == "bob"
    await other.close()


async def test_expired_or_missing_ticket_gets_401(make_server: ServerFactory, users_file: str) -> None:
    server = await make_server(users_file=users_file, ticket_ttl=0.2)
    ticket = await login(server.port)
    await asyncio.sleep(0.4)
    assert await refused(ws_url(server, query=f"ticket={ticket}")) == 401
    assert await refused(ws_url(server)) == 401
    assert await refused(ws_url(server, query="name=ada")) == 401
    assert await refused(ws_url(server, query="ticket=")) == 401


async def test_allow_anonymous_lets_ticketless_clients_in(make_server: ServerFactory, users_file: str) -> None:
    server = await make_server(users_file=users_file, allow_anonymous=True)
    anonymous = await EventClient.open(ws_url(server, query="name=guest"))
    await anonymous.join("lobby")
    await anonymous.request("send_message", {"room": "lobby", "message": "hi"})
    assert (await anonymous.recv_type("new_message"))["payload"]["from"] == "guest"
    ticket = await login(server.port)
    known = await EventClient.open(ws_url(server, query=f"ticket={ticket}&name=guest"))
    await known.join("lobby")
    await known.request("send_message", {"room": "lobby", "message": "hi"})
    assert (await known.recv_type("new_message"))["payload"]["from"] == "ada"
    # a bad ticket is still refused: anonymous means no ticket, not a wrong one
    assert await refused(ws_url(server, query=f"ticket={ticket}")) == 401
    await anonymous.close()
    await known.close()


async def test_a_ticket_used_on_one_node_is_refused_on_another(users_file: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    servers: list[Server] = []
    try:
        for node in ("a", "b"):
            broker = RedisBroker(REDIS_URL, node, 100, 60.0, prefix=prefix)
            settings = Settings(port=0, broker=REDIS_URL, users_file=users_file, node_id=node)
            hub = Hub(settings, broker)
            tickets = RedisTickets(connect_redis(REDIS_URL, retry_timeouts=False), 5.0, prefix=prefix)
            server = Server(hub, tickets)
            await server.start()
            servers.append(server)
        a, b = servers
        ticket = await login(a.port)  # minted on a
        client = await EventClient.open(ws_url(b, query=f"ticket={ticket}"))  # spent on b
        assert await refused(ws_url(a, query=f"ticket={ticket}")) == 401
        assert await refused(ws_url(b, query=f"ticket={ticket}")) == 401
        await client.close()
    finally:
        for server in servers:
            await server.stop()


async def test_no_password_or_ticket_reaches_the_log(
    make_server: ServerFactory, users_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(1)  # everything, picows' raw request dumps at debug included
    logging.getLogger("picows").setLevel(1)
    try:
        server = await make_server(users_file=users_file)
        ticket = await login(server.port)
        await post(server.port, b'{"username": "ada", "password": "wrong-guess-123"}')
        basic = base64.b64encode(b"bob:hunter2").decode()
        await post(server.port, b"", f"Authorization: Basic {basic}\r\n")
        client = await EventClient.open(ws_url(server, query=f"ticket={ticket}"))
        await refused(ws_url(server, query=f"otp={ticket}"))
        await client.close()
    finally:
        logging.getLogger("picows").setLevel(logging.NOTSET)
    server_records = [r for r in caplog.records if r.name.split(".")[0] in ("hubbub", "picows", "asyncio")]
    text = "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in server_records)
    assert "New data" in text  # picows' raw request dumps were on, and redacted
    assert "login.ok" in text and "login.failed" in text
    for secret in (ticket, PASSWORDS["ada"], "wrong-guess-123", "hunter2", basic):
        assert secret not in text


async def test_login_route_without_users_is_404(server: Server) -> None:
    status, body = await post(server.port, b"{}")
    assert status == 404 and b"--users" in body


async def test_get_login_says_how_to_connect(make_server: ServerFactory, users_file: str, tmp_path: Path) -> None:
    """`GET /login` is how the chat page chooses between a login form and a name field (no failing dial)."""

    async def mode(server: Server) -> dict[str, bool]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"GET /login HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.split()[1] == b"200" and b"application/json" in head, data
        answer: dict[str, bool] = json.loads(body)
        return answer

    secret = "s" * 32
    assert await mode(await make_server()) == {"login": False, "token": False, "anonymous": True}
    assert await mode(await make_server(users_file=users_file)) == {"login": True, "token": False, "anonymous": False}
    with_anonymous = await make_server(users_file=users_file, allow_anonymous=True)
    assert await mode(with_anonymous) == {"login": True, "token": False, "anonymous": True}
    assert await mode(await make_server(auth_secret=secret)) == {"login": False, "token": True, "anonymous": False}
    site = tmp_path / "site"
    site.mkdir()
    (site / "login").write_text("the app's own login page")
    app = await make_server(static_dir=str(site))  # without --users, /login is the application's
    reader, writer = await asyncio.open_connection("127.0.0.1", app.port)
    writer.write(f"GET /login HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\n\r\n".encode())
    assert (await asyncio.wait_for(reader.read(), 5)).endswith(b"the app's own login page")
    writer.close()


async def test_a_login_body_may_come_in_pieces(make_server: ServerFactory, users_file: str) -> None:
    server = await make_server(users_file=users_file)
    body = json.dumps({"username": "ada", "password": PASSWORDS["ada"]}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:5])
    await asyncio.sleep(0.05)
    writer.write(body[5:20])
    await asyncio.sleep(0.05)
    writer.write(body[20:])
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 ") and b'"ticket"' in data


async def test_login_over_https_and_ticket_over_wss(
    make_server: ServerFactory, users_file: str, tls_files: tuple[Path, Path]
) -> None:
    """With TLS the pacer sees the decrypted request: logins and tickets work the same."""
    server = await make_server(users_file=users_file, tls_cert=str(tls_files[0]), tls_key=str(tls_files[1]))
    context = ssl.create_default_context(cafile=str(tls_files[0]))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context, server_hostname="localhost")
    body = json.dumps({"username": "ada", "password": PASSWORDS["ada"]}).encode()
    writer.write(f"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 "), data[:60]
    ticket = json.loads(data.partition(b"\r\n\r\n")[2])["ticket"]
    url = f"wss://127.0.0.1:{server.port}/ws?ticket={ticket}"
    client = await EventClient.open(url, ssl=context)
    await client.join("lobby")
    await client.request("send_message", {"room": "lobby", "message": "hi"})
    assert (await client.recv_type("new_message"))["payload"]["from"] == "ada"
    await client.close()
    with pytest.raises(InvalidStatus) as caught:
        await connect(url, ssl=context)
    assert caught.value.response.status_code == 401
