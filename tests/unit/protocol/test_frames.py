"""Server frames' headers (`hubbub.protocol.frames`): every length class, on plain bytes."""

from __future__ import annotations

import struct

import pytest

from hubbub.protocol.frames import binary_frame, text_frame


@pytest.mark.parametrize(("size", "header"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)])
def test_text_frame_headers(size: int, header: int) -> None:
    frame = text_frame(b"x" * size)
    assert len(frame) == size + header and frame[0] == 0x81
    if header == 4:
        assert frame[1] == 126 and struct.unpack("!H", frame[2:4])[0] == size
    elif header == 10:
        assert frame[1] == 127 and struct.unpack("!Q", frame[2:10])[0] == size
    else:
        assert frame[1] == size


def test_binary_frame() -> None:
    assert binary_frame(b"ab") == b"\x82\x02ab"
