"""A token bucket per connection: spam protection as a pure decision, tested with fake time.

A client may send `rate` events per second on average and `burst` at once.
An event over the limit is answered with `rate_limited` and not handled; a
client that keeps pushing (`strikes` refusals in a row) is abusive and the
connection is closed with 1008.
"""

from __future__ import annotations

import enum


class Verdict(enum.Enum):
    """What to do with one incoming event."""

    ALLOW = "allow"
    REFUSE = "refuse"
    """Answer `rate_limited`; the connection stays."""
    CLOSE = "close"
    """Too many refusals in a row: close with 1008."""


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    __slots__ = ("_burst", "_rate", "_refused", "_stamp", "_strikes", "_tokens")

    def __init__(self, rate: float, burst: float, strikes: int = 100, now: float = 0.0) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp = now
        self._strikes = strikes
        self._refused = 0

    def take(self, now: float) -> Verdict:
        """Spend one token for an event arriving at `now` (seconds, monotonic)."""
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            self._refused = 0
            return Verdict.ALLOW
        self._refused += 1
        return Verdict.CLOSE if self._refused >= self._strikes else Verdict.REFUSE
