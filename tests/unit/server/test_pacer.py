"""The pacer passes every byte through once, and nothing after a close frame."""

from __future__ import annotations

import asyncio
import itertools
import random

from hubbub.server.pacer import FRAMES_PER_TURN, FramePacer, frame_size
from tests.helpers import CLOSE, PING, TEXT, mask_frame


class Recorder:
    """Stands in for picows' protocol: a buffer to write into, and a log of each update."""

    def __init__(self, room: int = 1 << 20) -> None:
        self.buffer = bytearray(room)
        self.chunks: list[bytes] = []

    def get_buffer(self, hint: int) -> memoryview:
        return memoryview(self.buffer)

    def buffer_updated(self, n: int) -> None:
        self.chunks.append(bytes(self.buffer[:n]))

    def connection_made(self, transport: object) -> None:
        pass


class Transport:
    """Stands in for the transport: records whether reading is paused."""

    def __init__(self) -> None:
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return False


def _push(pacer: FramePacer, data: bytes, cuts: list[int]) -> None:
    """Deliver `data` to the pacer in reads split at `cuts`, as a transport would."""
    edges = [0, *cuts, len(data)]
    for a, b in itertools.pairwise(edges):
        while a < b:
            target = pacer.get_buffer(b - a)
            n = min(len(target), b - a)
            target[:n] = data[a : a + n]
            pacer.buffer_updated(n)
            a += n


def test_frame_size_reads_all_three_length_forms() -> None:
    for n in (0, 125, 126, 65535, 65536):
        frame = mask_frame(TEXT, b"x" * n)
        assert frame_size(frame, 0) == len(frame)
        assert frame_size(frame[:1], 0) is None
    assert frame_size(mask_frame(TEXT, b"x" * 70000)[:5], 0) is None


def test_nothing_after_a_close_frame_reaches_picows() -> None:
    handshake = b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"
    frames = [mask_frame(TEXT, b"hello"), mask_frame(CLOSE, b"\x03\xe8"), mask_frame(CLOSE, b"")]
    inner = Recorder()
    pacer = FramePacer(inner)
    _push(pacer, handshake + b"".join(frames), [])
    assert inner.chunks[0] == handshake
    assert b"".join(inner.chunks[1:]) == frames[0] + frames[1]
    _push(pacer, mask_frame(TEXT, b"late"), [])
    assert b"".join(inner.chunks[1:]) == frames[0] + frames[1]


def test_random_reads_keep_every_byte() -> None:
    rng = random.Random(7)
    handshake = b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"
    frames = [mask_frame(TEXT, b"y" * rng.choice([0, 5, 125, 126, 300, 70000])) for _ in range(60)]
    data = handshake + b"".join(frames)
    for _ in range(20):
        inner = Recorder()
        pacer = FramePacer(inner)
        cuts = sorted(rng.sample(range(1, len(data)), 40))
        _push(pacer, data, cuts)
        assert b"".join(inner.chunks) == data
        assert inner.chunks[0] == handshake
        body = inner.chunks[1:]
        stream = b"".join(body)
        assert stream == b"".join(frames)


def test_random_reads_stop_exactly_at_the_end_of_a_close_frame() -> None:
    """Wherever the reads cut (inside a header, a payload, the close frame), picows gets
    every byte up to the close frame's last one and nothing after it."""
    rng = random.Random(11)
    handshake = b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(200):
        before = [mask_frame(TEXT, b"z" * rng.choice([0, 3, 125, 126, 400])) for _ in range(rng.randint(0, 6))]
        close = mask_frame(CLOSE, b"\x03\xe8" + b"r" * rng.choice([0, 10, 120]))
        after = [mask_frame(TEXT, b"late"), mask_frame(CLOSE, b"")][: rng.randint(0, 2)]
        data = handshake + b"".join(before) + close + b"".join(after)
        inner = Recorder()
        pacer = FramePacer(inner)
        cuts = set(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 12))))
        end_of_close = len(data) - len(b"".join(after))
        if rng.random() < 0.5 and end_of_close < len(data):
            cuts.add(end_of_close)  # a read that ends exactly with the close frame
        _push(pacer, data, sorted(cuts))
        assert b"".join(inner.chunks) == handshake + b"".join(before) + close


async def test_one_read_of_thousands_of_frames_is_passed_at_most_a_batch_per_turn() -> None:
    """Fair reading: a read of 3,000 empty pings is passed `FRAMES_PER_TURN` frames at a time, one
    batch per loop turn; reading stays paused while frames are held and resumes after the last
    batch; every byte is passed once, in order."""
    handshake = b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"
    ping = mask_frame(PING, b"")
    total = 3000
    inner = Recorder()
    transport = Transport()
    pacer = FramePacer(inner)
    pacer.connection_made(transport)  # type: ignore[arg-type]
    _push(pacer, handshake, [])
    inner.chunks.clear()
    _push(pacer, ping * total, [])  # one read
    assert inner.chunks == [ping * FRAMES_PER_TURN]
    assert transport.paused
    turns = 0
    while transport.paused:
        passed = len(inner.chunks)
        await asyncio.sleep(0)  # one loop turn: the pacer's release runs before this task resumes
        turns += 1
        assert len(inner.chunks) == passed + 1  # one batch per turn, never more
        assert len(inner.chunks[-1]) <= FRAMES_PER_TURN * len(ping)
        assert transport.paused is (sum(map(len, inner.chunks)) < total * len(ping))  # paused while held
        assert turns < total
    assert b"".join(inner.chunks) == ping * total  # every byte, once, in order
    assert len(inner.chunks) == -(-total // FRAMES_PER_TURN)
    assert not transport.paused  # reading again
