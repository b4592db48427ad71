"""`ByteBucket`, the replay budget's arithmetic, with fake time."""

from __future__ import annotations

import math

from hubbub.protocol.ratelimit import ByteBucket


def test_a_full_bucket_pays_up_to_its_burst_at_once() -> None:
    bucket = ByteBucket(rate=1000, burst=4000, now=0.0)
    assert bucket.wait(3000, 0.0) == 0.0
    bucket.spend(3000, 0.0)
    assert bucket.wait(1000, 0.0) == 0.0
    bucket.spend(1000, 0.0)
    assert bucket.tokens == 0


def test_a_cost_that_does_not_fit_takes_nothing_and_says_when_it_would() -> None:
    bucket = ByteBucket(rate=1000, burst=4000, now=0.0)
    bucket.spend(3500, 0.0)
    assert bucket.wait(2000, 0.0) == 1.5  # 500 saved, 1500 missing at 1000 a second
    assert bucket.tokens == 500  # waiting took nothing
    assert bucket.wait(2000, 1.0) == 0.5
    assert bucket.wait(2000, 1.5) == 0.0


def test_it_refills_at_its_rate_and_never_past_its_burst() -> None:
    bucket = ByteBucket(rate=1000, burst=4000, now=0.0)
    bucket.spend(4000, 0.0)
    bucket.wait(0, 2.0)
    assert bucket.tokens == 2000
    bucket.wait(0, 100.0)
    assert bucket.tokens == 4000


def test_a_cost_above_the_burst_never_fits() -> None:
    bucket = ByteBucket(rate=1000, burst=4000, now=0.0)
    assert math.isinf(bucket.wait(4001, 0.0))
    assert bucket.tokens == 4000


def test_over_any_window_it_pays_at_most_burst_plus_rate_times_the_window() -> None:
    """A client that asks for 700 bytes every 0.1 s for 60 s gets burst + rate x 60 at most."""
    bucket = ByteBucket(rate=1000, burst=4000, now=0.0)
    paid = 0
    for step in range(600):
        now = step / 10
        if bucket.wait(700, now) == 0.0:
            bucket.spend(700, now)
            paid += 700
    assert 4000 + 1000 * 59.9 - 700 <= paid <= 4000 + 1000 * 59.9


def test_time_that_goes_backwards_refills_nothing() -> None:
    bucket = ByteBucket(rate=1000, burst=4000, now=10.0)
    bucket.spend(4000, 10.0)
    assert bucket.wait(1, 5.0) > 0
    assert bucket.tokens == 0
