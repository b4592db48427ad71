"""The front door's stage for `--auth-jwks-url`: a handshake whose key a fetch may bring waits for it.

A token naming a `kid` the cache lacks (the provider rotated its keys, or the first fetch at the
server's start is not done) would be refused 401 by the handshake; `KeyHold` holds it, instead,
until the fetch under way (or one the interval allows now) ends, then lets picows have it.
Everything else passes at once: a known `kid`, hubbub's own tokens, and every token while the
interval forbids a fetch (a flood of random `kid`s then costs nothing but 401s). At most
`MAX_WAITING` handshakes wait, and one address holds at most its share of them, as with the connect
proxy (`WaitingPlaces`); more pass on unheld. Why: docs/topics/auth.md.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from hubbub.auth.jwks import Jwks
from hubbub.auth.tokens import Verifier, token_from_subprotocols
from hubbub.integration.app_proxy import WaitingPlaces
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
        self.places = WaitingPlaces(MAX_WAITING)
        """The handshakes held now, in all and per address: without a share per address, one address
        could take every place and leave a rotation's honest first users their 401s. The server sets
        the share (`share_per_address`) from the sockets an address may hold, as for the connect proxy."""

    @property
    def waiting(self) -> int:
        """Handshakes held now."""
        return self.places.waiting

    def judge(self, door: FrontDoor, arrival: Arrival) -> bool:
        if arrival.start[:7] != b"GET /ws" or self.places.waiting >= self.places.max_waiting:
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
        address = door.peer
        if self.places.reserve(address) is not None:
            return False  # no place left to it: checked with the keys at hand, as when all are taken
        # copies: `view` and `rest` are views of the read buffer every connection shares (hubbub.server.pacer)
        task = door.hold(self._wait(door, arrival.raw, bytes(arrival.rest)), cancel_if_lost=True)
        task.add_done_callback(lambda _: self.places.release(address))
        return True

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
