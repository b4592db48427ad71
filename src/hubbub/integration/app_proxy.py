"""The proxies to the application (`--connect-proxy`, `--publish-proxy`, `--join-proxy`, `--rpc-proxy`).

hubbub asks the app over HTTP. `AppProxy.connect` asks about a handshake without a credential of
hubbub's own (200 admits, 401/403 refuse, anything else 503); its publish handler asks about each
`send_message` (publish, rewrite, `forbidden`, or `unavailable`); `AppProxy.join` about each
`join_room` the room's namespace sends to it (200 admits, 403 `forbidden`, anything else
`unavailable`); `AppProxy.rpc` makes each `rpc` call no `--app` method answers (the answer's data,
`forbidden`, or `unavailable`). A call without a usable answer raises `ProxyFailed` inside.
Handshakes and joins waiting on the app are bounded alike (`WaitingPlaces`). The contract:
docs/integration.md; how and why: docs/topics/integration.md.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import httpx
import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge

from hubbub.auth import signing
from hubbub.auth.tokens import MAX_ROOM_PATTERNS, Grant
from hubbub.core import builtins as handlers
from hubbub.core.membership import ANONYMOUS
from hubbub.errors import EventError, HubbubError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.envelope import TOO_DEEP, nesting_exceeds
from hubbub.protocol.events import SendMessage, valid_name
from hubbub.protocol.namespaces import PublishRule

if TYPE_CHECKING:
    from hubbub.core.connection import Connection
    from hubbub.core.settings import Settings

log = logging.getLogger("hubbub.proxy")
T = TypeVar("T")

POOL = 64
"""Connections to the app at once, both proxies together; more calls wait for one (within the timeout)."""
MAX_INFO_BYTES = 2048
"""Largest `info` (compact JSON) a connect answer may give: it is stored in presence for every room the
connection joins and sent with every `get_presence` and `member_joined`."""
MAX_CONNECT_ANSWER = 16384
"""Bytes of a connect answer read at most; a longer one is malformed (503)."""
MIN_PER_ADDRESS = 16
"""Places among the waiting handshakes any one address may hold, whatever its share (`share_per_address`)."""
LOG_EVERY = 10.0
"""Seconds between two log lines of one kind of failure (the ones between are counted in the next)."""


class ProxyOutcome(enum.Enum):
    """How a proxy call ended, when the app gave a usable answer (`hubbub_proxy_calls_total`'s `outcome`)."""

    ACCEPTED = "accepted"
    """A handshake admitted, a message published (as sent or rewritten), an rpc answered."""
    REFUSED = "refused"
    """A handshake refused (401, 403), a message or an rpc refused (403: `forbidden`)."""


class Failure(enum.Enum):
    """Why a proxy call gave no usable answer (the log line's `reason`)."""

    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    STATUS = "unexpected_status"
    MALFORMED = "malformed_answer"
    BUSY = "too_many_waiting"


class ProxyFailed(HubbubError):
    """A proxy call that failed: `failure` says how, `detail` (never a secret or a body) says more."""

    def __init__(self, failure: Failure, detail: str = "") -> None:
        super().__init__(f"{failure.value}: {detail}" if detail else failure.value)
        self.failure = failure
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Admission:
    """What the app's 200 gives a handshake: the identity, the rooms it may join (a grant, None: any),
    and its public info (compact JSON of an object, None: none)."""

    user: str
    grant: Grant | None
    info: bytes | None


RoomPattern = Annotated[str, msgspec.Meta(min_length=1, max_length=129)]


class ConnectAnswer(msgspec.Struct, forbid_unknown_fields=False):
    """The body of the app's 200 to a handshake."""

    user: str
    rooms: Annotated[list[RoomPattern], msgspec.Meta(max_length=MAX_ROOM_PATTERNS)] | None = None
    info: dict[str, Any] | None = None


class RpcAnswer(msgspec.Struct, forbid_unknown_fields=False):
    """The body of the app's 200 to an rpc: `data` is required (`null` is an answer, its absence is not)."""

    data: msgspec.Raw


class JoinAnswer(msgspec.Struct, forbid_unknown_fields=False):
    """The body of the app's 200 to a join (may be empty: admitted, no info)."""

    info: dict[str, Any] | None = None


_CONNECT = msgspec.json.Decoder(ConnectAnswer)
_RPC = msgspec.json.Decoder(RpcAnswer)
_JOIN = msgspec.json.Decoder(JoinAnswer)
_PUBLISH = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ENCODER = msgspec.json.Encoder()


def _decoded(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """An answer's body decoded; `ProxyFailed` (malformed) for one too deep or not of the decoder's type."""
    if nesting_exceeds(body):
        raise ProxyFailed(Failure.MALFORMED, TOO_DEEP)
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ProxyFailed(Failure.MALFORMED, str(exc)[:200]) from None


def connect_request(client: str, query: dict[str, str], headers: dict[str, str]) -> bytes:
    """The body POSTed to the connect proxy."""
    return _ENCODER.encode({"client": client, "query": query, "headers": headers})


def admission(status: int, body: bytes) -> Admission | HTTPStatus:
    """The app's answer to a handshake: an admission, or the status to refuse with (401, 403).

    `ProxyFailed` for any other status and for a 200 that is not `{"user": name, ...}` (503).
    """
    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
        return HTTPStatus(status)
    if status != HTTPStatus.OK:
        raise ProxyFailed(Failure.STATUS, str(status))
    answer = _decoded(_CONNECT, body)
    if not valid_name(answer.user):
        raise ProxyFailed(Failure.MALFORMED, "user is not a valid name")
    grant = Grant(answer.user, math.inf, tuple(answer.rooms)) if answer.rooms is not None else None
    return Admission(answer.user, grant, _info(answer.info))


def _info(value: dict[str, Any] | None) -> bytes | None:
    """An answer's `info` as the compact JSON presence keeps; `ProxyFailed` past `MAX_INFO_BYTES`."""
    if value is None:
        return None
    try:
        info = _ENCODER.encode(value)
    except (msgspec.EncodeError, RecursionError):  # pragma: no cover - what was decoded encodes
        raise ProxyFailed(Failure.MALFORMED, "info does not encode") from None
    if len(info) > MAX_INFO_BYTES:
        raise ProxyFailed(Failure.MALFORMED, f"info longer than {MAX_INFO_BYTES} bytes")
    return info


def join_request(user: str, room: str, info: bytes | None, since: int | None) -> bytes:
    """The body POSTed to the join proxy: who, which room, the connection's info, and `since` of a resume."""
    return _ENCODER.encode(
        {"user": user, "room": room, "info": msgspec.Raw(info) if info is not None else None, "since": since}
    )


def join_verdict(status: int, body: bytes) -> bytes | None:
    """The member's info in the room after the app's answer to a join (None: the connection's own).

    403 is `forbidden`; `ProxyFailed` for any other status and for a 200 whose body is neither empty
    nor a JSON object (its `info` an object of at most `MAX_INFO_BYTES`).
    """
    if status == HTTPStatus.FORBIDDEN:
        raise EventError(ErrorCode.FORBIDDEN, "the application refused this join")
    if status != HTTPStatus.OK:
        raise ProxyFailed(Failure.STATUS, str(status))
    if not body.strip():
        return None
    return _info(_decoded(_JOIN, body).info)


def address_of(remote: str) -> str:
    """The per-address key of a connection's `host:port`: the IPv4 address, or the IPv6 /64 (as the
    listener counts sockets)."""
    host = remote.rsplit(":", 1)[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6:
        return f"{ipaddress.IPv6Network((ip, 64), strict=False).network_address}/64"
    return host


def publish_request(user: str, room: str, message: msgspec.Raw) -> bytes:
    """The body POSTed to the publish proxy."""
    return _ENCODER.encode({"user": user, "room": room, "message": message})


def verdict(status: int, body: bytes, message: msgspec.Raw) -> msgspec.Raw:
    """The message to publish after the app's answer: `message` itself, or the app's rewrite.

    403 is `forbidden`; `ProxyFailed` for any other status and for a 200 that is not a JSON object.
    """
    if status == HTTPStatus.FORBIDDEN:
        raise EventError(ErrorCode.FORBIDDEN, "the application refused this message")
    if status != HTTPStatus.OK:
        raise ProxyFailed(Failure.STATUS, str(status))
    return _decoded(_PUBLISH, body).get("message", message)


def rpc_request(user: str, method: str, data: msgspec.Raw, client: str, info: bytes | None) -> bytes:
    """The body POSTed to the RPC proxy (`info` only when the connect proxy gave the connection one)."""
    body: dict[str, Any] = {"user": user, "method": method, "data": data, "client": client}
    if info is not None:
        body["info"] = msgspec.Raw(info)
    return _ENCODER.encode(body)


def rpc_answer(status: int, body: bytes, limit: int) -> msgspec.Raw:
    """The data of the app's answer to an rpc, at most `limit` bytes of JSON.

    403 is `forbidden`; `ProxyFailed` for any other status, and for a 200 that is not a JSON object
    with a `data` field, or whose `data` is longer than `limit`.
    """
    if status == HTTPStatus.FORBIDDEN:
        raise EventError(ErrorCode.FORBIDDEN, "the application refused this call")
    if status != HTTPStatus.OK:
        raise ProxyFailed(Failure.STATUS, str(status))
    data = _decoded(_RPC, body).data
    if len(data) > limit:  # a client's message is held to this; so is what it is sent back
        raise ProxyFailed(Failure.MALFORMED, f"data over --max-message-size ({limit} bytes)")
    return data


class _LogLimiter:
    """At most one log line per kind of failure every `LOG_EVERY` seconds; the rest are counted."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, Failure], float] = {}
        self._skipped: dict[tuple[str, Failure], int] = {}

    def failed(self, kind: str, exc: ProxyFailed) -> None:
        key = (kind, exc.failure)
        now = time.monotonic()
        if now - self._last.get(key, -math.inf) < LOG_EVERY:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return
        self._last[key] = now
        skipped = self._skipped.pop(key, 0)
        log.warning(
            "proxy.failed",
            extra={"proxy": kind, "reason": exc.failure.value, "detail": exc.detail, "not_logged_since": skipped},
        )


class WaitingPlaces:
    """The calls of one kind (handshakes, joins) that may wait on the app at once, in all and per address.

    Without a bound, a slow app makes every waiting call hold its memory and a connection to the
    app; with one bound only, one address could hold every place and get everyone else refused.
    """

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self.waiting = 0
        """Calls waiting now (`reserve` / `release`)."""
        self.per_address = max_waiting
        """How many of those places one client address may hold (`share_per_address`)."""
        self._waiting_from: dict[str, int] = {}

    def share_per_address(self, per_ip: int, connections: int) -> None:
        """Let one address hold the share of the places it may hold of the connections (`per_ip` of
        `connections`), but never fewer than `MIN_PER_ADDRESS`."""
        share = -(-self.max_waiting * per_ip // max(1, connections))  # rounded up
        self.per_address = min(self.max_waiting, max(share, MIN_PER_ADDRESS))

    def reserve(self, address: str) -> ProxyFailed | None:
        """Take a place for a call of `address`; the failure (`too_many_waiting`) when none is left to it."""
        if self.waiting >= self.max_waiting:
            return ProxyFailed(Failure.BUSY, f"{self.waiting} waiting")
        held = self._waiting_from.get(address, 0)
        if held >= self.per_address:
            return ProxyFailed(Failure.BUSY, f"{held} waiting from one address")
        self._waiting_from[address] = held + 1
        self.waiting += 1
        return None

    def release(self, address: str) -> None:
        """Give a place taken by `reserve` back (the call has its answer, or is gone)."""
        self.waiting -= 1
        held = self._waiting_from.pop(address, 1) - 1
        if held:
            self._waiting_from[address] = held


class AppProxy:
    """The server's calls to the application (connect, publish, join and RPC proxies), on one bounded HTTP pool."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        """`registry`: where `hubbub_proxy_calls_total` and `hubbub_proxy_waiting` go (the hub's, for /metrics)."""
        self.connect_url = settings.connect_proxy
        self.publish_url = settings.publish_proxy
        self.rpc_url = settings.rpc_proxy
        self.join_url = settings.join_proxy
        self.timeout = settings.proxy_timeout
        self.headers = settings.proxy_headers
        """The handshake headers passed on, as configured (their case is kept in the request)."""
        self.max_waiting = settings.proxy_max_waiting
        self._secret = settings.webhook_secret
        self._max_publish_answer = max(65536, 2 * settings.max_message_size)
        self._max_message = settings.max_message_size
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.proxy_timeout),
            limits=httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL),
            trust_env=False,  # the app is called directly, whatever HTTP_PROXY says
            follow_redirects=False,
        )
        self.handshakes = WaitingPlaces(self.max_waiting)
        """Handshakes waiting on the connect proxy (`reserve` / `release`)."""
        self.joins = WaitingPlaces(self.max_waiting)
        """Joins waiting on the join proxy (taken and given back by `join`)."""
        self.rpc_waiting = 0
        """rpc calls waiting on the RPC proxy now; at most `max_waiting`, past it `unavailable` at once."""
        self._log = _LogLimiter()
        registry = registry if registry is not None else CollectorRegistry()
        self.calls = Counter(
            "hubbub_proxy_calls",
            "Calls to the application's connect, publish, join and RPC proxies, by how they ended.",
            ["proxy", "outcome"],
            registry=registry,
        )
        for kind in ("connect", "publish", "join", "rpc"):
            for outcome in (*ProxyOutcome, *Failure):
                if kind != "publish" or outcome is not Failure.BUSY:
                    self.calls.labels(kind, outcome.value)
        waiting = Gauge("hubbub_proxy_waiting", "Handshakes waiting on the connect proxy now.", registry=registry)
        waiting.set_function(lambda: float(self.handshakes.waiting))
        joins = Gauge("hubbub_proxy_join_waiting", "Joins waiting on the join proxy now.", registry=registry)
        joins.set_function(lambda: float(self.joins.waiting))

    def _failed(self, kind: str, exc: ProxyFailed) -> None:
        """Count a failed call and log it (rate-limited)."""
        self.calls.labels(kind, exc.failure.value).inc()
        self._log.failed(kind, exc)

    async def close(self) -> None:
        """Close the pool (at server shutdown, after the calls' tasks are done)."""
        await self._client.aclose()

    # ---- connect ---------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Handshakes waiting on the connect proxy now."""
        return self.handshakes.waiting

    @property
    def per_address(self) -> int:
        """How many waiting handshakes (and joins) one client address may hold."""
        return self.handshakes.per_address

    def share_per_address(self, per_ip: int, connections: int) -> None:
        """Let one address hold the share of the waiting places it may hold of the connections
        (`--max-connections-per-ip` of `--max-connections`), but never fewer than `MIN_PER_ADDRESS`,
        among the handshakes and among the joins.

        Without it, one address that keeps `--proxy-max-waiting` handshakes waiting on a slow app (256
        a second at a 1 s answer) gets every other client 503. With the defaults it may hold 64 of 256;
        behind a reverse proxy, where the per-address cap is raised to the total, all of them.
        """
        self.handshakes.share_per_address(per_ip, connections)
        self.joins.share_per_address(per_ip, connections)

    def reserve(self, address: str = "") -> bool:
        """Take a place among the handshakes waiting on the app for a client of `address` (the
        listener's key: an IPv4 address or an IPv6 /64); False (answer 503) when all are taken, or
        all that address may hold."""
        busy = self.handshakes.reserve(address)
        if busy is not None:
            self._failed("connect", busy)
            return False
        return True

    def release(self, address: str = "") -> None:
        """Give a place taken by `reserve` back (the handshake has its answer, or is gone)."""
        self.handshakes.release(address)

    async def connect(self, client: str, query: dict[str, str], headers: dict[str, str]) -> Admission | HTTPStatus:
        """Ask the app about a handshake: an admission, or the status to answer (401, 403 or 503)."""
        try:
            request = connect_request(client, query, headers)
            status, body = await self._post(self.connect_url, request, MAX_CONNECT_ANSWER)
            result = admission(status, body)
        except ProxyFailed as exc:
            self._failed("connect", exc)
            return HTTPStatus.SERVICE_UNAVAILABLE
        outcome = ProxyOutcome.ACCEPTED if isinstance(result, Admission) else ProxyOutcome.REFUSED
        self.calls.labels("connect", outcome.value).inc()
        return result

    # ---- join ------------------------------------------------------------------

    async def join(self, client: Connection, room: str, since: int | None) -> bytes | None:
        """Ask the app about a `join_room` (the hub's `join_proxy`): the member's info in the room
        (None: the connection's own), or `EventError`: `forbidden` (403), `unavailable` (no usable
        answer in time, or no waiting place left to the client's address)."""
        address = address_of(client.remote)
        busy = self.joins.reserve(address)
        if busy is not None:
            self._failed("join", busy)
            raise EventError(ErrorCode.UNAVAILABLE, "too many joins wait on the application")
        try:
            user = client.identity or ANONYMOUS
            request = join_request(user, room, client.info, since)
            status, body = await self._post(self.join_url, request, MAX_CONNECT_ANSWER)
            info = join_verdict(status, body)
        except ProxyFailed as exc:
            self._failed("join", exc)
            raise EventError(ErrorCode.UNAVAILABLE, "the application did not judge this join") from None
        except EventError:
            self.calls.labels("join", ProxyOutcome.REFUSED.value).inc()
            raise
        finally:
            self.joins.release(address)
        self.calls.labels("join", ProxyOutcome.ACCEPTED.value).inc()
        return info

    # ---- publish ---------------------------------------------------------------

    async def send_message(self, payload: SendMessage, client: Connection) -> dict[str, Any] | None:
        """`send_message` through the publish proxy: the app publishes, rewrites or refuses it.

        Checked first as the built-in handler does (a room the client is not in
        is not asked about); then the built-in handler publishes what the app
        allowed, so the ack, the sender and the order are the same as without
        the proxy. A room whose namespace says `publish = "members"` is not
        asked about (nor, by `sendable`, one that says "server").
        """
        room, sender = handlers.sendable(payload, client)
        namespaces = client.hub.namespaces
        rules = namespaces.rules(room) if namespaces.active else None
        if rules is not None and rules.publish is PublishRule.MEMBERS and not rules.outside:
            return handlers.send_message(payload, client)
        try:
            status, body = await self._post(
                self.publish_url, publish_request(sender, room, payload.message), self._max_publish_answer
            )
            message = verdict(status, body, payload.message)
            if len(message) > self._max_message:  # a client's message is held to this; so is the app's rewrite
                raise ProxyFailed(Failure.MALFORMED, f"a rewrite over --max-message-size ({self._max_message} bytes)")
        except ProxyFailed as exc:
            self._failed("publish", exc)
            raise EventError(ErrorCode.UNAVAILABLE, "the application did not judge this message") from None
        except EventError:
            self.calls.labels("publish", ProxyOutcome.REFUSED.value).inc()
            raise
        self.calls.labels("publish", ProxyOutcome.ACCEPTED.value).inc()
        if message is not payload.message:
            payload = msgspec.structs.replace(payload, message=message)
        return handlers.send_message(payload, client)

    # ---- rpc -------------------------------------------------------------------

    async def rpc(self, client: Connection, method: str, data: msgspec.Raw) -> msgspec.Raw:
        """An `rpc` through the RPC proxy: the app's answer data, or `EventError` (`forbidden`, `unavailable`).

        Awaited in the connection's reader (one call at a time per connection, as the publish proxy);
        across the node at most `--proxy-max-waiting` calls wait on the app, the next ones are
        `unavailable` at once rather than queued behind them.
        """
        if self.rpc_waiting >= self.max_waiting:
            self._failed("rpc", ProxyFailed(Failure.BUSY, f"{self.rpc_waiting} rpc calls waiting"))
            raise EventError(ErrorCode.UNAVAILABLE, "the application is busy: try again later")
        self.rpc_waiting += 1
        try:
            request = rpc_request(client.identity or "anonymous", method, data, client.remote, client.info)
            status, body = await self._post(self.rpc_url, request, self._max_publish_answer)
            answer = rpc_answer(status, body, self._max_message)
        except ProxyFailed as exc:
            self._failed("rpc", exc)
            raise EventError(ErrorCode.UNAVAILABLE, "the application did not answer this call") from None
        except EventError:
            self.calls.labels("rpc", ProxyOutcome.REFUSED.value).inc()
            raise
        finally:
            self.rpc_waiting -= 1
        self.calls.labels("rpc", ProxyOutcome.ACCEPTED.value).inc()
        return answer

    # ---- HTTP ------------------------------------------------------------------

    async def _post(self, url: str, body: bytes, limit: int) -> tuple[int, bytes]:
        """POST `body` (signed when there is a secret) and read at most `limit` bytes of the answer,
        all within the timeout; `ProxyFailed` when there is no such answer."""
        # identity only: httpx would otherwise inflate a gzip, deflate (or br, zstd) answer chunk by chunk,
        # each read up to about a thousand times its size before `limit` is looked at
        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if self._secret:
            headers[signing.HEADER] = signing.sign(self._secret, body)
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client.stream("POST", url, content=body, headers=headers) as response:
                    encoding = response.headers.get("content-encoding", "identity").strip().lower()
                    if encoding not in ("", "identity"):
                        raise ProxyFailed(Failure.MALFORMED, "a compressed answer (send it as identity)")
                    data = bytearray()
                    async for chunk in response.aiter_raw():  # the bytes as sent: never inflated
                        data += chunk
                        if len(data) > limit:
                            raise ProxyFailed(Failure.MALFORMED, f"answer longer than {limit} bytes")
                    return response.status_code, bytes(data)
        except (TimeoutError, httpx.TimeoutException):  # the total, or one of httpx's own phases
            raise ProxyFailed(Failure.TIMEOUT, f"no answer within {self.timeout} s") from None
        except httpx.HTTPError as exc:
            raise ProxyFailed(Failure.UNREACHABLE, type(exc).__name__) from None
