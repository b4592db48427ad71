"""What `hubbub.client.client` raises when it cannot reach a hub, each saying what is wrong in words.

    HubbubError (hubbub.errors)
     +-- InvalidURL (ValueError)          not a ws:// or wss:// URL with a host; raised at once, nothing is dialled
     +-- HubUnreachable (ConnectionError) no connection within the time allowed (refused, timed out, no route)
     +-- HandshakeRefused (ConnectionRefusedError)
                                          the hub answered the WebSocket handshake with an HTTP error (`status`)

Each is also the standard exception in parentheses, so `except ValueError` and
`except ConnectionError` (`ConnectionRefusedError`) catch them as before.

A URL check and the words for each handshake status live here, apart from the
connection machinery, so that `hubbub chat` and applications word them alike.
"""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

from hubbub.errors import HubbubError
from hubbub.protocol.redaction import redact, redact_secrets

CREDENTIAL_PARAMS = frozenset({"token", "ticket", "otp"})
"""Query parameters that carry a credential: never printed, and they make the hub, not `name`,
decide who the connection is."""

NO_HUB_HERE = "no hub at this path (it is usually /ws)"

HANDSHAKE_STATUS_WORDS: dict[int, str] = {
    200: NO_HUB_HERE,
    400: "the hub did not accept the request (a name it refuses?)",
    401: (
        "you are not recognized: the hub wants a ticket (POST /login) or a token, or the application"
        " behind it (--connect-proxy) wants you logged in to it (its cookie or Authorization header)"
    ),
    403: (
        "this Host or Origin is not allowed here, the credential does not grant it,"
        " or the application behind the hub (--connect-proxy) refused you"
    ),
    404: NO_HUB_HERE,
    429: "too many connections from this address (the hub's --max-connections-per-ip)",
    503: (
        "the hub is full (--max-connections), cannot reach its broker,"
        " or the application behind it (--connect-proxy) did not answer"
    ),
}
"""What a person should read for each status a hub answers a handshake with (docs/protocol.md),
when the hub's answer has no plain-text body of its own to say which cause it is. A 200 or a 404
to a handshake means a web server, not a hub, is at this path: its body (a page) says nothing."""

NO_HUB_STATUSES = frozenset({200, 404})
"""Answers to a handshake that mean there is no hub at this path: the body is a page, not a reason."""

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Statuses that can pass by themselves (a full server, a proxy restarting): retried with
backoff within the time allowed. Any other refusal is final: retrying cannot help."""


class InvalidURL(HubbubError, ValueError):
    """A URL the client cannot connect to: not `ws://` or `wss://`, no host, a bad port."""


class HubUnreachable(HubbubError, ConnectionError):
    """No connection to the hub within the time allowed: `connect_timeout` for the first one,
    `reconnect_timeout` after a drop. The message names the last reason (refused, no answer...)."""


class HandshakeRefused(HubbubError, ConnectionRefusedError):
    """The hub answered the WebSocket handshake with an HTTP error: `status` (401, 403, 429, 503...)
    and the hub's one-line plain-text `body`, which names the cause when there is one (the hub's
    "a token is required", the connect proxy's "the application did not answer"); without it, the
    message lists every cause of that status. A 200 or 404 says there is no hub at that path.
    Final for 4xx other than 429; for 429 and 5xx, raised once the
    time allowed has passed with the hub still refusing."""

    def __init__(self, status: int, body: str = "", retried_for: float | None = None) -> None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "error"
        why = (body if status not in NO_HUB_STATUSES else "") or HANDSHAKE_STATUS_WORDS.get(status, "")
        after = f" (still after {retried_for:g} s of retries)" if retried_for is not None else ""
        super().__init__(f"the hub refused the connection: HTTP {status} {phrase}{': ' + why if why else ''}{after}")
        self.status = status
        self.body = body


def shown(url: str) -> str:
    """`url` as the client prints it or puts it in an exception: the values of `token`, `ticket`
    and `otp` and a password in it replaced by `***` (a terminal's scrollback, a log, a bug report)."""
    return redact_secrets(redact(url))


def carries_credential(url: str) -> bool:
    """Whether `url` logs in by itself (a `token`, `ticket` or `otp`): then the hub names the
    connection from the credential, and a `name` in the URL is ignored."""
    return any(key.lower() in CREDENTIAL_PARAMS for key, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True))


def check_url(url: str) -> str:
    """`url` when the client can dial it, else `InvalidURL` saying what to write instead (its
    credentials redacted)."""
    said = shown(url)
    if "://" not in url:
        raise InvalidURL(f"{said!r} has no scheme: write {shown(websocket_url('http://' + url))} (or wss:// for TLS)")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        raise InvalidURL(f"{said} is a web page's URL: a hub's WebSocket URL is {shown(websocket_url(url))}")
    if scheme not in ("ws", "wss"):
        raise InvalidURL(f"{said}: the scheme must be ws:// or wss://, not {parts.scheme}://")
    try:
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise InvalidURL(f"{said}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise InvalidURL(f"{said}: no host (ws://HOST:PORT/ws)")
    return url


def websocket_url(url: str) -> str:
    """The hub URL of a page URL: `http://h:p/` is `ws://h:p/ws`, `https://` is `wss://`; a path
    other than `/` is kept. Any other URL is returned as is."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower())
    if scheme is None:
        return url
    path = parts.path if parts.path not in ("", "/") else "/ws"
    return parts._replace(scheme=scheme, path=path).geturl()
