"""The token bucket with fake time."""

from __future__ import annotations

from hubbub.protocol.ratelimit import TokenBucket, Verdict


def test_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, strikes=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [Verdict.ALLOW] * 3 + [Verdict.REFUSE]
    assert bucket.take(0.1) is Verdict.ALLOW  # one token back after 1/rate seconds
    assert bucket.take(0.1) is Verdict.REFUSE
    assert bucket.take(10.0) is Verdict.ALLOW  # saved up again, capped at burst


def test_persistent_abuse_closes() -> None:
    bucket = TokenBucket(rate=1, burst=1, strikes=3, now=0.0)
    assert bucket.take(0.0) is Verdict.ALLOW
    assert [bucket.take(0.0) for _ in range(3)] == [Verdict.REFUSE, Verdict.REFUSE, Verdict.CLOSE]


def test_an_allowed_event_forgives_strikes() -> None:
    bucket = TokenBucket(rate=1, burst=1, strikes=3, now=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    bucket.take(0.0)  # two strikes
    assert bucket.take(1.0) is Verdict.ALLOW
    assert bucket.take(1.0) is Verdict.REFUSE  # counting starts over
