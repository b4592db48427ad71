"""Fragmented WebSocket messages put back together, with the read limit and UTF-8 enforced.

picows hands over frames; a message may span several (a first frame, then
continuations). This is the part of RFC 6455 section 5.4 that the application
owns: no continuation without a start, no new message inside one, a size limit
on the whole message (1009), a limit on how many frames it may span (1009:
a message of a million empty fragments would otherwise cost time and list
slots without end), and valid UTF-8 for text, checked as the pieces arrive so
a bad message fails fast (1007). The pieces go into one buffer, so memory is
the message's size, whatever the number of frames. Plain bytes in, plain
values out: no I/O, unit-tested on its own.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from hubbub.errors import HubbubError
from hubbub.protocol.codes import CloseCode


class Violation(HubbubError):
    """The peer broke a rule; the connection must close with `code`."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DataMessage:
    """A whole message: `text` is None for a binary message."""

    data: bytes
    text: str | None


class Reassembler:
    """Collects the frames of one message at a time."""

    __slots__ = ("_binary", "_buffer", "_frames", "_limit", "_max_frames", "_utf8")

    def __init__(self, limit: int, max_frames: int = 1024) -> None:
        self._limit = limit
        self._max_frames = max_frames
        self._buffer: bytearray | None = None
        self._frames = 0
        self._binary = False
        self._utf8: codecs.IncrementalDecoder | None = None

    @property
    def in_progress(self) -> bool:
        """True between the first frame of a fragmented message and its last."""
        return self._buffer is not None

    @property
    def size(self) -> int:
        """Bytes held for the message in progress."""
        return 0 if self._buffer is None else len(self._buffer)

    def start(self, chunk: bytes, fin: bool, binary: bool) -> DataMessage | None:
        """The first frame of a message (text or binary)."""
        if self._buffer is not None:
            raise Violation(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented message")
        self._buffer, self._frames, self._binary = bytearray(), 0, binary
        self._utf8 = None if binary else codecs.getincrementaldecoder("utf-8")()
        return self._add(chunk, fin)

    def continue_(self, chunk: bytes, fin: bool) -> DataMessage | None:
        """A continuation frame."""
        if self._buffer is None:
            raise Violation(CloseCode.PROTOCOL_ERROR, "continuation frame without a message to continue")
        return self._add(chunk, fin)

    def _add(self, chunk: bytes, fin: bool) -> DataMessage | None:
        buffer = self._buffer
        assert buffer is not None
        self._frames += 1
        if len(buffer) + len(chunk) > self._limit:
            self.reset()
            raise Violation(CloseCode.MESSAGE_TOO_BIG, f"message larger than {self._limit} bytes")
        if self._frames > self._max_frames:
            self.reset()
            raise Violation(CloseCode.MESSAGE_TOO_BIG, f"message in more than {self._max_frames} frames")
        if self._utf8 is not None:
            try:
                self._utf8.decode(chunk, final=fin)
            except UnicodeDecodeError:
                self.reset()
                raise Violation(CloseCode.INVALID_DATA, "text message is not valid UTF-8") from None
        buffer += chunk
        if not fin:
            return None
        data = bytes(buffer)
        self.reset()
        return DataMessage(data, None if self._binary else data.decode())

    def reset(self) -> None:
        """Forget a message in progress (it completed, or the connection is closing)."""
        self._buffer = None
        self._utf8 = None
        self._frames = 0
