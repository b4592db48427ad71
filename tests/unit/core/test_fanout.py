"""Fan-out batching: one write per connection per flush, membership snapshots, order."""

from __future__ import annotations

import asyncio
from typing import Any

from hubbub.core.fanout import Fanout
from hubbub.core.metrics import HotCounter
from hubbub.protocol.session import State


class FakeConn:
    """Records what fan-out writes to it and what goes through its outbox.

    It has the few attributes the flush reads directly (`session.state`, `_out`,
    `_paused`, `_raw`) and is its own transport and session.
    """

    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.session = self
        self.state = State.OPEN
        self._out: list[bytes] = []
        self._paused = False
        self._raw = self
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:  # the transport's write
        self.writes.append(data)

    def send_frame(self, data: bytes) -> None:
        if self.state is not State.OPEN:
            return
        if not self._out:
            self.fanout.want_write(self)  # type: ignore[arg-type]
        self._out.append(data)

    def _write(self) -> None:
        if not self._paused and self._out:
            self.writes.append(b"".join(self._out))
            self._out = []


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
    """A join seals the room's segment: earlier members get both segments, in order, one write each."""
    fanout, _ = _fanout(delay=0.005)
    early = FakeConn(fanout)
    late = FakeConn(fanout)
    members: set[Any] = {early}
    fanout.room_frame("r", members, b"1")
    members.add(late)
    fanout.seal("r")
    fanout.room_frame("r", members, b"2")
    await _flushed(0.005)
    assert early.writes == [b"1", b"2"]
    assert late.writes == [b"2"]


async def test_private_frames_go_out_in_the_same_flush_before_room_frames() -> None:
    fanout, _ = _fanout()
    conn = FakeConn(fanout)
    fanout.room_frame("r", {conn}, b"room")  # type: ignore[arg-type]
    conn.send_frame(b"ack")
    await _flushed()
    assert conn.writes == [b"ackroom"]


async def test_a_paused_member_gets_room_frames_through_its_outbox() -> None:
    """A full transport is not written to: the frames wait in the bounded outbox, in order."""
    fanout, _ = _fanout()
    slow, fast = FakeConn(fanout), FakeConn(fanout)
    slow._paused = True
    members: set[Any] = {slow, fast}
    fanout.room_frame("r", members, b"a")
    fanout.room_frame("r", members, b"b")
    await _flushed()
    assert fast.writes == [b"ab"]
    assert slow.writes == [] and slow._out == [b"ab"]


async def test_a_member_that_left_the_hub_is_never_written_to() -> None:
    """A connection detached after the segment's snapshot gets nothing: nothing is written to a dead connection."""
    fanout, _ = _fanout()
    gone, alive = FakeConn(fanout), FakeConn(fanout)
    members: set[Any] = {gone, alive}
    fanout.room_frame("r", members, b"x")
    gone.state = State.CLOSING
    await _flushed()
    assert gone.writes == [] and gone._out == []
    assert alive.writes == [b"x"]


class RecordingTransport:
    """A transport (and the socket transport under it) that logs which member each write went to."""

    def __init__(self, log: list[int], member: int) -> None:
        self.underlying_transport = self
        self._log = log
        self._member = member

    def write(self, data: bytes) -> None:
        self._log.append(self._member)

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def get_extra_info(self, name: str) -> None:
        return None

    def send_close(self, code: object = None, reason: object = None, /) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def send_ping(self) -> None:
        pass

    async def wait_disconnected(self) -> None:
        pass

    def abort(self) -> None:
        pass


async def test_the_sender_gets_its_own_copy_last() -> None:
    """Members who do not know the message yet are written first; a client pacing on its echo is paced by the room."""
    from hubbub.core.connection import Connection
    from hubbub.core.hub import Hub
    from hubbub.core.settings import Settings

    # presence_interval 0: the joins' announcements go out as they happen, not at the next half
    # second, when they would land as one more write to everyone in the middle of what is counted
    hub = Hub(Settings(write_delay=0.0, close_timeout=0.01, shutdown_timeout=0.1, presence_interval=0.0))
    await hub.start()
    log: list[int] = []
    conns = [Connection(hub, None) for _ in range(4)]
    for i, conn in enumerate(conns):
        conn.attach(*[RecordingTransport(log, i)] * 2)
        await hub.join(conn, "r")
    await _flushed()
    log.clear()

    def say(i: int) -> None:
        conns[i].receive_text('{"type":"send_message","payload":{"room":"r","message":"hi"}}')

    say(2)
    await _flushed()
    assert log == [0, 1, 3, 2]
    log.clear()
    say(0)
    say(0)  # the same batch: one write each, the sender still last
    await _flushed()
    assert log == [1, 3, 2, 0]
    log.clear()
    late = Connection(hub, None)  # a joiner goes to the end, behind the last sender
    late.attach(*[RecordingTransport(log, 4)] * 2)
    await hub.join(late, "r")
    await _flushed()
    log.clear()
    say(0)
    await _flushed()
    assert log == [1, 3, 2, 4, 0]
    assert hub.leave(conns[0], "r")
    assert conns[0] not in hub.room_table.last_sender.values()  # nothing holds a member that left
    await hub.shutdown()
