"""The handler registry: one handler per event `type`, each with a payload schema.

A handler is `async def handler(payload, client)`. It receives the payload
already decoded into the schema it was registered with, so it never validates
by hand. What it returns becomes the payload of the `ack` (when the event had
an `id`); raising `EventError` becomes an `error` event. The router itself does
no I/O: `resolve` turns an envelope into a bound call or an `EventError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from hubbub.codes import ErrorCode
from hubbub.errors import EventError
from hubbub.events import Empty
from hubbub.protocol import Envelope, decode_payload

P = TypeVar("P")
C = TypeVar("C")

Handler = Callable[[Any, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route(Generic[P]):
    """One registered event type: its payload schema and its handler."""

    name: str
    schema: type[P]
    handler: Callable[[P, Any], Awaitable[Any]]


class Router:
    """Maps event types to routes. Registration happens before serving."""

    def __init__(self) -> None:
        self._routes: dict[str, Route[Any]] = {}

    def add(self, type_: str, handler: Callable[[P, Any], Awaitable[Any]], schema: type[P]) -> None:
        """Register `handler` for `type_`; registering a type twice is a mistake."""
        if type_ in self._routes:
            raise ValueError(f"a handler for {type_!r} is already registered")
        self._routes[type_] = Route(type_, schema, handler)

    def on(
        self,
        type_: str,
        schema: type[P] = Empty,  # type: ignore[assignment]
    ) -> Callable[[Callable[[P, C], Awaitable[Any]]], Callable[[P, C], Awaitable[Any]]]:
        """Decorator form of `add`: `@router.on("ping", PingPayload)`."""

        def register(handler: Callable[[P, C], Awaitable[Any]]) -> Callable[[P, C], Awaitable[Any]]:
            self.add(type_, handler, schema)
            return handler

        return register

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
