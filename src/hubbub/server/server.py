"""The server: one port for the HTTP routes, the WebSocket handshake and the server API.

`Server` puts a `Hub` on the network: the listener, the front door below picows, and `_route`,
which answers `/`, `/healthz`, `/metrics`, `/login` and `/echo` or upgrades `/ws` after the `Host`,
`Origin` and credential checks (403, 404, 400, 401 before the upgrade). `serve` runs one until it
is told to stop. How a request gets there: docs/topics/front-door.md.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
from picows import (
    WSAutoPingStrategy,
    WSListener,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # constructor pinned by our version range

from hubbub.auth.logins import Authenticator
from hubbub.auth.passwords import Users
from hubbub.auth.tokens import SUBPROTOCOL, TokenError, token_from_subprotocols, verify_token
from hubbub.backends.tickets import TicketStore, open_tickets
from hubbub.core.connection import Connection
from hubbub.core.hub import Hub
from hubbub.core.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from hubbub.core.tasks import TaskOwner
from hubbub.errors import EventError
from hubbub.integration.app_proxy import Admission, AppProxy
from hubbub.integration.server_api import ServerApi
from hubbub.integration.webhooks import Webhooks
from hubbub.protocol.codes import ErrorCode
from hubbub.protocol.events import SendMessage, invalid_name_message, valid_name
from hubbub.protocol.origins import HostPolicy
from hubbub.protocol.origins import origin_allowed as origin_allowed  # re-exported: the rule is tested by this name
from hubbub.server.connection import EchoConnection, WebSocketListener
from hubbub.server.http import Claim, HttpPacer
from hubbub.server.listener import DEFAULT_MAX_CONNECTIONS, Listener, Slot, connection_cap, raise_fd_limit
from hubbub.server.login import AuthPacer
from hubbub.server.logs import PicowsLog
from hubbub.server.pacer import FramePacer
from hubbub.server.proxy_hold import ProxyHold
from hubbub.server.static_files import StaticFiles
from hubbub.server.tls import HandshakeBounds, server_context

log = logging.getLogger("hubbub.server.server")
_PICOWS_LOG = logging.getLogger("picows.server")

Routed = WSListener | WSUpgradeResponseWithListener | None

_CLIENT_FILES = {
    f"/{name}": (resources.files("hubbub.server").joinpath(f"static/{name}").read_bytes(), kind)
    for name, kind in (
        ("hubbub.js", "application/javascript; charset=utf-8"),
        ("hubbub.d.ts", "application/typescript; charset=utf-8"),
    )
}
"""`GET /hubbub.js` and `/hubbub.d.ts`: the browser client (clients/js/) and its types, read once."""


def _response(status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8") -> Routed:
    if status == HTTPStatus.OK:
        response = WSUpgradeResponse.create_ok_response(body, {"Content-Type": content_type})
    else:
        response = WSUpgradeResponse.create_error_response(status, body, {"Content-Type": content_type})
    response.headers["Cache-Control"] = "no-store"
    return WSUpgradeResponseWithListener(response, None)


def _with_header(routed: Routed, name: str, value: str) -> Routed:
    """`routed` (a `_response`) with one more header."""
    assert isinstance(routed, WSUpgradeResponseWithListener)
    routed.response.headers[name] = value
    return routed


class _GivesItsPlaceBack:
    """Mixed into a pacer: the socket's place under the connection caps is given back when it ends."""

    _slot: Slot

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)  # type: ignore[misc]  # the pacer's, next in the MRO
        finally:
            self._slot()


class _CountedPacer(_GivesItsPlaceBack, FramePacer):
    """The frame pacer of one admitted socket: it gives the socket's place under the caps back
    when the connection ends (a subclass, so the per-read path is the pacer's own)."""

    def __init__(self, inner: Any, slot: Slot) -> None:
        super().__init__(inner)
        self._slot = slot


class _CountedAuthPacer(_GivesItsPlaceBack, AuthPacer):
    """`_CountedPacer` for a server with `--users`: the same slot given back at the end."""

    def __init__(self, slot: Slot, auth: Authenticator, spawn: Any, allowed: Any, claim: Claim | None) -> None:
        super().__init__(None, auth, slot.key, spawn, allowed, claim)
        self._slot = slot


class _CountedHttpPacer(_GivesItsPlaceBack, HttpPacer):
    """`_CountedPacer` for a server with `--api-key` (and no `--users`): `/api` is read below picows."""

    def __init__(self, inner: Any, slot: Slot, claim: Claim, spawn: Any) -> None:
        super().__init__(inner, claim, slot.key, spawn)
        self._slot = slot


class _CountedProxyPacer(_GivesItsPlaceBack, ProxyHold, FramePacer):
    """`_CountedPacer` for a server with `--connect-proxy`: handshakes without a credential wait for the app."""

    def __init__(self, inner: Any, slot: Slot) -> None:
        super().__init__(inner)
        self._slot = slot


class _CountedProxyHttpPacer(_GivesItsPlaceBack, ProxyHold, HttpPacer):
    """`_CountedHttpPacer` with `--connect-proxy` too: `/api` read below picows, credential-less handshakes
    held for the app."""

    def __init__(self, inner: Any, slot: Slot, claim: Claim, spawn: Any) -> None:
        super().__init__(inner, claim, slot.key, spawn)
        self._slot = slot


class _CountedProxyAuthPacer(_GivesItsPlaceBack, ProxyHold, AuthPacer):
    """`_CountedAuthPacer` with `--connect-proxy` too: a ticket goes to its store, no credential to the app."""

    def __init__(self, slot: Slot, auth: Authenticator, spawn: Any, allowed: Any, claim: Claim | None) -> None:
        super().__init__(None, auth, slot.key, spawn, allowed, claim)
        self._slot = slot


class Server:
    """A hub behind a listening socket; `start`, then `stop` (idempotent)."""

    scheme = "http"
    """What the server speaks; a same-host `Origin` must have this scheme (`https` with TLS)."""

    def __init__(self, hub: Hub, tickets: TicketStore | None = None) -> None:
        """`tickets`: where logins keep their tickets (closed by `stop`); by default the one `--broker` implies."""
        self.hub = hub
        self.settings = hub.settings
        self.ssl: ssl.SSLContext | None = None
        """The TLS context when `tls_cert` is set (built at `start`): the port speaks only TLS."""
        if self.settings.tls_cert:
            self.scheme = "https"
        self.auth: Authenticator | None = None
        """Logins and tickets, when `--users` is set."""
        self._tickets = tickets
        self._auth_tasks = TaskOwner("auth")
        self.listener: Listener | None = None
        self.hosts = HostPolicy(None)
        """Which `Host` headers are answered; set from the bound addresses at `start`."""
        self._page = resources.files("hubbub.server").joinpath("static/index.html").read_bytes()
        self._static = StaticFiles(self.settings.static_dir) if self.settings.static_dir else None
        """`--static DIR`: the app's files at `/`, in place of the chat page."""
        self.api = ServerApi(hub, lambda head: self._login_allowed(head.headers)) if self.settings.api_keys else None
        """The server API (`/api/...`), when `--api-key` is set."""
        self._stopped = False
        if self.settings.auth_secret and "refresh" not in hub.router:
            hub.router.add("refresh", self._refresh, Refresh)
        self.webhooks: Webhooks | None = None
        """The webhooks dispatcher (`--webhook`), the hub's observer; None without webhooks."""
        if self.settings.webhooks:
            self.webhooks = Webhooks.from_settings(self.settings, hub.node_id, hub.metrics.registry)
            hub.observe(self.webhooks)
        self.proxy: AppProxy | None = None
        """The calls to the application, with `--connect-proxy` or `--publish-proxy`."""
        if self.settings.connect_proxy or self.settings.publish_proxy:
            self.proxy = AppProxy(self.settings, hub.metrics.registry)
        if self.proxy is not None and self.settings.publish_proxy:
            if "send_message" in hub._builtins:  # an app that took send_message over publishes as it decides
                hub.router.replace("send_message", self.proxy.send_message, SendMessage)
            else:
                log.warning("proxy.publish_not_applied", extra={"reason": "the app handles send_message itself"})

    @property
    def port(self) -> int:
        """The bound port (useful when started with port 0)."""
        assert self.listener is not None
        return int(self.listener.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Start the hub, raise the descriptor limit, bind, and begin accepting."""
        s = self.settings
        if s.tls_cert:  # before the broker: a bad certificate or key fails fast
            self.ssl = server_context(s.tls_cert, s.tls_key)
        if s.users_file and self.auth is None:
            users = Users.load(s.users_file)
            tickets = self._tickets if self._tickets is not None else open_tickets(s)
            self.auth = Authenticator(users, tickets, s.ticket_ttl)
        await self.hub.start()
        fd_limit = raise_fd_limit()
        cap = connection_cap(s.max_connections, fd_limit)
        if self.proxy is not None:  # one address's share of the handshakes waiting on the app, as of the sockets
            self.proxy.share_per_address(s.max_connections_per_ip, cap)
        listener = Listener(
            self._protocol, self.hub.metrics, cap, s.max_connections_per_ip, fd_limit, self.ssl, HandshakeBounds.of(s)
        )
        await listener.listen(s.host, s.port, s.backlog)
        self.listener = listener
        self.hosts = HostPolicy.for_listener(s.allowed_hosts, listener.addresses, s.host)
        listener.start()
        log.info(
            "server.listening",
            extra={
                "host": s.host,
                "port": self.port,
                "max_connections": cap,
                "max_connections_per_ip": s.max_connections_per_ip,
                "backlog": s.backlog,
                "scheme": self.scheme,
                "allowed_hosts": ",".join(self.hosts.names) if self.hosts.names is not None else "any",
            },
        )
        if s.max_connections is None and cap < DEFAULT_MAX_CONNECTIONS:
            log.info("server.max_connections_lowered", extra={"max_connections": cap, "fd_limit": fd_limit})
        elif cap > fd_limit:
            # the operator's call; past the limit, accept() fails and listener.py answers 503
            log.warning("server.max_connections_above_fd_limit", extra={"max_connections": cap, "fd_limit": fd_limit})

    async def stop(self) -> None:
        """Stop accepting, close every connection with 1001, release the port."""
        if self._stopped:
            return
        self._stopped = True
        if self.listener is not None:
            self.listener.close()
        await self._auth_tasks.close()
        await self.hub.shutdown()
        if self.auth is not None:
            await self.auth.tickets.close()
        if self.proxy is not None:
            await self.proxy.close()
        log.info("server.stopped")

    def _protocol(self, slot: Slot) -> FramePacer:
        """A picows server protocol for one accepted socket, behind the frame pacer."""
        claim = self.api.claim if self.api is not None else None
        if self.proxy is not None and self.settings.connect_proxy:
            return self._held_protocol(slot, claim)
        if self.auth is None:
            if claim is None:
                return _CountedPacer(self._picows(self._route), slot)
            return _CountedHttpPacer(self._picows(self._route), slot, claim, self._auth_tasks.spawn)
        pacer = _CountedAuthPacer(slot, self.auth, self._auth_tasks.spawn, self._login_allowed, claim)
        # picows calls the route while the pacer feeds it the request head: `pacer.user` is then the ticket's
        # user, if there was a ticket (held by picows only until the handshake ends)
        pacer._inner = self._picows(lambda request: self._route(request, pacer.user))
        return pacer

    def _held_protocol(self, slot: Slot, claim: Claim | None) -> FramePacer:
        """With `--connect-proxy`: a handshake without a credential waits below picows for the app's answer
        (`hubbub.server.proxy_hold`); picows then routes it with the admission (or a ticket's user) known."""
        assert self.proxy is not None
        pacer: _CountedProxyPacer | _CountedProxyHttpPacer | _CountedProxyAuthPacer
        if self.auth is not None:
            pacer = _CountedProxyAuthPacer(slot, self.auth, self._auth_tasks.spawn, self._login_allowed, claim)
        elif claim is not None:
            pacer = _CountedProxyHttpPacer(None, slot, claim, self._auth_tasks.spawn)
        else:
            pacer = _CountedProxyPacer(None, slot)
        pacer.hold_for_app(self.proxy, self._auth_tasks.spawn, self._login_allowed, slot.key)
        pacer._inner = self._picows(lambda request: self._route(request, pacer.user, pacer.admitted))
        return pacer

    def _picows(self, route: Any) -> Any:
        """picows' server protocol, routing its request with `route`."""
        return WSProtocol(
            None,  # host and port: server side
            None,  # path: server side
            False,  # is_client_side
            route,
            PicowsLog(_PICOWS_LOG),  # not a logging.Logger: no child logger per connection (hubbub.server.logs)
            True,  # disconnect_on_exception
            10.0,  # websocket_handshake_timeout
            False,  # enable_auto_ping: the hub's sweep pings
            20.0,
            20.0,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            False,  # enable_auto_pong: Connection answers pings itself
            self.settings.max_message_size,  # max_frame_size
            None,  # extra_headers
            # picows grows the buffer when a larger frame comes; 16 KiB per idle
            # connection would be most of its memory.
            2048,  # read_buffer_init_size
        )

    def _route(self, request: WSUpgradeRequest, user: str | None = None, admitted: Admission | None = None) -> Routed:
        url = urlsplit(request.path.decode("latin-1"))
        path = url.path
        if not self._host_ok(request, url.netloc):
            self.hub.metrics.handshakes_rejected.labels("host").inc()
            log.info("handshake.rejected", extra={"reason": "host", "host": request.headers.get("Host"), "path": path})
            return _response(HTTPStatus.FORBIDDEN, b"host not allowed\n")
        if path == "/ws":
            return self._upgrade(request, parse_qs(url.query), user, admitted)
        if path == "/echo" and self.settings.echo:
            if not self._origin_ok(request):
                self.hub.metrics.handshakes_rejected.labels("origin").inc()
                return _response(HTTPStatus.FORBIDDEN, b"origin not allowed\n")
            return WebSocketListener(EchoConnection(self.hub, None))
        if path == "/login" and (self.auth is not None or self._static is None):
            return _response(HTTPStatus.OK, self._auth_mode(), "application/json")
        if path == "/" and self._static is None:
            return _response(HTTPStatus.OK, self._page, "text/html; charset=utf-8")
        if path in _CLIENT_FILES:  # the browser client library, with `--static` too
            # public bytes, the same for everyone: a page of any origin (an app's, beside hubbub) may
            # import it, and a cross-origin module script is fetched in CORS mode
            return _with_header(_response(HTTPStatus.OK, *_CLIENT_FILES[path]), "Access-Control-Allow-Origin", "*")
        if path == "/healthz":
            if self.hub.broker.healthy:
                health = _response(HTTPStatus.OK, b"ok\n")
            else:
                health = _response(HTTPStatus.SERVICE_UNAVAILABLE, b"broker unreachable\n")
            return self._readable_by_allowed_origin(request, health)
        if path == "/metrics":
            return _response(HTTPStatus.OK, self.hub.metrics.render(), METRICS_CONTENT_TYPE)
        if self._static is not None:
            return self._static_file(request, path)
        return _response(HTTPStatus.NOT_FOUND, b"not found\n")

    def _readable_by_allowed_origin(self, request: WSUpgradeRequest, routed: Routed) -> Routed:
        """`routed`, readable by a page of another origin that may open `/ws` (`--allowed-origin`).

        hubbub.js tells a refused handshake from a dead server by reading `/healthz`; a page served
        by an app beside hubbub (another port, the connect proxy's setup) can read it only so.
        """
        origin = request.headers.get("Origin")
        if origin is None or not self._origin_ok(request):
            return routed
        _with_header(routed, "Access-Control-Allow-Origin", origin)
        return _with_header(routed, "Vary", "Origin")

    def _auth_mode(self) -> bytes:
        """`GET /login`: how a page may connect, so the chat page knows whether to show a login form.

        `login`: `POST /login` gives tickets (`--users`); `token`: signed tokens are accepted
        (`--auth-secret`); `anonymous`: a handshake without a credential is let in. Booleans only,
        nothing secret.
        """
        s = self.settings
        locked = self.auth is not None or bool(s.auth_secret)
        anonymous = s.allow_anonymous or not locked
        mode = {"login": self.auth is not None, "token": bool(s.auth_secret), "anonymous": anonymous}
        return msgspec.json.encode(mode) + b"\n"

    def _static_file(self, request: WSUpgradeRequest, path: str) -> Routed:
        """A file of `--static DIR` (GET only); 404 for anything not under it."""
        assert self._static is not None
        if request.method not in (b"GET", "GET"):
            return _response(HTTPStatus.METHOD_NOT_ALLOWED, b"GET only\n")
        found = self._static.lookup(path)
        if found is None:
            return _response(HTTPStatus.NOT_FOUND, b"not found\n")
        body, kind = found
        routed = _response(HTTPStatus.OK, body, kind)
        assert isinstance(routed, WSUpgradeResponseWithListener)
        routed.response.headers["X-Content-Type-Options"] = "nosniff"
        return routed

    def _host_ok(self, request: WSUpgradeRequest, target_authority: str) -> bool:
        """Whether the request is for a name this server answers to: its one `Host` header, and
        the authority of an absolute-form target (`GET http://name/ws`) when there is one."""
        if self.hosts.names is None:
            return True
        hosts = request.headers.getall("Host", [])
        if len(hosts) != 1 or not self.hosts.allows(hosts[0]):
            return False
        return not target_authority or self.hosts.allows(target_authority)

    def _login_allowed(self, headers: dict[str, list[str]]) -> bool:
        """`POST /login` under the rules of `/ws`: a `Host` this server answers, a same-host or allowed `Origin`."""
        hosts = headers.get("host", [])
        if self.hosts.names is not None and (len(hosts) != 1 or not self.hosts.allows(hosts[0])):
            return False
        origins = headers.get("origin", [])
        if len(origins) > 1:
            return False
        return origin_allowed(
            origins[0] if origins else None, hosts[0] if hosts else None, self.settings.allowed_origins, self.scheme
        )

    def _origin_ok(self, request: WSUpgradeRequest) -> bool:
        headers = request.headers
        origins = headers.getall("Origin", [])
        if len(origins) > 1:
            return False
        return origin_allowed(
            origins[0] if origins else None, headers.get("Host"), self.settings.allowed_origins, self.scheme
        )

    def _upgrade(
        self, request: WSUpgradeRequest, query: dict[str, list[str]], user: str | None, admitted: Admission | None
    ) -> Routed:
        if not self._origin_ok(request):
            self.hub.metrics.handshakes_rejected.labels("origin").inc()
            log.info("handshake.rejected", extra={"reason": "origin", "origin": request.headers.get("Origin")})
            return _response(HTTPStatus.FORBIDDEN, b"origin not allowed\n")
        if user is not None:
            return WebSocketListener(
                Connection(self.hub, user)
            )  # the ticket's user: `name` and payload `from` are ignored
        if admitted is not None:  # the connect proxy's: its user, rooms and info (`name` and `from` ignored)
            conn = Connection(self.hub, admitted.user)
            conn.grant = admitted.grant
            conn.info = admitted.info
            return WebSocketListener(conn)
        if self.settings.auth_secret:
            with_token = self._token_upgrade(request, query)
            if with_token is not None:
                return with_token
        if self.settings.connect_proxy:  # a credential the pacer let by, but not valid here: never anonymous
            self.hub.metrics.handshakes_rejected.labels("auth").inc()
            return _response(HTTPStatus.UNAUTHORIZED, b"invalid credential\n")
        if (self.auth is not None or self.settings.auth_secret) and not self.settings.allow_anonymous:
            self.hub.metrics.handshakes_rejected.labels("auth").inc()
            if self.auth is None:
                return _response(HTTPStatus.UNAUTHORIZED, b"a token is required: /ws?token=T\n")
            return _response(HTTPStatus.UNAUTHORIZED, b"log in first: POST /login, then /ws?ticket=T\n")
        name = query.get("name", [None])[0]
        if name is not None and not valid_name(name):
            return _response(HTTPStatus.BAD_REQUEST, f"{invalid_name_message(name)}\n".encode())
        return WebSocketListener(Connection(self.hub, name))

    def _token_upgrade(self, request: WSUpgradeRequest, query: dict[str, list[str]]) -> Routed | None:
        """The connection of a signed token (`?token=T`, or the subprotocol `hubbub.token.T` next to
        `hubbub`), a 401 for a bad one, or None when the request carries no token.

        The identity is the token's `sub`; `name` and payload `from` are ignored. A token offered as a
        subprotocol gets `hubbub` selected in the response, so the token is never echoed back.
        """
        token, offered_plain = token_from_subprotocols(request.headers.getall("Sec-WebSocket-Protocol", []))
        via_subprotocol = token is not None
        if token is None:
            token = query.get("token", [None])[0]
            if token is None:
                return None
        elif not offered_plain:
            self.hub.metrics.handshakes_rejected.labels("auth").inc()
            return _response(HTTPStatus.BAD_REQUEST, b"offer the subprotocol hubbub next to hubbub.token.T\n")
        s = self.settings
        try:
            grant = verify_token(s.auth_secret, token, s.auth_audience or None, s.auth_issuer or None)
        except TokenError as exc:  # its message never holds the token
            self.hub.metrics.handshakes_rejected.labels("auth").inc()
            log.info("handshake.token_refused", extra={"reason": str(exc)})
            return _response(HTTPStatus.UNAUTHORIZED, b"invalid or expired token\n")
        conn = Connection(self.hub, grant.sub)
        conn.grant = grant
        if not via_subprotocol:
            return WebSocketListener(conn)
        response = WSUpgradeResponse.create_101_response({"Sec-WebSocket-Protocol": SUBPROTOCOL})
        return WSUpgradeResponseWithListener(response, WebSocketListener(conn))

    def _refresh(self, payload: Refresh, client: Connection) -> dict[str, Any]:
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


async def serve(
    hub: Hub,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    started: Callable[[Server], object] | None = None,
) -> None:
    """Run a server until `stop` is set, then shut down politely.

    `started` is called with the server once it listens (`hubbub serve` prints the URL to open).
    """
    server = Server(hub)
    await server.start()
    if started is not None:
        started(server)
    if ready is not None:
        ready.set()
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await server.stop()
