"""Backends of the broker, history and presence contracts, chosen by `--broker`.

| backend | cross-node fan-out | offsets, history, resume | presence | nodes |
|---|---|---|---|---|
| `memory` (default) | - | yes | yes | one |
| `redis://HOST:PORT/DB` | yes | yes | yes, with TTL | many |
"""

from __future__ import annotations

from urllib.parse import urlsplit

from hubbub.broker import Broker
from hubbub.config import Settings
from hubbub.errors import ConfigError
from hubbub.presence import Presence


def check(settings: Settings) -> None:
    """Refuse, before anything starts, a backend choice that cannot work."""
    scheme = urlsplit(settings.broker).scheme or settings.broker
    if scheme not in ("memory", "redis", "rediss", "unix"):
        raise ConfigError(f"--broker must be memory, redis://HOST:PORT/DB or nats://HOST:PORT, not {settings.broker!r}")


def open_backends(settings: Settings) -> tuple[Broker, Presence]:
    """The broker (which also keeps history) and the presence that `settings` ask for."""
    check(settings)
    scheme = urlsplit(settings.broker).scheme or settings.broker
    if scheme == "memory":
        from hubbub.backends.memory import MemoryBroker, MemoryPresence

        return MemoryBroker(settings.history_size, settings.history_ttl), MemoryPresence()
    from hubbub.backends.redis import redis_backends

    return redis_backends(
        settings.broker, settings.node_id, settings.history_size, settings.history_ttl, settings.presence_ttl
    )
