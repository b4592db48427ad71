"""Server-to-client WebSocket frames built once and shared by every recipient.

A frame from a server is never masked (RFC 6455, section 5.1), so a text frame
is the same bytes for every client: the hub builds it once per published
message and hands the same `bytes` object to each connection's outbox. Only
the two-to-ten byte header is built here; payload parsing and everything a
client sends stays with the WebSocket library.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81
_FIN_BINARY = 0x82


_HEADER16 = struct.Struct("!BBH")
_HEADER64 = struct.Struct("!BBQ")
_SMALL_TEXT = [bytes((_FIN_TEXT, n)) for n in range(126)]
"""Every header of a text frame under 126 bytes, made once: most chat messages are that small."""


def _header(first: int, length: int) -> bytes:
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return _HEADER16.pack(first, 126, length)
    return _HEADER64.pack(first, 127, length)


def text_frame(payload: bytes) -> bytes:
    """A complete, unfragmented, unmasked text frame carrying `payload` (UTF-8)."""
    length = len(payload)
    if length < 126:
        return _SMALL_TEXT[length] + payload
    if length < 65536:
        return _HEADER16.pack(_FIN_TEXT, 126, length) + payload
    return _HEADER64.pack(_FIN_TEXT, 127, length) + payload


def binary_frame(payload: bytes) -> bytes:
    """A complete, unfragmented, unmasked binary frame (used by `/echo` only)."""
    return _header(_FIN_BINARY, len(payload)) + payload


def pong_frame(payload: bytes) -> bytes:
    """A pong answering a ping with `payload` (at most 125 bytes, as every control frame)."""
    return bytes((0x8A, len(payload))) + payload
