"""The handler registry: one handler per event `type`, each with a payload schema.

`Router.decode` turns a client frame into a route, its decoded payload and `id`, or raises
`EventError` with the protocol's code; `dispatch` runs the handler (a plain function, or
`async def` for one that awaits) and maps the outcome to the one answer owed: an `ack` with its
result, or an `error`. Registering a type twice raises `ValueError`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, Union

import msgspec

from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.envelope import (
    TOO_DEEP,
    Envelope,
    EventId,
    decode_envelope,
    decode_payload,
    encode_ack,
    encode_error,
    nesting_exceeds,
)
from hubbub.protocol.events import Empty
from hubbub.protocol.frames import text_frame

if TYPE_CHECKING:
    from hubbub.protocol.session import Session

log = logging.getLogger("hubbub.protocol.router")

P = TypeVar("P")
C = TypeVar("C")

Handler = Callable[[Any, Any], Any]
"""`(payload, client) -> ack payload`, or a coroutine function with that result."""


@dataclass(frozen=True, slots=True)
class EventRoute(Generic[P]):
    """One registered event type: its payload schema and its handler."""

    name: str
    schema: type[P]
    handler: Callable[[P, Any], Any]
    is_async: bool = False
    """True when `handler` is a coroutine function: the hub awaits it in the connection's reader task."""


class Requester(Protocol):
    """What dispatch needs of a connection: its session (the request being
    answered) and a way to send it a frame."""

    id: int
    session: Session

    def send_frame(self, frame: bytes) -> None: ...


class _Count(Protocol):
    def inc(self) -> None: ...


class _CountByLabel(Protocol):
    def labels(self, *values: str) -> _Count: ...


class RouterMetrics(Protocol):
    """What the router counts: messages received and errors answered, by code (the node's metrics are one)."""

    @property
    def received(self) -> _Count: ...
    @property
    def errors(self) -> _CountByLabel: ...


class Router:
    """Maps event types to routes, and dispatches client messages to them.

    Registration happens before serving. `metrics`, when given, counts the
    messages received and the errors answered, by code.
    """

    def __init__(self, metrics: RouterMetrics | None = None) -> None:
        self._routes: dict[str, EventRoute[Any]] = {}
        self._decoder: msgspec.json.Decoder[Any] | None = None
        self._by_struct: dict[type, EventRoute[Any]] = {}
        self.metrics = metrics
        """Counts messages received and errors answered (the hub sets it)."""

    def add(self, type_: str, handler: Callable[[P, Any], Any], schema: type[P]) -> None:
        """Register `handler` for `type_`; registering a type twice is a mistake."""
        if type_ in self._routes:
            raise ValueError(f"a handler for {type_!r} is already registered")
        self._routes[type_] = EventRoute(type_, schema, handler, inspect.iscoroutinefunction(handler))
        self._decoder = None

    def replace(self, type_: str, handler: Callable[[P, Any], Any], schema: type[P]) -> None:
        """Put `handler` in place of the one registered for `type_` (which must exist)."""
        if type_ not in self._routes:
            raise ValueError(f"no handler for {type_!r} to replace")
        self._routes[type_] = EventRoute(type_, schema, handler, inspect.iscoroutinefunction(handler))
        self._decoder = None

    def on(
        self,
        type_: str,
        schema: type[P] = Empty,  # type: ignore[assignment]
    ) -> Callable[[Callable[[P, C], Any]], Callable[[P, C], Any]]:
        """Decorator form of `add`: `@router.on("ping", PingPayload)`."""

        def register(handler: Callable[[P, C], Any]) -> Callable[[P, C], Any]:
            self.add(type_, handler, schema)
            return handler

        return register

    def decode(self, data: str | bytes) -> tuple[EventRoute[Any], Any, EventId | None]:
        """Decode a client frame into its route, payload and `id`; `EventError` if it cannot be.

        A well-formed event is decoded and validated in one pass by a decoder
        built for the registered types (a msgspec union tagged by `type`). Only
        a frame that fails takes the slower, two-step path, which finds out
        which rule it broke and so which error code it gets.
        """
        decoder = self._decoder or self._compile()
        if nesting_exceeds(data):
            raise EventError(ErrorCode.BAD_JSON, TOO_DEEP)
        try:
            event = decoder.decode(data)
        except (msgspec.DecodeError, UnicodeError):  # bad UTF-8 too: the slow path says which rule failed
            envelope = decode_envelope(data)
            route, payload = self.resolve(envelope)
            return route, payload, envelope.id
        return self._by_struct[type(event)], event.payload, event.id

    def _compile(self) -> msgspec.json.Decoder[Any]:
        """One envelope Struct per route, tagged with its type name, and a decoder for their union."""
        self._by_struct = {}
        for route in self._routes.values():
            struct = msgspec.defstruct(
                f"{route.name}_event",
                [("payload", route.schema), ("id", Union[str, int, None], None)],  # noqa: UP007 - a runtime type
                tag_field="type",
                tag=route.name,
                frozen=True,
            )
            self._by_struct[struct] = route
        members = tuple(self._by_struct)
        if not members:
            members = (msgspec.defstruct("no_event", [], tag_field="type", tag="\x00"),)
        self._decoder = msgspec.json.Decoder(Union[members])  # noqa: UP007 - built at run time
        return self._decoder

    def resolve(self, envelope: Envelope) -> tuple[EventRoute[Any], Any]:
        """The route for `envelope` and its decoded payload, or `EventError`."""
        route = self._routes.get(envelope.type)
        if route is None:
            raise EventError(ErrorCode.UNKNOWN_TYPE, f"no handler for type {envelope.type!r}", envelope.id)
        return route, decode_payload(envelope.payload, route.schema, envelope.id)

    # ---- dispatch ---------------------------------------------------------------

    def dispatch(self, client: Requester, text: str) -> Coroutine[Any, Any, None] | None:
        """Handle one client message now; return the rest to await when its handler is async.

        A plain-function handler runs to the end here, inside the read callback,
        and is answered before this returns. An `async def` handler comes back
        as a coroutine that the connection awaits in its reader task, holding
        back its later messages until it is done, so that a client's events are
        handled in the order it sent them. Either way the event gets exactly one
        answer when it has an `id` (the session keeps count).
        """
        if self.metrics is not None:
            self.metrics.received.inc()
        session = client.session
        began = False
        try:
            route, payload, event_id = self.decode(text)
            if route.is_async:
                return self._dispatch_async(client, route, payload, event_id)
            # Session.begin, answer and end, written out: this runs once per message.
            session.event_id = event_id
            session.replied = False
            began = True
            result = route.handler(payload, client)
            if event_id is not None and not session.replied:
                session.replied = True
                client.send_frame(text_frame(encode_ack(result, event_id)))
        except Exception as exc:
            # Before the handler began, only a decoding error can carry an id (salvaged from the frame).
            answer_id = session.answer() if began else exc.event_id if isinstance(exc, EventError) else None
            self.answer_failure(client, exc, answer_id)
        finally:
            session.event_id = None
        return None

    async def _dispatch_async(
        self, client: Requester, route: EventRoute[Any], payload: Any, event_id: EventId | None
    ) -> None:
        """The awaited part of `dispatch`, for an `async def` handler."""
        session = client.session
        session.begin(event_id)
        try:
            self._acknowledge(client, await route.handler(payload, client))
        except Exception as exc:
            self.answer_failure(client, exc, session.answer())
        finally:
            session.end()

    @staticmethod
    def _acknowledge(client: Requester, result: Any) -> None:
        """The `ack` of a handled event, with the handler's result, unless it was answered already."""
        event_id = client.session.answer()
        if event_id is not None:
            client.send_frame(text_frame(encode_ack(result, event_id)))

    def answer_failure(self, client: Requester, exc: Exception, event_id: EventId | None) -> None:
        """The `error` for a failed client event; a bug (not `EventError`) is logged with its traceback.

        `event_id` is the id this answer may carry: the caller has claimed it
        from the session (`Session.answer`), so it is None when the event was
        answered already (a handler that acked, then failed) and no request is
        ever answered twice.
        """
        if isinstance(exc, EventError):
            code, message = exc.code, exc.message
        else:
            log.error("handler.failed", exc_info=exc, extra={"conn": client.id, "event_id": event_id})
            code, message = ErrorCode.INTERNAL, "the handler failed"
        self.answer_error(client, code, message, event_id)

    def answer_error(self, client: Requester, code: ErrorCode, message: str, event_id: EventId | None) -> None:
        """Send an `error` event (counted by code)."""
        if self.metrics is not None:
            self.metrics.errors.labels(code.value).inc()
        client.send_frame(text_frame(encode_error(code, message, event_id)))

    def __contains__(self, type_: object) -> bool:
        return type_ in self._routes

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes)
