"""Exceptions of hubbub.

    HubbubError
     +-- EventError        a client event failed; becomes an `error` event
     +-- ConfigError       settings that cannot work; the CLI exits with code 2
     +-- Refused           an `on_connect` hook turns a connection away with a close code

An `EventError` is the one way a handler reports a failure to its client: raise
it with an `ErrorCode` and a human message, and the router answers with an
`error` event carrying the request's `id`. Any other exception from a handler is
a bug: it is logged with its traceback and the client gets `internal`.
"""

from __future__ import annotations

from hubbub.protocol.codes import ErrorCode


class HubbubError(Exception):
    """Base of every exception hubbub raises on purpose."""


class EventError(HubbubError):
    """A client event that cannot be carried out; the client gets an `error` event."""

    def __init__(self, code: ErrorCode, message: str, event_id: str | int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.event_id = event_id


class ConfigError(HubbubError, ValueError):
    """Settings that cannot work together; raised before anything listens."""


class Refused(HubbubError):
    """Raised by an `on_connect` hook: close the new connection with `code` (e.g. 4001) and `reason`."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"refused with {code}: {reason}")
        self.code = code
        self.reason = reason
