"""The front door's stages for the server API: `/api/...` read and answered below picows, or 404.

With `--api-key`, `ApiRoutes` hands every `/api` request to `hubbub.integration.server_api`, read
by the front door (picows reads no body); without, `ApiOff` answers each one 404 in the API's own
JSON error format, saying how to turn it on. docs/topics/front-door.md.
"""

from __future__ import annotations

from hubbub.integration.server_api import ApiCode, ServerApi, error_response
from hubbub.protocol.http import encode_response
from hubbub.server.frontdoor import Arrival, FrontDoor

__all__ = ["ApiOff", "ApiRoutes"]


class ApiRoutes:
    """With `--api-key`: every `/api` request is read and answered by the server API."""

    reads_requests = True

    def __init__(self, api: ServerApi) -> None:
        self._api = api

    def judge(self, door: FrontDoor, arrival: Arrival) -> bool:
        head = arrival.head
        if head is None:
            return False
        route = self._api.claim(head)
        if route is None:
            return False
        door.take(route, head, arrival.rest)
        return True


_API_OFF = encode_response(
    error_response(ApiCode.NOT_FOUND, "the server API is off: start the server with --api-key KEY", close=True),
    keep_alive=False,
)


class ApiOff:
    """Without `--api-key`: any request to `/api` or under it is answered 404, saying the API is off."""

    reads_requests = False

    def judge(self, door: FrontDoor, arrival: Arrival) -> bool:
        start = arrival.start
        if start[:4] == b"GET " and start != b"GET /api":
            return False
        line = arrival.line
        if line is None:
            return False
        path = line[1]
        if path != b"/api" and not path.startswith(b"/api/"):
            return False
        door.refuse(_API_OFF)
        return True
