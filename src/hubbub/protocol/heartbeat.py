"""When to ping a peer and when to give up on it: a pure decision, tested with fake time.

Gorilla's chat pings every connection on a timer and drops one whose pong is
late. hubbub pings only a peer that has been silent for `interval` seconds
(any frame counts as a sign of life), and drops it when its pong has not come
`timeout` seconds after the ping. One hub-wide sweep applies this to every
connection, so there is no timer or task per connection.
"""

from __future__ import annotations

import enum


class Beat(enum.Enum):
    """What the sweep does with one connection."""

    WAIT = "wait"
    PING = "ping"
    DROP = "drop"


def decide(now: float, last_seen: float, ping_sent: float | None, interval: float, timeout: float) -> Beat:
    """The action for a peer last heard from at `last_seen`, pinged at `ping_sent`."""
    if ping_sent is not None:
        return Beat.DROP if now - ping_sent >= timeout else Beat.WAIT
    return Beat.PING if now - last_seen >= interval else Beat.WAIT


def sweep_period(interval: float, timeout: float) -> float:
    """How often to sweep so that a dead peer goes within interval + timeout + 1 s."""
    return min(0.5, interval / 4, timeout / 4)
