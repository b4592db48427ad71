"""One way to open Redis for hubbub: a bounded pool that waits rather than fails, and retries dead connections.

`connect_redis` makes the client every Redis backend uses (commands safe to send twice are
retried after a reconnect); `Health` records whether its last command succeeded, for `/healthz`.
A broker's Redis or bus that cannot be reached at start-up raises `BrokerUnavailable` (`reach`).
Why: docs/topics/backends.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hubbub.backends.broker import BrokerUnavailable
from hubbub.protocol.redaction import redact

MAX_CONNECTIONS = 32
RETRIES = 3
"""Attempts after the first, 50, 100 and 200 ms apart: a restarted Redis is reached, a dead one given up in < 1 s."""
CLOSE_TIMEOUT = 0.5
"""Seconds a failed or abandoned start-up waits for its half-open connections to close."""

STARTUP_TIMEOUT = 5.0
"""Seconds a node waits at start-up for its broker or store before it exits with code 1."""


def connect_redis(url: str, *, retry_timeouts: bool = True, max_connections: int = MAX_CONNECTIONS) -> aioredis.Redis:
    """A client on a blocking pool whose commands survive a dead pooled connection.

    A command that fails with a connection error is sent again on a fresh
    connection: it never reached a live Redis, so sending it again is safe.
    With `retry_timeouts`, a command that timed out is sent again too, which
    suits reads and idempotent writes; a timed-out command may have run, so a
    client for commands that must not run twice (publishing) passes False.
    """
    errors: list[type[RedisError]] = [RedisConnectionError]
    if retry_timeouts:
        errors.append(RedisTimeoutError)
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.025), RETRIES, supported_errors=tuple(errors))
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=retry,
        retry_on_error=errors,
    )
    return aioredis.Redis(connection_pool=pool)


class Health:
    """Whether the last command a node sent to Redis succeeded; part of what `/healthz` reports.

    The subscription's heartbeat proves that the bus works, not that the
    pool's connections do: after a Redis restart the heartbeat comes back
    while a command on another connection may still fail. A node is healthy
    only while its last command succeeded too.
    """

    __slots__ = ("ok",)

    def __init__(self) -> None:
        self.ok = True

    @contextlib.contextmanager
    def command(self) -> Iterator[None]:
        """Run Redis commands: record the outcome; errors become `BrokerUnavailable` (answered `unavailable`)."""
        try:
            yield
        except (RedisError, OSError) as exc:
            self.ok = False
            raise BrokerUnavailable(one_line(exc)) from None
        self.ok = True


def one_line(exc: BaseException) -> str:
    """An exception as one line of text, for a log field or a client's error message."""
    return " ".join(str(exc).split()) or type(exc).__name__


class _Closable(Protocol):
    async def close(self) -> None: ...


async def close_quickly(backend: _Closable) -> None:
    """Close a backend whose start-up failed or was abandoned, waiting at most `CLOSE_TIMEOUT`.

    A connection still in its handshake with a peer that does not answer would
    otherwise hold the close for the client's socket timeout (5 s): a signal
    during start-up must end the process at once.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await backend.close()


async def abandon(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait for it to end, for at most `CLOSE_TIMEOUT`.

    A client library may absorb one cancellation while it tears a connection
    down (redis-py does during its handshake, and then holds on until its
    socket timeout), so the task is cancelled again until it ends: a signal
    during start-up must end the process at once, not 5 s later.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLOSE_TIMEOUT
    while not task.done() and loop.time() < deadline:
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)


async def reach(
    url: str, what: str, connect: Callable[[], Awaitable[object]], why: Callable[[], str] | None = None
) -> None:
    """Await `connect()` for at most `STARTUP_TIMEOUT`; a failure is `BrokerUnavailable`, one line naming `what`.

    `why` returns the last error of a client that retries by itself
    (nats-py), to say why it was still trying when the time ran out.
    """
    attempt = asyncio.ensure_future(connect())
    try:
        done, _ = await asyncio.wait({attempt}, timeout=STARTUP_TIMEOUT)
    except asyncio.CancelledError:  # a signal during start-up
        await abandon(attempt)
        raise
    if not done:
        await abandon(attempt)
        last = why() if why is not None else ""
        detail = f" (last error: {last})" if last else ""
        raise BrokerUnavailable(
            f"cannot reach {what} at {redact(url)}: no answer within {STARTUP_TIMEOUT:g} s{detail}"
        ) from None
    exc = attempt.exception()
    if isinstance(exc, Exception):  # whatever the client raises: refused, unknown host, bad password, ...
        raise BrokerUnavailable(f"cannot reach {what} at {redact(url)}: {one_line(exc)}") from None
    if exc is not None:
        raise exc
