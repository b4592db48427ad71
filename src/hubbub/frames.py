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


def _header(first: int, length: int) -> bytes:
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def text_frame(payload: bytes) -> bytes:
    """A complete, unfragmented, unmasked text frame carrying `payload` (UTF-8)."""
    return _header(_FIN_TEXT, len(payload)) + payload


def binary_frame(payload: bytes) -> bytes:
    """A complete, unfragmented, unmasked binary frame (used by `/echo` only)."""
    return _header(_FIN_BINARY, len(payload)) + payload
