"""picows' route callback: the answer to each `GET` that the front door let through.

`Routes.route` checks the `Host` (403), upgrades `/ws` (`hubbub.server.handshake`), and answers
`/echo` (with `--echo`), `GET /login`, `/`, the browser client, `/healthz`, `/metrics`, the files of
`--static DIR` (405 for a method other than `GET`), and 404 for anything else.
docs/topics/front-door.md.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import msgspec
from picows import WSUpgradeRequest, WSUpgradeResponseWithListener

from hubbub.core.hub import Hub
from hubbub.core.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from hubbub.server.connection import EchoConnection, WebSocketListener
from hubbub.server.handshake import Handshake
from hubbub.server.host_origin import HostOrigin
from hubbub.server.responses import Routed, response, with_header
from hubbub.server.static_files import StaticFiles

if TYPE_CHECKING:
    from hubbub.integration.app_proxy import Admission

__all__ = ["Routes"]

log = logging.getLogger("hubbub.server.routes")

_CLIENT_FILES = {
    f"/{name}": (resources.files("hubbub.server").joinpath(f"static/{name}").read_bytes(), kind)
    for name, kind in (
        ("hubbub.js", "application/javascript; charset=utf-8"),
        ("hubbub.d.ts", "application/typescript; charset=utf-8"),
    )
}
"""`GET /hubbub.js` and `/hubbub.d.ts`: the browser client (clients/js/) and its types, read once."""


class Routes:
    """The answers of one server's port to what picows reads (module docstring)."""

    def __init__(self, hub: Hub, rules: HostOrigin, handshake: Handshake, logins: bool) -> None:
        """`logins`: whether `POST /login` gives tickets here (`--users`)."""
        self.hub = hub
        self.settings = hub.settings
        self._rules = rules
        self._handshake = handshake
        self._logins = logins
        self._page = resources.files("hubbub.server").joinpath("static/index.html").read_bytes()
        self._static = StaticFiles(self.settings.static_dir) if self.settings.static_dir else None
        """`--static DIR`: the app's files at `/`, in place of the chat page."""

    def route(
        self, request: WSUpgradeRequest, user: str | None = None, admitted: Admission | None = None, remote: str = ""
    ) -> Routed:
        """picows' route callback; `user` and `admitted`: what the front door learned of the client; `remote`:
        its address, `host:port`, for the log."""
        url = urlsplit(request.path.decode("latin-1"))
        path = url.path
        if not self._rules.host_ok(request, url.netloc):
            self.hub.metrics.handshakes_rejected.labels("host").inc()
            log.info(
                "handshake.rejected",
                extra={"reason": "host", "remote": remote, "host": request.headers.get("Host"), "path": path},
            )
            return response(HTTPStatus.FORBIDDEN, b"host not allowed\n")
        if path == "/ws":
            return self._handshake.upgrade(request, parse_qs(url.query), user, admitted, remote)
        if path == "/echo" and self.settings.echo:
            if not self._rules.origin_ok(request):
                self.hub.metrics.handshakes_rejected.labels("origin").inc()
                return response(HTTPStatus.FORBIDDEN, b"origin not allowed\n")
            return WebSocketListener(EchoConnection(self.hub, None, remote))
        if path == "/login" and (self._logins or self._static is None):
            return response(HTTPStatus.OK, self._auth_mode(), "application/json")
        if path == "/" and self._static is None:
            return response(HTTPStatus.OK, self._page, "text/html; charset=utf-8")
        if path in _CLIENT_FILES:  # the browser client library, with `--static` too
            # public bytes, the same for everyone: a page of any origin (an app's, beside hubbub) may
            # import it, and a cross-origin module script is fetched in CORS mode
            return with_header(response(HTTPStatus.OK, *_CLIENT_FILES[path]), "Access-Control-Allow-Origin", "*")
        if path == "/healthz":
            if self.hub.broker.healthy:
                health = response(HTTPStatus.OK, b"ok\n")
            else:
                health = response(HTTPStatus.SERVICE_UNAVAILABLE, b"broker unreachable\n")
            return self._readable_by_allowed_origin(request, health)
        if path == "/metrics":
            return response(HTTPStatus.OK, self.hub.metrics.render(), METRICS_CONTENT_TYPE)
        if self._static is not None:
            return self._static_file(request, path)
        return response(HTTPStatus.NOT_FOUND, b"not found\n")

    def _readable_by_allowed_origin(self, request: WSUpgradeRequest, routed: Routed) -> Routed:
        """`routed`, readable by a page of another origin that may open `/ws` (`--allowed-origin`).

        hubbub.js tells a refused handshake from a dead server by reading `/healthz`; a page served
        by an app beside hubbub (another port, the connect proxy's setup) can read it only so.
        """
        origin = request.headers.get("Origin")
        if origin is None or not self._rules.origin_ok(request):
            return routed
        with_header(routed, "Access-Control-Allow-Origin", origin)
        return with_header(routed, "Vary", "Origin")

    def _auth_mode(self) -> bytes:
        """`GET /login`: how a page may connect, so the chat page knows whether to show a login form.

        `login`: `POST /login` gives tickets (`--users`); `token`: signed tokens are accepted
        (`--auth-secret`, `--auth-jwks-url`, `--auth-public-key`); `anonymous`: a handshake without a
        credential is let in. Booleans only, nothing secret.
        """
        s = self.settings
        locked = self._logins or s.tokens
        anonymous = s.allow_anonymous or not locked
        mode = {"login": self._logins, "token": s.tokens, "anonymous": anonymous}
        return msgspec.json.encode(mode) + b"\n"

    def _static_file(self, request: WSUpgradeRequest, path: str) -> Routed:
        """A file of `--static DIR` (GET only); 404 for anything not under it."""
        assert self._static is not None
        if request.method not in (b"GET", "GET"):
            return response(HTTPStatus.METHOD_NOT_ALLOWED, b"GET only\n")
        found = self._static.lookup(path)
        if found is None:
            return response(HTTPStatus.NOT_FOUND, b"not found\n")
        body, kind = found
        routed = response(HTTPStatus.OK, body, kind)
        assert isinstance(routed, WSUpgradeResponseWithListener)
        routed.response.headers["X-Content-Type-Options"] = "nosniff"
        return routed
