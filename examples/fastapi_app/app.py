"""A FastAPI chat beside a hubbub cluster: the app keeps the users, the session and the messages.

Run from the repository root (the README beside this file has the whole recipe):

    uvicorn examples.fastapi_app.app:app --port 8000

What each route demonstrates:

* `POST /login`, `POST /logout`, `GET /session`: the app's own logins and signed session cookie
  (`accounts.py`). Logging out also disconnects the user's hubbub connections on every node
  (`hubbub.client.api`: `disconnect`).
* `POST /hubbub/connect`: hubbub's **connect proxy**. The page opens hubbub's `/ws` without a
  ticket or token; the browser sends the app's cookie (same host, another port), hubbub passes it
  here, and the app answers who the user is, the rooms it may join and the info shown in presence.
* `POST /hubbub/publish`: the **publish proxy**. Every chat message comes here before anyone sees
  it: one with a banned word is refused (403: the sender gets `forbidden`), and the rest are
  rewritten to exactly `{"text": ...}`, so no client can forge an announcement.
* `POST /hubbub/events`: **webhooks** (`--webhook-messages`). Messages are stored (`store.py`,
  deduplicated by the event's `id`, keyed by offset), and joins and leaves logged.
* `GET /rooms/{room}/messages`: the **history** a page shows when it opens a room, from the app's
  store: the app's record is the one that lasts (hubbub's own history is bounded by
  `--history-size` and `--history-ttl`) and could be filtered by what a user may see.
* `POST /announce`: an admin's notice, published to every room with **`hubbub.client.api`** (`broadcast`).

Configuration, from the environment (the same names `hubbub serve` reads, so one shell serves both):
`HUBBUB_API_KEY`, `HUBBUB_WEBHOOK_SECRET`, `EXAMPLE_HUBBUB_NODES` (the hubbub nodes the browser may
use, comma-separated; default `http://127.0.0.1:8001,http://127.0.0.1:8002`), `EXAMPLE_HUBBUB_API`
(the node the app's backend calls; default the first of those), `EXAMPLE_SESSION_SECRET` (default:
random, so sessions end when the app restarts).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from examples.fastapi_app.accounts import COOKIE, Sessions, Users, make_user
from examples.fastapi_app.store import Seen, Store
from hubbub.auth.signing import HEADER, verify
from hubbub.client.api import ApiError, AsyncApiClient

log = logging.getLogger("example")
STATIC = Path(__file__).parent / "static"
ROOMS = ("lobby", "random")
"""The rooms of this chat: the connect proxy grants exactly these."""
BANNED = frozenset({"darn", "heck"})
"""Words the publish proxy refuses (mild ones: it is an example)."""
MAX_TEXT = 1000
"""Characters a chat message may have."""
LOGGED_OUT = 4001
"""The close code of a user's hubbub connections when they log out (4000-4999: the app's own, not retried)."""


@dataclass(frozen=True, slots=True)
class Config:
    """Where hubbub is and the secrets shared with it."""

    nodes: tuple[str, ...]
    """hubbub nodes the browser may connect to (`http://host:port`); `?node=N` on the page picks one."""
    api_url: str
    """The hubbub node the app's backend calls with `hubbub.client.api`."""
    api_key: str
    webhook_secret: str
    session_secret: bytes

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """The configuration from the environment; a missing secret ends the process with one line."""
        missing = [name for name in ("HUBBUB_API_KEY", "HUBBUB_WEBHOOK_SECRET") if not env.get(name)]
        if missing:
            sys.exit(f"examples.fastapi_app: set {' and '.join(missing)} (the values hubbub serve is given)")
        nodes = env.get("EXAMPLE_HUBBUB_NODES", "http://127.0.0.1:8001,http://127.0.0.1:8002")
        urls = tuple(url.strip().rstrip("/") for url in nodes.split(",") if url.strip())
        secret = env.get("EXAMPLE_SESSION_SECRET", "").encode() or secrets.token_bytes(32)
        return cls(
            nodes=urls,
            api_url=env.get("EXAMPLE_HUBBUB_API", urls[0]).rstrip("/"),
            api_key=env["HUBBUB_API_KEY"].split(",")[0],
            webhook_secret=env["HUBBUB_WEBHOOK_SECRET"],
            session_secret=secret,
        )


class Login(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class Announcement(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT)


def demo_users() -> Users:
    """The example's accounts (passwords in the README: a demo, not a secret). Alice may announce."""
    return Users(
        [
            make_user("alice", "Alice", "wonderland", admin=True),
            make_user("bob", "Bob", "builder"),
            make_user("carol", "Carol", "singer"),
        ]
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def refusal(message: Any) -> str | None:
    """Why the publish proxy refuses a client's message, or None to let it through."""
    if not isinstance(message, dict) or not isinstance(message.get("text"), str):
        return "a chat message is {text}"
    text: str = message["text"]
    if not text.strip() or len(text) > MAX_TEXT:
        return f"1 to {MAX_TEXT} characters"
    words = {word.strip(".,!?;:'\"()").lower() for word in text.split()}
    if words & BANNED:
        return "a banned word"
    return None


def create_app(config: Config, users: Users | None = None) -> FastAPI:
    """The example app, talking to the hubbub nodes of `config`."""
    users = users if users is not None else demo_users()
    sessions = Sessions(config.session_secret)
    store = Store()
    seen = Seen()
    hub: dict[str, AsyncApiClient] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # one API client for the app's life: it keeps its connections to hubbub alive between calls
        async with AsyncApiClient(config.api_url, config.api_key) as api:
            hub["api"] = api
            yield

    app = FastAPI(title="hubbub FastAPI example", lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def current_user(request: Request) -> str | None:
        name = sessions.user(request.cookies.get(COOKIE))
        return name if name is not None and users.get(name) is not None else None

    async def signed_json(request: Request) -> Any:
        """The body of a request from hubbub, parsed once its signature is checked; None if unsigned."""
        body = await request.body()
        if not verify(config.webhook_secret, body, request.headers.get(HEADER)):
            return None
        return json.loads(body)

    # ---- the app's own pages and session -------------------------------------------------------

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.post("/login")
    async def login(form: Login) -> Response:
        user = users.authenticate(form.username, form.password)
        if user is None:
            return _error(401, "wrong name or password")
        response = JSONResponse({"user": user.name})
        # HttpOnly: no script reads it; SameSite=Lax: no other site's form posts with it. The host's
        # cookie reaches hubbub on the same host whatever its port. Add secure=True behind https.
        response.set_cookie(
            COOKIE, sessions.cookie_value(user.name), max_age=int(sessions.ttl), httponly=True, samesite="lax"
        )
        log.info("login", extra={"user": user.name})
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        name = current_user(request)
        response = JSONResponse({})
        response.delete_cookie(COOKIE)
        if name is not None:
            try:  # the session is over on every node too: its open sockets are closed
                await hub["api"].disconnect(name, code=LOGGED_OUT, reason="logged out")
            except ApiError as exc:
                log.warning("logout.disconnect_failed", extra={"user": name, "code": exc.code})
        return response

    @app.get("/session")
    async def session(request: Request) -> Response:
        name = current_user(request)
        user = users.get(name) if name is not None else None
        if user is None:
            return _error(401, "log in first")
        return JSONResponse(
            {"user": user.name, "display": user.display, "admin": user.admin, "rooms": ROOMS, "nodes": config.nodes}
        )

    @app.get("/rooms/{room}/messages")
    async def messages(room: str, request: Request) -> Response:
        if current_user(request) is None:
            return _error(401, "log in first")
        if room not in ROOMS:
            return _error(404, "no such room")
        return JSONResponse({"room": room, "messages": store.messages(room)})

    @app.get("/activity")
    async def activity(request: Request) -> Response:
        if current_user(request) is None:
            return _error(401, "log in first")
        return JSONResponse({"activity": list(store.activity)[-20:]})

    @app.post("/announce")
    async def announce(form: Announcement, request: Request) -> Response:
        name = current_user(request)
        user = users.get(name) if name is not None else None
        if user is None:
            return _error(401, "log in first")
        if not user.admin:
            return _error(403, "only an admin may announce")
        try:
            offsets = await hub["api"].broadcast(ROOMS, {"notice": form.text, "by": user.display}, from_="app")
        except ApiError as exc:  # hubbub is down or refused: say so, the admin may try again
            return _error(503, f"hubbub did not publish it ({exc.code})")
        return JSONResponse({"offsets": offsets})

    # ---- what hubbub calls -------------------------------------------------------------------

    @app.post("/hubbub/connect")
    async def hubbub_connect(request: Request) -> Response:
        asked = await signed_json(request)
        if asked is None:
            return Response(status_code=403)
        name = sessions.user_from_cookie(asked.get("headers", {}).get("Cookie", ""))
        user = users.get(name) if name is not None else None
        if user is None:
            return Response(status_code=401)  # the handshake gets 401: log in to the app first
        return JSONResponse({"user": user.name, "rooms": ROOMS, "info": {"display": user.display}})

    @app.post("/hubbub/publish")
    async def hubbub_publish(request: Request) -> Response:
        asked = await signed_json(request)
        if asked is None:
            return Response(status_code=403)
        why = refusal(asked.get("message"))
        if why is not None:
            log.info("message.refused", extra={"user": asked.get("user"), "room": asked.get("room"), "why": why})
            return Response(status_code=403)  # the sender gets `forbidden`; nobody else sees anything
        # only {text} goes out: a client cannot slip in {"notice": ...} and pose as an announcement
        return JSONResponse({"message": {"text": asked["message"]["text"].strip()}})

    @app.post("/hubbub/events")
    async def hubbub_events(request: Request) -> Response:
        event = await signed_json(request)
        if event is None:
            return Response(status_code=401)  # hubbub gives an event refused so up at once
        if event["id"] in seen:
            return Response(status_code=200)  # a retry of one already handled: at least once, so dedupe
        kind = event["type"]
        if kind == "message":
            store.add_message(event["room"], event["offset"], event["from"], event["message"], event["sent"])
        elif kind in ("member_joined", "member_left"):
            store.add_activity(kind, event["room"], event["user"], event["time"])
            log.info(f"hubbub.{kind}", extra={"room": event["room"], "user": event["user"]})
        seen.add(event["id"])  # handled: a repeat from now on is answered without handling it again
        return Response(status_code=200)

    return app


_RECORD_FIELDS = {*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime", "taskName"}


class _KeyValues(logging.Formatter):
    """`example: event key=value ...`: the event and the fields given in `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={value}" for key, value in vars(record).items() if key not in _RECORD_FIELDS)
        return f"example: {record.getMessage()} {fields}".rstrip()


def _logging() -> None:
    """The example's own log lines on stderr (uvicorn configures only its own loggers)."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(_KeyValues())
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per call to hubbub otherwise


_served: list[FastAPI] = []


def __getattr__(name: str) -> FastAPI:
    """`app`, what `uvicorn examples.fastapi_app.app:app` serves: made from the environment when first
    asked for, so that importing this module (tests do, with `create_app`) needs no configuration."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not _served:
        _logging()
        _served.append(create_app(Config.from_env(os.environ)))
    return _served[0]
