"""JSON nested past `MAX_DEPTH` gets a coded error, never `internal`, the same on every Python version."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from hubbub.core import builtins as handlers
from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.envelope import (
    MAX_DEPTH,
    TOO_DEEP,
    decode_envelope,
    decode_payload,
    nesting_exceeds,
    salvage_id,
)
from hubbub.protocol.events import JoinRoom, SendMessage
from hubbub.protocol.router import Router


def _arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def _objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


DEEP = [
    pytest.param(shape(depth), id=f"{shape.__name__[1:]}-{depth}")
    for shape in (_arrays, _objects)
    for depth in (MAX_DEPTH + 1, 5_000, 200_000)
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


def test_the_limit_is_max_depth_on_every_path() -> None:
    """`MAX_DEPTH` levels pass, one more is refused, the envelope's braces counted: no interpreter limit."""
    router = Router()
    handlers.install(router)

    def frame(depth: int) -> str:  # the envelope and the payload are two levels
        return '{"type":"join_room","payload":{"room":"r","x":' + _arrays(depth - 2) + '},"id":"q"}'

    for data in (frame(MAX_DEPTH), frame(MAX_DEPTH).encode()):
        assert decode_envelope(data).id == "q"
        assert router.decode(data)[2] == "q"
        assert salvage_id(data) == "q"
    for data in (frame(MAX_DEPTH + 1), frame(MAX_DEPTH + 1).encode()):
        for decode in (decode_envelope, router.decode):
            with pytest.raises(EventError) as caught:
                decode(data)
            assert caught.value.code is ErrorCode.BAD_JSON and caught.value.message == TOO_DEEP
        assert salvage_id(data) is None
    payload = '{"room":"r","message":' + _objects(MAX_DEPTH - 1) + "}"
    assert decode_payload(msgspec.Raw(payload.encode()), SendMessage).room == "r"
    with pytest.raises(EventError):
        decode_payload(msgspec.Raw(payload.replace('{"a":', '{"a":{"a":', 1).encode()), SendMessage)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


SHALLOW_BUT_BRACKETED = [
    [{"x": i, "tags": ["a", "b"]} for i in range(500)],  # a thousand brackets, three deep
    {"text": "[[[[{{{{" * 100, "quote": '\\"[{' * 50},  # brackets and escaped quotes inside strings
    [["]" * 100, "[" * 100]] * 40,
]


@pytest.mark.parametrize("value", SHALLOW_BUT_BRACKETED, ids=["list", "strings", "closing-first"])
def test_brackets_in_strings_and_siblings_do_not_count(value: Any) -> None:
    for text in (json.dumps(value), msgspec.json.encode(value)):
        assert not nesting_exceeds(text, _depth(value))
        assert nesting_exceeds(text, _depth(value) - 1)
    frame = '{"type":"send_message","payload":{"room":"r","message":' + json.dumps(value) + "}}"
    assert decode_envelope(frame).type == "send_message"


def _chain(links: int) -> Any:
    value: Any = "]]"
    for link in range(links):
        value = [value, {"s": "[{"}] if link % 2 else {"k": value, "list": [[], [1, "["]]}
    return value


@pytest.mark.parametrize("depth", [3, 7, 8, 9, 30, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 300])
def test_a_value_is_too_deep_exactly_past_the_limit(depth: int) -> None:
    """Every stage of the check (the count, the quick passes, the bounded decoder) answers exactly."""
    value = _chain(depth - 2)  # the innermost link's list is two deeper than the link
    assert _depth(value) == depth
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1), msgspec.json.encode(value)):
        assert nesting_exceeds(text) is (depth > MAX_DEPTH)
        for limit in (0, 5, 8, 9, depth - 1, depth):
            assert nesting_exceeds(text, limit) is (depth > limit), limit
