"""The heartbeat sweep: one task pings silent peers and drops dead ones.

The decision for each connection is the session's (`Session.beat`, after
`hubbub.protocol.heartbeat`); this is the timer around it. One sweep for the whole hub,
not a timer per connection: most connections are skipped with two attribute
reads, because they were heard from lately.

The same sweep ends connections whose signed token has expired (close 1008,
`hubbub.auth.tokens`): `exp + LEEWAY` has passed and no `refresh` moved it, so a
connection outlives its token by at most one sweep period (0.5 s at most).

And it keeps the write deadline: a connection whose writes have not drained for
`write_timeout` (`Connection.write_stalled`: the transport paused it and has not
resumed, or holds bytes the sweep found there and finds there still) is dropped
as a slow consumer, 1013 then the RST, whatever its pings and pongs say. A client
that reads nothing is thus dropped within `write_timeout` plus a quarter of it
(the writers are looked at every quarter of the deadline) of being paused,
however quiet its rooms (docs/lifecycle.md).
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
    from hubbub.core.connection import Connection

log = logging.getLogger("hubbub.core.keepalive")


async def sweep(
    connections: Callable[[], Collection[Connection]], interval: float, pong_timeout: float, write_timeout: float = 0.0
) -> None:
    """Forever: ping peers silent for `interval`, abort those whose pong is `pong_timeout` late, and drop
    those whose writes have not drained for `write_timeout` (0: never)."""
    period = sweep_period(interval, pong_timeout)
    writes_every = 0  # passes between two looks at the writers (0: never)
    if write_timeout > 0:
        period = min(period, write_timeout / 4)
        # A look at every writer costs a call into the transport per connection: a quarter
        # of the deadline apart is often enough (2.5 s by default, against 0.5 s for pongs).
        writes_every = max(1, round(write_timeout / 4 / period))
    passes = 0
    while True:
        await asyncio.sleep(period)
        passes += 1
        writes = writes_every > 0 and passes % writes_every == 0
        _pass(tuple(connections()), interval, pong_timeout, write_timeout if writes else 0.0)


def _pass(connections: tuple[Connection, ...], interval: float, pong_timeout: float, write_timeout: float) -> None:
    """One sweep over `connections` (a function of its own, so that no connection outlives it in a frame);
    `write_timeout` 0: the writers are not looked at in this one."""
    now = time.monotonic()
    heard_lately = now - interval
    expired = time.time() - LEEWAY  # a token's exp is wall-clock time
    for conn in connections:
        grant = conn.grant
        if grant is not None and grant.exp <= expired:
            log.info("conn.token_expired", extra={"conn": conn.id, "user": conn.identity, "remote": conn.remote})
            conn.grant = None  # closed once; the close is the session's from here on
            conn.close(CloseCode.POLICY_VIOLATION, "token expired")
            continue
        if (
            write_timeout
            and (conn._paused or conn._blocked_since is not None or _buffered(conn))
            and conn.write_stalled(now, write_timeout)
        ):
            conn.drop_stalled()  # logged and counted as a slow consumer
            continue
        session = conn.session
        if session.ping_sent is None and session.last_seen > heard_lately:
            continue  # the session would say WAIT: skipped inline, as most connections are each time
        beat = session.beat(now, interval, pong_timeout)
        if beat is Beat.PING:
            conn.ping()
        elif beat is Beat.DROP:
            log.info("conn.ping_timeout", extra={"conn": conn.id, "user": conn.identity, "remote": conn.remote})
            conn.abort()


def _buffered(conn: Connection) -> int:
    """Bytes `conn`'s transport holds above the kernel (0 before it has one)."""
    raw = conn._raw
    return 0 if raw is None else int(raw.get_write_buffer_size())
