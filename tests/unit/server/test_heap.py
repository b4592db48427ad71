"""HeapTrimmer: when a wave of closed sockets makes it trim, and how often (a fake trim, real timers)."""

from __future__ import annotations

import asyncio

import pytest

from hubbub.server import heap
from hubbub.server.heap import HeapTrimmer


class Sockets:
    """The open-socket count a listener would keep, driving a trimmer with a fake `malloc_trim`."""

    def __init__(self) -> None:
        self.open = 0
        self.trims: list[int] = []
        self.hooked = 0
        self.trimmer = HeapTrimmer(lambda: self.open, self._hook)
        self.trimmer._trim = self._fake

    def _fake(self, pad: int) -> int:
        self.trims.append(pad)
        return 1

    def _hook(self) -> None:
        self.hooked += 1

    def wave(self, up: int, down_to: int) -> None:
        for _ in range(up):
            self.open += 1
            self.trimmer.opened(self.open)
        while self.open > down_to:
            self.open -= 1
            self.trimmer.closed(self.open)


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "DELAY", 0.01)
    monkeypatch.setattr(heap, "INTERVAL", 0.2)


async def test_a_wave_that_closes_is_trimmed_once_a_little_after_it() -> None:
    sockets = Sockets()
    sockets.wave(300, 0)
    assert sockets.trims == []  # not during the wave: DELAY after it
    await asyncio.sleep(0.05)
    assert sockets.trims == [0] and sockets.hooked == 1 and sockets.trimmer.trims == 1
    assert sockets.trimmer.peak == 0


async def test_small_waves_and_falls_to_more_than_half_are_not_trimmed() -> None:
    sockets = Sockets()
    sockets.wave(heap.WAVE - 1, 0)  # too few closed
    sockets.wave(1000, 600)  # many closed, but more than half still open
    await asyncio.sleep(0.05)
    assert sockets.trims == []


async def test_trims_are_at_most_one_per_interval() -> None:
    sockets = Sockets()
    sockets.wave(300, 0)
    await asyncio.sleep(0.05)
    sockets.wave(300, 0)
    await asyncio.sleep(0.05)
    assert len(sockets.trims) == 1  # the second waits for the interval
    await asyncio.sleep(0.25)
    assert len(sockets.trims) == 2
    sockets.trimmer.close()


async def test_without_malloc_trim_nothing_is_scheduled() -> None:
    sockets = Sockets()
    sockets.trimmer._trim = None
    assert not sockets.trimmer.available
    sockets.wave(300, 0)
    await asyncio.sleep(0.05)
    assert sockets.trims == [] and sockets.trimmer.trims == 0
