"""Exceptions of hubbub: every exception it raises on purpose is a `HubbubError`.

    HubbubError
     +-- EventError                  a client event failed; becomes an `error` event
     +-- ConfigError (ValueError)    settings that cannot work; the CLI exits with code 2
     |    +-- MissingExtra           a backend's library is not installed (hubbub.backends)
     |    +-- MissingArgon2          password hashing without argon2-cffi (hubbub.auth.passwords)
     +-- Refused                     an `on_connect` hook turns a connection away with a close code
     +-- Violation                   the peer broke a framing rule; close with its code (hubbub.protocol.reassembly)
     +-- TokenError                  a token that is not accepted (hubbub.auth.tokens)
     |    +-- UnknownKey             it names a key the provider's set does not hold (yet)
     |    +-- KeysUnavailable        no key of the provider was ever fetched: 503, not 401
     +-- BrokerUnavailable           the broker or store cannot be reached (hubbub.backends.broker)
     +-- StoreFull                   the ticket store holds no more tickets now (hubbub.backends.tickets)
     +-- ProxyFailed                 a call to the app's proxy endpoint failed (hubbub.integration.app_proxy)
     +-- ApiRefusal                  a server API call refused; becomes its answer (hubbub.integration.server_api)
     +-- RequestFailed               the hub answered a client's request with `error` (hubbub.client.client)
     +-- InvalidURL (ValueError)     the client cannot dial that URL (hubbub.client.errors)
     +-- HubUnreachable (ConnectionError)
     |                               no connection within the time allowed (hubbub.client.errors)
     +-- HandshakeRefused (ConnectionRefusedError)
     |                               the hub answered the handshake with an HTTP error (hubbub.client.errors)
     +-- ApiError                    a server API call failed, seen by its client (hubbub.client.api)
          +-- BadRequest             400: not JSON, or not the call's shape
          +-- Unauthorized           401: the server has no such key
          +-- NotFound               404: no such call, or a server without `--api-key`
          +-- Unavailable            503, 502, 504 or no answer: may succeed later

A second base in parentheses is one callers already catch: `except ValueError`
around settings and URLs, `except ConnectionError` around dialling a hub.

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
