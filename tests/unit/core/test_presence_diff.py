"""The coalescing of presence announcements (`hubbub.core.presence_diff`), on plain values."""

from __future__ import annotations

import pytest

from hubbub.core.presence_diff import Announcement, PresenceDiff, next_flush


def test_a_join_is_announced_once_with_its_info() -> None:
    diff = PresenceDiff()
    assert diff.record("r", "ada", True, b'{"a":1}') is True
    assert diff.pending
    assert diff.take() == [("r", [Announcement("ada", True, b'{"a":1}')])]
    assert not diff.pending and diff.take() == []


def test_a_leave_and_rejoin_inside_one_interval_announce_nothing() -> None:
    diff = PresenceDiff()
    diff.record("r", "ada", False)
    assert diff.record("r", "ada", True) is False  # a flush is already due
    assert diff.take() == []


def test_a_join_then_a_leave_announce_nothing() -> None:
    diff = PresenceDiff()
    diff.record("r", "ada", True, b"{}")
    diff.record("r", "ada", False)
    assert diff.take() == []


def test_an_odd_number_of_changes_announces_the_last() -> None:
    diff = PresenceDiff()
    for joined in (False, True, False):
        diff.record("r", "ada", joined)
    assert diff.take() == [("r", [Announcement("ada", False)])]
    for joined in (True, False, True):
        diff.record("r", "ada", joined, b'{"v":%d}' % joined)
    assert diff.take() == [("r", [Announcement("ada", True, b'{"v":1}')])]


def test_a_leave_carries_no_info() -> None:
    diff = PresenceDiff()
    diff.record("r", "ada", False)
    diff.record("r", "ada", True, b"{}")
    diff.record("r", "ada", False)
    assert diff.take() == [("r", [Announcement("ada", False, None)])]


def test_rooms_and_names_keep_the_order_of_their_first_change() -> None:
    diff = PresenceDiff()
    diff.record("b", "x", True)
    diff.record("a", "y", True)
    diff.record("b", "z", True)
    diff.record("b", "x", False)  # cancels x's join: b keeps only z
    diff.record("a", "w", False)
    assert diff.take() == [
        ("b", [Announcement("z", True)]),
        ("a", [Announcement("y", True), Announcement("w", False)]),
    ]


def test_a_room_whose_changes_all_cancel_is_left_out() -> None:
    diff = PresenceDiff()
    diff.record("quiet", "x", True)
    diff.record("busy", "y", True)
    diff.record("quiet", "x", False)
    assert diff.take() == [("busy", [Announcement("y", True)])]


def test_n_joins_are_n_announcements_however_much_they_churn() -> None:
    diff = PresenceDiff()
    names = [f"u{i}" for i in range(100)]
    for _ in range(10):  # each leaves and rejoins ten times: the room heard them absent
        for name in names:
            diff.record("r", name, True)
            diff.record("r", name, False)
    for name in names:
        diff.record("r", name, True)
    [(room, changes)] = diff.take()
    assert room == "r" and [c.name for c in changes] == names and all(c.joined for c in changes)


def test_the_state_after_a_take_is_what_the_room_heard() -> None:
    diff = PresenceDiff()
    diff.record("r", "ada", True)
    diff.take()
    diff.record("r", "ada", False)  # the next interval: her leave is news again
    assert diff.take() == [("r", [Announcement("ada", False)])]


@pytest.mark.parametrize(
    ("now", "interval", "expected"),
    [(0.0, 0.5, 0.5), (0.1, 0.5, 0.5), (0.5, 0.5, 1.0), (0.99, 0.5, 1.0), (1_765_000_000.2, 1.0, 1_765_000_001.0)],
)
def test_flushes_fall_on_multiples_of_the_interval(now: float, interval: float, expected: float) -> None:
    assert next_flush(now, interval) == pytest.approx(expected)
    assert 0 < next_flush(now, interval) - now <= interval + 1e-9
