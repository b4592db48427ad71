"""`hubbub.server.sse` on plain values: the resume id, and frames turned into SSE events."""

from __future__ import annotations

import msgspec

from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.envelope import encode_ack, encode_error, encode_event, new_message_parts, splice_offset
from hubbub.protocol.frames import text_frame
from hubbub.server.sse import _translate, _Translated, format_resume_id, parse_resume_id


def test_resume_id_round_trip_and_refusals() -> None:
    assert parse_resume_id("a=12,b=5") == {"a": 12, "b": 5}
    assert parse_resume_id("") == {}
    assert parse_resume_id(" room.1:x@y=0 ") == {"room.1:x@y": 0}
    assert format_resume_id({"a": 12, "b": 5}) == "a=12,b=5"
    for bad in ("a", "a=", "=1", "a=-1", "a=1,", "a=x", "bad room=1", "a=²", "a=" + "9" * 19):
        assert parse_resume_id(bad) is None, bad


def _message(room: str, offset: int, message: object) -> bytes:
    head, tail = new_message_parts(room, message, "ann", "2026-12-07T00:00:00.000Z")
    return text_frame(splice_offset(head, offset, tail))


def test_a_fan_out_write_becomes_one_shared_single_room_encoding() -> None:
    data = _message("a", 7, "hi") + _message("a", 8, {"k": 1})
    translated = _Translated(_translate(data))
    assert translated.room == "a" and translated.last == 8
    events = translated.single.decode().split("\n\n")[:-1]
    assert events[0].startswith("event: new_message\nid: a=7\ndata: {")
    assert msgspec.json.decode(events[1].split("data: ")[1])["message"] == {"k": 1}


def test_answers_carry_the_whole_envelope_and_other_events_the_payload() -> None:
    data = (
        text_frame(encode_ack({"room": "a"}, "c1"))
        + text_frame(encode_error(ErrorCode.BAD_JSON, "nope", None))
        + text_frame(encode_event("member_joined", {"room": "a", "name": "bo"}))
    )
    items = _translate(data)
    assert items[0] == b'event: ack\ndata: {"type":"ack","payload":{"room":"a"},"id":"c1"}\n\n'
    assert items[1].startswith(b'event: error\ndata: {"type":"error"')  # type: ignore[union-attr]
    assert items[2] == b'event: member_joined\ndata: {"room":"a","name":"bo"}\n\n'
    assert _Translated(items).room is None


def test_a_raw_line_break_in_a_message_stays_on_one_data_line() -> None:
    raw = msgspec.Raw(b'{\n  "text": "two\\nlines"\r\n}')
    (item,) = _translate(_message("a", 1, raw))
    assert not isinstance(item, bytes)
    _, _, part, _ = item
    assert part.count(b"\n") == 2 and part.endswith(b"\n\n")  # the event's own ends only
    assert msgspec.json.decode(part[len(b"data: ") :])["message"] == {"text": "two\nlines"}
