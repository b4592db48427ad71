"""JSON nested to any depth gets a coded error, never `internal`, on plain values."""

from __future__ import annotations

import sys

import msgspec
import pytest

from hubbub.core import builtins as handlers
from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.envelope import TOO_DEEP, decode_envelope, decode_payload, salvage_id
from hubbub.protocol.events import JoinRoom, SendMessage
from hubbub.protocol.router import Router


def _arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def _objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


DEEP = [
    pytest.param(shape(depth), id=f"{shape.__name__[1:]}-{depth}")
    for shape in (_arrays, _objects)
    for depth in (5_000, 200_000)
]


@pytest.mark.parametrize("deep", DEEP)
def test_deep_json_is_bad_json_on_every_path(deep: str) -> None:
    router = Router()
    handlers.install(router)
    frames = [
        '{"type":"send_message","payload":{"room":"r","message":' + deep + '},"id":"d"}',  # a msgspec.Raw field
        '{"type":"join_room","payload":{"room":"r","extra":' + deep + '},"id":"d"}',  # an unknown field
        '{"type":"join_room","payload":' + deep + "}",
        '{"type":"join_room","id":' + deep + "}",
        '{"x":' + deep + "}",
        deep,
    ]
    for frame in frames:
        for data in (frame, frame.encode()):
            with pytest.raises(EventError) as caught:
                router.decode(data)
            assert caught.value.code in (ErrorCode.BAD_JSON, ErrorCode.BAD_ENVELOPE), frame[:40]
            with pytest.raises(EventError) as caught:
                decode_envelope(data)
            assert caught.value.code in (ErrorCode.BAD_JSON, ErrorCode.BAD_ENVELOPE), frame[:40]
            assert salvage_id(data) is None


@pytest.mark.parametrize("deep", DEEP)
def test_deep_raw_payload_is_bad_payload(deep: str) -> None:
    for schema in (SendMessage, JoinRoom):
        with pytest.raises(EventError) as caught:
            decode_payload(msgspec.Raw(('{"room":"r","message":' + deep + "}").encode()), schema, "i")
        assert caught.value.code is ErrorCode.BAD_PAYLOAD and caught.value.message == TOO_DEEP
        assert caught.value.event_id == "i"


def test_depth_limit_is_the_recursion_limit_less_the_stack() -> None:
    """What the protocol docstring says: deterministic, about 1000 minus the caller's depth."""

    def deepest() -> int:
        low, high = 1, 5_000
        while low < high:
            mid = (low + high + 1) // 2
            message: str | None = None
            try:
                decode_envelope('{"type":"t","payload":{},"x":' + _arrays(mid) + "}")
            except EventError as exc:
                message = exc.message
            assert message in (None, TOO_DEEP)
            low, high = (mid, high) if message is None else (low, mid - 1)
        return low

    first = deepest()
    assert first == deepest()  # deterministic
    assert 900 < first < sys.getrecursionlimit()
