"""The handler registry: one handler per event `type`, each with a payload schema.

A handler is `def handler(payload, client)` or `async def handler(payload,
client)`. It receives the payload already decoded into the schema it was
registered with, so it never validates by hand. What it returns becomes the
payload of the `ack` (when the event had an `id`); raising `EventError` becomes
an `error` event. A plain function is the fast kind: the hub runs it as soon
as the message is read, with no task and no coroutine; write `async def` only
for a handler that awaits.

The router itself does no I/O: `decode` turns a client frame into a route, its
decoded payload and its `id`, or raises `EventError` with the code PROTOCOL.md
gives.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, Union

import msgspec

from hubbub.codes import ErrorCode
from hubbub.errors import EventError
from hubbub.events import Empty
from hubbub.protocol import Envelope, EventId, decode_envelope, decode_payload

P = TypeVar("P")
C = TypeVar("C")

Handler = Callable[[Any, Any], Any]
"""`(payload, client) -> ack payload`, or a coroutine function with that result."""


@dataclass(frozen=True, slots=True)
class Route(Generic[P]):
    """One registered event type: its payload schema and its handler."""

    name: str
    schema: type[P]
    handler: Callable[[P, Any], Any]
    is_async: bool = False
    """True when `handler` is a coroutine function: the hub awaits it in the connection's reader task."""


class Router:
    """Maps event types to routes. Registration happens before serving."""

    def __init__(self) -> None:
        self._routes: dict[str, Route[Any]] = {}
        self._decoder: msgspec.json.Decoder[Any] | None = None
        self._by_struct: dict[type, Route[Any]] = {}

    def add(self, type_: str, handler: Callable[[P, Any], Any], schema: type[P]) -> None:
        """Register `handler` for `type_`; registering a type twice is a mistake."""
        if type_ in self._routes:
            raise ValueError(f"a handler for {type_!r} is already registered")
        self._routes[type_] = Route(type_, schema, handler, inspect.iscoroutinefunction(handler))
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

    def decode(self, data: str | bytes) -> tuple[Route[Any], Any, EventId | None]:
        """Decode a client frame into its route, payload and `id`; `EventError` if it cannot be.

        A well-formed event is decoded and validated in one pass by a decoder
        built for the registered types (a msgspec union tagged by `type`). Only
        a frame that fails takes the slower, two-step path, which finds out
        which rule it broke and so which error code it gets.
        """
        decoder = self._decoder or self._compile()
        try:
            event = decoder.decode(data)
        except (msgspec.DecodeError, RecursionError, UnicodeError):  # too deep, bad UTF-8: the slow path says so
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

    def resolve(self, envelope: Envelope) -> tuple[Route[Any], Any]:
        """The route for `envelope` and its decoded payload, or `EventError`."""
        route = self._routes.get(envelope.type)
        if route is None:
            raise EventError(ErrorCode.UNKNOWN_TYPE, f"no handler for type {envelope.type!r}", envelope.id)
        return route, decode_payload(envelope.payload, route.schema, envelope.id)

    def __contains__(self, type_: object) -> bool:
        return type_ in self._routes

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes)
