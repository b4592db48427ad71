"""The handler registry (`hubbub.protocol.router`): decoding, resolving and the errors it reports."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.envelope import decode_envelope
from hubbub.protocol.events import Empty
from hubbub.protocol.router import Router


class Point(msgspec.Struct):
    x: int


def test_router_decodes_in_one_pass_and_reports_like_two() -> None:
    """`decode` gives route, payload and id for a good frame, and the same error codes as
    `decode_envelope` + `resolve` for a bad one; it knows plain from async handlers."""
    router = Router()

    @router.on("point", Point)
    def point(payload: Point, client: Any) -> None:
        return None

    @router.on("later")
    async def later(payload: Empty, client: Any) -> None:
        return None

    route, payload, event_id = router.decode(b'{"id": "q", "payload": {"x": 2}, "type": "point"}')
    assert route.handler is point and not route.is_async and payload == Point(x=2) and event_id == "q"
    route, payload, event_id = router.decode('{"type": "later", "payload": {"extra": 1}}')
    assert route.handler is later and route.is_async and event_id is None
    cases = [
        (b"[1]", ErrorCode.BAD_JSON, None),
        (b'{"type": "point"', ErrorCode.BAD_JSON, None),
        (b'{"type": "point", "payload": [], "id": 3}', ErrorCode.BAD_ENVELOPE, 3),
        (b'{"payload": {}, "id": 4}', ErrorCode.BAD_ENVELOPE, 4),
        (b'{"type": "nope", "payload": {}, "id": 5}', ErrorCode.UNKNOWN_TYPE, 5),
        (b'{"type": "point", "payload": {"x": "1"}, "id": 6}', ErrorCode.BAD_PAYLOAD, 6),
        (b'{"type": "point", "payload": {"x": 1}, "id": true}', ErrorCode.BAD_ENVELOPE, None),
    ]
    for data, code, expected_id in cases:
        with pytest.raises(EventError) as caught:
            router.decode(data)
        assert (caught.value.code, caught.value.event_id) == (code, expected_id), data
    router.add("late", point, Point)  # registering later rebuilds the decoder
    assert router.decode(b'{"type": "late", "payload": {"x": 3}}')[1] == Point(x=3)


def test_router_resolves_and_reports() -> None:
    router = Router()

    @router.on("point", Point)
    async def point(payload: Point, client: Any) -> None:
        return None

    route, payload = router.resolve(decode_envelope(b'{"type": "point", "payload": {"x": 1}}'))
    assert route.handler is point and payload == Point(x=1)
    assert "point" in router and list(router) == ["point"]
    with pytest.raises(EventError) as caught:
        router.resolve(decode_envelope(b'{"type": "nope", "payload": {}, "id": 1}'))
    assert caught.value.code is ErrorCode.UNKNOWN_TYPE and caught.value.event_id == 1
    with pytest.raises(EventError) as caught:
        router.resolve(decode_envelope(b'{"type": "point", "payload": {"x": "1"}}'))
    assert caught.value.code is ErrorCode.BAD_PAYLOAD
    with pytest.raises(ValueError, match="already registered"):
        router.add("point", point, Empty)  # type: ignore[arg-type]
