"""Reassembling fragmented messages, with plain bytes: RFC 6455 section 5.4 rules."""

from __future__ import annotations

import pytest

from hubbub.protocol.codes import CloseCode
from hubbub.protocol.reassembly import DataMessage, Reassembler, Violation


def test_fragments_join_into_one_text_message() -> None:
    r = Reassembler(limit=100)
    assert r.start(b"he", fin=False, binary=False) is None
    assert r.in_progress
    assert r.continue_(b"l", fin=False) is None
    assert r.continue_(b"lo", fin=True) == DataMessage(b"hello", "hello")
    assert not r.in_progress


def test_binary_is_not_decoded() -> None:
    assert Reassembler(10).start(b"\xff\x00", fin=True, binary=True) == DataMessage(b"\xff\x00", None)


@pytest.mark.parametrize(
    ("steps", "code"),
    [
        ([("cont", b"x", True)], CloseCode.PROTOCOL_ERROR),
        ([("start", b"a", False), ("start", b"b", True)], CloseCode.PROTOCOL_ERROR),
        ([("start", b"a" * 6, False), ("cont", b"a" * 6, True)], CloseCode.MESSAGE_TOO_BIG),
        ([("start", b"\xe2\x82", False), ("cont", b"\x28", True)], CloseCode.INVALID_DATA),
        ([("start", b"ok\xff", False)], CloseCode.INVALID_DATA),  # fails fast, before the end
        ([("start", b"\xe2\x82", True)], CloseCode.INVALID_DATA),  # cut code point at the end
    ],
)
def test_violations(steps: list[tuple[str, bytes, bool]], code: CloseCode) -> None:
    r = Reassembler(limit=10)

    def feed() -> None:
        for kind, chunk, fin in steps:
            if kind == "start":
                r.start(chunk, fin, binary=False)
            else:
                r.continue_(chunk, fin)

    with pytest.raises(Violation) as caught:
        feed()
    assert caught.value.code is code


def test_a_code_point_may_straddle_fragments() -> None:
    r = Reassembler(limit=10)
    r.start(b"\xe2\x82", fin=False, binary=False)
    assert r.continue_(b"\xac", fin=True) == DataMessage("€".encode(), "€")
