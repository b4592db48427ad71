"""The heartbeat sweep keeps no connection alive: a closed one is freed before the next pass."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import weakref
from typing import Any

from hubbub.core.keepalive import sweep


class _Session:
    ping_sent = None

    def __init__(self) -> None:
        self.last_seen = time.monotonic() + 3600.0  # heard from: every pass skips it


class _Conn:
    grant = None

    def __init__(self) -> None:
        self.session = _Session()


async def test_a_connection_swept_then_closed_is_not_held_by_the_sweep() -> None:
    connections: list[Any] = [_Conn()]
    alive = weakref.ref(connections[0])
    task = asyncio.create_task(sweep(lambda: connections, interval=0.04, pong_timeout=0.04))  # a pass every 10 ms
    try:
        await asyncio.sleep(0.05)  # passes that looked at it
        connections.clear()  # closed and unregistered; later passes see no connection at all
        await asyncio.sleep(0.05)
        gc.collect()
        assert alive() is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
