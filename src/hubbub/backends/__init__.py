"""Backends of the broker, history and presence contracts, chosen by `--broker`.

| backend | cross-node fan-out | offsets, history, resume | presence | nodes |
|---|---|---|---|---|
| `memory` (default) | - | yes | yes | one |
| `redis://HOST:PORT/DB` | yes | yes | yes, with TTL | many |
| `nats://HOST:PORT` with `--store redis://...` | yes (NATS) | yes (in Redis) | yes (in Redis) | many |

NATS alone cannot number messages, keep history or hold presence, so
`--broker nats://...` without `--store redis://...` is refused at start-up, and
so is a `--store` that no broker would use. So is a backend whose client
library is not installed (`MissingExtra`: `pip install 'hubbub[redis]'`).
"""

from __future__ import annotations

import importlib
from typing import Protocol
from urllib.parse import urlsplit

from hubbub.backends.broker import Broker
from hubbub.backends.presence import Presence
from hubbub.errors import ConfigError
from hubbub.protocol.redaction import redact as redact  # re-exported: the CLI's messages use it

_REDIS = ("redis", "rediss", "unix")


class BackendSettings(Protocol):
    """The settings that choose and size the backends (`hubbub.core.settings.Settings` has them all)."""

    @property
    def broker(self) -> str: ...
    @property
    def store(self) -> str: ...
    @property
    def node_id(self) -> str: ...
    @property
    def history_size(self) -> int: ...
    @property
    def history_ttl(self) -> float: ...
    @property
    def history_max_bytes(self) -> int: ...
    @property
    def presence_ttl(self) -> float: ...
    @property
    def auth_secret(self) -> str: ...
    @property
    def auth_jwks_url(self) -> str: ...
    @property
    def auth_public_key(self) -> str: ...


class MissingExtra(ConfigError):
    """The backend asked for needs a library that is not installed; the message says what to install."""


def _scheme(url: str) -> str:
    return urlsplit(url).scheme or url


def check(settings: BackendSettings) -> None:
    """Refuse, before anything starts, a backend choice that cannot work (`ConfigError`, or `MissingExtra`)."""
    broker, store = _scheme(settings.broker), _scheme(settings.store) if settings.store else ""
    if broker not in ("memory", "nats", *_REDIS):
        raise ConfigError(f"--broker must be memory, redis://HOST:PORT/DB or nats://HOST:PORT, not {settings.broker!r}")
    if broker == "nats" and store not in _REDIS:
        raise ConfigError(
            "--broker nats:// carries messages between nodes but cannot number them, keep history or presence: "
            "add --store redis://HOST:PORT/DB"
        )
    if store and broker != "nats":
        raise ConfigError(f"--store is only for --broker nats://; the {broker} broker keeps its own state")
    if settings.auth_secret:
        _require("jwt", "--auth-secret", "auth")
    for value, flag in ((settings.auth_jwks_url, "--auth-jwks-url"), (settings.auth_public_key, "--auth-public-key")):
        if value:
            _require("jwt", flag, "auth")
            _require("cryptography", flag, "auth")
    if broker == "nats":
        _require("nats", "--broker nats://", "nats,redis")
        _require("redis", "--store redis://", "nats,redis")
    elif broker in _REDIS:
        _require("redis", "--broker redis://", "redis")


def _require(module: str, flag: str, extras: str) -> None:
    """Import `module`, or raise `MissingExtra` naming the extras to install."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        reason = " ".join(str(exc).split())
        raise MissingExtra(
            f"{flag} needs the {module} package ({reason}): pip install 'hubbub[{extras}]'"
            f" (from a clone: pip install '.[{extras}]')"
        ) from None


def open_backends(settings: BackendSettings) -> tuple[Broker, Presence]:
    """The broker (which also keeps history) and the presence that `settings` ask for."""
    check(settings)
    scheme = urlsplit(settings.broker).scheme or settings.broker
    if scheme == "memory":
        from hubbub.backends.memory import MemoryBroker, MemoryPresence

        memory = MemoryBroker(settings.history_size, settings.history_ttl, settings.history_max_bytes)
        return memory, MemoryPresence()
    if scheme == "nats":
        from hubbub.backends.nats import NatsBroker
        from hubbub.backends.redis_presence import RedisPresence

        broker = NatsBroker(
            settings.broker, settings.store, settings.node_id, settings.history_size, settings.history_ttl
        )
        client, health = broker.presence_client
        presence = RedisPresence(settings.store, settings.node_id, settings.presence_ttl, client=client, health=health)
        return broker, presence
    from hubbub.backends.redis import redis_backends

    return redis_backends(
        settings.broker, settings.node_id, settings.history_size, settings.history_ttl, settings.presence_ttl
    )
