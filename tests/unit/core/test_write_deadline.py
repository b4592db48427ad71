"""`Connection.write_stalled`, the write deadline's decision, with a fake transport and fake time."""

from __future__ import annotations

from typing import Any

import pytest

from hubbub.core.connection import Connection
from hubbub.core.hub import Hub
from hubbub.core.replays import Replays
from hubbub.core.settings import Settings
from hubbub.errors import EventError
from hubbub.protocol.ratelimit import ByteBucket


class FakeRaw:
    """Just what the deadline reads of a transport: the bytes it holds above the kernel."""

    def __init__(self) -> None:
        self.buffered = 0

    def get_write_buffer_size(self) -> int:
        return self.buffered


def connection() -> tuple[Connection, FakeRaw]:
    conn = Connection(Hub(Settings()), None)
    raw = FakeRaw()
    conn._raw = raw
    return conn, raw


def test_a_connection_that_drains_is_never_stalled() -> None:
    conn, _raw = connection()
    for now in range(100):
        assert not conn.write_stalled(float(now), 10.0)
    assert conn._blocked_since is None


def test_a_paused_writer_is_stalled_deadline_seconds_after_the_pause(monkeypatch: Any) -> None:
    conn, _raw = connection()
    monkeypatch.setattr("hubbub.core.connection.time.monotonic", lambda: 100.0)
    conn.pause_writing()
    assert conn._blocked_since == 100.0
    assert not conn.write_stalled(109.9, 10.0)
    assert conn.write_stalled(110.0, 10.0)


def test_resuming_clears_the_deadline_and_a_new_pause_starts_it_again(monkeypatch: Any) -> None:
    conn, _raw = connection()
    clock = [100.0]
    monkeypatch.setattr("hubbub.core.connection.time.monotonic", lambda: clock[0])
    conn.pause_writing()
    conn.resume_writing()
    assert conn._blocked_since is None
    clock[0] = 108.0
    conn.pause_writing()
    assert not conn.write_stalled(115.0, 10.0)
    assert conn.write_stalled(118.0, 10.0)


def test_a_second_pause_does_not_move_the_deadline(monkeypatch: Any) -> None:
    conn, _raw = connection()
    clock = [100.0]
    monkeypatch.setattr("hubbub.core.connection.time.monotonic", lambda: clock[0])
    conn.pause_writing()
    clock[0] = 105.0
    conn.pause_writing()
    assert conn.write_stalled(110.0, 10.0)


def test_bytes_held_without_a_pause_start_the_deadline_at_the_sweep_that_finds_them() -> None:
    conn, raw = connection()
    raw.buffered = 1000
    assert not conn.write_stalled(50.0, 10.0)
    assert conn._blocked_since == 50.0
    assert not conn.write_stalled(59.0, 10.0)
    assert conn.write_stalled(60.0, 10.0)


def test_an_empty_transport_at_a_sweep_clears_the_deadline() -> None:
    conn, raw = connection()
    raw.buffered = 1000
    conn.write_stalled(50.0, 10.0)
    raw.buffered = 0
    assert not conn.write_stalled(55.0, 10.0)
    raw.buffered = 10
    assert not conn.write_stalled(58.0, 10.0)
    assert not conn.write_stalled(67.0, 10.0)
    assert conn.write_stalled(68.0, 10.0)


def test_pings_and_pongs_do_not_move_the_deadline(monkeypatch: Any) -> None:
    """The peer's frames are signs of life for the heartbeat, not for the writer."""
    conn, _raw = connection()
    monkeypatch.setattr("hubbub.core.connection.time.monotonic", lambda: 100.0)
    conn.pause_writing()
    for now in (101.0, 105.0, 109.0):
        conn.session.pong(now)
        conn.session.ping(b"x", now)
    assert conn.write_stalled(110.0, 10.0)


class _Payer:
    _replay_budget: ByteBucket | None = None


@pytest.mark.parametrize(
    "overrides",
    [dict(replay_rate=1000), dict(replay_rate_total=1000), dict(send_queue_bytes=64 << 20, replay_rate=262_144)],
)
def test_a_budget_always_holds_one_full_answer(overrides: dict[str, Any]) -> None:
    """However low the rate, a burst below one answer's cap (half of send_queue_bytes) would refuse every
    full replay for ever: each budget saves up at least one answer, and such settings are served."""
    settings = Settings(**overrides)
    replays = Replays(settings.replay_rate, settings.replay_rate_total, settings.send_queue_bytes // 2)
    payer = _Payer()
    replays.charge(payer, settings.send_queue_bytes // 2)  # one full answer goes through
    with pytest.raises(EventError, match="retry after"):
        replays.charge(payer, settings.send_queue_bytes // 2)  # the next one waits for the rate


def test_the_default_budgets_hold_several_answers() -> None:
    settings = Settings()
    cap = settings.send_queue_bytes // 2
    assert settings.replay_rate * 8 == 4 * cap
    assert settings.replay_rate_total * 4 >= 64 * cap
    Settings(replay_rate=0, replay_rate_total=0)  # both off
