"""The server API: `/api/...` on the server's port, for the application's backend (`--api-key`).

`ServerApi` claims every `/api` request, checks the key, and answers JSON (errors as
`{"error": {"code", "message"}}`, `ApiError` inside). The calls and their answers are in
docs/api.md; their cluster-wide semantics and bounds, in docs/topics/integration.md.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import msgspec
from prometheus_client import Counter

from hubbub._version import __version__
from hubbub.backends.broker import BrokerUnavailable
from hubbub.core.builtins import history_answer, presence_answer
from hubbub.core.control import REPORT_TTL, ControlMessage, Op
from hubbub.core.hub import Hub
from hubbub.errors import EventError, HubbubError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.envelope import TOO_DEEP, nesting_exceeds
from hubbub.protocol.events import (
    NAME_MAX,
    GetHistory,
    Name,
    Room,
    invalid_name_message,
    invalid_room_message,
    plain_schema_message,
    schema_field,
    valid_name,
    valid_room,
)
from hubbub.protocol.http import Head, Request, Response, Route, decimal

log = logging.getLogger("hubbub.client.api")

MAX_BODY = 65536
"""Largest request body read; larger is answered 413 unread."""
BODY_TIMEOUT = 10.0
"""Seconds a body has to arrive in full; later is answered 408."""
MAX_IN_FLIGHT = 256
"""Calls answered at once on one node; more get 503 at once."""
MAX_BROADCAST_ROOMS = 1000
"""Most rooms one broadcast may name."""
MAX_ROOMS_LISTED = 10_000
"""Most rooms `GET /api/rooms` lists (about 500 KB of JSON); past it the answer says `"truncated": true`.
Clients make rooms (128 each), so the listing must not grow with them."""
REFUSAL_LOG_PERIOD = 60.0
"""Seconds between two log lines about refused keys (each says how many since the last)."""


class ApiCode(enum.StrEnum):
    """The `code` of an API error; each has one HTTP status."""

    BAD_JSON = "bad_json"
    BAD_PAYLOAD = "bad_payload"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


_STATUS = {
    ApiCode.BAD_JSON: HTTPStatus.BAD_REQUEST,
    ApiCode.BAD_PAYLOAD: HTTPStatus.BAD_REQUEST,
    ApiCode.UNAUTHORIZED: HTTPStatus.UNAUTHORIZED,
    ApiCode.FORBIDDEN: HTTPStatus.FORBIDDEN,
    ApiCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ApiCode.METHOD_NOT_ALLOWED: HTTPStatus.METHOD_NOT_ALLOWED,
    ApiCode.TOO_LARGE: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    ApiCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    ApiCode.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}
_CLOSING = frozenset({ApiCode.UNAUTHORIZED, ApiCode.FORBIDDEN})
"""Refusals that close the connection after their answer: a wrong key, and a foreign host or origin."""
_CODE_OF_STATUS = {status: code for code, status in _STATUS.items() if code is not ApiCode.BAD_JSON}
"""The code of a refusal the HTTP reader decides (by status); 400 there is a malformed request."""


class ApiRefusal(HubbubError):
    """A call answered with an error: its code (which implies the status) and message."""

    def __init__(self, code: ApiCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error_response(code: ApiCode, message: str, *, close: bool = False) -> Response:
    """`{"error": {"code", "message"}}` with the code's status."""
    body = msgspec.json.encode({"error": {"code": code.value, "message": message}})
    headers = (("WWW-Authenticate", "apikey"),) if code is ApiCode.UNAUTHORIZED else ()
    return Response(_STATUS[code], body, close=close, headers=headers)


# ---- request bodies ------------------------------------------------------------


class PublishBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename={"sender": "from"}):
    room: Room
    message: msgspec.Raw
    sender: Name | None = None


class BroadcastBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename={"sender": "from"}):
    rooms: Annotated[list[Room], msgspec.Meta(min_length=1, max_length=MAX_BROADCAST_ROOMS)]
    message: msgspec.Raw
    sender: Name | None = None


class DisconnectBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    user: Name
    code: Annotated[int, msgspec.Meta(ge=4000, le=4999)] = 4000
    reason: str = ""


class MembershipBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    user: Name
    room: Room


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    method: str
    handler: Callable[[ServerApi, Request], Awaitable[Any]]


class ServerApi:
    """The `/api` routes of one server (see the module docstring)."""

    def __init__(self, hub: Hub, allowed: Callable[[Head], bool]) -> None:
        """`allowed`: the server's `Host` rule, and its `Origin` rule for requests that carry one."""
        self.hub = hub
        self._keys = [key.encode() for key in hub.settings.api_keys]
        self._allowed = allowed
        self._in_flight = 0
        self._refused = 0
        self._refused_logged = 0.0
        self.route = Route(self.handle, self._refuse, MAX_BODY, BODY_TIMEOUT, admit=self._admit)
        self.requests = Counter(
            "hubbub_api_requests",
            "Server API calls answered, by call and HTTP status.",
            ["call", "status"],
            registry=hub.metrics.registry,
        )

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (else `/api` is not claimed)."""
        return bool(self._keys)

    def claim(self, head: Head) -> Route | None:
        """Which route reads a request (`hubbub.protocol.http.Claim`): every `/api` request is this API's."""
        path = head.path
        if self._keys and (path == "/api" or path.startswith("/api/")):
            return self.route
        return None

    async def handle(self, request: Request) -> Response:
        """Answer one call, count it, never raise (but cancellation)."""
        call = _CALLS.get(request.head.path)
        name = call.name if call is not None else "unknown"
        try:
            response = await self._answer(request, call)
        except ApiRefusal as exc:
            # a refusal before the key is known to be right ends the connection: each guess costs a new
            # one, and a socket that never had a key cannot be kept alive with a request every IDLE_TIMEOUT
            response = error_response(exc.code, exc.message, close=exc.code in _CLOSING)
        self.requests.labels(name, str(response.status.value)).inc()
        return response

    def _admit(self, head: Head, peer: str) -> Response | None:
        """The checks that need no body, made before it is read: a foreign host or origin (403), no
        right key (401). Refused, the body is never read: a socket without a key holds no 64 KiB."""
        try:
            self._check_caller(head, peer)
        except ApiRefusal as exc:
            call = _CALLS.get(head.path)
            response = error_response(exc.code, exc.message, close=True)
            self.requests.labels(call.name if call is not None else "unknown", str(response.status.value)).inc()
            return response
        return None

    def _check_caller(self, head: Head, peer: str) -> None:
        """403 for a host or origin not allowed, 401 without one of the keys (`ApiRefusal`)."""
        if not self._allowed(head) or head.one("sec-fetch-site") == "cross-site":
            raise ApiRefusal(ApiCode.FORBIDDEN, "host or origin not allowed")
        if not self._authorized(head, peer):
            raise ApiRefusal(ApiCode.UNAUTHORIZED, "send Authorization: apikey KEY with a key of this server")

    def _refuse(self, head: Head, status: HTTPStatus, message: str) -> Response:
        """The HTTP reader's refusals in the API's error format, with the reader's status (400, 408,
        411, 413, 500), counted. 408 and 411 have no code of their own: `bad_payload`."""
        call = _CALLS.get(head.path)
        self.requests.labels(call.name if call is not None else "unknown", str(status.value)).inc()
        code = _CODE_OF_STATUS.get(status, ApiCode.BAD_PAYLOAD)
        body = msgspec.json.encode({"error": {"code": code.value, "message": message}})
        return Response(status, body, close=True)

    async def _answer(self, request: Request, call: _Call | None) -> Response:
        head = request.head  # its caller was admitted (`_admit`) before its body was read
        if call is None:
            raise ApiRefusal(ApiCode.NOT_FOUND, f"no such call: {head.path[:100]}")
        if head.method != call.method:
            raise ApiRefusal(ApiCode.METHOD_NOT_ALLOWED, f"{head.path} takes {call.method}")
        if self._in_flight >= MAX_IN_FLIGHT:
            raise ApiRefusal(ApiCode.UNAVAILABLE, "too many calls at once, try again")
        self._in_flight += 1
        try:
            result = await call.handler(self, request)
        except EventError as exc:
            raise ApiRefusal(_EVENT_CODES.get(exc.code, ApiCode.INTERNAL), exc.message) from None
        except BrokerUnavailable as exc:
            raise ApiRefusal(ApiCode.UNAVAILABLE, f"the broker is unavailable: {exc}") from None
        finally:
            self._in_flight -= 1
        return Response(HTTPStatus.OK, msgspec.json.encode(result))

    def _authorized(self, head: Head, peer: str) -> bool:
        """`Authorization: apikey KEY` with one of the keys, compared in constant time with each."""
        given = head.one("authorization")
        scheme, _, key = (given or "").partition(" ")
        candidate = key.strip().encode("latin-1", "replace")
        match = False
        for known in self._keys:  # every key, whatever matched: the time says nothing of which
            match |= hmac.compare_digest(candidate, known)
        if match and scheme.lower() == "apikey":
            return True
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged >= REFUSAL_LOG_PERIOD:
            log.warning("api.key_refused", extra={"peer": peer, "refused": self._refused})
            self._refused = 0
            self._refused_logged = now
        return False

    # ---- the calls ----------------------------------------------------------------

    async def publish(self, request: Request) -> dict[str, Any]:
        body = _decode(request.body, PublishBody)
        _check_sender(body.sender)
        self._check_message(body.message)
        return {"offset": await publish(self.hub, body.room, body.message, body.sender)}

    async def broadcast(self, request: Request) -> dict[str, Any]:
        body = _decode(request.body, BroadcastBody)
        if len(set(body.rooms)) != len(body.rooms):
            raise ApiRefusal(ApiCode.BAD_PAYLOAD, "rooms must be distinct - at `$.rooms`")
        _check_sender(body.sender)
        self._check_message(body.message)
        sender = body.sender or self.hub.settings.api_from
        started: list[int | asyncio.Future[int] | BaseException] = []
        for room in body.rooms:  # all started before any is awaited: they leave together
            try:
                started.append(self.hub.publish_nowait(room, body.message, sender))
            except EventError as exc:
                started.append(exc)
        offsets: dict[str, int] = {}
        failed = 0
        for room, outcome in zip(body.rooms, started, strict=True):
            if isinstance(outcome, asyncio.Future):
                try:
                    outcome = await outcome
                except EventError as exc:
                    outcome = exc
            if isinstance(outcome, int):
                offsets[room] = outcome
            else:
                failed += 1
        if failed:
            raise ApiRefusal(
                ApiCode.UNAVAILABLE, f"{failed} of {len(body.rooms)} rooms were not published (the broker failed)"
            )
        return {"offsets": offsets}

    async def disconnect(self, request: Request) -> dict[str, Any]:
        body = _decode(request.body, DisconnectBody)
        _check_user(body.user)
        if len(body.reason.encode()) > 123:
            raise ApiRefusal(ApiCode.BAD_PAYLOAD, "reason must be at most 123 bytes of UTF-8 - at `$.reason`")
        await disconnect(self.hub, body.user, body.code, body.reason)
        return {}

    async def subscribe(self, request: Request) -> dict[str, Any]:
        body = _decode(request.body, MembershipBody)
        _check_user(body.user)
        await self.hub.control.send(ControlMessage(Op.SUBSCRIBE, body.user, room=body.room))
        return {}

    async def unsubscribe(self, request: Request) -> dict[str, Any]:
        body = _decode(request.body, MembershipBody)
        _check_user(body.user)
        await unsubscribe(self.hub, body.user, body.room)
        return {}

    async def presence(self, request: Request) -> dict[str, Any]:
        query = _query(request.head, ("room",))
        room = query.get("room")
        if room is None:
            raise ApiRefusal(ApiCode.BAD_PAYLOAD, "give a room: ?room=R")
        if not valid_room(room):
            raise ApiRefusal(ApiCode.BAD_PAYLOAD, invalid_room_message("room"))
        return await presence_answer(
            self.hub.presence, room, self._budget, with_info=bool(self.hub.settings.connect_proxy)
        )

    async def history(self, request: Request) -> dict[str, Any]:
        query: dict[str, Any] = _query(request.head, ("room", "since", "limit"))
        for field in ("since", "limit"):
            if field in query:
                number = decimal(query[field])
                if number is None:
                    raise ApiRefusal(ApiCode.BAD_PAYLOAD, f"{field} must be a non-negative integer of ASCII digits")
                query[field] = number
        try:
            payload = msgspec.convert(query, GetHistory)
        except msgspec.ValidationError as exc:
            raise ApiRefusal(ApiCode.BAD_PAYLOAD, _plain(str(exc))) from None
        return await history_answer(self.hub.history, payload, self._budget)

    async def rooms(self, request: Request) -> dict[str, Any]:
        _query(request.head, ())
        rooms = await self.hub.presence.rooms(MAX_ROOMS_LISTED + 1)
        answer: dict[str, Any] = {
            "rooms": [{"room": room, "members": members} for room, members in rooms[:MAX_ROOMS_LISTED]]
        }
        if len(rooms) > MAX_ROOMS_LISTED:
            answer["truncated"] = True
        return answer

    async def info(self, request: Request) -> dict[str, Any]:
        _query(request.head, ())
        hub = self.hub
        # this node's numbers as of now; the others' are at most a report period old
        await hub.presence.report_node(hub.node_id, len(hub.connections), len(hub.room_table.members), REPORT_TTL)
        nodes = await hub.presence.nodes()
        return {
            "version": __version__,
            "nodes": [{"id": node, "connections": conns, "rooms": rooms} for node, conns, rooms in nodes],
        }

    @property
    def _budget(self) -> int:
        """Bytes a presence or history answer may take: as much as a client's (half the send-queue bound)."""
        return self.hub.settings.send_queue_bytes // 2

    def _check_message(self, message: msgspec.Raw) -> None:
        limit = self.hub.settings.max_message_size
        if len(message) > limit:
            raise ApiRefusal(ApiCode.TOO_LARGE, f"message is over --max-message-size ({limit} bytes)")


# ---- the actions, shared with the admin dashboard (hubbub.server.admin) ---------------------


async def publish(hub: Hub, room: str, message: msgspec.Raw, sender: str | None) -> int:
    """Publish `message` (JSON) to `room` as `sender` (default `--api-from`), on every node; its offset."""
    return await hub.publish(room, message, sender or hub.settings.api_from)


async def disconnect(hub: Hub, user: str, code: int = 4000, reason: str = "") -> None:
    """Close every connection of `user`, on every node (a control message through the broker)."""
    await hub.control.send(ControlMessage(Op.DISCONNECT, user, code=code, reason=reason))


async def unsubscribe(hub: Hub, user: str, room: str) -> None:
    """Take every connection of `user` out of `room`, on every node."""
    await hub.control.send(ControlMessage(Op.UNSUBSCRIBE, user, room=room))


_CALLS = {
    "/api/publish": _Call("publish", "POST", ServerApi.publish),
    "/api/broadcast": _Call("broadcast", "POST", ServerApi.broadcast),
    "/api/disconnect": _Call("disconnect", "POST", ServerApi.disconnect),
    "/api/subscribe": _Call("subscribe", "POST", ServerApi.subscribe),
    "/api/unsubscribe": _Call("unsubscribe", "POST", ServerApi.unsubscribe),
    "/api/presence": _Call("presence", "GET", ServerApi.presence),
    "/api/history": _Call("history", "GET", ServerApi.history),
    "/api/rooms": _Call("rooms", "GET", ServerApi.rooms),
    "/api/info": _Call("info", "GET", ServerApi.info),
}
_EVENT_CODES = {
    ErrorCode.UNAVAILABLE: ApiCode.UNAVAILABLE,
    ErrorCode.BAD_PAYLOAD: ApiCode.BAD_PAYLOAD,
    ErrorCode.FORBIDDEN: ApiCode.FORBIDDEN,
}


def _decode(body: bytes, schema: type[Any]) -> Any:
    """The body as `schema`: `bad_json` when it is not JSON or nests past `MAX_DEPTH`, `bad_payload` when
    it has the wrong shape."""
    if nesting_exceeds(body):
        raise ApiRefusal(ApiCode.BAD_JSON, TOO_DEEP)
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as exc:
        raise ApiRefusal(ApiCode.BAD_PAYLOAD, _plain(str(exc))) from None
    except msgspec.DecodeError:
        raise ApiRefusal(ApiCode.BAD_JSON, "the body is not JSON") from None


_NAME_RULE = f"1 to {NAME_MAX} characters, none a control, formatting or line-separator character"
_FIELD_RULES = {
    "$.rooms": f"rooms must be a list of 1 to {MAX_BROADCAST_ROOMS} distinct room names",
    "$.user": f"user must be a name: {_NAME_RULE}",
    "$.from": f"from must be a name: {_NAME_RULE}",
    "$.code": "code must be an integer from 4000 to 4999",
    "$.reason": "reason must be a string of at most 123 bytes of UTF-8",
    "$.message": "message is required (any JSON value)",
    "$.since": "since must be a non-negative integer",
    "$.limit": "limit must be an integer from 1 to 1000",
}
"""Each API field's rule in words, for a body or query that fails the schema (the room's is
`invalid_room_message`); msgspec's own words stay for the rest (a missing or unknown field)."""


def _plain(message: str) -> str:
    """A schema failure in words: the field's rule (`_FIELD_RULES`), never a regex."""
    field = schema_field(message)
    rule = _FIELD_RULES.get(field) if field is not None else None
    if rule is not None and not message.startswith("Object missing required field"):
        return f"{rule} - at `{field}`"
    return plain_schema_message(message)


def _check_user(user: str) -> None:
    if not valid_name(user):
        raise ApiRefusal(ApiCode.BAD_PAYLOAD, f"{invalid_name_message(user)} - at `$.user`")


def _check_sender(sender: str | None) -> None:
    if sender is not None and not valid_name(sender):
        raise ApiRefusal(ApiCode.BAD_PAYLOAD, f"{invalid_name_message(sender)} - at `$.from`")


def _query(head: Head, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query's parameters, each at most once and among `allowed` (else `bad_payload`)."""
    try:
        query = parse_qs(urlsplit(head.target).query, keep_blank_values=True, strict_parsing=False, max_num_fields=8)
    except ValueError:
        raise ApiRefusal(ApiCode.BAD_PAYLOAD, "too many query parameters") from None
    found: dict[str, str] = {}
    for name, values in query.items():
        if name not in allowed:
            raise ApiRefusal(ApiCode.BAD_PAYLOAD, f"unknown query parameter {name[:40]!r}")
        if len(values) != 1:
            raise ApiRefusal(ApiCode.BAD_PAYLOAD, f"give {name} once")
        found[name] = values[0]
    return found
