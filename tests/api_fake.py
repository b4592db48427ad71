"""A fake of hubbub's server API that speaks the wire contract, for testing `hubbub.client.api` alone.

`FakeApi.handle` is one plain function from a request to an answer: the unit
tests put it behind an `httpx.MockTransport`, the CLI tests behind a small HTTP
server on loopback (`serve_fake`). It checks what a real server checks (the
key, methods, JSON, shapes, names, the 64 KiB body bound) and records every
request it got, so that a test can assert what the client sent.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from hubbub.protocol.events import valid_name, valid_room

MAX_BODY = 65536


@dataclass
class Request:
    """What the fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise _Refused(400, "bad_payload", message)


@dataclass
class FakeApi:
    """Rooms with history and members, in memory; `force` makes every call answer that instead."""

    keys: tuple[str, ...] = ("k1",)
    api_from: str = "server"
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    members: dict[str, dict[str, int]] = field(default_factory=dict)
    connections: dict[str, int] = field(default_factory=dict)
    closed: list[tuple[str, int, str]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    peers: list[int] = field(default_factory=list)
    """The client port of each request `serve_fake` received: one port for many calls is one connection."""
    force: Answer | None = None

    def transport(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            query = {k: v for k, v in request.url.params.items()}
            answer = self.handle(request.method, request.url.path, query, dict(request.headers), request.read())
            return httpx.Response(answer.status, content=answer.body, headers={"Content-Type": answer.content_type})

        return httpx.MockTransport(handler)

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        lowered = {k.lower(): v for k, v in headers.items()}
        self.requests.append(Request(method, path, query, lowered, body))
        if self.force is not None:
            return self.force
        path = path[path.find("/api/") :] if "/api/" in path else path  # as behind a proxy's path prefix
        try:
            return Answer(200, json.dumps(self._route(method, path, query, lowered, body)).encode())
        except _Refused as exc:
            error = {"error": {"code": exc.code, "message": exc.message}}
            return Answer(exc.status, json.dumps(error).encode())

    def _route(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Any:
        routes = {
            "/api/publish": "POST",
            "/api/broadcast": "POST",
            "/api/disconnect": "POST",
            "/api/subscribe": "POST",
            "/api/unsubscribe": "POST",
            "/api/presence": "GET",
            "/api/history": "GET",
            "/api/rooms": "GET",
            "/api/info": "GET",
        }
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "apikey" or not any(hmac.compare_digest(key.encode(), k.encode()) for k in self.keys):
            raise _Refused(401, "unauthorized", "a valid API key is needed")
        if path not in routes:
            raise _Refused(404, "not_found", "no such API call")
        if method != routes[path]:
            raise _Refused(405, "method_not_allowed", f"{path} takes {routes[path]}")
        if method == "GET":
            return getattr(self, "_" + path.rsplit("/", 1)[1])(query)
        if len(body) > MAX_BODY:
            raise _Refused(413, "too_large", "the body is over 64 KiB")
        try:
            payload = json.loads(body)
        except ValueError:
            raise _Refused(400, "bad_json", "the body is not JSON") from None
        _need(isinstance(payload, dict), "the body must be an object")
        return getattr(self, "_" + path.rsplit("/", 1)[1])(payload)

    def _append(self, room: str, message: Any, sender: str) -> int:
        kept = self.messages.setdefault(room, [])
        entry = {"room": room, "message": message, "from": sender, "sent": "2026-12-05T10:00:00.123Z"}
        entry["offset"] = len(kept) + 1
        kept.append(entry)
        return len(kept)

    def _sender(self, payload: dict[str, Any]) -> str:
        sender = payload.get("from", self.api_from)
        _need(isinstance(sender, str) and valid_name(sender), "bad from")
        return str(sender)

    def _publish(self, p: dict[str, Any]) -> Any:
        _need(isinstance(p.get("room"), str) and valid_room(p["room"]) and "message" in p, "bad room or message")
        return {"offset": self._append(p["room"], p["message"], self._sender(p))}

    def _broadcast(self, p: dict[str, Any]) -> Any:
        rooms: list[Any] = p["rooms"] if isinstance(p.get("rooms"), list) else []
        _need(1 <= len(rooms) <= 1000 and len(set(rooms)) == len(rooms), "bad rooms")
        _need(all(isinstance(r, str) and valid_room(r) for r in rooms) and "message" in p, "bad room or message")
        sender = self._sender(p)
        return {"offsets": {r: self._append(r, p["message"], sender) for r in rooms}}

    def _user(self, p: dict[str, Any]) -> str:
        _need(isinstance(p.get("user"), str) and valid_name(p["user"]), "bad user")
        return str(p["user"])

    def _disconnect(self, p: dict[str, Any]) -> Any:
        user, code, reason = self._user(p), p.get("code", 4000), p.get("reason", "")
        _need(isinstance(code, int) and 4000 <= code <= 4999, "code must be 4000..4999")
        _need(isinstance(reason, str) and len(reason.encode()) <= 123, "reason too long")
        self.closed.append((user, code, reason))
        return {}

    def _subscribe(self, p: dict[str, Any]) -> Any:
        user = self._user(p)
        _need(isinstance(p.get("room"), str) and valid_room(p["room"]), "bad room")
        self.members.setdefault(p["room"], {})[user] = self.connections.get(user, 1)
        return {}

    def _unsubscribe(self, p: dict[str, Any]) -> Any:
        user = self._user(p)
        _need(isinstance(p.get("room"), str) and valid_room(p["room"]), "bad room")
        self.members.get(p["room"], {}).pop(user, None)
        return {}

    def _room(self, q: dict[str, str]) -> str:
        _need(valid_room(q.get("room", "")), "bad room")
        return q["room"]

    def _presence(self, q: dict[str, str]) -> Any:
        room = self._room(q)
        members = [{"name": n, "connections": c} for n, c in self.members.get(room, {}).items()]
        return {"room": room, "members": members}

    def _history(self, q: dict[str, str]) -> Any:
        room = self._room(q)
        try:
            since = int(q["since"]) if "since" in q else None
            limit = int(q.get("limit", "100"))
        except ValueError:
            raise _Refused(400, "bad_payload", "since and limit are integers") from None
        _need(1 <= limit <= 1000 and (since is None or since >= 0), "bad since or limit")
        kept = self.messages.get(room, [])
        page = [m for m in kept if m["offset"] > since][:limit] if since is not None else kept[-limit:]
        return {"room": room, "offset": len(kept), "messages": page}

    def _rooms(self, q: dict[str, str]) -> Any:
        return {"rooms": [{"room": r, "members": len(m)} for r, m in sorted(self.members.items()) if m]}

    def _info(self, q: dict[str, str]) -> Any:
        return {"version": "0.1.0", "nodes": [{"id": "n1", "connections": 3, "rooms": 2}], "extra": "ignored"}


@contextmanager
def serve_fake(api: FakeApi) -> Iterator[str]:
    """`api` on a loopback HTTP/1.1 server in a thread; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            api.peers.append(self.client_address[1])
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            answer = api.handle(self.command, url.path, query, dict(self.headers.items()), body)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
