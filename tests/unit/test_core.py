"""Frames, router, heartbeat decisions and settings, with plain values and fake time."""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import pytest

from hubbub.core.settings import Settings
from hubbub.errors import ConfigError, EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.envelope import decode_envelope
from hubbub.protocol.events import Empty
from hubbub.protocol.frames import binary_frame, text_frame
from hubbub.protocol.heartbeat import Beat, decide, sweep_period
from hubbub.protocol.router import Router
from hubbub.protocol.session import valid_peer_close_code


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


def test_heartbeat_with_fake_time() -> None:
    assert decide(now=10, last_seen=5, ping_sent=None, interval=20, timeout=5) is Beat.WAIT
    assert decide(now=25, last_seen=5, ping_sent=None, interval=20, timeout=5) is Beat.PING
    assert decide(now=29, last_seen=5, ping_sent=25, interval=20, timeout=5) is Beat.WAIT
    assert decide(now=30, last_seen=5, ping_sent=25, interval=20, timeout=5) is Beat.DROP
    assert sweep_period(20, 20) == 0.5 and sweep_period(0.4, 0.8) == 0.1


def test_worst_case_drop_is_within_interval_plus_timeout_plus_one() -> None:
    interval, timeout = 3.0, 2.0
    period = sweep_period(interval, timeout)
    now, ping_sent = 0.0, None
    while True:  # the peer goes silent at t=0; the sweep runs every `period`
        now += period
        beat = decide(now, 0.0, ping_sent, interval, timeout)
        if beat is Beat.PING:
            ping_sent = now
        elif beat is Beat.DROP:
            break
    assert now <= interval + timeout + 1


def test_close_codes_a_peer_may_send() -> None:
    assert all(valid_peer_close_code(c) for c in (1000, 1001, 1003, 1007, 1011, 3000, 4999))
    assert not any(valid_peer_close_code(c) for c in (0, 999, 1004, 1005, 1006, 1015, 2000, 5000))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": -1},
        {"max_message_size": 10},
        {"ping_timeout": 0},
        {"send_queue_bytes": 100},
        {"send_buffer": 16384},
        {"send_buffer": -1},
        {"log_format": "xml"},
        {"allowed_origins": ("example.com",)},
    ],
)
def test_settings_refuse_what_cannot_work(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Settings(**kwargs)
