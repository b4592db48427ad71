"""The ticket store contract, on every backend: a ticket is taken once, expires, and is unguessable."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from hubbub.backends.redis_pool import connect_redis
from hubbub.backends.tickets import MemoryTickets, RedisTickets, StoreFull, TicketStore

REDIS_URL = "redis://127.0.0.1:6379/0"
TTL = 0.3


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[TicketStore]:
    made: TicketStore
    if request.param == "memory":
        made = MemoryTickets(TTL)
    else:
        made = RedisTickets(connect_redis(REDIS_URL), TTL, prefix=f"test:{uuid.uuid4().hex}:")
    yield made
    await made.close()


async def test_a_ticket_is_taken_once(store: TicketStore) -> None:
    ticket = await store.issue("ada")
    assert len(ticket) >= 22  # at least 128 bits, URL-safe
    assert await store.take(ticket) == "ada"
    assert await store.take(ticket) is None


async def test_tickets_are_distinct_and_unknown_ones_fail(store: TicketStore) -> None:
    tickets = {await store.issue("ada") for _ in range(50)}
    assert len(tickets) == 50
    assert await store.take("not-a-ticket") is None
    assert await store.take("") is None


async def test_an_expired_ticket_fails(store: TicketStore) -> None:
    ticket = await store.issue("ada")
    await asyncio.sleep(TTL + 0.1)
    assert await store.take(ticket) is None


async def test_concurrent_takes_give_the_user_to_one() -> None:
    """Two nodes on one Redis racing for the same ticket: exactly one wins (GETDEL is atomic)."""
    prefix = f"test:{uuid.uuid4().hex}:"
    a = RedisTickets(connect_redis(REDIS_URL), 5.0, prefix=prefix)
    b = RedisTickets(connect_redis(REDIS_URL), 5.0, prefix=prefix)
    try:
        for _ in range(20):
            ticket = await a.issue("ada")
            results = await asyncio.gather(a.take(ticket), b.take(ticket), a.take(ticket), b.take(ticket))
            assert results.count("ada") == 1 and results.count(None) == 3
    finally:
        await a.close()
        await b.close()


async def test_the_memory_store_is_bounded() -> None:
    now = [0.0]
    store = MemoryTickets(5.0, max_tickets=3, clock=lambda: now[0])
    for _ in range(3):
        await store.issue("ada")
    with pytest.raises(StoreFull):
        await store.issue("ada")
    now[0] = 6.0  # all expired: the sweep makes room
    await store.issue("ada")
    assert len(store) == 1
