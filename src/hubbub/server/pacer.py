"""`FramePacer`: what stands between a connection's transport and picows' protocol.

It passes nothing after a close frame (so a close is answered before what follows is judged),
passes at most `FRAMES_PER_TURN` frames per connection per loop turn (fair reading), and asks
`_request_head` whether picows gets each request head (the front door, `hubbub.server.frontdoor`,
answers some itself or holds them first). Why: docs/topics/front-door.md.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

_HTTP_END = b"\r\n\r\n"
_HTTP_END_SEARCH = re.compile(re.escape(_HTTP_END)).search
"""Finds a head's end in a memoryview without copying it, and stops at the first: a read of many
pipelined requests (`hubbub.server.frontdoor`) is searched once per request up to that request's end only."""
_SHARED_READ_BUFFER = memoryview(bytearray(256 * 1024))
"""One read buffer for every connection: a transport fills it and calls
`buffer_updated` at once, and the pacer copies out what it keeps before
returning, so no two connections ever hold it at the same time."""
_HTTP_MAX = 65536
_CLOSE = 0x8
FRAMES_PER_TURN = 64
"""Frames one connection may have handled per loop turn (fair reading, above).

One frame costs the server at most tens of microseconds (a small message and
its handler), so a turn spends about a millisecond on one connection at most;
a client that keeps 32 messages in flight (as a benchmark's publishers do) never meets it.
"""


def frame_size(data: memoryview | bytes | bytearray, pos: int) -> int | None:
    """Total size (header + payload) of the frame starting at `pos`, or None if its header is cut."""
    avail = len(data) - pos
    if avail < 2:
        return None
    second = data[pos + 1]
    length = second & 0x7F
    header = 2
    if length == 126:
        header = 4
        if avail < header:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
    elif length == 127:
        header = 10
        if avail < header:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
    if second & 0x80:
        header += 4
    return header + length


class FramePacer(asyncio.BufferedProtocol):
    """An asyncio protocol in front of a picows protocol (see the module docstring)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._carry = bytearray()
        self._owed = 0
        self._in_close = False
        self._closed = False
        self._upgraded = False
        self._transport: Any = None
        self._held: bytes = b""
        """Frames read but not yet passed on: they wait for a later loop turn (fair reading)."""
        self._app_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._held = b""
        self._inner.connection_lost(exc)

    def pause_for_app(self, paused: bool) -> None:
        """The application stops (or resumes) reading this connection; fair reading may hold it too."""
        self._app_paused = paused
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if paused:
            transport.pause_reading()
        elif not self._held:
            transport.resume_reading()

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _SHARED_READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        if self._closed:
            return  # after a close frame, everything is discarded
        data: memoryview = _SHARED_READ_BUFFER[:nbytes]
        if self._carry:
            self._carry += data
            data = memoryview(bytes(self._carry))
            self._carry = bytearray()
        if not self._upgraded:
            data = self._through_handshake(data)
            if not data:
                return
        self._walk(data)

    def _walk(self, data: memoryview) -> None:
        """Pass `data` to picows up to a close frame and at most `FRAMES_PER_TURN` frames; hold the rest."""
        # Walk the frame headers. Frames up to 64 KiB (nearly all) are sized
        # inline; frame_size handles the rest and headers cut by the read.
        pos = 0
        end = len(data)
        owed = self._owed
        if owed:  # the rest of a frame whose header came in an earlier read
            if owed > end:
                self._owed = owed - end
                self._feed(data)
                return
            pos = owed
            self._owed = 0
            if self._in_close:
                self._closed = True
                self._feed(data[:pos])
                return
        budget = FRAMES_PER_TURN
        while pos < end:
            if not budget:
                self._feed(data[:pos])
                self._hold(data[pos:end])
                return
            budget -= 1
            if end - pos >= 4 and (length := data[pos + 1] & 0x7F) < 127:
                if length == 126:  # 126 to 65535 bytes: a 16-bit length follows
                    size = (8 if data[pos + 1] & 0x80 else 4) + (data[pos + 2] << 8 | data[pos + 3])
                else:
                    size = (6 if data[pos + 1] & 0x80 else 2) + length
            else:
                found = frame_size(data, pos)
                if found is None:  # a header cut by the read: keep it for the next one
                    self._feed(data[:pos])
                    self._carry = bytearray(data[pos:end])
                    return
                size = found
            if data[pos] & 0x0F == _CLOSE:
                if pos + size <= end:
                    self._closed = True
                    self._feed(data[: pos + size])
                    return
                self._in_close = True
            pos += size
        if pos > end:
            self._owed = pos - end
        self._feed(data)

    def _hold(self, rest: memoryview) -> None:
        """Keep `rest` (starting at a frame boundary) for a later turn, and stop reading meanwhile."""
        self._held = bytes(rest)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()
        asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        """A later turn: pass the next batch of held frames; read again once none are held."""
        held = self._held
        self._held = b""
        if self._closed or not held:
            return
        self._walk(memoryview(held))
        transport = self._transport
        if not self._held and not self._app_paused and transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _through_handshake(self, data: memoryview) -> memoryview:
        """Pass the HTTP request through whole; return the bytes after it."""
        found = _HTTP_END_SEARCH(data)
        index = found.start() if found is not None else -1
        if index < 0:
            if len(data) > _HTTP_MAX:
                self._pass_head(data)  # let picows refuse the oversized request
                self._upgraded = True
            else:
                self._carry = bytearray(data)
            return memoryview(b"")
        end = index + len(_HTTP_END)
        if not self._request_head(data[:end], data[end:]):
            return memoryview(b"")
        self._upgraded = True
        self._pass_head(data[:end])
        return data[end:]

    def _request_head(self, head: memoryview, rest: memoryview) -> bool:
        """Whether picows gets this request head now, with `rest` after it.

        A subclass that answers the request itself (picows reads only `GET`s
        without a body) or only later (after an asynchronous check) returns
        False and takes both over; this one always says yes.
        """
        return True

    def _pass_head(self, data: memoryview) -> None:
        """Give picows a request head (or the start of one too long to be a head): the last bytes
        before the frames. A subclass that gives picows the connection late starts it here."""
        self._feed(data)

    def _feed(self, data: memoryview) -> None:
        inner = self._inner
        while data:
            target = inner.get_buffer(len(data))
            n = min(len(target), len(data))
            target[:n] = data[:n]
            inner.buffer_updated(n)
            data = data[n:]
