"""The admin dashboard at `/admin` (`--admin-password`): a front-door stage that reads and answers it.

`AdminRoutes` claims every `/admin` request and answers: the page and its script and style
(`static/admin.*`, nothing from another origin, under a strict Content-Security-Policy), `POST
/admin/login` (a session cookie, `hubbub.auth.admin_sessions`), `POST /admin/logout`, the JSON the
page polls (`GET /admin/api/...`: 401 without a session) and its actions (`POST /admin/api/...`:
403 without the session's CSRF token and a same-origin `Origin`). The actions are the server API's
own (`hubbub.integration.server_api.disconnect`, `unsubscribe`, `publish`), so they reach every
node. Without the password `AdminOff` answers every `/admin` request 404. docs/howto/admin.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from hubbub.auth.admin_sessions import COOKIE, SESSION_TTL, AdminGate, AdminSession
from hubbub.auth.logins import Refusal
from hubbub.backends.broker import BrokerUnavailable
from hubbub.backends.history import payload_of
from hubbub.core.hub import Hub
from hubbub.errors import EventError
from hubbub.integration.server_api import disconnect, publish, unsubscribe
from hubbub.protocol.events import valid_name, valid_room
from hubbub.protocol.http import Head, Request, Response, Route
from hubbub.server.admin_stats import AdminStats
from hubbub.server.frontdoor import Arrival, FrontDoor

__all__ = ["AdminOff", "AdminRoutes"]

log = logging.getLogger("hubbub.server.admin")

MAX_BODY = 8192
"""Largest request body read (a login, an action); larger is answered 413 unread."""
BODY_TIMEOUT = 10.0
ROOMS_LISTED = 200
"""Rooms the dashboard lists, the most populated first (of at most `ROOMS_SCANNED`)."""
ROOMS_SCANNED = 10_000
RATED_ROOMS = 50
"""Rooms whose latest offset is read for their message rate: the first of the list."""
ROOMS_CACHE = 2.0
"""Seconds one rooms answer serves every dashboard."""
ROOM_CACHE = 1.0
"""Seconds one room's answer serves every dashboard that has it open."""
ROOMS_CACHED = 32
"""Rooms whose answer is kept at once; past it the oldest is dropped."""
MEMBERS_LISTED = 500
LAST_MESSAGES = 20
FOUND_MAX = 50
NOTICE_MAX = 2000
"""Longest notice text, characters."""
NOTICE_FROM = "admin"
"""The `from` of a notice published from the dashboard."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""The page's Content-Security-Policy: its own script, style and requests, nothing else, in no frame."""
_SECURITY = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)


def _file(name: str) -> bytes:
    return resources.files("hubbub.server").joinpath(f"static/{name}").read_bytes()


_FILES = {
    "/admin": ("admin.html", "text/html; charset=utf-8"),
    "/admin/": ("admin.html", "text/html; charset=utf-8"),
    "/admin/admin.js": ("admin.js", "application/javascript; charset=utf-8"),
    "/admin/admin.css": ("admin.css", "text/css; charset=utf-8"),
    "/admin/admin.svg": ("admin.svg", "image/svg+xml"),
}


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    password: str


class UserBody(msgspec.Struct, forbid_unknown_fields=True):
    user: str


class RemoveBody(msgspec.Struct, forbid_unknown_fields=True):
    user: str
    room: str


class NoticeBody(msgspec.Struct, forbid_unknown_fields=True):
    room: str
    text: str


class _Refused(Exception):
    """An admin request answered with an error (status and message)."""

    def __init__(self, status: HTTPStatus, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _json(status: HTTPStatus, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, body, "application/json", headers=_SECURITY + headers)


def _error(status: HTTPStatus, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    body = msgspec.json.encode({"error": {"code": status.phrase.lower().replace(" ", "_"), "message": message}})
    return _json(status, body, headers)


def _cookies(head: Head) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in head.headers.get("cookie", []):
        for part in line.split(";"):
            name, sep, value = part.strip().partition("=")
            if sep:
                found.setdefault(name, value)
    return found


class AdminRoutes:
    """With `--admin-password`: every `/admin` request, read and answered here (module docstring)."""

    reads_requests = True

    def __init__(self, hub: Hub, gate: AdminGate, stats: AdminStats, scheme: str, allowed: Callable[[Head], bool]):
        """`scheme`: what the port speaks (`https` sets `Secure` on the cookie); `allowed`: the server's
        `Host` and `Origin` rules."""
        self.hub = hub
        self.gate = gate
        self.stats = stats
        self._scheme = scheme
        self._allowed = allowed
        self._files = {path: (_file(name), kind) for path, (name, kind) in _FILES.items()}
        self._rooms_cache: tuple[float, bytes] = (0.0, b"")
        self._rooms_lock = asyncio.Lock()
        self._room_cache: dict[str, tuple[float, bytes]] = {}
        self._offsets: dict[str, tuple[float, int, float | None]] = {}
        """The rated rooms' latest offsets at the last rooms answer: `(when, offset, rate)`."""
        self.route = Route(self.handle, self._refuse, MAX_BODY, BODY_TIMEOUT, admit=self._admit)

    def judge(self, door: FrontDoor, arrival: Arrival) -> bool:
        start = arrival.start
        if not (start.startswith(b"GET /adm") or start.startswith(b"POST /ad")):
            return False
        head = arrival.head
        if head is None:
            return False
        path = head.path
        if path != "/admin" and not path.startswith("/admin/"):
            return False
        door.take(self.route, head, arrival.rest)
        return True

    # ---- before the body -------------------------------------------------------

    def _admit(self, head: Head, peer: str) -> Response | None:
        """A foreign host or origin (403), a request of the API without a session (401), an action
        without its CSRF token or a same-origin `Origin` (403): refused before the body is read."""
        if not self._allowed(head):
            return _error(HTTPStatus.FORBIDDEN, "host or origin not allowed")
        path = head.path
        if head.method not in ("GET", "POST"):
            return _error(HTTPStatus.METHOD_NOT_ALLOWED, "GET or POST only")
        if head.method == "POST" and not self._same_origin(head):
            return _error(HTTPStatus.FORBIDDEN, "a POST needs an Origin of this server")
        if path.startswith("/admin/api/") or path == "/admin/logout":
            found = self._session(head)
            if found is None:
                return _error(HTTPStatus.UNAUTHORIZED, "log in first", (("Set-Cookie", self._clear(None)),))
            if head.method == "POST" and not self.gate.csrf_ok(found, head.one("x-csrf-token")):
                return _error(HTTPStatus.FORBIDDEN, "missing or wrong X-CSRF-Token")
        return None

    def _same_origin(self, head: Head) -> bool:
        """An `Origin` (which `allowed`, the rule of `/ws`, has judged: this server's own, or one of
        `--allowed-origin` behind a proxy), and no `Sec-Fetch-Site` other than `same-origin`."""
        if head.one("origin") is None:
            return False
        site = head.one("sec-fetch-site")
        return site is None or site == "same-origin"

    def _session(self, head: Head) -> AdminSession | None:
        return self.gate.session(_cookies(head).get(COOKIE))

    def _refuse(self, head: Head, status: HTTPStatus, message: str) -> Response:
        return _error(status, message)

    # ---- answering -------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """Answer one request; refusals as `{"error": {"code", "message"}}`."""
        head = request.head
        path = head.path
        try:
            if head.method == "GET" and path in self._files:
                body, kind = self._files[path]
                return Response(HTTPStatus.OK, body, kind, headers=_SECURITY)
            if path == "/admin/login" and head.method == "POST":
                return self._login(request)
            found = self._session(head)
            if found is None:  # `_admit` let it through: a page or an unknown path
                raise _Refused(HTTPStatus.NOT_FOUND, "not found")
            if path == "/admin/logout" and head.method == "POST":
                self.gate.logout(found)
                log.info("admin.logout", extra={"peer": request.peer})
                return _json(HTTPStatus.OK, b"{}", (("Set-Cookie", self._clear(found)),))
            answer = await self._api(request, found)
        except _Refused as exc:
            return _error(exc.status, exc.message, exc.headers)
        except BrokerUnavailable as exc:
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, f"the broker is unavailable: {exc}")
        except EventError as exc:
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, exc.message)
        refreshed = self.gate.refreshed(found)
        extra = (("Set-Cookie", self._cookie(refreshed, found)),) if refreshed is not None else ()
        return _json(HTTPStatus.OK, answer, extra)

    def _login(self, request: Request) -> Response:
        body = _decode(request.body, LoginBody)
        if len(body.password) > 1024:
            raise _Refused(HTTPStatus.BAD_REQUEST, "password too long")
        origin = request.head.one("origin") or ""
        result = self.gate.login(request.peer, body.password, self._scheme == "https" or origin.startswith("https://"))
        if isinstance(result, Refusal):
            if result.retry_after:
                log.info("admin.login_limited", extra={"peer": request.peer})
                wait = (("Retry-After", str(result.retry_after)),)
                raise _Refused(HTTPStatus.TOO_MANY_REQUESTS, "too many failed logins, try again in a minute", wait)
            log.info("admin.login_failed", extra={"peer": request.peer})
            raise _Refused(HTTPStatus.UNAUTHORIZED, "wrong password")
        found = self.gate.session(result)
        assert found is not None
        log.info("admin.login", extra={"peer": request.peer})
        answer = msgspec.json.encode({"csrf": self.gate.csrf(found), "node": self.hub.node_id})
        return _json(HTTPStatus.OK, answer, (("Set-Cookie", self._cookie(result, found)),))

    def _cookie(self, value: str, found: AdminSession) -> str:
        """The `Set-Cookie` of a session's value: `Secure` under TLS, or when it logged in over HTTPS
        (a TLS-terminating proxy in front)."""
        life = max(0, found.issued + SESSION_TTL - int(time.time()))
        secure = "; Secure" if self._scheme == "https" or found.secure else ""
        return f"{COOKIE}={value}; Path=/admin; Max-Age={life}; HttpOnly; SameSite=Strict{secure}"

    def _clear(self, found: AdminSession | None) -> str:
        secure = "; Secure" if self._scheme == "https" or (found is not None and found.secure) else ""
        return f"{COOKIE}=; Path=/admin; Max-Age=0; HttpOnly; SameSite=Strict{secure}"

    async def _api(self, request: Request, found: AdminSession) -> bytes:
        head = request.head
        call = head.path.removeprefix("/admin/api/")
        if head.method == "GET":
            query = _query(head)
            if call == "session":
                return msgspec.json.encode(
                    {"csrf": self.gate.csrf(found), "node": self.hub.node_id, "expires": found.expires}
                )
            if call == "stats":
                return self.stats.encoded
            if call == "series":
                return self.stats.encoded_series()
            if call == "rooms":
                return await self._rooms()
            if call == "room":
                return await self._room(_room(query.get("room", "")))
            if call == "find":
                return self._find(query.get("name", ""))
        elif head.method == "POST":
            if call == "disconnect":
                user = _decode(request.body, UserBody).user
                await disconnect(self.hub, _user(user), 4000, "disconnected by an administrator")
                self._room_cache.clear()  # the page shows the change at its next look
                log.info("admin.disconnect", extra={"peer": request.peer, "user": user})
                return b"{}"
            if call == "remove":
                member = _decode(request.body, RemoveBody)
                await unsubscribe(self.hub, _user(member.user), _room(member.room))
                self._room_cache.pop(member.room, None)
                log.info("admin.remove", extra={"peer": request.peer, "user": member.user, "room": member.room})
                return b"{}"
            if call == "notice":
                notice = _decode(request.body, NoticeBody)
                if not notice.text.strip() or len(notice.text) > NOTICE_MAX:
                    raise _Refused(HTTPStatus.BAD_REQUEST, f"text must be 1 to {NOTICE_MAX} characters")
                message = msgspec.Raw(msgspec.json.encode({"text": notice.text, "notice": True}))
                offset = await publish(self.hub, _room(notice.room), message, NOTICE_FROM)
                self._room_cache.pop(notice.room, None)
                log.info("admin.notice", extra={"peer": request.peer, "room": notice.room})
                return msgspec.json.encode({"offset": offset})
        raise _Refused(HTTPStatus.NOT_FOUND, f"no such call: {head.method} {head.path[:100]}")

    async def _rooms(self) -> bytes:
        """The rooms, most populated first, each with its members and, for the first `RATED_ROOMS`, its
        messages a second since the last answer (of its latest offsets); one answer serves every
        dashboard for `ROOMS_CACHE` seconds."""
        async with self._rooms_lock:
            made, encoded = self._rooms_cache
            now = time.monotonic()
            if encoded and now - made < ROOMS_CACHE:
                return encoded
            rooms = await self.hub.presence.rooms(ROOMS_SCANNED)
            truncated = len(rooms) >= ROOMS_SCANNED
            rooms.sort(key=lambda pair: (-pair[1], pair[0]))
            listed = rooms[:ROOMS_LISTED]
            # the broker's offset of each: one GET in Redis, the history itself is not read
            latest = await asyncio.gather(*(self.hub.broker.last_offset(room) for room, _ in listed[:RATED_ROOMS]))
            at = time.time()
            offsets: dict[str, tuple[float, int, float | None]] = {}
            for (room, _), offset in zip(listed, latest, strict=False):
                before = self._offsets.get(room)
                rate = None
                if before is not None and at > before[0]:
                    rate = max(0.0, (offset - before[1]) / (at - before[0]))
                offsets[room] = (at, offset, rate)
            self._offsets = offsets  # the rated rooms only: bounded by RATED_ROOMS
            local = self.hub.rooms
            answer = {
                "at": at,
                "total": len(rooms),
                "truncated": truncated or len(rooms) > ROOMS_LISTED,
                "rooms": [
                    {
                        "room": room,
                        "members": members,
                        "here": len(local.get(room, ())),
                        "rate": offsets[room][2] if room in offsets else None,
                    }
                    for room, members in listed
                ],
            }
            encoded = msgspec.json.encode(answer)
            self._rooms_cache = (now, encoded)
            return encoded

    async def _room(self, room: str) -> bytes:
        """A room's members (name, node, since where this node knows it) and its last messages; one
        answer serves every dashboard with the room open for `ROOM_CACHE` seconds."""
        now = time.monotonic()
        cached = self._room_cache.get(room)
        if cached is not None and now - cached[0] < ROOM_CACHE:
            return cached[1]
        encoded = await self._room_now(room)
        cache = self._room_cache
        cache.pop(room, None)
        cache[room] = (now, encoded)
        while len(cache) > ROOMS_CACHED:
            del cache[next(iter(cache))]
        return encoded

    async def _room_now(self, room: str) -> bytes:
        hub = self.hub
        entries = await hub.presence.entries(room, MEMBERS_LISTED)
        page = await hub.history.latest(room, LAST_MESSAGES)
        here = {conn.id: conn for conn in hub.rooms.get(room, ())}
        members = []
        for name, key in entries:
            node, conn_id, since = _entry(key)
            if since is None and node == hub.node_id and conn_id in here:
                since = here[conn_id].since
            members.append({"name": name, "node": node, "since": since})
        messages = [msgspec.Raw(payload_of(event)) for _, event in page.messages]
        return msgspec.json.encode({"room": room, "members": members, "offset": page.offset, "messages": messages})

    def _find(self, name: str) -> bytes:
        """This node's connections whose name contains `name` (case-insensitive), and the nodes to ask
        for theirs: a dashboard on each node finds that node's (the actions reach every node anyway)."""
        wanted = name.strip().casefold()
        if not wanted or len(wanted) > 128:
            raise _Refused(HTTPStatus.BAD_REQUEST, "give ?name= with 1 to 128 characters")
        found = []
        for identity, conns in self.hub.identities.items():
            if wanted in identity.casefold():
                for conn in conns:
                    found.append(
                        {
                            "user": identity,
                            "id": conn.id,
                            "node": self.hub.node_id,
                            "remote": conn.remote,
                            "since": conn.since,
                            "rooms": sorted(conn.rooms)[:20],
                        }
                    )
                    if len(found) >= FOUND_MAX:
                        break
            if len(found) >= FOUND_MAX:
                break
        found.sort(key=lambda c: (c["user"], c["id"]))
        return msgspec.json.encode({"node": self.hub.node_id, "connections": found})


def _entry(key: str) -> tuple[str, int, float | None]:
    """A presence key's node, connection id and since (`hubbub.core.membership.Roster.key`:
    `node:id:since`; a node of an older version writes `node:id`, without since)."""
    node, _, rest = key.rpartition(":")
    head, _, conn_id = node.rpartition(":")
    if head and conn_id.isdigit() and rest.isdigit():
        return head, int(conn_id), float(rest)
    return node, int(rest) if rest.isdigit() else 0, None


def _decode(body: bytes, schema: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body, type=schema)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _Refused(HTTPStatus.BAD_REQUEST, f"bad request body: {str(exc)[:200]}") from None


def _user(user: str) -> str:
    if not valid_name(user):
        raise _Refused(HTTPStatus.BAD_REQUEST, "not a valid user name")
    return user


def _room(room: str) -> str:
    if not valid_room(room):
        raise _Refused(HTTPStatus.BAD_REQUEST, "not a valid room name")
    return room


def _query(head: Head) -> dict[str, str]:
    try:
        query = parse_qs(urlsplit(head.target).query, max_num_fields=4)
    except ValueError:
        raise _Refused(HTTPStatus.BAD_REQUEST, "too many query parameters") from None
    return {name: values[0] for name, values in query.items()}


_ADMIN_OFF_BODY = b"not found\n"
_ADMIN_OFF = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
    b"Cache-Control: no-store\r\nConnection: close\r\n\r\n%s" % (len(_ADMIN_OFF_BODY), _ADMIN_OFF_BODY)
)


class AdminOff:
    """Without `--admin-password`: every request to `/admin` or under it, whatever its method, is 404."""

    reads_requests = False

    def judge(self, door: FrontDoor, arrival: Arrival) -> bool:
        start = arrival.start
        if start[:4] == b"GET " and start[4:8] != b"/adm":
            return False
        line = arrival.line
        if line is None:
            return False
        path = line[1]
        if path != b"/admin" and not path.startswith(b"/admin/"):
            return False
        door.refuse(_ADMIN_OFF)
        return True
