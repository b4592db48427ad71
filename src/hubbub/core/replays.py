"""What replays may cost: the byte budgets of `join_room` with `since` and of `get_history`.

A replay is the one answer whose size the client chooses without paying for it in its own
bytes: sixty bytes of `join_room {since: 0}` ask for up to half of `send_queue_bytes`, and a
client that leaves and joins again asks for it again. So every replay is paid for in bytes:
each connection's against `replay_rate` (a `ByteBucket` that saves up
`REPLAY_BURST_SECONDS` of it), and the node's together against `replay_rate_total` (saving
up `REPLAY_TOTAL_BURST_SECONDS`). A replay that does not fit in both is refused whole with
`rate_limited`, its message naming when it would fit, and nothing is done: never a replay
cut short in silence. The arithmetic of what an attacker can still cost is in
docs/security.md ("Replays are paid for").
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Protocol

from hubbub.backends.history import MESSAGE_OVERHEAD
from hubbub.core.settings import REPLAY_BURST_SECONDS, REPLAY_TOTAL_BURST_SECONDS
from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.ratelimit import ByteBucket

__all__ = ["Payer", "Replays", "replay_cost"]


class Payer(Protocol):
    """Who is replayed to: a `Connection`, which keeps its own budget (written so that this module
    imports nothing of `connection`)."""

    _replay_budget: ByteBucket | None


def replay_cost(messages: Iterable[tuple[int, bytes]]) -> int:
    """The bytes a replay of `messages` costs: as `page_within` counts them, so one answer's cost is at most its cap."""
    return sum(len(event) + MESSAGE_OVERHEAD for _, event in messages)


class Replays:
    """The node's replay budget and the making of each connection's (on its first replay)."""

    def __init__(self, rate: int, total_rate: int, answer_cap: int = 0) -> None:
        """`rate`: bytes a second per connection; `total_rate`: for the whole node (0: no limit). Each
        budget saves up its seconds of burst, and at least `answer_cap` (the largest answer: half of
        `send_queue_bytes`), so that a full answer is never refused for good however low the rate."""
        self._rate = rate
        self._burst = max(rate * REPLAY_BURST_SECONDS, answer_cap)
        self._node = (
            ByteBucket(total_rate, max(total_rate * REPLAY_TOTAL_BURST_SECONDS, answer_cap), time.monotonic())
            if total_rate
            else None
        )

    def charge(self, conn: Payer, cost: int) -> None:
        """Pay `cost` bytes replayed to `conn` from both budgets, or take nothing and raise `rate_limited`."""
        if cost <= 0:
            return
        now = time.monotonic()
        own = conn._replay_budget
        if own is None and self._rate:
            own = conn._replay_budget = ByteBucket(self._rate, self._burst, now)
        node = self._node
        wait = max(own.wait(cost, now) if own is not None else 0.0, node.wait(cost, now) if node is not None else 0.0)
        if wait > 0:
            whose = "this connection's" if own is not None and own.wait(cost, now) > 0 else "the server's"
            after = "never: it is larger than the budget" if math.isinf(wait) else f"retry after {math.ceil(wait)} s"
            raise EventError(ErrorCode.RATE_LIMITED, f"replay budget exceeded ({whose}): {after}")
        if own is not None:
            own.spend(cost, now)
        if node is not None:
            node.spend(cost, now)
