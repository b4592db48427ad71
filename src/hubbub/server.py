"""The listening socket: HTTP routes, the WebSocket handshake, host and origin checks, shutdown.

One port serves everything. picows parses each request and asks `_route`
what to do with it: a plain HTTP answer (the chat page, `/healthz`,
`/metrics`, a 4xx) or a `Connection` to upgrade to. Rejections happen here,
before the upgrade, with an HTTP status (PROTOCOL.md: 403 for a foreign
origin, 404 for an unknown path, 400 for a bad name; and 403 on every route
for a `Host` this server does not answer to, see `origins.py`).
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from picows import (
    WSAutoPingStrategy,
    WSListener,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # constructor pinned by our version range

from hubbub.connection import Connection
from hubbub.events import NAME_MAX
from hubbub.frames import binary_frame, text_frame
from hubbub.hub import Hub
from hubbub.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from hubbub.origins import HostPolicy
from hubbub.origins import origin_allowed as origin_allowed  # re-exported: the rule is tested by this name
from hubbub.pacer import FramePacer

log = logging.getLogger("hubbub.server")
_PICOWS_LOG = logging.getLogger("picows.server")

Routed = WSListener | WSUpgradeResponseWithListener | None


class EchoConnection(Connection):
    """`/echo`: every message comes back through the same outbox and writer.

    For protocol conformance runs (Autobahn): text and binary are both echoed,
    fragmented messages reassembled, and every close rule is the hub's own.
    """

    def _receive(self, text: str) -> None:
        self.send_frame(text_frame(text.encode()))

    def _receive_binary(self, data: bytes) -> None:
        self.send_frame(binary_frame(data))


def _response(status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8") -> Routed:
    if status == HTTPStatus.OK:
        response = WSUpgradeResponse.create_ok_response(body, {"Content-Type": content_type})
    else:
        response = WSUpgradeResponse.create_error_response(status, body, {"Content-Type": content_type})
    response.headers["Cache-Control"] = "no-store"
    return WSUpgradeResponseWithListener(response, None)


class Server:
    """A hub behind a listening socket; `start`, then `stop` (idempotent)."""

    scheme = "http"
    """What the server speaks; a same-host `Origin` must have this scheme."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings = hub.settings
        self._server: asyncio.Server | None = None
        self.hosts = HostPolicy(None)
        """Which `Host` headers are answered; set from the bound addresses at `start`."""
        self._page = resources.files("hubbub").joinpath("static/index.html").read_bytes()
        self._stopped = False

    @property
    def port(self) -> int:
        """The bound port (useful when started with port 0)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        await self.hub.start()
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol, self.settings.host, self.settings.port, reuse_address=True
        )
        bound = [str(sock.getsockname()[0]) for sock in self._server.sockets]
        self.hosts = HostPolicy.for_listener(self.settings.allowed_hosts, bound, self.settings.host)
        log.info("server.listening", extra={"host": self.settings.host, "port": self.port})

    async def stop(self) -> None:
        """Stop accepting, close every connection with 1001, release the port."""
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.close()
        await self.hub.shutdown()
        log.info("server.stopped")

    def _protocol(self) -> FramePacer:
        """A picows server protocol for one accepted socket, behind the frame pacer."""
        return FramePacer(
            WSProtocol(
                None,  # host and port: server side
                None,  # path: server side
                False,  # is_client_side
                self._route,
                _PICOWS_LOG,
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
        )

    def _route(self, request: WSUpgradeRequest) -> Routed:
        url = urlsplit(request.path.decode("latin-1"))
        path = url.path
        if not self._host_ok(request, url.netloc):
            self.hub.metrics.handshakes_rejected.labels("host").inc()
            log.info("handshake.rejected", extra={"reason": "host", "host": request.headers.get("Host"), "path": path})
            return _response(HTTPStatus.FORBIDDEN, b"host not allowed\n")
        if path == "/ws":
            return self._upgrade(request, parse_qs(url.query))
        if path == "/echo" and self.settings.echo:
            if not self._origin_ok(request):
                self.hub.metrics.handshakes_rejected.labels("origin").inc()
                return _response(HTTPStatus.FORBIDDEN, b"origin not allowed\n")
            return EchoConnection(self.hub, None)
        if path == "/":
            return _response(HTTPStatus.OK, self._page, "text/html; charset=utf-8")
        if path == "/healthz":
            if self.hub.broker.healthy:
                return _response(HTTPStatus.OK, b"ok\n")
            return _response(HTTPStatus.SERVICE_UNAVAILABLE, b"broker unreachable\n")
        if path == "/metrics":
            return _response(HTTPStatus.OK, self.hub.metrics.render(), METRICS_CONTENT_TYPE)
        return _response(HTTPStatus.NOT_FOUND, b"not found\n")

    def _host_ok(self, request: WSUpgradeRequest, target_authority: str) -> bool:
        """Whether the request is for a name this server answers to: its one `Host` header, and
        the authority of an absolute-form target (`GET http://name/ws`) when there is one."""
        if self.hosts.names is None:
            return True
        hosts = request.headers.getall("Host", [])
        if len(hosts) != 1 or not self.hosts.allows(hosts[0]):
            return False
        return not target_authority or self.hosts.allows(target_authority)

    def _origin_ok(self, request: WSUpgradeRequest) -> bool:
        headers = request.headers
        origins = headers.getall("Origin", [])
        if len(origins) > 1:
            return False
        return origin_allowed(
            origins[0] if origins else None, headers.get("Host"), self.settings.allowed_origins, self.scheme
        )

    def _upgrade(self, request: WSUpgradeRequest, query: dict[str, list[str]]) -> Routed:
        if not self._origin_ok(request):
            self.hub.metrics.handshakes_rejected.labels("origin").inc()
            log.info("handshake.rejected", extra={"reason": "origin", "origin": request.headers.get("Origin")})
            return _response(HTTPStatus.FORBIDDEN, b"origin not allowed\n")
        name = query.get("name", [None])[0]
        if name is not None and not 1 <= len(name) <= NAME_MAX:
            return _response(HTTPStatus.BAD_REQUEST, f"name must be 1 to {NAME_MAX} characters\n".encode())
        return Connection(self.hub, name)


async def serve(hub: Hub, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """Run a server until `stop` is set, then shut down politely."""
    server = Server(hub)
    await server.start()
    if ready is not None:
        ready.set()
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await server.stop()
