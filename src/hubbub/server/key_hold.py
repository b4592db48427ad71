"""The front door's stage for `--auth-jwks-url`: a handshake whose key a fetch may bring waits for it.

A token naming a `kid` the cache lacks (the provider rotated its keys, or the first fetch at the
server's start is not done) would be refused 401 by the handshake; `KeyHold` holds it, instead,
until the fetch under way (or one the interval allows now) ends, then lets picows have it.
Everything else passes at once: a known `kid`, hubbub's own tokens, and every token while the
interval forbids a fetch (a flood of random `kid`s then costs nothing but 401s). At most
`MAX_WAITING` handshakes wait; more pass on unheld. Why: docs/topics/auth.md.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from hubbub.auth.jwks import Jwks
from hubbub.auth.tokens import Verifier, token_from_subprotocols
from hubbub.protocol.http import Response
from hubbub.server.frontdoor import Arrival, FrontDoor

__all__ = ["MAX_WAITING", "KeyHold"]

MAX_WAITING = 256
"""Handshakes waiting for a key set fetch at once; more are checked with the keys at hand."""


class KeyHold:
    """Holds `/ws` handshakes whose token's key a fetch may bring (module docstring)."""

    reads_requests = False

    def __init__(self, jwks: Jwks, verifier: Verifier) -> None:
        self._jwks = jwks
        self._verifier = verifier
        self.waiting = 0
        """Handshakes held now."""

    def judge(self, door: FrontDoor, arrival: Arrival) -> bool:
        if arrival.start[:7] != b"GET /ws" or self.waiting >= MAX_WAITING:
            return False
        head = arrival.head
        if head is None:
            return False
        url = urlsplit(head.target)
        if url.path != "/ws":
            return False
        token, _ = token_from_subprotocols(head.headers.get("sec-websocket-protocol", []))
        if token is None:
            token = parse_qs(url.query).get("token", [None])[0]
        kid = self._verifier.key_id(token) if token else None
        if kid is None or not self._jwks.worth_waiting(kid):
            return False
        self.waiting += 1
        # copies: `view` and `rest` are views of the read buffer every connection shares (hubbub.server.pacer)
        task = door.hold(self._wait(door, arrival.raw, bytes(arrival.rest)), cancel_if_lost=True)
        task.add_done_callback(self._released)
        return True

    def _released(self, _: asyncio.Task[None]) -> None:
        self.waiting -= 1

    async def _wait(self, door: FrontDoor, head: bytes, rest: bytes) -> None:
        """Wait for the fetch (bounded by its timeout), then let picows have the request."""
        try:
            await self._jwks.refresh()
        except asyncio.CancelledError:
            if not door.closed:  # shutdown: the held client gets an answer, not silence
                door.answer(Response(HTTPStatus.SERVICE_UNAVAILABLE, b"shutting down\n", "text/plain", close=True))
            raise
        if not door.closed:
            door.pass_on(head, rest)
