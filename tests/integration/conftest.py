"""Fixtures shared by the integration tests that run several nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.cluster import RedisProcess
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
