"""Fan-out batching: one write per connection per flush, membership snapshots, order."""

from __future__ import annotations

import asyncio
from typing import Any

from hubbub.fanout import Fanout
from hubbub.metrics import HotCounter


class FakeConn:
    """Records what fan-out hands it and how often it is asked to write."""

    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.pending: list[bytes] = []
        self.writes: list[bytes] = []

    def send_frame(self, data: bytes) -> None:
        if not self.pending:
            self.fanout.want_write(self)  # type: ignore[arg-type]
        self.pending.append(data)

    def _write(self) -> None:
        self.writes.append(b"".join(self.pending))
        self.pending = []


def _fanout(delay: float = 0.0) -> tuple[Fanout, HotCounter]:
    delivered = HotCounter("d", "d")
    return Fanout(delivered, delay), delivered


async def _flushed(delay: float = 0.0) -> None:
    await asyncio.sleep(delay + 0.01)


async def test_many_messages_one_write_per_member() -> None:
    fanout, delivered = _fanout()
    members: set[Any] = {FakeConn(fanout) for _ in range(5)}
    for i in range(10):
        fanout.room_frame("r", members, b"m%d;" % i)
    await _flushed()
    for conn in members:
        assert conn.writes == [b"".join(b"m%d;" % i for i in range(10))]
    assert delivered.value == 50


async def test_a_member_who_joins_mid_batch_gets_only_later_messages() -> None:
    fanout, _ = _fanout(delay=0.005)
    early = FakeConn(fanout)
    late = FakeConn(fanout)
    members: set[Any] = {early}
    fanout.room_frame("r", members, b"1")
    members.add(late)
    fanout.seal("r")
    fanout.room_frame("r", members, b"2")
    await _flushed(0.005)
    assert early.writes == [b"12"]
    assert late.writes == [b"2"]


async def test_private_frames_go_out_in_the_same_flush_before_room_frames() -> None:
    fanout, _ = _fanout()
    conn = FakeConn(fanout)
    fanout.room_frame("r", {conn}, b"room")  # type: ignore[arg-type]
    conn.send_frame(b"ack")
    await _flushed()
    assert conn.writes == [b"ackroom"]
