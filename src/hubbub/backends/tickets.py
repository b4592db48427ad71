"""Tickets: what `POST /login` hands out and a `/ws` handshake spends, once, on any node.

`TicketStore` is the contract; `MemoryTickets` (one node, at most `MAX_TICKETS`: a full store
raises `StoreFull`) and `RedisTickets` (atomic `GETDEL`, keys hashed) implement it, and
`open_tickets` picks one for the settings. How: docs/topics/backends.md.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

from hubbub.errors import HubbubError

TICKET_BYTES = 18
"""Random bytes per ticket: 144 bits, 24 URL-safe characters."""
MAX_TICKETS = 100_000
"""Live tickets the memory store holds at most (about 20 MB at worst)."""
MAX_TICKET_LENGTH = 128
"""A presented ticket longer than this is refused without a lookup."""


class StoreFull(HubbubError):
    """The store cannot hold another ticket now; the login is answered 503."""


class TicketStore(Protocol):
    """Issue a ticket for a user; take it back once."""

    async def issue(self, user: str) -> str:
        """A new ticket for `user`, valid the store's TTL; raises `StoreFull` or `BrokerUnavailable`."""
        ...

    async def take(self, ticket: str) -> str | None:
        """The ticket's user if it is live, and it is spent; None otherwise (unknown, spent, expired)."""
        ...

    async def close(self) -> None:
        """Release what the store holds open."""
        ...


def new_ticket() -> str:
    """A fresh random ticket."""
    return secrets.token_urlsafe(TICKET_BYTES)


class MemoryTickets:
    """Tickets in this process: single use on this node only (the memory broker's scope)."""

    def __init__(self, ttl: float, max_tickets: int = MAX_TICKETS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_tickets = max_tickets
        self._clock = clock
        self._live: dict[str, tuple[str, float]] = {}
        """ticket -> (user, expiry); insertion order is expiry order (one TTL for all)."""

    def __len__(self) -> int:
        return len(self._live)

    async def issue(self, user: str) -> str:
        now = self._clock()
        if len(self._live) >= self.max_tickets:
            self._sweep(now)
            if len(self._live) >= self.max_tickets:
                raise StoreFull
        ticket = new_ticket()
        self._live[ticket] = (user, now + self.ttl)
        return ticket

    async def take(self, ticket: str) -> str | None:
        entry = self._live.pop(ticket, None)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    def _sweep(self, now: float) -> None:
        """Drop expired tickets: they are the oldest, so stop at the first live one."""
        live = self._live
        for ticket, (_, expiry) in list(live.items()):
            if expiry > now:
                break
            del live[ticket]

    async def close(self) -> None:
        self._live.clear()


class RedisTickets:
    """Tickets in Redis: single use across every node sharing it."""

    def __init__(self, redis: Any, ttl: float, prefix: str = "hubbub:") -> None:
        self.ttl = ttl
        self._redis = redis
        self._prefix = prefix + "ticket:"

    def _key(self, ticket: str) -> str:
        return self._prefix + hashlib.sha256(ticket.encode()).hexdigest()

    async def issue(self, user: str) -> str:
        from hubbub.backends.redis_pool import Health

        ticket = new_ticket()
        with Health().command():
            await self._redis.set(self._key(ticket), user.encode(), px=max(1, int(self.ttl * 1000)))
        return ticket

    async def take(self, ticket: str) -> str | None:
        from hubbub.backends.redis_pool import Health

        with Health().command():
            user = await self._redis.getdel(self._key(ticket))
        return None if user is None else bytes(user).decode()

    async def close(self) -> None:
        await self._redis.aclose()


def open_tickets(settings: Any) -> TicketStore:
    """The store `settings` imply: Redis when the broker or the store is Redis (tickets then work on every
    node sharing it), else in this process."""
    from urllib.parse import urlsplit

    for url in (settings.broker, settings.store):
        if urlsplit(url).scheme in ("redis", "rediss", "unix"):
            from hubbub.backends.redis_pool import connect_redis

            # GETDEL must not be retried after a timeout: it may have run, and spent the ticket
            return RedisTickets(connect_redis(url, retry_timeouts=False, max_connections=8), settings.ticket_ttl)
    return MemoryTickets(settings.ticket_ttl)
