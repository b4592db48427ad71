"""Fuzzing the decoders a client's bytes reach first, with hypothesis.

Whatever a client sends, `decode_envelope`, `decode_payload`, `salvage_id` and
`Router.decode` (with the built-in routes) either succeed or raise `EventError`
with an `ErrorCode`: any other exception would reach the hub as a bug and be
answered `internal`, with a traceback in the log.

Reproducible and bounded: `derandomize=True` and no example database, so CI
runs the same examples every time; the whole file runs in a few seconds.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hubbub.core import builtins as handlers
from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.envelope import MAX_DEPTH, decode_envelope, decode_payload, nesting_exceeds, salvage_id
from hubbub.protocol.events import NAME_MAX, GetHistory, GetPresence, JoinRoom, LeaveRoom, SendMessage, valid_name
from hubbub.protocol.router import Router
from hubbub.server.logs import JsonFormatter, TextFormatter

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ROUTER = Router()
handlers.install(ROUTER)
SCHEMAS = [JoinRoom, LeaveRoom, SendMessage, GetHistory, GetPresence]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)
"""Any JSON value (ints past 64 bits included)."""

field_names = st.sampled_from(["room", "message", "from", "since", "limit", "type", "payload", "id"]) | st.text(
    max_size=6
)
payloads = st.dictionaries(field_names, json_values | st.sampled_from(["r", "lobby", "a\nb", "\u202e", ""]), max_size=6)
envelopes = st.fixed_dictionaries(
    {"type": st.sampled_from([*ROUTER, "nope"]) | json_values, "payload": payloads | json_values},
    optional={"id": st.integers() | st.text(max_size=5) | json_values, "extra": json_values},
)
"""Envelope-shaped values, close enough to valid ones to reach schema validation and handlers' types."""


def _deep(depth: int, opener: str, leaf: str = "1") -> str:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return opener * depth + leaf + closer * depth


def _frame_around(value: str) -> str:
    return '{"type":"send_message","payload":{"room":"r","message":' + value + '},"id":"x"}'


deep_frames = st.builds(
    lambda depth, opener, wrap, close: (_frame_around if wrap else str)(
        _deep(depth, opener) if close else opener * depth
    ),
    st.integers(min_value=MAX_DEPTH - 5, max_value=MAX_DEPTH + 5) | st.integers(min_value=1, max_value=50_000),
    st.sampled_from(["[", '{"a":']),
    st.booleans(),
    st.booleans(),
)
"""JSON nested around `MAX_DEPTH`, and far past it; closed or cut short."""


def _answers_coded(call: Callable[[], object]) -> None:
    """`call()` succeeds or raises EventError with an ErrorCode and an id of a valid type, nothing else."""
    error: EventError | None = None
    try:
        call()
    except EventError as exc:
        error = exc
    if error is not None:
        assert isinstance(error.code, ErrorCode) and isinstance(error.message, str)
        event_id = error.event_id
        assert event_id is None or (isinstance(event_id, (str, int)) and not isinstance(event_id, bool))


def _every_decoder(data: str | bytes) -> None:
    _answers_coded(lambda: decode_envelope(data))
    _answers_coded(lambda: ROUTER.decode(data))
    salvaged = salvage_id(data)
    assert salvaged is None or (isinstance(salvaged, (str, int)) and not isinstance(salvaged, bool))


@FUZZ
@given(st.binary(max_size=200))
@example(b'{"type":"join_room","payload":{},"id":"\xf2"}')  # msgspec: UnicodeDecodeError, found by this test
@example(b'{"room":"\xa2","message":1}')
def test_arbitrary_bytes(data: bytes) -> None:
    _every_decoder(data)
    for schema in SCHEMAS:
        _answers_coded(partial(decode_payload, msgspec.Raw(data), schema, 1))


@FUZZ
@given(st.text(st.characters(exclude_categories=()), max_size=200))
@example('{"type":"join_room","payload":{"room":"\ud800"}}')  # msgspec: UnicodeEncodeError
def test_arbitrary_text(text: str) -> None:
    """Any str, lone surrogates included (msgspec cannot encode those to UTF-8)."""
    _every_decoder(text)


@FUZZ
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    _every_decoder(json.dumps(value))


@FUZZ
@given(envelopes)
def test_envelope_shaped_json(value: dict[str, Any]) -> None:
    text = json.dumps(value)
    _every_decoder(text)
    _every_decoder(text.encode())
    if isinstance(value.get("payload"), dict):
        raw = msgspec.Raw(json.dumps(value["payload"]).encode())
        for schema in SCHEMAS:
            _answers_coded(partial(decode_payload, raw, schema))


@FUZZ
@given(envelopes, st.data())
def test_corrupted_envelopes(value: dict[str, Any], data: st.DataObject) -> None:
    """Valid-looking frames with bytes flipped, cut or inserted."""
    frame = bytearray(json.dumps(value).encode())
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(frame)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "cut":
            del frame[position:]
        elif action == "insert":
            frame[position:position] = data.draw(st.binary(min_size=1, max_size=4))
        elif position < len(frame):
            frame[position] ^= data.draw(st.integers(min_value=1, max_value=255))
    _every_decoder(bytes(frame))
    _every_decoder(frame.decode(errors="surrogateescape"))


@FUZZ
@given(deep_frames)
def test_deep_json(frame: str) -> None:
    _every_decoder(frame)


_BRACKETY_TEXT = st.text(st.sampled_from('[]{}"\\ax\u00e9\U0001f600\n'), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _BRACKETY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_BRACKETY_TEXT, inner, max_size=4),
    max_leaves=40,
)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@FUZZ
@given(json_values, st.integers(min_value=0, max_value=12), st.booleans())
def test_nesting_exceeds_is_the_depth_of_the_value(value: object, limit: int, ascii_only: bool) -> None:
    """Strings full of brackets, quotes and escapes count for nothing; only arrays and objects nest."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert nesting_exceeds(text, limit) is (_depth(value) > limit)
    assert nesting_exceeds(text.encode(), limit) is (_depth(value) > limit)


# ---- names and the log: the other places a client's text lands ------------------------

REFUSED = {"Cc", "Cf", "Cs", "Zl", "Zp"}


@FUZZ
@given(st.text(max_size=NAME_MAX + 2))
def test_valid_name_is_its_definition(name: str) -> None:
    expected = 1 <= len(name) <= NAME_MAX and not any(unicodedata.category(c) in REFUSED for c in name)
    assert valid_name(name) is expected


@FUZZ
@given(st.text(max_size=40), st.text(max_size=40))
def test_no_value_splits_or_forges_a_log_line(value: str, event: str) -> None:
    record = logging.LogRecord("hubbub.core.hub", logging.INFO, __file__, 1, event, (), None)
    record.user = value
    text = TextFormatter().format(record)
    assert text.isascii() and text.isprintable()
    assert text.endswith(f" user={value}") or text.endswith(f" user={json.dumps(value)}")
    doc = json.loads(JsonFormatter().format(record))
    assert doc["user"] == value and doc["event"] == event and doc["level"] == "info"
