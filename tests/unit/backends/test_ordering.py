"""`OrderedDelivery`: a room's messages reach the sink once and in offset order, gaps filled from history."""

from __future__ import annotations

import pytest

from hubbub.backends.broker import BrokerUnavailable
from hubbub.backends.history import History, Page, page_from
from hubbub.backends.ordering import OrderedDelivery


class Kept(History):
    """A room's history as plain values; `down` makes every read fail as an unreachable store does."""

    def __init__(self, *offsets: int) -> None:
        self.entries = [(o, f"m{o}".encode()) for o in offsets]
        self.reads: list[tuple[str, int, int]] = []
        self.down = False

    async def since(self, room: str, offset: int, limit: int) -> Page:
        self.reads.append((room, offset, limit))
        if self.down:
            raise BrokerUnavailable("store down")
        latest = self.entries[-1][0] if self.entries else 0
        return page_from(self.entries, latest, offset, limit)

    async def latest(self, room: str, limit: int) -> Page:
        raise AssertionError("gap filling reads since an offset")


def _following(history: Kept, last: int = 0, size: int = 100) -> tuple[OrderedDelivery, list[tuple[str, int, bytes]]]:
    got: list[tuple[str, int, bytes]] = []
    order = OrderedDelivery(history, size)
    order.sink = lambda room, offset, event: got.append((room, offset, event))
    order.wanted.add("r")
    order.last["r"] = last
    return order, got


async def test_in_order_messages_go_straight_through_and_repeats_are_dropped() -> None:
    history = Kept()
    order, got = _following(history)
    for offset in (1, 2, 2, 1, 3):
        await order.deliver("r", offset, f"m{offset}".encode())
    assert [o for _, o, _ in got] == [1, 2, 3] and history.reads == []


async def test_a_gap_is_filled_from_history_before_the_message_that_shows_it() -> None:
    """Offsets 6 and 5 on the bus in that order (two publishers): 5 comes from history first, the late 5 is dropped."""
    history = Kept(1, 2, 3, 4, 5, 6)
    order, got = _following(history, last=4)
    await order.deliver("r", 6, b"m6")
    await order.deliver("r", 5, b"m5")
    assert got == [("r", 5, b"m5"), ("r", 6, b"m6")]
    assert history.reads == [("r", 4, 100)] and order.last["r"] == 6


async def test_a_fill_stops_below_the_message_that_shows_the_gap() -> None:
    """History may already hold later messages; they come on the bus after this one, in order."""
    history = Kept(1, 2, 3, 4, 5)
    order, got = _following(history, last=1)
    await order.deliver("r", 3, b"live3")
    assert got == [("r", 2, b"m2"), ("r", 3, b"live3")]
    await order.fill_gap("r")  # after a reconnect: all that history has past the last delivered
    assert [o for _, o, _ in got] == [2, 3, 4, 5]


async def test_broadcasts_pass_unnumbered_and_unwanted_rooms_are_not_delivered() -> None:
    order, got = _following(Kept())
    await order.deliver("r", 0, b"joined")
    await order.deliver("r", 0, b"joined")
    await order.deliver("other", 1, b"m1")
    assert got == [("r", 0, b"joined"), ("r", 0, b"joined")]


async def test_a_fill_that_cannot_read_history_raises_and_delivers_nothing() -> None:
    history = Kept(1, 2, 3)
    history.down = True
    order, got = _following(history, last=1)
    with pytest.raises(BrokerUnavailable):
        await order.deliver("r", 3, b"m3")
    assert got == [] and order.last["r"] == 1


async def test_a_room_wanted_again_before_the_unsubscribe_finished_stays_followed() -> None:
    order, _ = _following(Kept(), last=7)
    assert not order.forget("r") and order.last["r"] == 7
    order.wanted.discard("r")
    assert order.forget("r") and "r" not in order.last


async def test_a_history_size_of_zero_still_asks_for_a_message() -> None:
    history = Kept()
    order, _ = _following(history, last=0, size=0)
    await order.fill_gap("r")
    assert history.reads == [("r", 0, 1)]


async def test_a_gap_fill_that_fails_in_the_redis_reader_reconnects_instead_of_ending_the_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gap met while the store is down raises `BrokerUnavailable` out of the read loop: the reader
    must treat it as a lost subscription (reconnect and refill), not die and leave the node deaf."""
    from hubbub.backends.redis import RedisBroker

    broker = RedisBroker("redis://127.0.0.1:1/0", "node")  # never connected: the loop's parts are replaced
    reconnects: list[bool] = []

    async def broken() -> None:
        raise BrokerUnavailable("store down while filling a gap")

    async def reconnect() -> None:
        reconnects.append(True)
        broker._closed = True  # one turn is enough

    monkeypatch.setattr(broker, "_read_until_broken", broken)
    monkeypatch.setattr(broker, "_reconnect", reconnect)
    await broker._read_forever()
    assert reconnects == [True]
