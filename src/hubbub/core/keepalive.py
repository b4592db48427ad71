"""The heartbeat sweep: one task pings silent peers and drops dead ones.

The decision for each connection is the session's (`Session.beat`, after
`hubbub.protocol.heartbeat`); this is the timer around it. One sweep for the whole hub,
not a timer per connection: most connections are skipped with two attribute
reads, because they were heard from lately.

The same sweep ends connections whose signed token has expired (close 1008,
`hubbub.auth.tokens`): `exp + LEEWAY` has passed and no `refresh` moved it, so a
connection outlives its token by at most one sweep period (0.5 s at most).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from hubbub.auth.tokens import LEEWAY
from hubbub.protocol.codes import CloseCode
from hubbub.protocol.heartbeat import Beat, sweep_period

if TYPE_CHECKING:
    from hubbub.server.connection import Connection

log = logging.getLogger("hubbub.core.keepalive")


async def sweep(connections: Callable[[], Collection[Connection]], interval: float, pong_timeout: float) -> None:
    """Forever: ping peers silent for `interval`, abort those whose pong is `pong_timeout` late."""
    period = sweep_period(interval, pong_timeout)
    while True:
        await asyncio.sleep(period)
        _sweep_once(tuple(connections()), interval, pong_timeout)


def _sweep_once(connections: tuple[Connection, ...], interval: float, pong_timeout: float) -> None:
    """One pass over `connections`. A function of its own so that its variables end with it:
    the sweep, sleeping between passes, holds no connection (a closed one would otherwise stay
    in memory until a later pass looked at another)."""
    now = time.monotonic()
    heard_lately = now - interval
    expired = time.time() - LEEWAY  # a token's exp is wall-clock time
    for conn in connections:
        grant = conn.grant
        if grant is not None and grant.exp <= expired:
            log.info("conn.token_expired", extra={"conn": conn.id, "user": conn.identity})
            conn.grant = None  # closed once; the close is the session's from here on
            conn.close(CloseCode.POLICY_VIOLATION, "token expired")
            continue
        session = conn.session
        if session.ping_sent is None and session.last_seen > heard_lately:
            continue  # the session would say WAIT: skipped inline, as most connections are each time
        beat = session.beat(now, interval, pong_timeout)
        if beat is Beat.PING:
            conn.ping()
        elif beat is Beat.DROP:
            log.info("conn.ping_timeout", extra={"conn": conn.id, "user": conn.identity})
            conn.abort()
