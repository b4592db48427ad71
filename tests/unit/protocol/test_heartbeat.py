"""When to ping a silent peer and when to drop it (`hubbub.protocol.heartbeat`), with fake time."""

from __future__ import annotations

from hubbub.protocol.heartbeat import Beat, decide, sweep_period


def test_heartbeat_with_fake_time() -> None:
    assert decide(now=10, last_seen=5, ping_sent=None, interval=20, timeout=5) is Beat.WAIT
    assert decide(now=25, last_seen=5, ping_sent=None, interval=20, timeout=5) is Beat.PING
    assert decide(now=29, last_seen=5, ping_sent=25, interval=20, timeout=5) is Beat.WAIT
    assert decide(now=30, last_seen=5, ping_sent=25, interval=20, timeout=5) is Beat.DROP
    assert sweep_period(20, 20) == 0.5 and sweep_period(0.4, 0.8) == 0.1


def test_worst_case_drop_is_within_interval_plus_timeout_plus_one() -> None:
    interval, timeout = 3.0, 2.0
    period = sweep_period(interval, timeout)
    now, ping_sent = 0.0, None
    while True:  # the peer goes silent at t=0; the sweep runs every `period`
        now += period
        beat = decide(now, 0.0, ping_sent, interval, timeout)
        if beat is Beat.PING:
            ping_sent = now
        elif beat is Beat.DROP:
            break
    assert now <= interval + timeout + 1
