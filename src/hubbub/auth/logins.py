"""Authentication with `--users`: logins that mint tickets, and handshakes that spend them.

`Authenticator` is what the server asks: `login` checks a name and password and answers a ticket
(or why not: 401, 429, 503), `take` spends a ticket and answers its user. Every way a client can
make it work is bounded per address and in total; nothing logs a password, ticket or hash. The
bounds and why: docs/topics/auth.md.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from hubbub.auth.passwords import Users
from hubbub.auth.tokens import Grant, TokenError, mint_token, verify_token
from hubbub.backends.tickets import MAX_TICKET_LENGTH, TicketStore

__all__ = [
    "AttemptLimiter",
    "Authenticator",
    "Grant",
    "Outcome",
    "TokenError",
    "mint_token",
    "verify_token",
]

log = logging.getLogger("hubbub.auth.logins")

LOGIN_BURST = 10
LOGIN_RATE_PER_MIN = 10.0
LOOKUP_BURST = 30
LOOKUP_RATE_PER_MIN = 60.0
MAX_ADDRESSES = 10_000
VERIFY_THREADS = 2
VERIFY_QUEUE = 32
MAX_LOOKUPS = 256


class AttemptLimiter:
    """A token bucket per address, refilled at `rate_per_min`, holding at most `burst`; bounded in addresses."""

    def __init__(
        self,
        burst: int,
        rate_per_min: float,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = float(burst)
        self.rate = rate_per_min / 60.0
        self.max_addresses = max_addresses
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """address -> (tokens, when they were counted); least recently seen first."""

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: str, now: float) -> float:
        entry = self._buckets.get(key)
        if entry is None:
            return self.burst
        tokens, stamp = entry
        return min(self.burst, tokens + (now - stamp) * self.rate)

    def charge(self, key: str) -> bool:
        """Spend one attempt for `key`; False (and nothing spent) when it has none left."""
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens < 1:
            return False
        self._store(key, tokens - 1, now)
        return True

    def refund(self, key: str) -> None:
        """Give back the attempt a success was charged."""
        now = self._clock()
        tokens = min(self.burst, self._tokens(key, now) + 1)
        if tokens >= self.burst:
            self._buckets.pop(key, None)  # a full bucket is the default: forget it
        else:
            self._store(key, tokens, now)

    def _store(self, key: str, tokens: float, now: float) -> None:
        buckets = self._buckets
        buckets[key] = (tokens, now)
        buckets.move_to_end(key)
        while len(buckets) > self.max_addresses:
            buckets.popitem(last=False)


class Outcome(enum.Enum):
    """Why a login or a lookup got no user (each maps to one HTTP status)."""

    DENIED = 401
    LIMITED = 429
    BUSY = 503


class Authenticator:
    """Users, the ticket store and the bounds around them (see the module docstring)."""

    def __init__(self, users: Users, tickets: TicketStore, ttl: float) -> None:
        self.users = users
        self.tickets = tickets
        self.ttl = ttl
        self.logins = AttemptLimiter(LOGIN_BURST, LOGIN_RATE_PER_MIN)
        self.lookups = AttemptLimiter(LOOKUP_BURST, LOOKUP_RATE_PER_MIN)
        self._verifying = asyncio.Semaphore(VERIFY_THREADS)
        self._waiting = 0
        self._looking = 0

    async def login(self, address: str, name: str, password: str) -> str | Outcome:
        """A ticket for `name` if `password` is theirs, else why not."""
        if not self.logins.charge(address):
            log.info("login.limited", extra={"peer": address})
            return Outcome.LIMITED
        if self._waiting >= VERIFY_THREADS + VERIFY_QUEUE:
            self.logins.refund(address)
            log.warning("login.busy", extra={"peer": address})
            return Outcome.BUSY
        self._waiting += 1
        try:
            async with self._verifying:
                ok = await asyncio.get_running_loop().run_in_executor(None, self.users.verify, name, password)
        finally:
            self._waiting -= 1
        if not ok:
            log.info("login.failed", extra={"peer": address, "user": name})
            return Outcome.DENIED
        self.logins.refund(address)
        ticket = await self.tickets.issue(name)
        log.info("login.ok", extra={"peer": address, "user": name})
        return ticket

    async def take(self, address: str, ticket: str) -> str | Outcome:
        """The user of `ticket`, spent, or why not."""
        if not self.lookups.charge(address):
            return Outcome.LIMITED
        if len(ticket) > MAX_TICKET_LENGTH:
            return Outcome.DENIED
        if self._looking >= MAX_LOOKUPS:
            self.lookups.refund(address)
            return Outcome.BUSY
        self._looking += 1
        try:
            user = await self.tickets.take(ticket)
        finally:
            self._looking -= 1
        if user is None:
            log.info("handshake.ticket_refused", extra={"peer": address})
            return Outcome.DENIED
        self.lookups.refund(address)
        return user
