"""The WebSocket upgrade at `/ws`: who the connection is, or the status that refuses it.

`Handshake.upgrade` checks the `Origin` (403), then takes the identity from a ticket's user, the
connect proxy's admission, or a signed token (`?token=T` or the subprotocol `hubbub.token.T`);
a missing or bad credential where one is required is 401, a bad `name` 400. With `--auth-secret`
it registers the `refresh` event. docs/topics/front-door.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import msgspec
from picows import WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener

from hubbub.auth.tokens import SUBPROTOCOL, TokenError, token_from_subprotocols, verify_token
from hubbub.core.connection import Connection
from hubbub.core.hub import Hub
from hubbub.errors import EventError
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.events import invalid_name_message, valid_name
from hubbub.server.connection import WebSocketListener
from hubbub.server.host_origin import HostOrigin
from hubbub.server.responses import Routed, response

if TYPE_CHECKING:
    from hubbub.integration.app_proxy import Admission

__all__ = ["Handshake", "Refresh"]

log = logging.getLogger("hubbub.server.handshake")


class Handshake:
    """The `/ws` upgrade of one server (module docstring), and the `refresh` event of its token clients."""

    def __init__(self, hub: Hub, rules: HostOrigin, logins: bool) -> None:
        """`logins`: whether `POST /login` gives tickets here (`--users`)."""
        self.hub = hub
        self.settings = hub.settings
        self._rules = rules
        self._logins = logins
        if self.settings.auth_secret and "refresh" not in hub.router:
            hub.router.add("refresh", self.refresh, Refresh)

    def upgrade(
        self,
        request: WSUpgradeRequest,
        query: dict[str, list[str]],
        user: str | None,
        admitted: Admission | None,
        remote: str = "",
    ) -> Routed:
        """The connection for a `/ws` request, or the response that refuses it; `remote`: the client's
        address, `host:port`, for the log."""
        if not self._rules.origin_ok(request):
            self.hub.metrics.handshakes_rejected.labels("origin").inc()
            log.info(
                "handshake.rejected",
                extra={"reason": "origin", "remote": remote, "origin": request.headers.get("Origin")},
            )
            return response(HTTPStatus.FORBIDDEN, b"origin not allowed\n")
        if user is None and admitted is None and self.settings.auth_secret:
            with_token = self._token_upgrade(request, query, remote)
            if with_token is not None:
                return with_token
        identified = self.identify(query, user, admitted, remote)
        if isinstance(identified, tuple):
            return response(*identified)
        return WebSocketListener(identified)

    def identify(
        self,
        query: dict[str, list[str]],
        user: str | None,
        admitted: Admission | None,
        remote: str,
        make: Callable[[str | None], Connection] | None = None,
        path: str = "/ws",
    ) -> Connection | tuple[HTTPStatus, bytes]:
        """The connection of a request that passed the Origin check (`/ws`, `/sse`), made by `make`, or the
        status and reason refusing it: a ticket's `user`, the connect proxy's admission, a `?token=`, or
        anonymous with `?name=` where that is allowed."""
        new = make or (lambda name: Connection(self.hub, name, remote))
        if user is not None:  # the ticket's user: `name` and payload `from` are ignored
            return new(user)
        if admitted is not None:  # the connect proxy's: its user, rooms and info (`name` and `from` ignored)
            conn = new(admitted.user)
            conn.grant = admitted.grant
            conn.info = admitted.info
            return conn
        s = self.settings
        token = query.get("token", [None])[0] if s.auth_secret else None
        if token is not None:
            try:
                grant = verify_token(s.auth_secret, token, s.auth_audience or None, s.auth_issuer or None)
            except TokenError as exc:  # its message never holds the token
                self.hub.metrics.handshakes_rejected.labels("auth").inc()
                log.info("handshake.token_refused", extra={"remote": remote, "reason": str(exc)})
                return HTTPStatus.UNAUTHORIZED, b"invalid or expired token\n"
            conn = new(grant.sub)
            conn.grant = grant
            return conn
        if s.connect_proxy:  # a credential the front door let by, but not valid here: never anonymous
            self.hub.metrics.handshakes_rejected.labels("auth").inc()
            return HTTPStatus.UNAUTHORIZED, b"invalid credential\n"
        if (self._logins or s.auth_secret) and not s.allow_anonymous:
            self.hub.metrics.handshakes_rejected.labels("auth").inc()
            if not self._logins:
                return HTTPStatus.UNAUTHORIZED, f"a token is required: {path}?token=T\n".encode()
            return HTTPStatus.UNAUTHORIZED, f"log in first: POST /login, then {path}?ticket=T\n".encode()
        name = query.get("name", [None])[0]
        if name is not None and not valid_name(name):
            return HTTPStatus.BAD_REQUEST, f"{invalid_name_message(name)}\n".encode()
        return new(name)

    def _token_upgrade(self, request: WSUpgradeRequest, query: dict[str, list[str]], remote: str) -> Routed | None:
        """The connection of a token offered as the subprotocol `hubbub.token.T` next to `hubbub`, a 400 or
        401 refusing it, or None when no token is offered so (`identify` reads `?token=T`).

        The identity is the token's `sub`; `name` and payload `from` are ignored. A token offered as a
        subprotocol gets `hubbub` selected in the response, so the token is never echoed back.
        """
        token, offered_plain = token_from_subprotocols(request.headers.getall("Sec-WebSocket-Protocol", []))
        if token is None:
            return None
        if not offered_plain:
            self.hub.metrics.handshakes_rejected.labels("auth").inc()
            return response(HTTPStatus.BAD_REQUEST, b"offer the subprotocol hubbub next to hubbub.token.T\n")
        s = self.settings
        try:
            grant = verify_token(s.auth_secret, token, s.auth_audience or None, s.auth_issuer or None)
        except TokenError as exc:  # its message never holds the token
            self.hub.metrics.handshakes_rejected.labels("auth").inc()
            log.info("handshake.token_refused", extra={"remote": remote, "reason": str(exc)})
            return response(HTTPStatus.UNAUTHORIZED, b"invalid or expired token\n")
        conn = Connection(self.hub, grant.sub, remote)
        conn.grant = grant
        answer = WSUpgradeResponse.create_101_response({"Sec-WebSocket-Protocol": SUBPROTOCOL})
        return WSUpgradeResponseWithListener(answer, WebSocketListener(conn))

    def refresh(self, payload: Refresh, client: Connection) -> dict[str, Any]:
        """`refresh`: a new token for the same `sub` with a later `exp` replaces the connection's grant
        (its `rooms` apply from now on, rooms already joined are kept); anything else is `forbidden`."""
        s = self.settings
        current = client.grant
        if current is None:
            raise EventError(ErrorCode.FORBIDDEN, "this connection did not authenticate with a token")
        try:
            grant = verify_token(s.auth_secret, payload.token, s.auth_audience or None, s.auth_issuer or None)
        except TokenError as exc:
            log.info("conn.refresh_refused", extra={"conn": client.id, "user": client.identity, "reason": str(exc)})
            raise EventError(ErrorCode.FORBIDDEN, str(exc)) from None
        if grant.sub != current.sub:
            raise EventError(ErrorCode.FORBIDDEN, "the new token is for another identity")
        if grant.exp <= current.exp:
            raise EventError(ErrorCode.FORBIDDEN, "the new token must expire later than the current one")
        client.grant = grant
        return {"exp": grant.exp}


class Refresh(msgspec.Struct, forbid_unknown_fields=True):
    """The payload of `refresh`: a new signed token."""

    token: str
