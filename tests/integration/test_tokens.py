"""Signed tokens on real sockets: `?token=T` and the `hubbub.token.T` subprotocol, rooms, expiry, refresh, CLI."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from hubbub.auth.logins import mint_token, verify_token
from hubbub.auth.tokens import LEEWAY
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import EventClient, ws_url

SECRET = "integration-secret-" + "k" * 32


def short_token(sub: str, life: float, **claims: object) -> str:
    """A token that stops being accepted `life` seconds from now, leeway included (negative: already)."""
    return mint_token(SECRET, sub, 100 + life - LEEWAY, now=time.time() - 100, **claims)  # type: ignore[arg-type]


async def refused(url: str, **kwargs: object) -> int:
    with pytest.raises(InvalidStatus) as caught:
        await connect(url, **kwargs)  # type: ignore[arg-type]
    return caught.value.response.status_code


def offer(token: str) -> list[Subprotocol]:
    return [Subprotocol("hubbub"), Subprotocol(f"hubbub.token.{token}")]


@pytest.fixture
async def server(make_server: ServerFactory) -> Server:
    result: Server = await make_server(auth_secret=SECRET)
    return result


async def test_query_token_connects_as_its_sub(server: Server) -> None:
    token = mint_token(SECRET, "alice", 60)
    client = await EventClient.open(ws_url(server, query=f"token={token}&name=mallory"))
    await client.join("lobby")
    await client.request("send_message", {"room": "lobby", "message": "hi", "from": "mallory"})
    assert (await client.recv_type("new_message"))["payload"]["from"] == "alice"
    await client.close()


async def test_subprotocol_token_connects_and_the_server_selects_hubbub(server: Server) -> None:
    token = mint_token(SECRET, "bob", 60)
    async with connect(ws_url(server), subprotocols=offer(token)) as ws:
        assert ws.subprotocol == "hubbub"
        assert ws.response is not None and ws.response.headers["Sec-WebSocket-Protocol"] == "hubbub"
        client = EventClient(ws)
        await client.join("lobby")
        await client.request("send_message", {"room": "lobby", "message": "hi"})
        assert (await client.recv_type("new_message"))["payload"]["from"] == "bob"
    # the token alone, without `hubbub` to select: refused rather than echoed back
    assert await refused(ws_url(server), subprotocols=[Subprotocol(f"hubbub.token.{token}")]) == 400


async def test_bad_expired_and_unsigned_tokens_get_401(server: Server) -> None:
    header_none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"  # {"alg":"none","typ":"JWT"}
    claims = jwt.utils.base64url_encode(f'{{"sub":"alice","exp":{int(time.time()) + 60}}}'.encode()).decode()
    bad = [
        mint_token("another-secret-" + "x" * 32, "alice", 60),
        short_token("alice", -1),
        f"{header_none}.{claims}.",
        jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, SECRET + "y" * 32, algorithm="HS512"),
        "",
        "not-a-jwt",
    ]
    for token in bad:
        assert await refused(ws_url(server, query=f"token={token}")) == 401
        if token:
            assert await refused(ws_url(server), subprotocols=offer(token)) == 401


async def test_no_credential_is_401_unless_anonymous_is_allowed(server: Server, make_server: ServerFactory) -> None:
    assert await refused(ws_url(server, query="name=guest")) == 401
    assert await refused(ws_url(server), subprotocols=[Subprotocol("hubbub")]) == 401
    open_server = await make_server(auth_secret=SECRET, allow_anonymous=True)
    guest = await EventClient.open(ws_url(open_server, query="name=guest"))
    await guest.join("anywhere")
    await guest.close()
    # anonymous means no token, not a wrong one
    assert await refused(ws_url(open_server, query=f"token={short_token('alice', -1)}")) == 401


async def test_rooms_limit_join_room(server: Server) -> None:
    token = mint_token(SECRET, "alice", 60, rooms=["lobby", "team-*"])
    client = await EventClient.open(ws_url(server, query=f"token={token}"))
    await client.join("lobby")
    await client.join("team-red")
    for room in ("other", "team", "lobby2"):
        reply = await client.request("join_room", {"room": room})
        assert reply["type"] == "error" and reply["payload"]["code"] == "forbidden", reply
    assert "other" not in server.hub.rooms
    await client.close()


async def test_expiry_closes_with_1008(server: Server) -> None:
    client = await EventClient.open(ws_url(server, query=f"token={short_token('alice', 2)}"))
    started = time.monotonic()
    with pytest.raises(ConnectionClosed):
        await client.recv(timeout=6)
    assert client.ws.close_code == 1008 and client.ws.close_reason == "token expired"
    assert 1.0 < time.monotonic() - started < 4.0


async def test_refresh_keeps_it_open_past_the_first_exp(server: Server) -> None:
    client = await EventClient.open(ws_url(server, query=f"token={short_token('alice', 2, rooms=['lobby'])}"))
    await client.join("lobby")
    other_sub = await client.request("refresh", {"token": mint_token(SECRET, "mallory", 60)})
    assert other_sub["type"] == "error" and other_sub["payload"]["code"] == "forbidden"
    earlier = await client.request("refresh", {"token": short_token("alice", 1)})
    assert earlier["type"] == "error" and earlier["payload"]["code"] == "forbidden"
    garbage = await client.request("refresh", {"token": "nope"})
    assert garbage["type"] == "error" and garbage["payload"]["code"] == "forbidden"
    reply = await client.request("refresh", {"token": mint_token(SECRET, "alice", 60, rooms=["team-*"])})
    assert reply["type"] == "ack", reply
    await asyncio.sleep(3)  # past the first token's end
    await client.join("team-blue")  # the new token's rooms apply
    reply = await client.request("join_room", {"room": "lobby2"})
    assert reply["payload"]["code"] == "forbidden"
    assert client.ws.close_code is None
    await client.close()


async def test_refresh_without_a_token_connection_is_forbidden(make_server: ServerFactory) -> None:
    server = await make_server(auth_secret=SECRET, allow_anonymous=True)
    guest = await EventClient.open(ws_url(server, query="name=guest"))
    reply = await guest.request("refresh", {"token": mint_token(SECRET, "guest", 60)})
    assert reply["type"] == "error" and reply["payload"]["code"] == "forbidden"
    await guest.close()


async def test_no_token_reaches_the_log(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)
    logging.getLogger("picows").setLevel(1)
    good = mint_token(SECRET, "alice", 60)
    wrong = mint_token("another-secret-" + "x" * 32, "alice", 60)
    try:
        client = await EventClient.open(ws_url(server, query=f"token={good}"))
        await client.request("refresh", {"token": wrong})
        await client.close()
        async with connect(ws_url(server), subprotocols=offer(good)):
            pass
        await refused(ws_url(server, query=f"token={wrong}"))
        await refused(ws_url(server), subprotocols=offer(wrong))
    finally:
        logging.getLogger("picows").setLevel(logging.NOTSET)
    records = [r for r in caplog.records if r.name.split(".")[0] in ("hubbub", "picows", "asyncio")]
    text = "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in records)
    assert "handshake.token_refused" in text and "conn.refresh_refused" in text
    for token in (good, wrong):
        for part in token.split("."):
            assert part not in text


def _cli(*args: str, secret: str | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "HUBBUB_AUTH_SECRET"}
    if secret is not None:
        env["HUBBUB_AUTH_SECRET"] = secret
    return subprocess.run([sys.executable, "-m", "hubbub", "token", *args], capture_output=True, env=env, timeout=30)


def test_token_cli_prints_a_token_that_verifies(tmp_path: object) -> None:
    out = _cli("--sub", "alice", "--ttl", "3600", "--rooms", "lobby,team-*", "--audience", "hub", secret=SECRET)
    assert out.returncode == 0, out.stderr
    grant = verify_token(SECRET, out.stdout.decode().strip(), audience="hub")
    assert grant.sub == "alice" and grant.rooms == ("lobby", "team-*")
    assert SECRET.encode() not in out.stdout + out.stderr


def test_token_cli_without_a_secret_exits_2_with_one_line() -> None:
    out = _cli("--sub", "alice")
    assert out.returncode == 2 and out.stdout == b""
    assert out.stderr.decode().count("\n") == 1 and "secret" in out.stderr.decode()
