"""One client's protocol state, without I/O: frames and time in, decisions out.

`Session` holds where a connection is in its life (`State`), the message being reassembled, the
message and frame budgets, the pongs owed, the request being answered, the heartbeat and the
close code; the connection adapter feeds it and does what it decides. The bounds, and why:
docs/topics/node.md.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from hubbub.protocol.codes import CloseCode
from hubbub.protocol.heartbeat import Beat, decide
from hubbub.protocol.ratelimit import TokenBucket, Verdict
from hubbub.protocol.reassembly import DataMessage, Reassembler, Violation

MAX_OWED_PONGS = 16
"""Pongs owed at once: enough to answer a burst of pings one by one (Autobahn 2.10), bounded."""

__all__ = ["Limits", "Opcode", "PeerClose", "Session", "State", "Verdict", "valid_peer_close_code"]


class State(enum.Enum):
    """Where a connection is in its life. Transitions only go forward."""

    CONNECTING = "connecting"
    """The upgrade is accepted; the WebSocket is not open yet."""
    OPEN = "open"
    """In the hub: reading, writing, receiving fan-out."""
    CLOSING = "closing"
    """Out of the hub; a close is decided (ours sent, or the peer's answered)."""
    CLOSED = "closed"
    """The transport is gone."""


class Opcode(enum.IntEnum):
    """WebSocket frame opcodes (RFC 6455, section 5.2)."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-connection bounds a session enforces (from `Settings`)."""

    max_message_size: int = 65536
    """Largest message, whole or reassembled (1009 past it)."""
    max_fragments: int = 1024
    """Most frames one message may span (1009 past it)."""
    rate: float = 20.0
    """Messages per second on average; 0 turns the message budget off."""
    burst: float = 100.0
    """Messages at once."""
    frame_rate: float = 100.0
    """Pings, pongs and continuation frames per second on average (always on)."""
    frame_burst: float = 200.0
    """Such frames at once."""
    join_rate: float = 5.0
    """`join_room` and `leave_room` per second on average (on top of `rate`); 0 turns this budget off."""
    join_burst: float = 100.0
    """Joins and leaves at once."""
    strikes: int = 100
    """Refusals in a row after which a client is closed with 1008."""


class PeerClose(enum.Enum):
    """What to do with the peer's close frame."""

    ECHO = "echo"
    """The peer starts the closing handshake: echo its code, then hang up."""
    HANG_UP = "hang_up"
    """The peer answered our close: close TCP."""
    PROTOCOL_ERROR = "protocol_error"
    """The close code is not one a peer may send: close with 1002."""
    IGNORE = "ignore"
    """Already closed."""


class Session:
    """The protocol state of one connection (see the module docstring)."""

    __slots__ = (
        "_assembler",
        "_frames",
        "_memberships",
        "_messages",
        "close_code",
        "close_reason",
        "event_id",
        "last_seen",
        "limits",
        "ping_sent",
        "pong_owed",
        "replied",
        "state",
    )

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.state = State.CONNECTING
        self.close_code: int | None = None
        """The code this connection ended with, once decided (sent, echoed or reported)."""
        self.close_reason = ""
        self.last_seen = now
        """When the peer last sent any frame (heartbeat)."""
        self.ping_sent: float | None = None
        """When the heartbeat pinged a silent peer; None when not waiting for a pong."""
        self.pong_owed: deque[bytes] = deque(maxlen=MAX_OWED_PONGS)
        """Payloads of the latest pings not answered yet, oldest first (bounded)."""
        self.event_id: str | int | None = None
        """The `id` of the client event being handled now (None: no answer expected)."""
        self.replied = False
        """Whether that event has had its one `ack` or `error`."""
        self._assembler = Reassembler(limits.max_message_size, limits.max_fragments)
        self._messages = TokenBucket(limits.rate, limits.burst, limits.strikes, now) if limits.rate > 0 else None
        self._frames = TokenBucket(limits.frame_rate, limits.frame_burst, limits.strikes, now)
        self._memberships = (
            TokenBucket(limits.join_rate, limits.join_burst, limits.strikes, now) if limits.join_rate > 0 else None
        )

    # ---- life -----------------------------------------------------------------

    def open(self) -> bool:
        """The WebSocket is open; False when the session was closed before that."""
        if self.state is not State.CONNECTING:
            return False
        self.state = State.OPEN
        return True

    def close(self, code: int, reason: str = "") -> bool:
        """Decide to end the connection with `code`; True only the first time (send the close frame then)."""
        if self.state is not State.OPEN and self.state is not State.CONNECTING:
            return False
        self.state = State.CLOSING
        self.close_code = code
        self.close_reason = reason
        self.pong_owed.clear()
        self._assembler.reset()
        return True

    def closed(self, reported: int | None = None) -> None:
        """The transport is gone; `reported` is the code to record if none was decided (1006 by default)."""
        if self.close_code is None:
            self.close_code = reported if reported is not None else int(CloseCode.ABNORMAL_CLOSURE)
        self.state = State.CLOSED
        self.pong_owed.clear()
        self._assembler.reset()

    @property
    def is_open(self) -> bool:
        """True while the application may receive and send."""
        return self.state is State.OPEN

    # ---- frames in ------------------------------------------------------------

    def text(self, now: float) -> Verdict:
        """A whole, unfragmented text message arrived: may it be handled?

        `ALLOW`: handle it. `REFUSE`: answer `rate_limited`, do not handle.
        `CLOSE`: the session has decided to close (1002 for a text frame inside
        a fragmented message, 1008 for persistent flooding); send the close.
        """
        self.last_seen = now
        self.ping_sent = None
        if self.state is not State.OPEN:
            return Verdict.REFUSE if self.state is State.CONNECTING else Verdict.CLOSE
        if self._assembler.in_progress:
            self.close(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented message")
            return Verdict.CLOSE
        return self._spend_message(now)

    def _spend_message(self, now: float) -> Verdict:
        bucket = self._messages
        if bucket is None:
            return Verdict.ALLOW
        verdict = bucket.take(now)
        if verdict is Verdict.CLOSE:
            self.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded again and again")
        return verdict

    def membership(self, now: float) -> Verdict:
        """A `join_room` or `leave_room` (already allowed as a message) asks to change rooms: may it?

        Such a change writes presence and may be announced to a whole room, so it
        has its own budget. `REFUSE`: answer `rate_limited`, change nothing.
        `CLOSE`: refused again and again; the session has decided to close (1008).
        """
        bucket = self._memberships
        if bucket is None or self.state is not State.OPEN:
            return Verdict.ALLOW
        verdict = bucket.take(now)
        if verdict is Verdict.CLOSE:
            self.close(CloseCode.POLICY_VIOLATION, "joins and leaves over the limit again and again")
        return verdict

    def fragment(self, opcode: Opcode, chunk: bytes, fin: bool, now: float) -> tuple[Verdict, DataMessage | None]:
        """A frame of a fragmented message (or a binary one): the message once whole.

        Returns `(verdict, message)`: the message is None until its last frame.
        A continuation spends the frame budget; the whole message spends the
        message budget, like any other.
        """
        self.last_seen = now
        self.ping_sent = None
        if self.state is not State.OPEN:
            return (Verdict.CLOSE if self.state is not State.CONNECTING else Verdict.REFUSE), None
        if opcode is Opcode.CONTINUATION and self._spend_frame(now) is Verdict.CLOSE:
            return Verdict.CLOSE, None
        try:
            if opcode is Opcode.CONTINUATION:
                message = self._assembler.continue_(chunk, fin)
            else:
                message = self._assembler.start(chunk, fin, binary=opcode is Opcode.BINARY)
        except Violation as violation:
            self.close(violation.code, violation.reason)
            return Verdict.CLOSE, None
        if message is None:
            return Verdict.ALLOW, None
        return self._spend_message(now), message

    def ping(self, payload: bytes, now: float) -> bool:
        """A ping arrived; True when a write must now be scheduled (no pong was owed).

        Over the frame budget the ping goes unanswered; past `MAX_OWED_PONGS`
        unanswered pings the oldest is forgotten.
        """
        self.last_seen = now
        self.ping_sent = None
        if self.state is not State.OPEN or self._spend_frame(now) is not Verdict.ALLOW:
            return False
        first = not self.pong_owed
        self.pong_owed.append(payload)
        return first

    def request(self, now: float) -> Verdict:
        """A request of the SSE up-channel arrived (`POST /sse/send`, before its envelopes are judged):
        it spends the frame budget, as a control frame does. `REFUSE`: nothing of it is handled (429).
        `CLOSE`: refused again and again; the session has decided to close (1008)."""
        self.last_seen = now
        self.ping_sent = None
        if self.state is not State.OPEN:
            return Verdict.CLOSE
        return self._spend_frame(now)

    def pong(self, now: float) -> Verdict:
        """A pong arrived (an answer to the heartbeat, or unsolicited)."""
        self.last_seen = now
        self.ping_sent = None
        if self.state is not State.OPEN:
            return Verdict.REFUSE
        return self._spend_frame(now)

    def take_pongs(self) -> list[bytes]:
        """The payloads of the pongs to send now, oldest first (no longer owed after)."""
        if not self.pong_owed:
            return []
        payloads = list(self.pong_owed)
        self.pong_owed.clear()
        return payloads if self.state is State.OPEN else []

    def _spend_frame(self, now: float) -> Verdict:
        verdict = self._frames.take(now)
        if verdict is Verdict.CLOSE:
            self.close(CloseCode.POLICY_VIOLATION, "too many control or continuation frames")
        return verdict

    def peer_close(self, code: int, has_code: bool) -> PeerClose:
        """The peer's close frame: echo it, hang up, or refuse an invalid code."""
        if has_code and not valid_peer_close_code(code):
            if self.close(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}"):
                return PeerClose.PROTOCOL_ERROR
            return PeerClose.HANG_UP if self.state is State.CLOSING else PeerClose.IGNORE
        if self.state is State.OPEN or self.state is State.CONNECTING:
            self.state = State.CLOSING
            self.close_code = code if has_code else int(CloseCode.NO_STATUS)
            self._assembler.reset()
            self.pong_owed.clear()
            return PeerClose.ECHO
        if self.state is State.CLOSING:
            return PeerClose.HANG_UP
        return PeerClose.IGNORE

    # ---- requests -------------------------------------------------------------

    def begin(self, event_id: str | int | None) -> None:
        """A client event is being handled: its answer is owed (when it has an `id`).

        (`Router.dispatch` writes begin, answer and end out inline for plain
        handlers, once per message; any change here must be made there too.)
        """
        self.event_id = event_id
        self.replied = False

    def answer(self) -> str | int | None:
        """Claim the one answer of the event being handled: its `id`, or None when none is owed.

        The first caller gets the id and must send the `ack` or `error`; later
        callers get None. This is what makes every request answered exactly once.
        """
        if self.replied or self.event_id is None:
            return None
        self.replied = True
        return self.event_id

    def end(self) -> None:
        """The event is handled (or its answer handed to a future)."""
        self.event_id = None
        self.replied = False

    # ---- heartbeat ------------------------------------------------------------

    def beat(self, now: float, interval: float, timeout: float) -> Beat:
        """The heartbeat's decision for this peer; a PING is recorded as sent."""
        if self.state is not State.OPEN:
            return Beat.WAIT
        beat = decide(now, self.last_seen, self.ping_sent, interval, timeout)
        if beat is Beat.PING:
            self.ping_sent = now
        elif beat is Beat.DROP:
            # No close frame to a peer that does not answer: it is aborted, and
            # reported as a connection that dropped (1006).
            self.close(CloseCode.ABNORMAL_CLOSURE, "no pong")
        return beat

    @property
    def buffered(self) -> int:
        """Bytes held for a message being reassembled (the session's only growing memory)."""
        return self._assembler.size


def valid_peer_close_code(code: int) -> bool:
    """Whether a peer may send `code` in a close frame (RFC 6455 section 7.4, IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999
