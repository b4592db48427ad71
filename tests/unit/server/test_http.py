"""The front door reads the requests a stage claims, body included, before picows does; and the API's
settings that turn those requests on."""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import pytest

from hubbub.cli.main import build_parser
from hubbub.cli.settings import settings_from
from hubbub.core.settings import Settings
from hubbub.errors import ConfigError
from hubbub.protocol.http import Claim, Head, Request, Response, Route
from hubbub.server.frontdoor import Arrival, FrontDoor, Pipeline
from tests.unit.server.fakes import FakeTransport


class FakePicows:
    """Records what picows would have been given."""

    def __init__(self) -> None:
        self.made = False
        self.fed = b""
        self._buffer = bytearray(1024)

    def connection_made(self, transport: Any) -> None:
        self.made = True

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def get_buffer(self, size: int) -> memoryview:
        return memoryview(self._buffer)

    def buffer_updated(self, n: int) -> None:
        self.fed += bytes(self._buffer[:n])


def _feed(pacer: FrontDoor, data: bytes) -> None:
    buffer = pacer.get_buffer(len(data))
    buffer[: len(data)] = data
    pacer.buffer_updated(len(data))


async def test_picows_gets_the_connection_only_when_a_request_for_it_comes() -> None:
    """An API connection never starts picows' handshake timeout; a later plain request does start it."""
    seen: list[Request] = []

    async def handle(request: Request) -> Response:
        seen.append(request)
        return Response(HTTPStatus.OK, b'{"ok":true}')

    def refuse(head: Head, status: HTTPStatus, message: str) -> Response:
        return Response(status, message.encode(), close=True)

    route = Route(handle, refuse, max_body=100, body_timeout=5.0)
    inner = FakePicows()
    tasks: list[asyncio.Task[None]] = []
    pacer = _door(inner, lambda head: route if head.path == "/api/x" else None, _spawner(tasks))
    transport = FakeTransport()
    pacer.connection_made(transport)  # type: ignore[arg-type]
    _feed(pacer, b"POST /api/x HTTP/1.1\r\nContent-Length: 4\r\n\r\nab")
    assert not tasks and not inner.made
    _feed(pacer, b"cdGET /api/x HTTP/1.1\r\n\r\n")  # the body's end, and a pipelined request
    assert not transport.reading  # one request at a time
    await asyncio.gather(*tasks)
    await asyncio.gather(*tasks)  # the pipelined one, spawned when the first was answered
    assert [r.body for r in seen] == [b"abcd", b""] and transport.written.count(b"200 OK") == 2
    assert transport.reading and not inner.made
    _feed(pacer, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert inner.made and inner.fed == b"GET /healthz HTTP/1.1\r\n\r\n"
    pacer.connection_lost(None)


async def test_refusals_close_the_connection() -> None:
    async def handle(request: Request) -> Response:
        raise RuntimeError("a bug")

    def refuse(head: Head, status: HTTPStatus, message: str) -> Response:
        return Response(status, message.encode(), close=True)

    route = Route(handle, refuse, max_body=10, body_timeout=5.0)
    for request, status in (
        (b"POST /a HTTP/1.1\r\nContent-Length: 11\r\n\r\n", b"413"),
        (b"POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"400"),
        (b"POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", b"400"),
        (b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"411"),
        (b"POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"500"),  # the handler's exception
    ):
        tasks: list[asyncio.Task[None]] = []
        pacer = _door(FakePicows(), lambda head: route, _spawner(tasks))
        transport = FakeTransport()
        pacer.connection_made(transport)  # type: ignore[arg-type]
        _feed(pacer, request)
        await asyncio.gather(*tasks)
        assert transport.written.startswith(b"HTTP/1.1 " + status) and transport.closed, request
        pacer.connection_lost(None)


class ClaimStage:
    """A stage that reads the requests `claim` takes, as the login and API stages do."""

    reads_requests = True

    def __init__(self, claim: Claim) -> None:
        self.claim = claim

    def judge(self, door: FrontDoor, arrival: Arrival) -> bool:
        head = arrival.head
        route = self.claim(head) if head is not None else None
        if head is None or route is None:
            return False
        door.take(route, head, arrival.rest)
        return True


def _door(inner: FakePicows, claim: Claim, spawn: Any) -> FrontDoor:
    return FrontDoor(Pipeline((ClaimStage(claim),), spawn), lambda door: inner, "peer", lambda: None)


def _spawner(tasks: list[asyncio.Task[None]]) -> Any:
    def spawn(work: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        tasks.append(task)
        return task

    return spawn


def test_api_settings_are_checked_and_keys_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "k" * 16
    assert key not in repr(Settings(api_keys=(key,)))
    for bad in ("short", "with a space 0123456789", "comma,0123456789abc", "tab\t0123456789abcdef"):
        with pytest.raises(ConfigError) as caught:
            Settings(api_keys=(bad,))
        assert bad not in str(caught.value)
    with pytest.raises(ConfigError):
        Settings(api_from="two\nlines")
    monkeypatch.setenv("HUBBUB_API_KEY", f"{key},{'m' * 20}")
    args = build_parser().parse_args(["serve", "--api-key", "n" * 16, "--api-from", "bot"])
    settings = settings_from(args)
    assert settings.api_keys == (key, "m" * 20, "n" * 16) and settings.api_from == "bot"
