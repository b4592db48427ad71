"""Fixtures: a hubbub server on a free loopback port, on the same loop as the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import uvloop

from hubbub.core.hub import Hub
from hubbub.core.settings import Settings
from hubbub.server.server import Server


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Tests run on uvloop, the loop `hubbub serve` uses."""
    return {"uvloop": uvloop.new_event_loop}


ServerFactory = Callable[..., Any]


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    """Start servers with settings overrides; all are stopped after the test."""
    started: list[Server] = []

    async def start(hub: Hub | None = None, **overrides: Any) -> Server:
        if hub is None:
            hub = Hub(Settings(**{"port": 0, **overrides}))
        server = Server(hub)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def server(make_server: ServerFactory) -> Server:
    result: Server = await make_server()
    return result
