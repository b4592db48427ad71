"""A small client for docs/tutorial.md: connect, send each MESSAGE, print what comes back, say how it ended.

    python -m examples.learn.tutorial.say [--url URL] [--wait S] [--origin O] [--login USER:PASSWORD]
        [--post-login USER:PASSWORD] [--cafile PEM] [--silent] [--size N] [MESSAGE ...]

--login first asks GET /login (HTTP Basic) for a one-time password and connects with ?otp= (step 6),
--post-login asks hubbub's POST /login (a JSON body) instead;
--silent stops reading once connected, so no pong answers the server's pings (a half-open peer, as the
server sees it); --size sends one more message of N bytes. Lines printed: `< MESSAGE` for each one
received, then `closed: CODE REASON` or `still open`, or `refused: HTTP STATUS` for a handshake refused.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import ssl
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def one_time_password(url: str, login: str, post: bool, context: ssl.SSLContext | None) -> str:
    """Step 6's GET /login with HTTP Basic credentials, or (post) hubbub's POST /login of a JSON body."""
    where = urlsplit(url)
    scheme = "https" if where.scheme == "wss" else "http"
    user, _, password = login.partition(":")
    body = json.dumps({"username": user, "password": password}).encode() if post else None
    request = urllib.request.Request(f"{scheme}://{where.netloc}/login", data=body)
    if post:
        request.add_header("Content-Type", "application/json")
    else:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    with urllib.request.urlopen(request, context=context, timeout=30) as response:  # argon2 takes its time
        return str(json.load(response)["otp"])


async def main(args: argparse.Namespace) -> None:
    context = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    url = args.url
    if args.login or args.post_login:
        try:
            login, post = args.login or args.post_login, bool(args.post_login)
            otp = await asyncio.to_thread(one_time_password, url, login, post, context)
        except urllib.error.HTTPError as refused:
            print(f"login refused: HTTP {refused.code}", flush=True)
            return
        url += "?otp=" + otp
    headers = {"Origin": args.origin} if args.origin else None
    try:
        ws = await connect(url, ssl=context, additional_headers=headers, ping_interval=None, max_size=None)
    except InvalidStatus as refused:
        print(f"refused: HTTP {refused.response.status_code}", flush=True)
        return
    messages = [*args.message, *(["x" * args.size] if args.size else [])]
    with contextlib.suppress(ConnectionClosed):
        for message in messages:
            await ws.send(message)
    if args.silent:
        ws.transport.pause_reading()  # nothing read: the server's pings go unanswered
        await asyncio.sleep(args.wait)
        ws.transport.resume_reading()
        await asyncio.sleep(0.2)  # let what arrived meanwhile (the close, if any) be read
    else:
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            async with asyncio.timeout(args.wait):
                async for received in ws:
                    print(f"< {received!s}", flush=True)
    if ws.close_code is None:
        print("still open", flush=True)
        await ws.close()
    else:
        print(f"closed: {ws.close_code} {ws.close_reason}".rstrip(), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("message", nargs="*")
    parser.add_argument("--url", default="ws://127.0.0.1:8080/ws")
    parser.add_argument("--wait", type=float, default=1.0, help="seconds to listen after sending")
    parser.add_argument("--origin", help="the Origin header, as a browser page from that origin sends it")
    parser.add_argument("--login", metavar="USER:PASSWORD", help="GET /login for a one-time password first")
    parser.add_argument("--post-login", metavar="USER:PASSWORD", help="POST /login (hubbub's) instead")
    parser.add_argument("--cafile", help="a PEM certificate to trust (a self-signed server's)")
    parser.add_argument("--silent", action="store_true", help="read nothing once connected: no pongs")
    parser.add_argument("--size", type=int, default=0, help="send one more message of N bytes")
    asyncio.run(main(parser.parse_args()))
