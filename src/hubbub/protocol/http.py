"""HTTP/1.1 request heads and answers as plain values (sans-I/O): what the readers below picows share.

`parse_head` and `Head`, a whole `Request`, a `Response` and `encode_response`, how a route reads
and answers its requests (`Route`, `Claim`), `plain_request_line` (the heads hubbub may answer in
picows' place), and `decimal`, the strict reading of `Content-Length` and counts. The reading
itself (sockets, timers, tasks) is `hubbub.server.frontdoor`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

__all__ = [
    "MAX_DIGITS",
    "Claim",
    "Head",
    "Request",
    "Response",
    "Route",
    "decimal",
    "encode_response",
    "parse_head",
    "plain_request_line",
]

MAX_DIGITS = 18
"""Most significant digits `decimal` reads: every count hubbub takes fits, and `int()` never meets its own
limit (4300 digits, a ValueError) nor spends time on a number a client made long."""


def decimal(text: str) -> int | None:
    """`text` as a non-negative integer when it is ASCII digits only (leading zeros aside, at most
    `MAX_DIGITS` of them); else None.

    `str.isdigit` alone is not that: it is true for `²` and other digits `int()` refuses, which
    made a `Content-Length: ²` (Latin-1 0xB2) a traceback.
    """
    if not text or not text.isascii() or not text.isdigit():
        return None
    significant = text.lstrip("0")
    if len(significant) > MAX_DIGITS:
        return None
    return int(significant or "0")


@dataclass(frozen=True, slots=True)
class Head:
    """A parsed request head; header names are lowercased, each with its values in order."""

    method: str
    target: str
    version: str
    headers: dict[str, list[str]]

    @property
    def path(self) -> str:
        """The target's path, without its query."""
        return urlsplit(self.target).path

    def one(self, name: str) -> str | None:
        """The header's value when it is present exactly once, else None."""
        values = self.headers.get(name, [])
        return values[0] if len(values) == 1 else None

    @property
    def keep_alive(self) -> bool:
        """Whether the client wants the connection kept after the answer (RFC 9112 9.3)."""
        tokens = {t.strip().lower() for value in self.headers.get("connection", []) for t in value.split(",")}
        if self.version == "HTTP/1.1":
            return "close" not in tokens
        return "keep-alive" in tokens


def parse_head(head: bytes) -> Head | None:
    """The request line and headers of a request head; None if it is not one."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers.setdefault(name.lower(), []).append(value.strip())
    return Head(parts[0], parts[1], parts[2], headers)


def plain_request_line(head: bytes) -> tuple[bytes, bytes] | None:
    """The method and path (query left out) of a well-formed request head, or None.

    Well-formed here is stricter than `parse_head` on the request line (`METHOD SP target SP
    HTTP/1.x` with an upper-case method) and the same on header lines, judged on the bytes: no
    obs-fold, no space before a colon, a colon on every line. A head that is not is a bad request,
    which picows answers (400) whatever its path.
    """
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not (parts[0].isalpha() and parts[0].isupper()):
        return None
    for line in lines[1:]:
        if not line:
            continue
        name, colon, _ = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            return None
    return parts[0], parts[1].partition(b"?")[0]


@dataclass(frozen=True, slots=True)
class Request:
    """A whole request, as a route's handler gets it."""

    head: Head
    body: bytes
    peer: str
    """The client's address (`host:port`), for logs and per-client bounds."""


@dataclass(frozen=True, slots=True)
class Response:
    """A route's answer; `close` ends the connection after it whatever the client wanted."""

    status: HTTPStatus
    body: bytes
    content_type: str = "application/json"
    close: bool = False
    headers: tuple[tuple[str, str], ...] = ()


def encode_response(response: Response, keep_alive: bool) -> bytes:
    """The answer's bytes: status line, headers (never cached) and body."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers)
    head = (
        f"HTTP/1.1 {response.status.value} {response.status.phrase}\r\nContent-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\nCache-Control: no-store\r\n{extra}"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("latin-1") + response.body


@dataclass(frozen=True, slots=True)
class Route:
    """How one kind of request is read and answered."""

    handle: Callable[[Request], Awaitable[Response]]
    """The handler: an answer for every request (its exceptions become `refuse(500)`)."""
    refuse: Callable[[Head, HTTPStatus, str], Response]
    """The route's wording of a refusal the reader decides (400, 408, 411, 413, 500) of a request."""
    max_body: int
    body_timeout: float
    keep_alive: bool = True
    """Whether the connection may serve further requests after this one."""
    admit: Callable[[Head, str], Response | None] | None = None
    """Judges the head before the body is read: an answer refuses the request at once (and closes
    the connection), unread, so that a client without credentials never makes the server hold a body."""


Claim = Callable[[Head], "Route | None"]
"""Which route reads a request, judged on its head; None lets picows have it."""
