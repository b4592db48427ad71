"""Fixtures of the integration tests: a private Redis and a webhook receiver for the tests that run
several nodes, and `any_server`, one suite run against two servers (hubbub and the textbook)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from hubbub.core.hub import Hub
from hubbub.server.server import Server
from hubbub.textbook.server import Manager, Options, serve
from tests.cluster import RedisProcess
from tests.conftest import ServerFactory
from tests.webhook_receiver import Receiver


@pytest.fixture
async def redis() -> AsyncIterator[RedisProcess]:
    """A private redis-server for one test, stopped after it: nodes share it, and the test may stop and
    start it, without disturbing the machine's Redis on 6379."""
    server = RedisProcess()
    await server.start()
    yield server
    server.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook endpoint on loopback that records what it is sent (`tests.webhook_receiver`)."""
    endpoint = Receiver()
    await endpoint.start()
    yield endpoint
    await endpoint.close()


@dataclass
class Running:
    """A server under test, hubbub or the textbook, seen from outside: the suite's one handle on both."""

    kind: str
    """"hubbub" or "textbook"."""
    port: int
    connections: Callable[[], int]
    """Open WebSocket connections: the `hubbub_connections` gauge of either server's `/metrics`."""
    rooms: Callable[[], int]
    """Rooms with at least one member."""
    stop: Callable[[], Awaitable[None]]
    """Close every connection with 1001 and stop listening; safe to call twice."""
    close_grace: float
    """How long a drop by the heartbeat may take past interval + timeout: hubbub resets the socket
    at once; the textbook (websockets) sends 1011 and waits for the peer's close for close_timeout."""
    hub: Hub | None = None
    """hubbub's hub, for an assertion only hubbub can answer (its metrics); None for the textbook."""

    def url(self, query: str = "", path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}{'?' + query if query else ''}"


AnyServerFactory = Callable[..., Awaitable[Running]]
TEXTBOOK_CLOSE_TIMEOUT = 1.0


@pytest.fixture(params=["hubbub", "textbook"])
async def make_any_server(
    request: pytest.FixtureRequest, make_server: ServerFactory
) -> AsyncIterator[AnyServerFactory]:
    """Start hubbub or the textbook (in this process, on the test's loop) with the options both have:
    `max_message_size`, `ping_interval`, `ping_timeout`, `allowed_origins`. Other keywords are
    settings only hubbub has (`rate_limit=0`): the textbook has no such limit, and ignores them."""
    kind: str = request.param
    stops: list[Callable[[], Awaitable[None]]] = []

    async def start(**options: Any) -> Running:
        shared = {k: options.pop(k) for k in SHARED_OPTIONS if k in options}
        if kind == "hubbub":
            server: Server = await make_server(**shared, **options)
            hub = server.hub
            return Running(
                kind, server.port, lambda: len(hub.connections), lambda: len(hub.rooms), server.stop, 0.0, hub
            )
        manager = Manager(Options(port=0, close_timeout=TEXTBOOK_CLOSE_TIMEOUT, **shared))
        stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(manager, stop, ready.set_result))
        started: list[asyncio.Future[Any]] = [ready, task]
        await asyncio.wait(started, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises why it could not start

        async def halt() -> None:
            stop.set()
            await task

        stops.append(halt)
        return Running(
            kind, ready.result(), lambda: len(manager.clients), lambda: len(manager.rooms), halt, TEXTBOOK_CLOSE_TIMEOUT
        )

    yield start
    for halt in stops:
        await halt()


SHARED_OPTIONS = ("max_message_size", "ping_interval", "ping_timeout", "allowed_origins")


@pytest.fixture
async def any_server(make_any_server: AnyServerFactory) -> Running:
    """hubbub, then the textbook, with their defaults: a test that takes it runs once against each."""
    return await make_any_server()
