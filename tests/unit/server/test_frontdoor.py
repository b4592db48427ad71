"""The front door: which stages a server's settings give it, in which order, what each refuses, and
that an upgraded connection's reads take the frame pacer's own path."""

from __future__ import annotations

import asyncio
from typing import Any

from argon2 import PasswordHasher

from hubbub.auth.admin_sessions import AdminGate
from hubbub.auth.logins import Authenticator
from hubbub.auth.passwords import Users
from hubbub.backends.tickets import MemoryTickets
from hubbub.core.hub import Hub
from hubbub.core.settings import Settings
from hubbub.integration.app_proxy import AppProxy
from hubbub.integration.server_api import ServerApi
from hubbub.server.admin import AdminRoutes
from hubbub.server.admin_stats import AdminStats
from hubbub.server.frontdoor import FrontDoor, Pipeline
from hubbub.server.pacer import FramePacer
from hubbub.server.server import front_door
from tests.helpers import TEXT, mask_frame
from tests.unit.server.fakes import FakeTransport


class FakePicows:
    """What picows would have been given, and what the door told it about the client as it was fed."""

    def __init__(self, door: FrontDoor | None = None) -> None:
        self.door = door
        self.made = False
        self.lost = False
        self.fed = b""
        self.users: list[str | None] = []
        self._buffer = bytearray(1 << 16)

    def connection_made(self, transport: Any) -> None:
        self.made = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def get_buffer(self, size: int) -> memoryview:
        return memoryview(self._buffer)

    def buffer_updated(self, n: int) -> None:
        self.fed += bytes(self._buffer[:n])
        if self.door is not None:
            self.users.append(self.door.user)


def _spawn(work: Any) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(work)


def _allowed(headers: dict[str, list[str]]) -> bool:
    return True


def _auth() -> Authenticator:
    return Authenticator(Users({"ada": _HASH}), MemoryTickets(60.0), 60.0)


_HASH = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")


def _api() -> ServerApi:
    return ServerApi(Hub(Settings(api_keys=("k" * 16,))), lambda head: True)


def _admin() -> AdminRoutes:
    hub = Hub()
    return AdminRoutes(hub, AdminGate("correct-horse-battery"), AdminStats(hub), "http", lambda head: True)


async def test_the_stages_are_those_the_settings_call_for_in_order() -> None:
    """Every stage not configured is absent; the ones that answer what is off stand in its place; the
    connect proxy judges first, the GET-only rule last."""
    proxy = AppProxy(Settings(connect_proxy="http://127.0.0.1:9/connect", webhook_secret="s" * 32))
    try:
        cases: list[tuple[dict[str, Any], tuple[str, ...], bool]] = [
            ({}, ("LoginOff", "ApiOff", "AdminOff", "GetOnly"), False),
            ({"api": _api()}, ("LoginOff", "ApiRoutes", "AdminOff", "GetOnly"), True),
            ({"auth": _auth()}, ("Login", "TicketHold", "ApiOff", "AdminOff", "GetOnly"), True),
            ({"connect_proxy": proxy}, ("ConnectProxyHold", "LoginOff", "ApiOff", "AdminOff", "GetOnly"), False),
            ({"admin": _admin()}, ("LoginOff", "ApiOff", "AdminRoutes", "GetOnly"), True),
            (
                {"auth": _auth(), "api": _api(), "connect_proxy": proxy, "admin": _admin()},
                ("ConnectProxyHold", "Login", "TicketHold", "ApiRoutes", "AdminRoutes", "GetOnly"),
                True,
            ),
        ]
        for configured, names, reads in cases:
            pipeline = front_door(_spawn, _allowed, **configured)
            assert pipeline.names == names, configured
            assert pipeline.reads_requests is reads, configured
    finally:
        await proxy.close()


def test_an_upgraded_connection_reads_through_the_frame_pacer_alone() -> None:
    """No per-frame work is added: the door overrides nothing that runs once the upgrade is done."""
    for name in ("buffer_updated", "get_buffer", "_walk", "_feed", "_hold", "_release", "pause_for_app"):
        assert getattr(FrontDoor, name) is getattr(FramePacer, name), name


def _door(pipeline: Pipeline, lost: list[int] | None = None) -> tuple[FrontDoor, FakePicows, FakeTransport]:
    made: list[FakePicows] = []

    def picows(door: FrontDoor) -> FakePicows:
        made.append(FakePicows(door))
        return made[0]

    door = FrontDoor(pipeline, picows, "127.0.0.1", (lambda: lost.append(1)) if lost is not None else lambda: None)
    transport = FakeTransport()
    door.connection_made(transport)  # type: ignore[arg-type]
    return door, made[0], transport


def _send(door: FrontDoor, data: bytes) -> None:
    buffer = door.get_buffer(len(data))
    buffer[: len(data)] = data
    door.buffer_updated(len(data))


def _head(line: bytes) -> bytes:
    return line + b"\r\nHost: x\r\n\r\n"


async def test_what_each_stage_refuses_and_what_picows_is_left() -> None:
    """405 for a method picows would garble, the API's JSON 404 without --api-key, a 404 for
    `POST /login` without --users; a malformed head and every plain GET go to picows."""
    pipeline = front_door(_spawn, _allowed)
    for line in (b"POST / HTTP/1.1", b"PUT /ws HTTP/1.1", b"DELETE /healthz?x HTTP/1.0", b"OPTIONS * HTTP/1.1"):
        door, picows, transport = _door(pipeline)
        _send(door, _head(line))
        assert transport.written.startswith(b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\n"), line
        assert transport.closed and not picows.fed and b"b'" not in transport.written
    for line in (b"POST /api/publish HTTP/1.1", b"GET /api HTTP/1.1", b"GET /api/rooms?x=1 HTTP/1.1"):
        door, picows, transport = _door(pipeline)
        _send(door, _head(line))
        assert transport.written == (
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 101\r\n"
            b"Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            b'{"error":{"code":"not_found","message":"the server API is off: start the server with --api-key KEY"}}'
        ), line
        assert not picows.fed
    door, picows, transport = _door(pipeline)
    _send(door, _head(b"POST /login HTTP/1.1"))
    assert transport.written.startswith(b"HTTP/1.1 404 ") and b"--users" in transport.written and not picows.fed
    for line in (b"GET / HTTP/1.1", b"GET /apix HTTP/1.1", b"post / HTTP/1.1", b"POST / HTTP/2"):
        door, picows, transport = _door(pipeline)
        _send(door, _head(line))
        assert picows.fed == _head(line) and not transport.written, line
    door, picows, transport = _door(pipeline)
    _send(door, b"POST /api HTTP/1.1\r\n folded: x\r\n\r\n")  # a bad request whatever its path: picows' 400
    assert picows.fed and not transport.written


async def test_frames_after_the_head_reach_picows_and_the_slot_is_given_back_once() -> None:
    lost: list[int] = []
    door, picows, _ = _door(front_door(_spawn, _allowed), lost)
    assert picows.made  # no stage reads requests: picows has the connection from the start
    frame = mask_frame(TEXT, b"hi")
    _send(door, _head(b"GET /ws HTTP/1.1") + frame)
    assert picows.fed == _head(b"GET /ws HTTP/1.1") + frame
    door.connection_lost(None)
    assert lost == [1] and picows.lost


async def test_a_door_that_reads_requests_gives_picows_the_connection_only_for_its_request() -> None:
    lost: list[int] = []
    door, picows, _ = _door(front_door(_spawn, _allowed, api=_api()), lost)
    assert not picows.made
    door.connection_lost(None)  # never a request: picows never had the connection
    assert lost == [1] and not picows.made and not picows.lost


async def test_a_held_request_reaches_picows_with_the_user_a_stage_learned() -> None:
    """`pass_on` makes the stage's finding (a ticket's user) visible to picows' route only while it reads."""
    auth = _auth()
    ticket = await auth.tickets.issue("ada")
    door, picows, transport = _door(front_door(_spawn, _allowed, auth=auth))
    _send(door, _head(b"GET /ws?ticket=" + ticket.encode() + b" HTTP/1.1"))
    assert not transport.reading and not picows.fed  # held while the ticket is taken
    for _ in range(10):
        await asyncio.sleep(0)
    assert picows.fed.startswith(b"GET /ws?ticket=") and picows.users == ["ada"]
    assert door.user is None and transport.reading
