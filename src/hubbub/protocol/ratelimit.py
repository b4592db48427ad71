"""Token buckets: spam protection and byte budgets as pure decisions, tested with fake time.

`TokenBucket`: a client may send `rate` events per second on average and
`burst` at once. An event over the limit is answered with `rate_limited` and
not handled; a client that keeps pushing (`strikes` refusals in a row) is
abusive and the connection is closed with 1008.

`ByteBucket`: what costly answers (replays) may send, in bytes per second;
an answer that does not fit is refused whole (`hubbub.core.replays`).
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


class ByteBucket:
    """`rate` bytes per second, at most `burst` saved up: what a costly answer (a replay) may spend.

    Unlike `TokenBucket`, a request's cost is its size, known only once the
    answer is built, and a request that does not fit takes nothing: it is
    refused whole, and `wait` says how long until it would fit. A cost larger
    than `burst` never fits; callers keep their answers below it.
    """

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now

    def wait(self, size: int, now: float) -> float:
        """Seconds from `now` until `size` bytes fit (0.0: they fit now); takes nothing."""
        self._refill(now)
        missing = size - self._tokens
        if missing <= 0:
            return 0.0
        if size > self._burst:
            return float("inf")
        return missing / self._rate

    def spend(self, size: int, now: float) -> None:
        """Take `size` bytes at `now` (after `wait` said they fit)."""
        self._refill(now)
        self._tokens -= size

    @property
    def tokens(self) -> float:
        """Bytes saved up at the last `wait` or `spend` (for tests and metrics)."""
        return self._tokens
