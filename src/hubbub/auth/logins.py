"""Authentication with `--users`: logins that mint tickets, and handshakes that spend them.

`Authenticator` is what the server asks: `login` checks a name and password and answers a ticket
(or a `Refusal`: 401, 429, 503), `take` spends a ticket and answers its user. Every way a client can
make it work is bounded per address, per user name and in total; nothing logs a password, ticket or
hash. The bounds and why: docs/topics/auth.md; their defaults and what they still let through:
docs/security.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import heapq
import itertools
import logging
import math
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from hubbub.auth.passwords import Users
from hubbub.auth.tokens import Grant, TokenError, mint_token, verify_token
from hubbub.backends.tickets import MAX_TICKET_LENGTH, TicketStore

__all__ = [
    "AttemptLimiter",
    "Authenticator",
    "CheckBudget",
    "CheckQueue",
    "Grant",
    "KnownAddresses",
    "LoginBounds",
    "NameBackoff",
    "Outcome",
    "Refusal",
    "TokenError",
    "mint_token",
    "verify_token",
]

log = logging.getLogger("hubbub.auth.logins")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS says), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - not Linux


LOGIN_BURST = 10
LOGIN_RATE_PER_MIN = 10.0
LOOKUP_BURST = 30
LOOKUP_RATE_PER_MIN = 60.0
MAX_ADDRESSES = 10_000
MAX_LOOKUPS = 256

NAME_GRACE = 10
"""Failed logins of one user name checked without a wait (a person's typos never meet the backoff)."""
NAME_BACKOFF = 1.0
"""Seconds a name waits after its `NAME_GRACE`-th failure; each failure after doubles it."""
NAME_BACKOFF_CAP = 60.0
"""The longest wait between two checks of one name: a flood against it costs one check a minute."""
NAME_MEMORY = 900.0
"""Seconds after its last attempt that a name's failures are forgotten."""
MAX_NAMES = MAX_ADDRESSES
"""User names remembered; past it the one tried least recently is forgotten."""
KNOWN_PER_NAME = 4
"""Addresses remembered per user as places it logged in from, where its name's wait does not apply."""

CORES = usable_cores()
LOWERS_PRIORITY = sys.platform == "linux"
"""Whether check threads can run at the lowest CPU priority on their own (Linux: nice is per thread)."""
VERIFY_THREADS = CORES if LOWERS_PRIORITY else max(1, CORES - 1)
"""Password checks at once. Where the check threads run at the lowest CPU priority, one per core:
the event loop's thread is served first whenever it wants a core, and the threads use what it
leaves. Elsewhere one core is left to the loop (at least one thread)."""
CHECKS_PER_SEC = 4.0 * VERIFY_THREADS
"""Password checks a second across every login (a spray over many names included), on average..."""
CHECK_BURST = 10 * VERIFY_THREADS
"""... and at once, after a quiet spell."""
VERIFY_QUEUE = 16 * VERIFY_THREADS
"""Logins waiting for their check; past it, 503 at once."""
VERIFY_WAIT = 5.0
"""Seconds a login waits for its check at most; then 503."""


@dataclass(frozen=True, slots=True)
class LoginBounds:
    """The numbers that bound password checks; the defaults are the module's constants, sized by cores."""

    name_grace: int = NAME_GRACE
    name_backoff: float = NAME_BACKOFF
    name_backoff_cap: float = NAME_BACKOFF_CAP
    name_memory: float = NAME_MEMORY
    max_names: int = MAX_NAMES
    threads: int = VERIFY_THREADS
    checks_per_sec: float = CHECKS_PER_SEC
    check_burst: int = CHECK_BURST
    queue: int = VERIFY_QUEUE
    max_wait: float = VERIFY_WAIT


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

    def spent(self, key: str) -> int:
        """Attempts `key` has spent and not yet earned back."""
        return int(self.burst - self._tokens(key, self._clock()))

    def wait(self, key: str) -> float:
        """Seconds until `key` has an attempt again (0.0: it has one now)."""
        return max(0.0, (1 - self._tokens(key, self._clock())) / self.rate)

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


class NameBackoff:
    """Failed logins per user name, existing or not: the first `grace` are checked at once; after
    them each failure doubles the wait before the name is checked again (from `base` up to `cap`),
    and a success forgets the name.

    An attempt counts as failed from the moment it is let through (before its check), so that
    attempts arriving together cannot all pass before the first has failed. Names are kept as a
    16-byte digest, so a long name costs no more than a short one; at most `max_names`, the one
    tried least recently forgotten first, and a name not tried for `memory` seconds starts afresh.
    """

    def __init__(
        self,
        grace: int = NAME_GRACE,
        base: float = NAME_BACKOFF,
        cap: float = NAME_BACKOFF_CAP,
        memory: float = NAME_MEMORY,
        max_names: int = MAX_NAMES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.grace = grace
        self.base = base
        self.cap = cap
        self.memory = memory
        self.max_names = max_names
        self._clock = clock
        self._names: OrderedDict[bytes, tuple[int, float, float]] = OrderedDict()
        """digest of a name -> (failures, when the last was let through, when the one before was);
        least recently tried first."""

    def __len__(self) -> int:
        return len(self._names)

    def _backoff(self, failures: int) -> float:
        """The wait a name has after `failures` failures."""
        if failures < self.grace:
            return 0.0
        return min(self.cap, self.base * 2.0 ** min(failures - self.grace, 64))

    def _entry(self, key: bytes, now: float) -> tuple[int, float, float] | None:
        entry = self._names.get(key)
        if entry is not None and now - entry[1] > self.memory:
            del self._names[key]
            return None
        return entry

    def wait(self, name: str) -> float:
        """Seconds before `name` may be checked again (0.0: now)."""
        now = self._clock()
        entry = self._entry(_digest(name), now)
        if entry is None:
            return 0.0
        failures, last, _ = entry
        return max(0.0, last + self._backoff(failures) - now)

    def charge(self, name: str) -> int:
        """Count an attempt of `name` as failed, until it proves otherwise; the failures before it."""
        now = self._clock()
        key = _digest(name)
        entry = self._entry(key, now)
        failures, last = (0, now) if entry is None else entry[:2]
        names = self._names
        names[key] = (failures + 1, now, last)
        names.move_to_end(key)
        while len(names) > self.max_names:
            names.popitem(last=False)
        return failures

    def refund(self, name: str) -> None:
        """Take back the failure `charge` counted, and when it counted it, for an attempt that did not fail."""
        key = _digest(name)
        entry = self._names.get(key)
        if entry is None:
            return
        if entry[0] <= 1:
            del self._names[key]
        else:
            self._names[key] = (entry[0] - 1, entry[2], entry[2])

    def succeeded(self, name: str) -> None:
        """`name` logged in: its failures are forgotten."""
        self._names.pop(_digest(name), None)


class KnownAddresses:
    """The last few addresses each user logged in from. From those, a login is not held back by the
    wait its name has for failures from elsewhere: a flood from fresh addresses cannot lock a user
    out of the places it logs in from (the address's own limit still applies there). Only a right
    password adds an address, so guessing cannot grow it: at most `per_name` addresses for each of
    the `max_names` users that logged in last."""

    def __init__(self, per_name: int = KNOWN_PER_NAME, max_names: int = MAX_NAMES) -> None:
        self.per_name = per_name
        self.max_names = max_names
        self._known: OrderedDict[bytes, tuple[str, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._known)

    def knows(self, name: str, address: str) -> bool:
        """Whether `name` logged in from `address` lately."""
        return address in self._known.get(_digest(name), ())

    def add(self, name: str, address: str) -> None:
        """`name` logged in from `address`."""
        key = _digest(name)
        known = self._known
        others = tuple(a for a in known.get(key, ()) if a != address)
        known[key] = (address, *others)[: self.per_name]
        known.move_to_end(key)
        while len(known) > self.max_names:
            known.popitem(last=False)


def _digest(name: str) -> bytes:
    return hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class CheckBudget:
    """A token bucket of password checks for the whole server: `rate` a second, `burst` at once."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> float:
        """Spend one check if there is one (0.0); else the seconds until there is, nothing spent."""
        now = self._clock()
        tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if tokens >= 1:
            self._tokens = tokens - 1
            return 0.0
        self._tokens = tokens
        return (1 - tokens) / self.rate


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _lowest_priority() -> None:
    """Run the calling worker thread at the lowest CPU priority: when it and the event loop both
    want a core, the loop gets it. (On Linux the nice value is a thread's own; elsewhere it would
    be the process's, so it is left alone.)"""
    if LOWERS_PRIORITY:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _checker_pool() -> ThreadPoolExecutor:
    """The worker threads of password checks: `VERIFY_THREADS`, shared by every server of the process."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(VERIFY_THREADS, "hubbub-password", initializer=_lowest_priority)
        return _pool


class CheckQueue:
    """Password checks run in worker threads (argon2 releases the GIL): `threads` at once, at most
    as many a second as the `budget` allows, `size` waiting at most `max_wait` seconds each.

    Waiting checks go by priority, then arrival: the server gives the failures so far of the name
    and of the address, so a login for a name nobody is guessing, from an address that has not
    been guessing, goes before the guesses at a name under attack.
    """

    def __init__(self, threads: int, budget: CheckBudget, size: int, max_wait: float) -> None:
        self.threads = threads
        self.size = size
        self.max_wait = max_wait
        self._budget = budget
        self._running = 0
        self._waiting = 0
        self._stale = 0
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self.started = 0
        """Checks started so far."""

    def full(self) -> bool:
        """Whether a login would be refused at once for want of a place to wait."""
        return self._waiting >= self.size

    async def run(self, priority: int, check: Callable[[], bool]) -> bool | None:
        """`check()` in a worker thread once its turn comes; None if it did not come (queue full, or
        `max_wait` passed). A check that has started runs to its end even if its caller is cancelled,
        and holds its place until then: leaving does not let more run at once."""
        if not self._queue and self._running < self.threads and self._budget.take() == 0.0:
            self._running += 1
        elif self._waiting >= self.size or not await self._turn(priority):
            return None
        self.started += 1
        try:
            done = asyncio.get_running_loop().run_in_executor(_checker_pool(), check)
        except BaseException:
            self._finished(None)
            raise
        done.add_done_callback(self._finished)
        return await asyncio.shield(done)

    async def _turn(self, priority: int) -> bool:
        """Wait for a place among the threads; False if `max_wait` passes first."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (priority, next(self._order), turn))
        self._waiting += 1
        self._pump()
        try:
            await asyncio.wait((turn,), timeout=self.max_wait)
        except asyncio.CancelledError:
            if turn.done():
                self._finished(None)  # the place it was given goes to the next
            else:
                self._give_up(turn)
            raise
        if turn.done():
            return True
        self._give_up(turn)
        return False

    def _give_up(self, turn: asyncio.Future[None]) -> None:
        turn.cancel()
        self._waiting -= 1
        self._stale += 1
        if self._stale > self.size:  # a queue whose head never moves must not fill with the departed
            self._queue = [entry for entry in self._queue if not entry[2].done()]
            heapq.heapify(self._queue)
            self._stale = 0

    def _finished(self, done: asyncio.Future[bool] | None) -> None:
        if done is not None and not done.cancelled():
            done.exception()  # seen here, if its caller has gone: never "never retrieved"
        self._running -= 1
        self._pump()

    def _pump(self) -> None:
        """Give free places to the first waiting checks, as far as the budget allows."""
        queue = self._queue
        while queue and self._running < self.threads:
            if queue[0][2].done():  # gave up waiting
                heapq.heappop(queue)
                self._stale -= 1
                continue
            delay = self._budget.take()
            if delay > 0.0:
                if self._timer is None:
                    self._timer = asyncio.get_running_loop().call_later(delay, self._tick)
                return
            turn = heapq.heappop(queue)[2]
            self._waiting -= 1
            self._running += 1
            turn.set_result(None)

    def _tick(self) -> None:
        self._timer = None
        self._pump()


class Outcome(enum.Enum):
    """Why a login or a lookup got no user (each maps to one HTTP status)."""

    DENIED = 401
    LIMITED = 429
    BUSY = 503


@dataclass(frozen=True, slots=True)
class Refusal:
    """A login that got no ticket: why, and when trying again can help (seconds; 0 for a wrong password)."""

    outcome: Outcome
    retry_after: int = 0

    @classmethod
    def after(cls, outcome: Outcome, seconds: float) -> Refusal:
        """A refusal to try again in `seconds`, rounded up to a whole second (at least one)."""
        return cls(outcome, max(1, math.ceil(seconds)))


class Authenticator:
    """Users, the ticket store and the bounds around them (see the module docstring)."""

    def __init__(
        self,
        users: Users,
        tickets: TicketStore,
        ttl: float,
        bounds: LoginBounds = LoginBounds(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = users
        self.tickets = tickets
        self.ttl = ttl
        self.logins = AttemptLimiter(LOGIN_BURST, LOGIN_RATE_PER_MIN, clock=clock)
        self.lookups = AttemptLimiter(LOOKUP_BURST, LOOKUP_RATE_PER_MIN, clock=clock)
        self.names = NameBackoff(
            bounds.name_grace, bounds.name_backoff, bounds.name_backoff_cap, bounds.name_memory, bounds.max_names, clock
        )
        self.known = KnownAddresses(KNOWN_PER_NAME, bounds.max_names)
        self.checks = CheckQueue(
            bounds.threads, CheckBudget(bounds.checks_per_sec, bounds.check_burst, clock), bounds.queue, bounds.max_wait
        )
        self._looking = 0

    async def login(self, address: str, name: str, password: str) -> str | Refusal:
        """A ticket for `name` if `password` is theirs, else why not.

        In order: the name's backoff unless the user logged in from this address before, then the
        address's attempts (429 without a check, and without charging the address for a name it
        cannot try yet), then a place in the check queue (503). A name that exists and one that
        does not go the same way at the same cost.
        """
        wait = self.names.wait(name)
        waiting = wait > 0.0  # then only a known address gets through, and its success forgets nothing
        if waiting and not self.known.knows(name, address):
            log.info("login.name_limited", extra={"peer": address, "user": name})
            return Refusal.after(Outcome.LIMITED, wait)
        if not self.logins.charge(address):
            log.info("login.limited", extra={"peer": address})
            return Refusal.after(Outcome.LIMITED, self.logins.wait(address))
        if self.checks.full():
            self.logins.refund(address)
            log.warning("login.busy", extra={"peer": address})
            return Refusal.after(Outcome.BUSY, 1.0)
        # first in the queue: names nobody is guessing, from addresses that have not been guessing
        priority = self.names.charge(name) + self.logins.spent(address)
        ok = await self.checks.run(priority, partial(self.users.verify, name, password))
        if ok is None:
            self.logins.refund(address)
            self.names.refund(name)
            log.warning("login.busy", extra={"peer": address})
            return Refusal.after(Outcome.BUSY, 1.0)
        if not ok:
            log.info("login.failed", extra={"peer": address, "user": name})
            return Refusal(Outcome.DENIED)
        self.logins.refund(address)
        if waiting:
            self.names.refund(name)  # the others' failures stand: a flood must not be let off
        else:
            self.names.succeeded(name)
        self.known.add(name, address)
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
