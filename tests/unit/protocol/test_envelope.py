"""The envelope rules of PROTOCOL.md, on plain values (no sockets, no loop)."""

from __future__ import annotations

import datetime as dt
import json
import time

import msgspec
import pytest

from hubbub.errors import EventError
from hubbub.protocol.codes import CloseCode, ErrorCode
from hubbub.protocol.envelope import (
    decode_envelope,
    decode_payload,
    encode_ack,
    encode_error,
    encode_event,
    new_message_parts,
    splice_offset,
    utc_timestamp,
)
from hubbub.protocol.events import JoinRoom, SendMessage, invalid_room_message, valid_room


def _code(data: bytes) -> tuple[ErrorCode, object]:
    with pytest.raises(EventError) as caught:
        decode_envelope(data)
    return caught.value.code, caught.value.event_id


def test_valid_envelope() -> None:
    env = decode_envelope(b' {"type": "join_room", "payload": {"room": "a"}, "id": 3}')
    assert env.type == "join_room" and env.id == 3
    assert decode_payload(env.payload, JoinRoom) == JoinRoom(room="a")


@pytest.mark.parametrize(
    ("data", "code", "event_id"),
    [
        (b"", ErrorCode.BAD_JSON, None),
        (b"hello", ErrorCode.BAD_JSON, None),
        (b'"string"', ErrorCode.BAD_JSON, None),
        (b"[]", ErrorCode.BAD_JSON, None),
        (b'{"type": "x", ', ErrorCode.BAD_JSON, None),
        (b'{"payload": {}, "id": "q"}', ErrorCode.BAD_ENVELOPE, "q"),
        (b'{"type": null, "payload": {}}', ErrorCode.BAD_ENVELOPE, None),
        (b'{"type": "x", "payload": 1, "id": 2}', ErrorCode.BAD_ENVELOPE, 2),
        (b'{"type": "x", "payload": {}, "id": true}', ErrorCode.BAD_ENVELOPE, None),
        (b'{"type": "x", "payload": {}, "id": 1.5}', ErrorCode.BAD_ENVELOPE, None),
    ],
)
def test_bad_envelopes(data: bytes, code: ErrorCode, event_id: object) -> None:
    assert _code(data) == (code, event_id)


def test_payload_schema_errors_are_bad_payload() -> None:
    env = decode_envelope(b'{"type": "join_room", "payload": {"room": "a b"}, "id": "z"}')
    with pytest.raises(EventError) as caught:
        decode_payload(env.payload, JoinRoom, env.id)
    assert caught.value.code is ErrorCode.BAD_PAYLOAD and caught.value.event_id == "z"
    assert caught.value.message == invalid_room_message()  # the handler-level check words it the same


def test_room_names() -> None:
    assert valid_room("a") and valid_room("Lobby_1-x.y:z@w") and valid_room("r" * 128)
    assert not valid_room("") and not valid_room("a b") and not valid_room("r" * 129) and not valid_room("é")
    assert not valid_room("a\n")


def test_send_message_keeps_message_raw_and_reads_from() -> None:
    env = decode_envelope(b'{"type": "s", "payload": {"room": "r", "message": {"k": [1]}, "from": "al"}}')
    payload = decode_payload(env.payload, SendMessage)
    assert bytes(payload.message) == b'{"k": [1]}' and payload.sender == "al"


def test_encoders_are_compact_json() -> None:
    assert encode_event("t", {"a": "é"}) == '{"type":"t","payload":{"a":"é"}}'.encode()
    assert json.loads(encode_ack(None, "x")) == {"type": "ack", "payload": {}, "id": "x"}
    assert json.loads(encode_error(ErrorCode.BAD_JSON, "m", 4)) == {
        "type": "error",
        "payload": {"code": "bad_json", "message": "m"},
        "id": 4,
    }


def test_new_message_is_encoded_once_with_a_hole_for_the_offset() -> None:
    head, tail = new_message_parts("r", msgspec.Raw(b'"hi"'), "al", "2026-01-01T00:00:00.000Z")
    event = json.loads(splice_offset(head, 42, tail))
    assert event == {
        "type": "new_message",
        "payload": {"room": "r", "message": "hi", "from": "al", "sent": "2026-01-01T00:00:00.000Z", "offset": 42},
    }


def test_timestamp_is_rfc3339_utc_with_z() -> None:
    moment = dt.datetime(2026, 11, 25, 8, 5, 3, 120999, tzinfo=dt.UTC)
    assert utc_timestamp(moment) == "2026-11-25T08:05:03.120Z"
    assert utc_timestamp().endswith("Z")


def test_cached_clock_agrees_with_the_real_one() -> None:
    """The cached date and time of day roll over with the second: every stamp is the current time."""
    for _ in range(8):
        before = dt.datetime.now(dt.UTC).replace(microsecond=0)  # the stamp is cut to the millisecond
        stamp = utc_timestamp()
        after = dt.datetime.now(dt.UTC)
        assert before <= dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")) <= after
        time.sleep(0.15)


def test_normal_life_close_codes() -> None:
    assert CloseCode.NORMAL_CLOSURE.is_normal_life and CloseCode.ABNORMAL_CLOSURE.is_normal_life
    assert not CloseCode.TRY_AGAIN_LATER.is_normal_life
