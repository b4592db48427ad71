"""The contract suites run against every backend: memory, Redis on 127.0.0.1:6379, NATS on 4222."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from hubbub.backends.broker import Broker
from hubbub.backends.history import History
from hubbub.backends.memory import MemoryBroker, MemoryPresence
from hubbub.backends.nats import NatsBroker
from hubbub.backends.presence import Presence
from hubbub.backends.redis import RedisBroker
from hubbub.backends.redis_presence import RedisPresence

REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"


@dataclass
class Received:
    """What a broker's sink was handed."""

    items: list[tuple[str, int, bytes]] = field(default_factory=list)

    def __call__(self, room: str, offset: int, event: bytes) -> None:
        self.items.append((room, offset, event))


class BrokerWithHistory(Broker, History):
    """Both contracts, as every broker backend provides them."""


def _make_broker(kind: str, history_size: int = 100, history_ttl: float = 60.0, prefix: str = "") -> Broker:
    """A broker of `kind` on its own keys; brokers made with one `prefix` are nodes of one cluster."""
    if kind == "memory":
        return MemoryBroker(history_size, history_ttl)
    prefix = prefix or f"test:{uuid.uuid4().hex}:"
    if kind == "nats":
        return NatsBroker(NATS_URL, REDIS_URL, uuid.uuid4().hex, history_size, history_ttl, prefix=prefix)
    return RedisBroker(REDIS_URL, uuid.uuid4().hex, history_size, history_ttl, prefix=prefix)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """Presence backends (NATS keeps its presence in Redis, the same code)."""
    kind: str = request.param
    return kind


@pytest.fixture(params=["memory", "redis", "nats"])
def broker_backend(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def broker(broker_backend: str) -> AsyncIterator[tuple[Broker, Received]]:
    b = _make_broker(broker_backend)
    sink = Received()
    await b.start(sink)
    yield b, sink
    await b.close()


@pytest.fixture
async def presence_pair(backend: str) -> AsyncIterator[tuple[Presence, Presence, list[tuple[str, str, bool]]]]:
    """Two nodes' presence on the same store, with a short TTL, and what expired (`room, name, vacated`)."""
    expired: list[tuple[str, str, bool]] = []
    if backend == "memory":
        one = MemoryPresence()
        pair: tuple[Presence, Presence] = (one, one)
    else:
        prefix = f"test:{uuid.uuid4().hex}:presence:"
        pair = (RedisPresence(REDIS_URL, "a", 1.0, prefix), RedisPresence(REDIS_URL, "b", 1.0, prefix))
    for p in set(pair):
        await p.start(lambda room, name, vacated: expired.append((room, name, vacated)))
    yield pair[0], pair[1], expired
    for p in set(pair):
        await p.close()
