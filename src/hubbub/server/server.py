"""The server: a hub behind one port for the HTTP routes, the WebSocket handshake and the server API.

`Server` puts a `Hub` on the network: the listener, the front door below picows (`front_door`
builds its stages from the settings at `start`), and the routes picows calls
(`hubbub.server.routes`, `hubbub.server.handshake`). `serve` runs one until it is told to stop.
How a request gets there: docs/topics/front-door.md.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from picows import WSAutoPingStrategy
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # constructor pinned by our version range

from hubbub.auth.admin_sessions import AdminGate
from hubbub.auth.jwks import Jwks
from hubbub.auth.keys import PublicKey
from hubbub.auth.logins import Authenticator
from hubbub.auth.passwords import Users
from hubbub.auth.tokens import KeySource, Verifier
from hubbub.backends.tickets import TicketStore, open_tickets
from hubbub.core.hub import Hub
from hubbub.core.tasks import TaskOwner
from hubbub.integration.app_proxy import AppProxy
from hubbub.integration.server_api import ServerApi
from hubbub.integration.webhooks import Webhooks
from hubbub.protocol.events import SendMessage
from hubbub.protocol.origins import HostPolicy
from hubbub.protocol.origins import origin_allowed as origin_allowed  # re-exported: the rule is tested by this name
from hubbub.server.admin import AdminOff, AdminRoutes
from hubbub.server.admin_stats import AdminStats
from hubbub.server.api_routes import ApiOff, ApiRoutes
from hubbub.server.frontdoor import FrontDoor, GetOnly, Pipeline, Spawn, Stage
from hubbub.server.handshake import Handshake
from hubbub.server.host_origin import HostOrigin
from hubbub.server.key_hold import KeyHold
from hubbub.server.listener import DEFAULT_MAX_CONNECTIONS, Listener, Slot, connection_cap, raise_fd_limit
from hubbub.server.login import Login, LoginOff, TicketHold
from hubbub.server.logs import PicowsLog
from hubbub.server.proxy_hold import ConnectProxyHold
from hubbub.server.routes import Routes
from hubbub.server.sse import SseDoor
from hubbub.server.tls import HandshakeBounds, server_context

__all__ = ["Server", "front_door", "serve"]

log = logging.getLogger("hubbub.server.server")
_PICOWS_LOG = logging.getLogger("picows.server")


def front_door(
    spawn: Spawn,
    allowed: Callable[[dict[str, list[str]]], bool],
    *,
    auth: Authenticator | None = None,
    api: ServerApi | None = None,
    connect_proxy: AppProxy | None = None,
    key_hold: KeyHold | None = None,
    admin: AdminRoutes | None = None,
    sse: SseDoor | None = None,
) -> Pipeline:
    """The front door's stages for what is configured, in order (docs/topics/front-door.md).

    `allowed`: the server's `Host` and `Origin` rules (`HostOrigin.allows`); `auth`: logins and
    tickets (`--users`); `api`: the server API (`--api-key`); `connect_proxy`: the application asked
    about credential-less handshakes (`--connect-proxy`); `key_hold`: handshakes waiting for the
    identity provider's keys (`--auth-jwks-url`); `admin`: the dashboard (`--admin-password`); `sse`:
    `GET /sse` and `POST /sse/send`.
    """
    stages: list[Stage] = [] if sse is None else [sse]
    if key_hold is not None:
        stages.append(key_hold)
    if connect_proxy is not None:
        stages.append(ConnectProxyHold(connect_proxy, allowed))
    if auth is not None:
        stages += [Login(auth, allowed), TicketHold(auth)]
    else:
        stages.append(LoginOff())
    stages.append(ApiRoutes(api) if api is not None else ApiOff())
    stages.append(admin if admin is not None else AdminOff())
    stages.append(GetOnly())
    return Pipeline(tuple(stages), spawn)


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
        """Logins and tickets, when `--users` is set (made at `start`)."""
        self._tickets = tickets
        self._auth_tasks = TaskOwner("auth")
        self.listener: Listener | None = None
        self.rules = HostOrigin(self.scheme, self.settings.allowed_origins)
        """Which `Host` and `Origin` are answered; the names are set from the bound addresses at `start`."""
        self.api = ServerApi(hub, lambda head: self.rules.allows(head.headers)) if self.settings.api_keys else None
        """The server API (`/api/...`), when `--api-key` is set."""
        self._stopped = False
        logins = bool(self.settings.users_file)
        s = self.settings
        self.jwks: Jwks | None = Jwks(s.auth_jwks_url, registry=hub.metrics.registry) if s.auth_jwks_url else None
        """The identity provider's keys (`--auth-jwks-url`), fetched from `start` on."""
        keys: KeySource | None = self.jwks or (PublicKey.load(s.auth_public_key) if s.auth_public_key else None)
        self.verifier = Verifier(
            s.auth_secret, keys, s.auth_audience or None, s.auth_issuer or None, s.auth_user_claim, s.auth_rooms_claim
        )
        """How `/ws` and `refresh` check signed tokens."""
        self.handshake = Handshake(hub, self.rules, logins, self.verifier, self.jwks)
        """Who a `/ws` or `/sse` client is (credentials, `name`)."""
        self.routes = Routes(hub, self.rules, self.handshake, logins)
        """picows' route callback: pages, `/healthz`, `/metrics`, static files and the `/ws` upgrade."""
        self.webhooks: Webhooks | None = None
        """The webhooks dispatcher (`--webhook`), the hub's observer; None without webhooks."""
        if self.settings.webhooks:
            self.webhooks = Webhooks.from_settings(self.settings, hub.node_id, hub.metrics.registry)
            hub.observe(self.webhooks)
        self.proxy: AppProxy | None = None
        """The calls to the application, with `--connect-proxy`, `--publish-proxy`, `--join-proxy` or `--rpc-proxy`."""
        s = self.settings
        if s.connect_proxy or s.publish_proxy or s.join_proxy or s.rpc_proxy:
            self.proxy = AppProxy(self.settings, hub.metrics.registry)
        if self.proxy is not None and self.settings.rpc_proxy:
            hub.rpc_methods.proxy = self.proxy.rpc  # after the app's own methods (hubbub.core.rpc)
            if not hub.uses_builtin("rpc"):  # an app that took the rpc event over answers it as it decides
                log.warning("proxy.rpc_not_applied", extra={"reason": "the app handles rpc itself"})
        if self.proxy is not None and self.settings.join_proxy:
            hub.join_proxy = self.proxy.join
            if not hub.uses_builtin("join_room"):  # an app's own join_room decides as it likes
                log.warning("proxy.join_not_applied", extra={"reason": "the app handles join_room itself"})
        if self.proxy is not None and self.settings.publish_proxy:
            if hub.uses_builtin("send_message"):  # an app that took send_message over publishes as it decides
                hub.router.replace("send_message", self.proxy.send_message, SendMessage)
            else:
                log.warning("proxy.publish_not_applied", extra={"reason": "the app handles send_message itself"})
        self.sse: SseDoor | None = None
        """`GET /sse` and `POST /sse/send` (made at `start`)."""
        self.door: Pipeline | None = None
        """The front door's stages, built at `start` (`front_door`)."""
        self.admin: AdminRoutes | None = None
        """The admin dashboard (`/admin`), when `--admin-password` is set (made at `start`: deriving
        its key takes a moment)."""
        self._admin_tasks = TaskOwner("admin")

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
        if s.admin_password and self.admin is None:
            stats = AdminStats(self.hub)
            rules = self.rules
            self.admin = AdminRoutes(
                self.hub, AdminGate(s.admin_password), stats, self.scheme, lambda head: rules.allows(head.headers)
            )
            self._admin_tasks.spawn(stats.run())
        connect_proxy = self.proxy if s.connect_proxy else None
        key_hold = None
        if self.jwks is not None:
            self.jwks.start()  # the first fetch runs while the port opens; early handshakes wait for it
            key_hold = KeyHold(self.jwks, self.verifier)
        self.sse = SseDoor(self.hub, self.handshake, self.rules.allows, auth=self.auth, proxy=connect_proxy)
        self.door = front_door(
            self._auth_tasks.spawn,
            self.rules.allows,
            auth=self.auth,
            api=self.api,
            connect_proxy=connect_proxy,
            key_hold=key_hold,
            admin=self.admin,
            sse=self.sse,
        )
        fd_limit = raise_fd_limit()
        cap = connection_cap(s.max_connections, fd_limit)
        if self.proxy is not None:  # one address's share of the handshakes waiting on the app, as of the sockets
            self.proxy.share_per_address(s.max_connections_per_ip, cap)
        if key_hold is not None:  # and of those waiting for a key set fetch
            key_hold.places.share_per_address(s.max_connections_per_ip, cap)
        listener = Listener(
            self._protocol,
            self.hub.metrics,
            cap,
            s.max_connections_per_ip,
            fd_limit,
            self.ssl,
            HandshakeBounds.of(s),
            s.send_buffer,
        )
        await listener.listen(s.host, s.port, s.backlog)
        self.listener = listener
        self.rules.hosts = HostPolicy.for_listener(s.allowed_hosts, listener.addresses, s.host)
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
                "allowed_hosts": ",".join(names) if (names := self.rules.hosts.names) is not None else "any",
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
        await self._admin_tasks.close()
        await self.hub.shutdown()
        if self.auth is not None:
            await self.auth.tickets.close()
        if self.proxy is not None:
            await self.proxy.close()
        if self.jwks is not None:
            await self.jwks.close()
        log.info("server.stopped")

    def _protocol(self, slot: Slot) -> FrontDoor:
        """The protocol of one accepted socket: the front door, which gives the slot back at the end."""
        assert self.door is not None
        return FrontDoor(self.door, self._picows_for, slot.key, slot)

    def _picows_for(self, door: FrontDoor) -> Any:
        """picows' protocol behind `door`: picows calls the route while the door gives it a request
        head, so the route sees what the door's stages learned (a ticket's user, an admission)."""
        route = self.routes.route
        return self._picows(lambda request: route(request, door.user, door.admitted, door.remote))

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
