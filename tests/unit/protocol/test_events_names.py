"""Display and room names refuse control, bidi and zero-width characters, on plain values."""

from __future__ import annotations

import sys
import unicodedata

import msgspec
import pytest

from hubbub.core import builtins as handlers
from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.envelope import decode_payload
from hubbub.protocol.events import NAME_MAX, JoinRoom, SendMessage, invalid_name_message, valid_name
from hubbub.protocol.router import Router

REFUSED = [
    "a\nb",
    "a\rb",
    "a\tb",
    "\x00",
    "a\x7f",
    "a\x85b",  # C1 (NEL)
    "\x9b31m",  # C1 CSI
    "\x1b[31mred",
    "evil\u202egnp.exe",  # RIGHT-TO-LEFT OVERRIDE
    "a\u202ab",
    "a\u2066b\u2069",  # isolates
    "a\u200eb",  # LRM
    "a\u200fb",  # RLM
    "ad\u200bmin",  # zero-width space
    "ad\u200dmin",  # zero-width joiner
    "\ufeffbom",
    "soft\xadhyphen",
    "line\u2028sep",
    "para\u2029sep",
    "tag\U000e0041",
]
ACCEPTED = ["alice", "a b", "Zoë", "李雷", "😀", "o'neil", "x=1", "n" * NAME_MAX, "nbsp\xa0here", "\ue000private"]


@pytest.mark.parametrize("name", REFUSED)
def test_names_refuse_control_bidi_and_separator_characters(name: str) -> None:
    assert not valid_name(name)
    assert "control" in invalid_name_message(name)


@pytest.mark.parametrize("name", ACCEPTED)
def test_names_people_use_are_valid(name: str) -> None:
    assert valid_name(name)


def test_name_length() -> None:
    assert not valid_name("") and not valid_name("n" * (NAME_MAX + 1))
    assert invalid_name_message("") == f"name must be 1 to {NAME_MAX} characters"


def test_every_refused_category_is_refused() -> None:
    """Cc, Cf, Zl and Zp of this Python's Unicode tables, every code point of them."""
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp"):
            assert not valid_name(f"x{c}y"), hex(cp)


@pytest.mark.parametrize("name", ["a\nb", "evil\u202egnp", "ad\u200bmin", "x\u2028"])
def test_send_message_from_must_be_a_valid_name(name: str) -> None:
    raw = msgspec.json.encode({"room": "r", "message": 1, "from": name})
    with pytest.raises(EventError) as caught:
        decode_payload(msgspec.Raw(raw), SendMessage, 5)
    assert caught.value.code is ErrorCode.BAD_PAYLOAD and caught.value.event_id == 5
    assert "$.from" in caught.value.message


def test_send_message_from_accepts_names_people_use() -> None:
    for name in ACCEPTED:
        raw = msgspec.json.encode({"room": "r", "message": 1, "from": name})
        assert decode_payload(msgspec.Raw(raw), SendMessage).sender == name


@pytest.mark.parametrize("room", ["a\nb", "a\x00", "a\u202eb", "a\u200bb", "a\u2028"])
def test_room_names_refuse_control_and_bidi_characters(room: str) -> None:
    router = Router()
    handlers.install(router)
    for type_ in ("join_room", "leave_room", "get_history", "get_presence"):
        with pytest.raises(EventError) as caught:
            router.decode(msgspec.json.encode({"type": type_, "payload": {"room": room}}))
        assert caught.value.code is ErrorCode.BAD_PAYLOAD
    with pytest.raises(EventError) as caught:
        decode_payload(msgspec.Raw(msgspec.json.encode({"room": room})), JoinRoom)
    assert caught.value.code is ErrorCode.BAD_PAYLOAD
