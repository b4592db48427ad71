"""The envelope of PROTOCOL.md: decoding client frames, encoding server events.

Pure functions over bytes and plain values, no I/O, so every rule of the wire
format is unit-tested without a socket. JSON goes through msgspec: it decodes
and validates in one pass, and its encoder is among the fastest for Python.

A client frame decodes in two steps. `decode_envelope` checks the envelope
(`type`, `payload`, `id`) and keeps the payload as raw JSON; the router later
decodes that raw payload straight into the schema its handler declared. Errors
carry the `ErrorCode` the client will see.

Nesting depth. A frame may nest arrays and objects `MAX_DEPTH` (128) deep, the
envelope's own braces included; a deeper one is `bad_json` (`bad_payload` for a
payload decoded on its own), whatever the Python version. msgspec has no depth
limit of its own: it recurses, guarded only by the interpreter's recursion
check, which differs between CPython versions (3.11 counts Python frames, 3.12
and 3.13 count C recursion apart, with other limits). So every decoder here
asks `nesting_exceeds` first, which answers most frames from their length or
two `count` calls. Never raise the recursion limit in a process that serves
clients: msgspec may then overflow the C stack on a deep value it decodes
from elsewhere.
"""

from __future__ import annotations

import datetime as _dt
import functools
import time
from typing import Any, Final

import msgspec

from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.events import plain_schema_message

EventId = str | int


class Envelope(msgspec.Struct, frozen=True):
    """A decoded client frame; `payload` is still raw JSON, checked to be an object."""

    type: str
    payload: msgspec.Raw
    id: EventId | None = None


MAX_DEPTH: Final = 128
"""The deepest nesting of arrays and objects a client's JSON may have, the outermost counted as 1."""

TOO_DEEP: Final = f"the JSON is nested more than {MAX_DEPTH} deep"
"""The message of the error for a frame past `MAX_DEPTH` (see the module docstring)."""

NOT_UTF8: Final = "the JSON is not valid UTF-8"
"""The message for bytes with invalid UTF-8 inside a string, or a str holding a lone surrogate: msgspec
raises `UnicodeDecodeError` or `UnicodeEncodeError` for those, not a `DecodeError`. The hub decodes text
frames as strict UTF-8 first (1007), so only a caller passing other bytes or strings meets them."""

_envelope_decoder: Final = msgspec.json.Decoder(Envelope)
_any_decoder: Final = msgspec.json.Decoder()
_encoder: Final = msgspec.json.Encoder()


_SHAPE: Final = bytes.maketrans(b"{}", b"[]")
"""An object's braces written as an array's brackets: only the nesting counts."""
_NOT_SHAPE: Final = bytes(byte for byte in range(256) if byte not in b'"[]{}')
_QUICK_PASSES: Final = 8


@functools.cache
def _nesting_check(limit: int) -> msgspec.json.Decoder[Any]:
    """A decoder of arrays nested `limit` + 1 deep at most (a `ValidationError` past it), that recurses no deeper."""
    nested: Any = list[int]  # an array with no array inside
    for _ in range(limit):
        nested = list[nested]
    return msgspec.json.Decoder(nested)


def nesting_exceeds(data: str | bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON text nests arrays and objects deeper than `limit`, its strings left out.

    Cheap for what clients send: JSON of at most `2 * limit + 1` characters, or
    with at most `limit` opening brackets, cannot be too deep (text of that
    length that is not JSON, such as 257 `[`, is left to its decoder, which
    recurses no deeper than the text is long and fails on it). Other text is
    reduced to its shape, in C: the brackets outside strings, braces written as
    brackets. A shallow shape vanishes in a few passes that each delete the
    innermost `[]`; what is left is decoded by a decoder of arrays nested at
    most as deep as the limit allows, which stops at the first level too deep.
    Text that is not JSON may be judged either way: its own decoding fails.
    """
    if len(data) <= 2 * limit + 1:  # a value `limit` + 1 deep has that many brackets to open and to close
        return False
    if isinstance(data, str):
        if data.count("[") + data.count("{") <= limit:
            return False
        data = data.encode("utf-8", "surrogatepass")
    elif data.count(b"[") + data.count(b"{") <= limit:
        return False
    if b"\\" in data:  # escaped backslashes, then escaped quotes: neither ends a string
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Quotes and brackets only; `""` (a string without brackets, or one string's end next to the
    # next one's start) goes, so that only strings holding brackets are left to cut out.
    shape = data.translate(_SHAPE, _NOT_SHAPE).replace(b'""', b"")
    if b'"' in shape:
        shape = b"".join(shape.split(b'"')[::2])
    if shape.count(b"[") <= limit:
        return False
    passes = min(_QUICK_PASSES, limit)
    for _ in range(passes):  # each pass deletes the innermost level
        shape = shape.replace(b"[]", b"")
        if not shape:
            return False
    try:
        _nesting_check(limit - passes).decode(b"[" + shape.replace(b"][", b"],[") + b"]")
    except msgspec.ValidationError:
        return True
    except msgspec.DecodeError:  # unbalanced: not JSON
        return False
    return False


def _is_object(data: str | bytes) -> bool:
    """Whether a JSON text starts (after whitespace) with `{`; cheap, no parse."""
    if isinstance(data, str):
        return data[:1] == "{" or data.lstrip(" \t\r\n")[:1] == "{"
    return data[:1] == b"{" or data.lstrip(b" \t\r\n")[:1] == b"{"


def salvage_id(data: str | bytes) -> EventId | None:
    """The `id` of a frame whose envelope failed, so the error can still carry it."""
    if nesting_exceeds(data):
        return None
    try:
        raw = _any_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeError):
        return None
    if isinstance(raw, dict):
        value = raw.get("id")
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return value
    return None


def decode_envelope(data: str | bytes) -> Envelope:
    """Decode one client frame (text as received, or its bytes); raise `EventError` with the PROTOCOL.md code."""
    if not _is_object(data):
        raise EventError(ErrorCode.BAD_JSON, "the frame is not a JSON object")
    if nesting_exceeds(data):
        raise EventError(ErrorCode.BAD_JSON, TOO_DEEP)
    try:
        envelope = _envelope_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise EventError(ErrorCode.BAD_ENVELOPE, plain_schema_message(str(exc)), salvage_id(data)) from None
    except msgspec.DecodeError as exc:
        raise EventError(ErrorCode.BAD_JSON, f"the frame is not valid JSON: {exc}") from None
    except UnicodeError:
        raise EventError(ErrorCode.BAD_JSON, NOT_UTF8) from None
    # msgspec strips the whitespace around a Raw value, so its first byte tells the JSON type.
    if memoryview(envelope.payload)[:1].tobytes() != b"{":
        raise EventError(ErrorCode.BAD_ENVELOPE, "`payload` must be an object", envelope.id)
    return envelope


def decode_payload(raw: msgspec.Raw, schema: type[Any], event_id: EventId | None = None) -> Any:
    """Decode a raw payload into `schema`; a mismatch, or nesting past `MAX_DEPTH`, is `bad_payload`."""
    if nesting_exceeds(bytes(raw)):
        raise EventError(ErrorCode.BAD_PAYLOAD, TOO_DEEP, event_id)
    try:
        return msgspec.json.decode(raw, type=schema)
    except msgspec.ValidationError as exc:
        raise EventError(ErrorCode.BAD_PAYLOAD, plain_schema_message(str(exc)), event_id) from None
    except msgspec.DecodeError as exc:
        raise EventError(ErrorCode.BAD_PAYLOAD, str(exc), event_id) from None
    except UnicodeError:
        raise EventError(ErrorCode.BAD_PAYLOAD, NOT_UTF8, event_id) from None


def encode_event(type_: str, payload: Any, event_id: EventId | None = None) -> bytes:
    """Encode a server event `{type, payload[, id]}` as compact UTF-8 JSON."""
    if event_id is None:
        return _encoder.encode({"type": type_, "payload": payload})
    return _encoder.encode({"type": type_, "payload": payload, "id": event_id})


def encode_error(code: ErrorCode, message: str, event_id: EventId | None = None) -> bytes:
    """Encode an `error` event."""
    return encode_event("error", {"code": code.value, "message": message}, event_id)


def encode_ack(payload: Any, event_id: EventId) -> bytes:
    """Encode the `ack` of an event that carried an `id`."""
    return encode_event("ack", {} if payload is None else payload, event_id)


_clock_cache: list[object] = [-1, "", -1, ""]
"""[millisecond, its timestamp, second, its "YYYY-MM-DDTHH:MM:SS." prefix]."""


def utc_timestamp(now: _dt.datetime | None = None) -> str:
    """The server's UTC time in RFC 3339 with a `Z` suffix, as `sent` requires.

    Formatting a datetime costs more than the rest of a publish, so the string
    is made once per millisecond, and the date and time of day once per second.
    """
    if now is None:
        ms = time.time_ns() // 1_000_000
        cache = _clock_cache
        if cache[0] == ms:
            return cache[1]  # type: ignore[return-value]
        second = ms // 1000
        if cache[2] != second:
            cache[2] = second
            cache[3] = _dt.datetime.fromtimestamp(second, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        text = f"{cache[3]}{ms % 1000:03d}Z"
        cache[0] = ms
        cache[1] = text
        return text
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def new_message_parts(room: str, message: Any, sender: str, sent: str) -> tuple[bytes, bytes]:
    """A `new_message` event split around its offset: `head + str(offset) + tail`.

    The broker assigns the offset, possibly in another process (a Redis script
    splices it in), so the event is encoded once by the publisher with a hole
    where the number goes. `offset` is the payload's last field for that reason.
    """
    # Concatenated by hand rather than encoding a dict and cutting it: this is
    # once per publish, and the strings are the only parts that need escaping.
    head = b"".join(
        (
            b'{"type":"new_message","payload":{"room":',
            _encoder.encode(room),
            b',"message":',
            message if isinstance(message, msgspec.Raw) else _encoder.encode(message),
            b',"from":',
            _encoder.encode(sender),
            b',"sent":"',
            sent.encode(),
            b'","offset":',
        )
    )
    return head, b"}}"


def splice_offset(head: bytes, offset: int, tail: bytes) -> bytes:
    """Join the parts of `new_message_parts` around an assigned offset."""
    return b"%b%d%b" % (head, offset, tail)
