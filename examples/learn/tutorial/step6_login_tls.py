"""Step 6: a one-time password to connect, and TLS (the Go tutorial's OTP login and ListenAndServeTLS).

Step 5's server, plus:

- a login: `GET /login` with HTTP Basic credentials answers `{"otp": ...}`, a one-time password
  (the tutorial's `RetentionMap`): good for 5 seconds, spent by the first connection that shows it,
  `ws://.../ws?otp=...`; a connection without a good one gets 401. The login's name is then the
  `from` of its messages, whatever the client says. The tutorial's user: `percy`, password `123`.
  (`websockets` serves GET only, so the login is a GET with the credentials in its header, not the
  tutorial's POST of a JSON body; hubbub takes the POST: docs/tutorial.md, Part 2.)
- TLS: with --tls-cert and --tls-key, https and wss on the one port (`ListenAndServeTLS`).

    python -m examples.learn.tutorial.step6_login_tls --port 8080 --tls-cert server.pem --tls-key server.key
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hmac
import http
import json
import secrets
import ssl
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from examples.learn.tutorial.step4_events import EventClient, EventManager
from examples.learn.tutorial.step5_hardened import flags, rules

USERS = {"percy": "123"}  # the tutorial's one user; a real server keeps password hashes (hubbub: --users)
OTP_TTL = 5.0


class LoginManager(EventManager):
    def __init__(self, egress: int) -> None:
        super().__init__(egress)
        self.otps: dict[str, tuple[str, float]] = {}  # otp -> (user, expiry): the tutorial's RetentionMap

    def check_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Before the handshake: answer /login; let /ws in only with a good one-time password."""
        url = urlsplit(request.path)
        now = time.monotonic()
        self.otps = {otp: held for otp, held in self.otps.items() if held[1] > now}  # forget the expired
        if url.path == "/login":
            user = self.user_of(request.headers.get("Authorization", ""))
            if user is None:
                return ws.respond(http.HTTPStatus.UNAUTHORIZED, "bad username or password\n")
            otp = secrets.token_urlsafe(16)
            self.otps[otp] = (user, now + OTP_TTL)
            response = ws.respond(http.HTTPStatus.OK, json.dumps({"otp": otp}) + "\n")
            response.headers["Content-Type"] = "application/json"
            return response
        held = self.otps.pop(parse_qs(url.query).get("otp", [""])[0], None)  # spent, good or not
        if held is None:
            return ws.respond(http.HTTPStatus.UNAUTHORIZED, "a one-time password is required: GET /login\n")
        ws.username = held[0]
        return None  # go on with the handshake

    @staticmethod
    def user_of(authorization: str) -> str | None:
        scheme, _, encoded = authorization.partition(" ")
        with contextlib.suppress(ValueError):
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
            if scheme.lower() == "basic" and hmac.compare_digest(USERS.get(user, "\0"), password):
                return user
        return None

    def sender_of(self, client: EventClient, payload: dict[str, Any]) -> str:
        return str(client.ws.username)  # who logged in, not who the client says it is


async def main(args: argparse.Namespace) -> None:
    manager, context = LoginManager(256), None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    options = {**rules(args), "process_request": manager.check_request, "ssl": context, "compression": None}
    async with serve(manager.serve_ws, "127.0.0.1", args.port, **options):
        print(f"listening on {'wss' if context else 'ws'}://127.0.0.1:{args.port}/ws", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    parser = flags(argparse.ArgumentParser())
    parser.add_argument("--tls-cert", help="a PEM certificate (chain): serve https and wss")
    parser.add_argument("--tls-key", help="its PEM private key")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args()))
