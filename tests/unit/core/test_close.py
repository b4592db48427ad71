"""A connection's one way out, with a transport that records what it is asked to do, in order.

The rules the Go hub pattern teaches, one test each: a connection leaves the hub exactly once
however it ends; after a close nothing more is written; what waited in the outbox is discarded
before the close frame (where Go's write pump drains its channel first); close and ping frames
go straight to the WebSocket transport, while pongs wait their turn in the one writer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from hubbub.core.connection import Connection, peer_address
from hubbub.core.hub import Hub
from hubbub.core.settings import Settings
from hubbub.protocol.frames import pong_frame

Call = tuple[str, Any]


class Transport:
    """picows' WebSocket transport and the raw transport under it, in one: it records every call."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    # the raw transport: data frames, in one write per flush
    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else None

    def abort(self) -> None:
        self.calls.append(("abort", None))

    # the WebSocket transport: control frames
    def send_close(self, code: object = None, reason: object = None, /) -> None:
        self.calls.append(("send_close", code))

    def send_ping(self) -> None:
        self.calls.append(("send_ping", None))

    def disconnect(self) -> None:
        self.calls.append(("disconnect", None))

    async def wait_disconnected(self) -> None:
        pass


async def opened(**settings: Any) -> tuple[Connection, Transport, list[Connection]]:
    """An open connection on a hub that counts its unregisters."""
    hub = Hub(Settings(write_delay=0.0, close_timeout=0.05, **settings))
    left: list[Connection] = []
    unregister = hub._unregister

    def counted(conn: Connection) -> None:
        left.append(conn)
        unregister(conn)

    hub._unregister = counted  # type: ignore[method-assign]
    conn = Connection(hub, "ada")
    transport = Transport()
    conn.attach(transport, transport)
    assert conn in hub.connections
    return conn, transport, left


async def a_flush() -> None:
    await asyncio.sleep(0.01)


async def test_close_is_idempotent_and_the_connection_leaves_the_hub_once() -> None:
    conn, transport, left = await opened()
    conn.close(1000)
    conn.close(1001)
    conn.close(4000)
    assert left == [conn]
    assert [c for c in transport.calls if c[0] == "send_close"] == [("send_close", 1000)]
    assert conn.close_code == 1000


@pytest.mark.parametrize(
    "ending",
    [
        ["close", "close"],
        ["close", "transport_lost"],
        ["abort", "close", "transport_lost"],
        ["peer_closed", "close", "transport_lost"],
        ["transport_lost", "close", "abort"],
        ["drop_stalled", "transport_lost"],
    ],
)
async def test_whichever_side_notices_first_the_connection_leaves_once(ending: list[str]) -> None:
    """Read error, write error, deadline, peer close, abort: any mix, in any order, is one unregister."""
    conn, _transport, left = await opened()
    for step in ending:
        if step == "close":
            conn.close(1000)
        elif step == "transport_lost":
            conn.transport_lost(None)
        elif step == "abort":
            conn.abort()
        elif step == "peer_closed":
            conn.peer_closed(1000, True, 1000)
        else:
            conn.drop_stalled()
    assert left == [conn]
    assert conn not in conn.hub.connections  # type: ignore[attr-defined]


async def test_close_discards_the_outbox_before_the_close_frame() -> None:
    """Go's write pump sends what its channel holds, then Close; hubbub discards the outbox first."""
    conn, transport, _left = await opened()
    conn.pause_writing()  # the client reads slowly: frames wait in the outbox
    conn.send_frame(b"first")
    conn.send_frame(b"second")
    assert conn.queued_bytes == len(b"firstsecond")
    conn.close(1000)
    assert conn.queued_bytes == 0
    conn.resume_writing()
    await a_flush()
    assert transport.calls == [("send_close", 1000)]  # no write: the two frames are gone


async def test_nothing_is_written_after_a_close_even_in_the_same_turn() -> None:
    conn, transport, _left = await opened()
    conn.send_frame(b"queued before the close, flushed after it")
    conn.close(1000)
    conn.send_frame(b"sent after the close")
    await a_flush()
    assert [c[0] for c in transport.calls] == ["send_close"]


async def test_pings_and_close_frames_bypass_the_outbox_and_pongs_wait_in_it() -> None:
    conn, transport, _left = await opened()
    conn.pause_writing()
    conn.send_frame(b"data")
    conn.ping()  # the heartbeat's ping: straight to the transport, past the waiting data
    assert transport.calls == [("send_ping", None)]
    assert conn.session.ping(b"p", time.monotonic())  # the peer pinged: a pong is owed
    conn.pong_owed()
    await a_flush()
    assert transport.calls == [("send_ping", None)]  # the writer is paused: no pong yet
    conn.resume_writing()
    await a_flush()
    assert transport.calls[1:] == [("write", pong_frame(b"p") + b"data")]  # the pong at the head of the write
    conn.close(1000)
    assert transport.calls[-1] == ("send_close", 1000)


async def test_the_peer_address_is_taken_from_the_transport_for_the_logs() -> None:
    conn, _transport, _left = await opened()
    assert conn.remote == "127.0.0.1:40000"
    assert peer_address(("::1", 8000, 0, 0)) == "[::1]:8000"
    assert peer_address(None) == ""
