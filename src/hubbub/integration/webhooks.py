"""Webhooks: what happens in the hub, POSTed to the application, signed, retried, in order per room.

`Webhooks.emit` is called where an event is decided, once per cluster, costs a few dict and deque
operations and never awaits; delivery is at least once, in order per room, bounded per URL, each
drop counted. The delivery rules: docs/integration.md; how and why: docs/topics/integration.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import enum
import logging
import random
import socket
import ssl
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge

from hubbub._version import __version__
from hubbub.auth.signing import HEADER, sign
from hubbub.core.tasks import TaskOwner

if TYPE_CHECKING:
    import httpx

    from hubbub.core.settings import Settings

log = logging.getLogger("hubbub.integration.webhooks")

EVENT_BYTES = 1024
"""What one queued event is counted as against `queue_bytes`, besides its message: the event, its
fields and its body once encoded (tracemalloc: about 0.7 KB for a membership event)."""

FAILING_LOG_PERIOD = 60.0
"""Seconds between two `webhook.failing` lines of one URL: a URL that flaps is announced once a minute."""

RESPONSE_BYTES = 65536
"""Bytes of an endpoint's answer read (and ignored) so the connection can be reused; past it, it is closed."""


class EventType(enum.StrEnum):
    """The events a webhook receives (docs/integration.md lists their fields)."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    MEMBER_JOINED = "member_joined"
    MEMBER_LEFT = "member_left"
    ROOM_OCCUPIED = "room_occupied"
    ROOM_VACATED = "room_vacated"
    MESSAGE = "message"


class DropReason(enum.StrEnum):
    """Why an event was not delivered to a URL: the `reason` of `hubbub_webhooks_dropped_total`."""

    QUEUE_FULL = "queue_full"
    """The URL already had `queue_size` events, or `queue_bytes`, waiting."""
    EXPIRED = "expired"
    """Attempts kept failing (timeout, connection error, 5xx, 429) for `retry_for` seconds."""
    REJECTED = "rejected"
    """The endpoint answered a status that is not worth retrying (4xx but 429, 3xx)."""
    SHUTDOWN = "shutdown"
    """Still queued when the server stopped and the grace was over."""


class _Outcome(enum.Enum):
    DELIVERED = enum.auto()
    RETRY = enum.auto()
    REJECTED = enum.auto()


class Event:
    """One event: encoded and signed once, on first use, and shared by every URL it goes to."""

    __slots__ = ("_body", "_signature", "at", "fields", "size", "type")

    def __init__(self, type_: EventType, fields: dict[str, Any], at: float, size: int = EVENT_BYTES) -> None:
        self.type = type_
        self.fields = fields
        self.at = at
        """`time.time()` when it happened."""
        self.size = size
        """Bytes it is counted as in the queue."""
        self._body: bytes | None = None
        self._signature = ""

    def body(self, secret: str) -> tuple[bytes, str]:
        """The JSON body (with a fresh unique `id`, the same for every URL and retry) and its signature."""
        if self._body is None:
            stamp = _dt.datetime.fromtimestamp(self.at, _dt.UTC).isoformat(timespec="milliseconds")
            doc = {"id": uuid.uuid4().hex, "type": self.type.value, "time": stamp.replace("+00:00", "Z")}
            doc.update(self.fields)
            self._body = msgspec.json.encode(doc)
            self._signature = sign(secret, self._body)
        return self._body, self._signature


def safe_url(url: str) -> str:
    """`url` as it may be logged: scheme, host, port and path; no credentials, no query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def failure_words(exc: BaseException) -> str:
    """What went wrong with a POST, in words for the log (never an exception's class name).

    httpx wraps the socket's error: the chain of causes is searched for the
    first that says more than "cannot connect".
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, ConnectionResetError):
            return "connection reset"
        if isinstance(seen, socket.gaierror):
            return "host name not found"
        if isinstance(seen, ssl.SSLCertVerificationError):
            return "TLS certificate not trusted"
        if isinstance(seen, ssl.SSLError):
            return "TLS failed"
        if isinstance(seen, OSError) and seen.strerror:
            return str(seen.strerror).lower()
        seen = seen.__cause__ or seen.__context__
    name = type(exc).__name__
    if name == "ConnectError":
        return "cannot connect"
    if name == "RemoteProtocolError":
        return "the endpoint closed the connection or answered something other than HTTP"
    if name in ("ReadError", "WriteError"):
        return "connection lost"
    return "request failed"


def metric_labels(urls: Sequence[str]) -> list[str]:
    """The `url` label of each configured URL: `safe_url`, with `#2`, `#3` after a repeat (two URLs that
    differ only in credentials or query), so that each URL has its own series."""
    labels: list[str] = []
    for url in urls:
        label = base = safe_url(url)
        n = 1
        while label in labels:
            n += 1
            label = f"{base}#{n}"
        labels.append(label)
    return labels


class _Metrics:
    def __init__(self, registry: CollectorRegistry, depth: Any, labels: Sequence[str]) -> None:
        self.sent = Counter(
            "hubbub_webhooks_sent", "Webhook events delivered (a 2xx), per URL.", ["url"], registry=registry
        )
        self.failed_attempts = Counter(
            "hubbub_webhooks_failed_attempts",
            "Webhook POSTs that failed and were retried or given up (timeout, connection error, non-2xx), per URL.",
            ["url"],
            registry=registry,
        )
        self.dropped = Counter(
            "hubbub_webhooks_dropped",
            "Webhook events given up or dropped, per URL, by reason.",
            ["url", "reason"],
            registry=registry,
        )
        for label in labels:  # every series from the start, at 0: a dashboard sees each URL before it fails
            self.sent.labels(label)
            self.failed_attempts.labels(label)
            for reason in DropReason:
                self.dropped.labels(label, reason.value)
        self.queued = Gauge(
            "hubbub_webhooks_queued", "Webhook events waiting or in flight, all URLs.", registry=registry
        )
        self.queued.set_function(lambda: float(depth()))


class _Endpoint:
    """One URL's queues: per order key (a room or a user) a deque; keys ready to send in `ready`.

    A key is in `ready` at most once and never while one of its events is in
    flight, which is what keeps each room's events in order.
    """

    def __init__(self, owner: Webhooks, url: str, label: str) -> None:
        self.owner = owner
        self.url = url
        self.logged_url = label
        """The URL as logged and as the metrics' `url` label (`metric_labels`)."""
        self.sent = owner.metrics.sent.labels(label)
        self.failed_attempts = owner.metrics.failed_attempts.labels(label)
        self.failing = False
        """Whether the last attempt failed (a timeout, connection error, 5xx or 429)."""
        self.announced = False
        """Whether this run of failures was logged (`webhook.failing`): then its end is too."""
        self.announced_at = -FAILING_LOG_PERIOD
        self.failed_since = 0.0
        self.failures = 0
        self.pending: dict[tuple[str, str], deque[Event]] = {}
        self.ready: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.depth = 0
        self.bytes = 0

    def put(self, key: tuple[str, str], event: Event) -> None:
        if self.depth >= self.owner.queue_size or self.bytes + event.size > self.owner.queue_bytes:
            self.owner.drop(self, event, DropReason.QUEUE_FULL)
            return
        self.depth += 1
        self.bytes += event.size
        queue = self.pending.get(key)
        if queue is None:
            self.pending[key] = deque((event,))
            self.ready.put_nowait(key)
        else:
            queue.append(event)

    async def work(self) -> None:
        """One of `concurrency` workers: take a ready key, send its oldest event, put the key back."""
        while True:
            key = await self.ready.get()
            queue = self.pending[key]
            event = queue[0]
            try:
                await self.owner.deliver(self, event)
            finally:
                queue.popleft()
                self.depth -= 1
                self.bytes -= event.size
                if queue:
                    self.ready.put_nowait(key)
                else:
                    del self.pending[key]
                    if self.owner.drained is not None and not self.owner.depth():
                        self.owner.drained.set()


class Webhooks:
    """The dispatcher: events in (`emit`, no await), POSTs out (workers in `tasks`)."""

    def __init__(
        self,
        urls: Sequence[str],
        secret: str,
        *,
        node: str,
        registry: CollectorRegistry,
        timeout: float = 5.0,
        retry_for: float = 60.0,
        queue_size: int = 10_000,
        queue_bytes: int = 67_108_864,
        concurrency: int = 16,
        backoff: tuple[float, float] = (0.25, 8.0),
        messages: bool = False,
    ) -> None:
        """`backoff`: the first retry's delay and the longest; each failure doubles it, jitter takes up to half.
        `messages`: send a `message` event for each message this node publishes (`--webhook-messages`)."""
        self.wants_messages = messages
        self._secret = secret
        self.node = node
        self.timeout = timeout
        self.retry_for = retry_for
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.concurrency = concurrency
        self._backoff = backoff
        labels = metric_labels(urls)
        self.metrics = _Metrics(registry, self.depth, labels)
        self.endpoints = [_Endpoint(self, url, label) for url, label in zip(urls, labels, strict=True)]
        self.tasks = TaskOwner("webhooks")
        """Owner of the workers; `close` awaits it (the hub closes this after its own tasks)."""
        self._client: httpx.AsyncClient | None = None
        self._timeouts: tuple[type[Exception], ...] = (TimeoutError,)
        self._failures: tuple[type[Exception], ...] = (OSError,)
        self._closed = False
        self.drained: asyncio.Event | None = None
        """Made by `close` while it waits for the queues to empty; set by the worker that empties them."""

    @classmethod
    def from_settings(cls, settings: Settings, node: str, registry: CollectorRegistry) -> Webhooks:
        """The dispatcher the `--webhook*` settings describe, for the node named `node`."""
        return cls(
            settings.webhooks,
            settings.webhook_secret,
            node=node,
            registry=registry,
            timeout=settings.webhook_timeout,
            retry_for=settings.webhook_retry_for,
            queue_size=settings.webhook_queue,
            queue_bytes=settings.webhook_queue_bytes,
            concurrency=settings.webhook_concurrency,
            messages=settings.webhook_messages,
        )

    def depth(self) -> int:
        """Events queued or in flight, all URLs together."""
        return sum(e.depth for e in self.endpoints)

    # ---- events in: called by the hub, never awaits ------------------------------------

    def emit(self, type_: EventType, key: tuple[str, str], fields: dict[str, Any], size: int = EVENT_BYTES) -> None:
        """Queue one event for every URL, after the earlier events of `key` (`("room", name)` or `("user", name)`)."""
        if self._closed:
            return
        event = Event(type_, fields, time.time(), size)
        for endpoint in self.endpoints:
            endpoint.put(key, event)

    def connected(self, user: str) -> None:
        """A connection of `user` opened on this node."""
        self.emit(EventType.CONNECTED, ("user", user), {"user": user, "node": self.node})

    def disconnected(self, user: str, code: int) -> None:
        """A connection of `user` on this node ended with close code `code`."""
        self.emit(EventType.DISCONNECTED, ("user", user), {"user": user, "code": code, "node": self.node})

    def membership(self, room: str, user: str, joined: bool, room_changed: bool) -> None:
        """`user`'s first connection joined `room` or its last left; `room_changed`: the room's first or last user."""
        key = ("room", room)
        if joined:
            if room_changed:
                self.emit(EventType.ROOM_OCCUPIED, key, {"room": room})
            self.emit(EventType.MEMBER_JOINED, key, {"room": room, "user": user})
        else:
            self.emit(EventType.MEMBER_LEFT, key, {"room": room, "user": user})
            if room_changed:
                self.emit(EventType.ROOM_VACATED, key, {"room": room})

    def message(self, room: str, offset: int, sender: str, message: Any, sent: str) -> None:
        """This node published `message` (decoded, or `msgspec.Raw`) to `room` at `offset`.

        A client's message is the `msgspec.Raw` it sent, whose size is known; a
        decoded one (the server API's) is encoded here once, to be counted, and
        the body reuses it.
        """
        if not isinstance(message, msgspec.Raw):
            message = msgspec.Raw(msgspec.json.encode(message))
        fields = {"room": room, "offset": offset, "from": sender, "message": message, "sent": sent}
        self.emit(EventType.MESSAGE, ("room", room), fields, EVENT_BYTES + len(message))

    # ---- life ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP client and start `concurrency` workers per URL."""
        import httpx  # here: a hub without webhooks does not pay for importing it (25 ms)

        self._timeouts = (TimeoutError, httpx.TimeoutException)
        self._failures = (httpx.HTTPError, OSError)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=self.concurrency * len(self.endpoints) or None),
            follow_redirects=False,
        )
        for endpoint in self.endpoints:
            for _ in range(self.concurrency):
                self.tasks.spawn(endpoint.work())

    async def close(self, grace: float) -> None:
        """Take no more events; give the queues up to `grace` seconds to drain, then drop and count the rest."""
        self._closed = True
        if self.depth():
            self.drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), grace)
        for endpoint in self.endpoints:
            if endpoint.depth:
                self.metrics.dropped.labels(endpoint.logged_url, DropReason.SHUTDOWN.value).inc(endpoint.depth)
                log.warning(
                    "webhook.dropped",
                    extra={"url": endpoint.logged_url, "reason": DropReason.SHUTDOWN.value, "count": endpoint.depth},
                )
        await self.tasks.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---- delivery --------------------------------------------------------------------

    def drop(self, endpoint: _Endpoint, event: Event, reason: DropReason, **extra: Any) -> None:
        """Count and log one event not delivered to `endpoint` (never the secret; the URL without credentials)."""
        self.metrics.dropped.labels(endpoint.logged_url, reason.value).inc()
        log.warning(
            "webhook.dropped",
            extra={"url": endpoint.logged_url, "event": event.type.value, "reason": reason.value, **extra},
        )

    async def deliver(self, endpoint: _Endpoint, event: Event) -> None:
        """POST `event` until it is delivered, rejected, or `retry_for` has passed since the first attempt."""
        loop = asyncio.get_running_loop()
        body, signature = event.body(self._secret)
        headers = {
            "Content-Type": "application/json",
            HEADER: signature,
            "X-Hubbub-Event": event.type.value,
            "User-Agent": f"hubbub/{__version__}",
        }
        deadline = loop.time() + self.retry_for
        first, longest = self._backoff
        attempt = 0
        while True:
            outcome, detail, wait = await self._attempt(endpoint.url, body, headers)
            if outcome is _Outcome.DELIVERED:
                endpoint.sent.inc()
                if endpoint.failing:
                    self._recovered(endpoint)
                return
            endpoint.failed_attempts.inc()
            if outcome is _Outcome.RETRY:
                self._failed(endpoint, detail)
            if outcome is _Outcome.REJECTED:
                self.drop(endpoint, event, DropReason.REJECTED, error=detail)
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.drop(endpoint, event, DropReason.EXPIRED, error=detail, attempts=attempt + 1)
                return
            # The endpoint's Retry-After lengthens the wait; the last wait is cut short so that the
            # last attempt is made at the deadline.
            backoff = min(longest, first * 2**attempt) * random.uniform(0.5, 1.0)
            delay = min(remaining, max(backoff, wait))
            log.debug("webhook.retry", extra={"url": endpoint.logged_url, "error": detail, "delay": round(delay, 3)})
            await asyncio.sleep(delay)
            attempt += 1

    def _failed(self, endpoint: _Endpoint, detail: str) -> None:
        """An attempt failed in a way worth retrying: the first of a run is logged (at most once a period)."""
        endpoint.failures += 1
        if endpoint.failing:
            return
        endpoint.failing = True
        endpoint.failures = 1
        now = time.monotonic()
        endpoint.failed_since = now
        if now - endpoint.announced_at >= FAILING_LOG_PERIOD:
            endpoint.announced = True
            endpoint.announced_at = now
            log.warning(
                "webhook.failing",
                extra={"url": endpoint.logged_url, "error": detail, "retry_for": self.retry_for},
            )

    def _recovered(self, endpoint: _Endpoint) -> None:
        """A 2xx after failures: logged when their start was."""
        endpoint.failing = False
        if endpoint.announced:
            endpoint.announced = False
            log.info(
                "webhook.recovered",
                extra={
                    "url": endpoint.logged_url,
                    "failed_attempts": endpoint.failures,
                    "failed_for": round(time.monotonic() - endpoint.failed_since, 1),
                },
            )

    async def _attempt(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[_Outcome, str, float]:
        """One POST, bounded by `timeout` in total (httpx's own timeout is per read, not per request).

        Returns the outcome, what went wrong (for the log), and the seconds of a
        429 or 503 answer's `Retry-After` (0 without one; a date is not read).
        """
        assert self._client is not None, "start() first"
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client.stream("POST", url, content=body, headers=headers) as response:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read > RESPONSE_BYTES:
                            break
                    status = response.status_code
                    retry_after = response.headers.get("retry-after", "")
        except self._timeouts:
            return _Outcome.RETRY, "timeout", 0.0
        except self._failures as exc:
            return _Outcome.RETRY, failure_words(exc), 0.0
        if 200 <= status < 300:
            return _Outcome.DELIVERED, "", 0.0
        if status >= 500 or status == 429:
            wait = float(retry_after) if status in (429, 503) and retry_after.isdigit() else 0.0
            return _Outcome.RETRY, f"status {status}", wait
        return _Outcome.REJECTED, f"status {status}", 0.0
