"""One way to open Redis for hubbub: a bounded pool that waits rather than fails.

A thousand clients joining at once means a thousand presence updates at once.
redis-py's default pool opens a connection per concurrent command and, past its
limit, raises; a blocking pool with a few dozen connections queues them instead,
which Redis (single-threaded) serves just as fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hubbub.broker import BrokerUnavailable

MAX_CONNECTIONS = 32


def connect_redis(url: str) -> aioredis.Redis:
    """A client on a blocking pool of at most `MAX_CONNECTIONS` connections."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=10, socket_timeout=5, socket_connect_timeout=2
    )
    return aioredis.Redis(connection_pool=pool)


@contextlib.contextmanager
def unavailable_on_error() -> Iterator[None]:
    """Turn Redis and socket errors into `BrokerUnavailable`, which the hub answers with `unavailable`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise BrokerUnavailable(str(exc) or type(exc).__name__) from None
