"""The Python client of hubbub's server API (`hubbub serve --api-key KEY`), sync and async.

A backend (Django, FastAPI, Flask, a worker) publishes to rooms, disconnects
users and reads presence and history over HTTP, with the key the server was
started with:

    from hubbub.client.api import ApiClient

    with ApiClient("http://127.0.0.1:8000", key) as api:
        offset = api.publish("lobby", {"text": "deploy finished"}, from_="ci")
        print([m.name for m in api.presence("lobby").members])

    from hubbub.client.api import AsyncApiClient

    async with AsyncApiClient("http://127.0.0.1:8000", key) as api:
        offsets = await api.broadcast(["team-a", "team-b"], "maintenance at 18:00")

One client holds one pool of keep-alive connections: make it once (at start-up,
per process) and use it for every call, rather than one per call. Every call
has a timeout (`timeout`, 5 s by default, for connecting and for each wait on
the server). The key goes in each request's `Authorization: apikey KEY` header
and nowhere else: not in `repr`, not in exceptions, not in logs.

Every failure is an exception carrying the server's error `code`, its
`message` and the HTTP `status`:

    ApiError              any call that failed; `code`, `message`, `status`
     +-- BadRequest       400: `bad_json`, `bad_payload` (a bad room or user name, a bad value)
     +-- Unauthorized     401: `unauthorized` (no key, or a key the server does not have)
     +-- NotFound         404: `not_found` (an unknown /api path; a server without --api-key)
     +-- Unavailable      503 `unavailable` (the server's broker or store is down), a 502 or 504 from a
                          proxy in front of it, or no answer at all: `unreachable` (refused, reset,
                          no route) and `timeout`, both with status 0

Other statuses (403 `forbidden`, 405 `method_not_allowed`, 413 `too_large`,
500 `internal`) raise `ApiError` itself. An answer that is not the API's JSON
(a proxy's HTML error page, a server without the API) raises by its status
with the code the contract gives that status (`bad_answer` when it gives none),
and the message quotes the start of the body. Catch `Unavailable` to retry;
after a `timeout` a publish may or may not have happened.

A URL that is not `http://` or `https://` (a `ws://` one, say) or a key that
cannot be sent in a header is a `ValueError` when the client is made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx
import msgspec

from hubbub._version import __version__
from hubbub.errors import HubbubError
from hubbub.protocol.redaction import redact

__all__ = [
    "ApiClient",
    "ApiError",
    "AsyncApiClient",
    "BadRequest",
    "Info",
    "Member",
    "Message",
    "NodeInfo",
    "NotFound",
    "RoomHistory",
    "RoomInfo",
    "RoomPresence",
    "Unauthorized",
    "Unavailable",
]


class ApiError(HubbubError):
    """A call the server refused or could not answer: `code` (the contract's error code, or
    `unreachable`, `timeout`, `bad_answer`), `message` (for people), `status` (HTTP; 0 when
    there was no answer)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class BadRequest(ApiError):
    """400: the body was not JSON (`bad_json`) or not the call's shape or values (`bad_payload`)."""


class Unauthorized(ApiError):
    """401: the server has no such key."""


class NotFound(ApiError):
    """404: no such /api path, or a server started without `--api-key` (which has no /api at all)."""


class Unavailable(ApiError):
    """The call may succeed later: 503 (the server's broker or store is down), 502 or 504 from a
    proxy, or no answer (`unreachable`, `timeout`; status 0)."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}
_CODE_OF_STATUS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    500: "internal",
    503: "unavailable",
}
"""The contract's code for a status that has one, for an error answer that is not the API's JSON."""


class Member(msgspec.Struct, frozen=True):
    """One identity in a room, and how many connections it has there (on every node)."""

    name: str
    connections: int


class RoomPresence(msgspec.Struct, frozen=True):
    """Who is in `room` (`GET /api/presence`, as the protocol's `get_presence`); `truncated` when
    the server cut a long list (half of its `--send-queue-bytes`)."""

    room: str
    members: list[Member]
    truncated: bool = False


class Message(msgspec.Struct, frozen=True, rename={"from_": "from"}):
    """A message kept in a room's history, as members received it in `new_message`."""

    room: str
    message: Any
    from_: str
    sent: datetime
    offset: int


class RoomHistory(msgspec.Struct, frozen=True):
    """`GET /api/history`, as the protocol's `get_history`: `messages` oldest first, and `offset`,
    the room's latest (0 when none). Fewer messages than asked may come back: to read on, ask
    again with `since` set to the last one's offset until it reaches `offset`."""

    room: str
    offset: int
    messages: list[Message]


class RoomInfo(msgspec.Struct, frozen=True):
    """A room with members now, cluster-wide; `members` counts distinct identities."""

    room: str
    members: int


class NodeInfo(msgspec.Struct, frozen=True):
    """One live node of the cluster: its `--node-id`, open connections and rooms with local members."""

    id: str
    connections: int
    rooms: int


class Info(msgspec.Struct, frozen=True):
    """`GET /api/info`: the server's version and every live node of the cluster."""

    version: str
    nodes: list[NodeInfo]


class _Offset(msgspec.Struct, frozen=True):
    offset: int


class _Offsets(msgspec.Struct, frozen=True):
    offsets: dict[str, int]


class _Done(msgspec.Struct, frozen=True):
    """`{}`: the answer of the calls that return nothing (any object is accepted)."""


class _Rooms(msgspec.Struct, frozen=True):
    rooms: list[RoomInfo]


class _ErrorDetail(msgspec.Struct, frozen=True):
    code: str
    message: str = ""


class _ErrorBody(msgspec.Struct, frozen=True):
    error: _ErrorDetail


T = TypeVar("T")
A = TypeVar("A")
_JSON_BODY = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class _Call(Generic[T]):
    """One API call, without I/O: what to send, and how to read its answer into a result."""

    method: str
    path: str
    answer: type[Any]
    pick: Callable[[Any], T]
    body: bytes | None = None
    params: dict[str, str | int] | None = None

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The request, with the client's base URL, key and timeout."""
        headers = None if self.body is None else _JSON_BODY
        return http.build_request(self.method, self.path, content=self.body, params=self.params, headers=headers)

    def result(self, response: httpx.Response) -> T:
        """The result of a 200, or the `ApiError` the answer stands for, raised."""
        status = response.status_code
        if status == 200:
            try:
                return self.pick(msgspec.json.decode(response.content, type=self.answer))
            except msgspec.DecodeError:  # ValidationError included
                pass
        else:
            try:
                detail = msgspec.json.decode(response.content, type=_ErrorBody).error
            except msgspec.DecodeError:
                pass
            else:
                raise _BY_STATUS.get(status, ApiError)(detail.code, detail.message, status)
        raise _BY_STATUS.get(status, ApiError)(_CODE_OF_STATUS.get(status, "bad_answer"), _unexpected(response), status)


def _unexpected(response: httpx.Response) -> str:
    """Why an answer is not the API's: its status, type and the start of its body, on one line."""
    kind = response.headers.get("content-type", "no content type")
    start = " ".join(response.content[:120].decode("utf-8", "replace").split())
    # a server without --api-key says so in JSON; other servers answer /api as any unknown path, or refuse
    # the method (hubbub itself: 405) when the base URL has a path that is no prefix of the API
    hint = ""
    if response.status_code in (400, 404):
        hint = " (is the server started with --api-key?)"
    elif response.status_code == 405:
        hint = " (is the URL the server's base address, without a path?)"
    where = f"HTTP {response.status_code} answer of {response.request.url.path}"
    return f"{where} is not the API's JSON ({kind}): {start!r}{hint}"


def _no_answer(exc: httpx.RequestError, url: str) -> ApiError:
    """The exception for a call that got no answer at all."""
    if isinstance(exc, httpx.TimeoutException):
        return Unavailable("timeout", f"no answer from {url} in time ({type(exc).__name__})", 0)
    if isinstance(exc, httpx.TransportError):
        return Unavailable("unreachable", f"cannot reach {url}: {exc or type(exc).__name__}", 0)
    return ApiError("bad_answer", f"unreadable answer from {url}: {exc or type(exc).__name__}", 0)


def _json(body: dict[str, Any]) -> bytes:
    return msgspec.json.encode(body)


def _publish(room: str, message: Any, from_: str | None) -> _Call[int]:
    body = {"room": room, "message": message} | ({} if from_ is None else {"from": from_})
    return _Call("POST", "/api/publish", _Offset, lambda a: a.offset, _json(body))


def _broadcast(rooms: Iterable[str], message: Any, from_: str | None) -> _Call[dict[str, int]]:
    if isinstance(rooms, str):
        raise TypeError("rooms must be a list of room names, not one string")
    body = {"rooms": list(rooms), "message": message} | ({} if from_ is None else {"from": from_})
    return _Call("POST", "/api/broadcast", _Offsets, lambda a: a.offsets, _json(body))


def _done(path: str, body: dict[str, Any]) -> _Call[None]:
    return _Call("POST", path, _Done, lambda a: None, _json(body))


def _history(room: str, since: int | None, limit: int | None) -> _Call[RoomHistory]:
    params: dict[str, str | int] = {"room": room}
    if since is not None:
        params["since"] = since
    if limit is not None:
        params["limit"] = limit
    return _Call("GET", "/api/history", RoomHistory, _identity, params=params)


def _identity(answer: A) -> A:
    return answer


def _presence(room: str) -> _Call[RoomPresence]:
    return _Call("GET", "/api/presence", RoomPresence, _identity, params={"room": room})


_ROOMS: _Call[list[RoomInfo]] = _Call("GET", "/api/rooms", _Rooms, lambda a: a.rooms)
_INFO: _Call[Info] = _Call("GET", "/api/info", Info, _identity)


def _base_url(url: str) -> httpx.URL:
    """`url` checked: `http://` or `https://`, a host, no credentials, query or fragment."""
    wrong = f"the server's URL must be http://HOST[:PORT][/PREFIX] or https://..., not {redact(str(url))!r}"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise ValueError(wrong) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(wrong)
    if parsed.userinfo or parsed.query or parsed.fragment:
        raise ValueError("the server's URL must have no user, password, query or fragment")
    segments = parsed.path.rstrip("/").split("/")
    if segments[-1] in ("ws", "login", "healthz", "metrics") or "api" in segments:
        # a path a hubbub server answers itself, not a prefix a proxy serves it under: a likely slip
        base = str(parsed.copy_with(path="/")).rstrip("/")
        raise ValueError(
            f"give the server's base URL, e.g. {base}, not one with the path {parsed.path!r}"
            " (the calls' paths, /api/..., are added to it)"
        )
    return parsed


def _headers(key: str) -> dict[str, str]:
    """The headers of every call; `ValueError` (never showing the key) when it cannot be sent."""
    if not isinstance(key, str) or not key or not all("!" <= c <= "~" for c in key):
        raise ValueError("the API key must be a non-empty string of printable ASCII without spaces")
    return {
        "Authorization": f"apikey {key}",
        "Accept": "application/json",
        "User-Agent": f"hubbub-api/{__version__}",
    }


def _check_timeout(timeout: float) -> httpx.Timeout:
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return httpx.Timeout(timeout)


class ApiClient:
    """A synchronous client of one hubbub server's API (or of a load balancer in front of several).

    `base_url` is the server's HTTP address (`http://127.0.0.1:8000`, or with the path prefix a
    proxy serves it under); `key` one of its `--api-key`s; `timeout` the seconds allowed to
    connect and for each wait on the server. `transport` replaces httpx's (tests pass an
    `httpx.MockTransport`). Use it as a context manager, or `close()` it; it is safe to share
    between threads.
    """

    def __init__(
        self, base_url: str, key: str, *, timeout: float = 5.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._url = _base_url(base_url)
        self._http = httpx.Client(
            base_url=self._url, headers=_headers(key), timeout=_check_timeout(timeout), transport=transport
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._url)!r})"

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections; idempotent. A call after it raises `RuntimeError`."""
        self._http.close()

    def _call(self, call: _Call[T]) -> T:
        try:
            response = self._http.send(call.request(self._http))
        except httpx.RequestError as exc:
            raise _no_answer(exc, str(self._url)) from exc
        return call.result(response)

    def publish(self, room: str, message: Any, *, from_: str | None = None) -> int:
        """Publish `message` (any JSON value) to `room`, as a `new_message` from `from_` (default:
        the server's `--api-from`); it is kept in history. Returns its offset in the room.
        `BadRequest` for a bad room name or `from_`."""
        return self._call(_publish(room, message, from_))

    def broadcast(self, rooms: Iterable[str], message: Any, *, from_: str | None = None) -> dict[str, int]:
        """Publish `message` to each of `rooms` (1 to 1000 distinct names); returns each room's offset."""
        return self._call(_broadcast(rooms, message, from_))

    def disconnect(self, user: str, *, code: int = 4000, reason: str = "") -> None:
        """Close every connection of identity `user`, on every node, with close `code` (4000 to 4999)
        and `reason` (at most 123 bytes of UTF-8). A user with no connection is no error."""
        self._call(_done("/api/disconnect", {"user": user, "code": code, "reason": reason}))

    def subscribe(self, user: str, room: str) -> None:
        """Make every connection of `user`, on every node, join `room` as if it had sent `join_room`
        (the room limit per connection applies; members get `member_joined`)."""
        self._call(_done("/api/subscribe", {"user": user, "room": room}))

    def unsubscribe(self, user: str, room: str) -> None:
        """Make every connection of `user`, on every node, leave `room` as if it had sent `leave_room`."""
        self._call(_done("/api/unsubscribe", {"user": user, "room": room}))

    def presence(self, room: str) -> RoomPresence:
        """Who is in `room`, on every node, as the protocol's `get_presence` answers."""
        return self._call(_presence(room))

    def history(self, room: str, *, since: int | None = None, limit: int | None = None) -> RoomHistory:
        """The messages of `room` after offset `since` (without it: the latest), at most `limit`
        (1 to 1000, default 100), as the protocol's `get_history` answers."""
        return self._call(_history(room, since, limit))

    def rooms(self) -> list[RoomInfo]:
        """The rooms with members now, cluster-wide, sorted by name, with their member counts."""
        return self._call(_ROOMS)

    def info(self) -> Info:
        """The server's version and every live node of the cluster."""
        return self._call(_INFO)


class AsyncApiClient:
    """The asyncio twin of `ApiClient`: the same arguments, methods, results and exceptions, each
    call awaited. Make it inside the event loop that uses it; `async with` it, or `await close()`."""

    def __init__(
        self, base_url: str, key: str, *, timeout: float = 5.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._url = _base_url(base_url)
        self._http = httpx.AsyncClient(
            base_url=self._url, headers=_headers(key), timeout=_check_timeout(timeout), transport=transport
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._url)!r})"

    async def __aenter__(self) -> AsyncApiClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pooled connections; idempotent."""
        await self._http.aclose()

    async def _call(self, call: _Call[T]) -> T:
        try:
            response = await self._http.send(call.request(self._http))
        except httpx.RequestError as exc:
            raise _no_answer(exc, str(self._url)) from exc
        return call.result(response)

    async def publish(self, room: str, message: Any, *, from_: str | None = None) -> int:
        """`ApiClient.publish`: the message's offset in `room`."""
        return await self._call(_publish(room, message, from_))

    async def broadcast(self, rooms: Iterable[str], message: Any, *, from_: str | None = None) -> dict[str, int]:
        """`ApiClient.broadcast`: each room's offset."""
        return await self._call(_broadcast(rooms, message, from_))

    async def disconnect(self, user: str, *, code: int = 4000, reason: str = "") -> None:
        """`ApiClient.disconnect`: close every connection of `user` with `code` and `reason`."""
        await self._call(_done("/api/disconnect", {"user": user, "code": code, "reason": reason}))

    async def subscribe(self, user: str, room: str) -> None:
        """`ApiClient.subscribe`: every connection of `user` joins `room`."""
        await self._call(_done("/api/subscribe", {"user": user, "room": room}))

    async def unsubscribe(self, user: str, room: str) -> None:
        """`ApiClient.unsubscribe`: every connection of `user` leaves `room`."""
        await self._call(_done("/api/unsubscribe", {"user": user, "room": room}))

    async def presence(self, room: str) -> RoomPresence:
        """`ApiClient.presence`: who is in `room`."""
        return await self._call(_presence(room))

    async def history(self, room: str, *, since: int | None = None, limit: int | None = None) -> RoomHistory:
        """`ApiClient.history`: the messages of `room` after `since`, at most `limit`."""
        return await self._call(_history(room, since, limit))

    async def rooms(self) -> list[RoomInfo]:
        """`ApiClient.rooms`: the rooms with members now."""
        return await self._call(_ROOMS)

    async def info(self) -> Info:
        """`ApiClient.info`: the version and the live nodes."""
        return await self._call(_INFO)
