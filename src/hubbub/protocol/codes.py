"""Close codes and error codes of the wire protocol (PROTOCOL.md), as enums.

Codes are part of the contract with clients, so they live next to each other
with a sentence on when each is used. Nothing here does I/O.
"""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server sends or reports (RFC 6455, section 7.4)."""

    NORMAL_CLOSURE = 1000
    """Either side ended the conversation on purpose."""
    GOING_AWAY = 1001
    """The server is shutting down."""
    PROTOCOL_ERROR = 1002
    """The peer broke RFC 6455 framing rules."""
    UNSUPPORTED_DATA = 1003
    """The client sent a binary frame; hubbub speaks text only."""
    NO_STATUS = 1005
    """The peer's close frame carried no code. Never sent."""
    ABNORMAL_CLOSURE = 1006
    """The connection dropped without a close frame. Never sent, only reported."""
    INVALID_DATA = 1007
    """A text frame was not valid UTF-8."""
    POLICY_VIOLATION = 1008
    """Bad origin or credentials after the upgrade, or repeated abuse."""
    MESSAGE_TOO_BIG = 1009
    """A frame or message exceeded the server's read limit."""
    INTERNAL_ERROR = 1011
    """The server hit an unexpected condition."""
    TRY_AGAIN_LATER = 1013
    """The client could not keep up: its send queue overflowed."""

    @property
    def is_normal_life(self) -> bool:
        """True for codes that are everyday events, logged without alarm."""
        return self in _NORMAL_LIFE


_NORMAL_LIFE = frozenset(
    {CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS, CloseCode.ABNORMAL_CLOSURE}
)


class ErrorCode(enum.StrEnum):
    """The `code` of an `error` event. The connection stays open after each."""

    BAD_JSON = "bad_json"
    """The frame is not a JSON object."""
    BAD_ENVELOPE = "bad_envelope"
    """`type` missing or not a string, `payload` not an object, `id` of the wrong type."""
    UNKNOWN_TYPE = "unknown_type"
    """No handler is registered for this `type`."""
    BAD_PAYLOAD = "bad_payload"
    """The payload does not match the event's schema."""
    NOT_IN_ROOM = "not_in_room"
    """The client acted on a room it has not joined."""
    FORBIDDEN = "forbidden"
    """The identity may not do this."""
    RATE_LIMITED = "rate_limited"
    """The client sent faster than the server allows."""
    LIMIT_EXCEEDED = "limit_exceeded"
    """A limit of the server was reached (rooms per connection); nothing was done."""
    UNAVAILABLE = "unavailable"
    """The broker could not be reached; nothing was published. An extension of PROTOCOL.md."""
    INTERNAL = "internal"
    """A handler failed; the server logged the cause."""
