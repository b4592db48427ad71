"""One attempt to open a hub's WebSocket, and why it failed: worth another try (`_Retry`) or final.

`hubbub.client.client` keeps a connection alive by dialling again; whether to go on
depends on the failure. A refused TCP connection, silence, a full hub (429,
503) can pass: `_Retry`, with the reason in words, within the time the client
allows. A handshake refused with another status (`HandshakeRefused`), a
certificate that is not trusted, TLS against a plain server, a mistake in the
arguments cannot: they are raised as they are.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping
from ssl import SSLCertVerificationError, SSLContext, SSLError
from urllib.parse import urlsplit

from picows import WSHandshakeError, WSListener, WSTransport, ws_connect

from hubbub.client.errors import RETRIED_STATUSES, HandshakeRefused
from hubbub.protocol.codes import CloseCode
from hubbub.protocol.redaction import redact, redact_secrets


class _Retry(Exception):
    """One attempt failed in a way that may pass: try again within the time allowed."""

    def __init__(self, reason: str, status: int | None = None, body: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        """The HTTP status the hub answered (429, 503...), None when it did not answer one."""
        self.body = body


def closed_by_hub(code: int) -> str:
    """The reason a person reads when the hub closes the connection with `code`."""
    try:
        name = CloseCode(code).name.lower().replace("_", " ")
    except ValueError:
        name = "an application's code"
    return f"the hub closed the connection ({code}: {name})"


def where(url: str) -> str:
    """The hub's address for messages: never the query, which may hold a ticket or token, nor a
    password in the URL."""
    parts = urlsplit(url)
    return redact(f"{parts.scheme}://{parts.netloc}{parts.path}")


def refusal_body(exc: WSHandshakeError) -> str:
    """The first line of a refused handshake's plain-text body (the hub's reason, at most 200
    printable characters), or "" when there is none or it is not text/plain (a page, JSON...)."""
    response = exc.response
    raw = exc.raw_body or (response.body if response is not None else None) or b""
    kind = response.headers.get("Content-Type", "") if response is not None and response.headers else ""
    if not raw or not kind.lower().startswith("text/plain"):
        return ""
    text = bytes(raw).decode("utf-8", "replace").strip()
    line = text.splitlines()[0] if text else ""
    return "".join(c for c in line if c.isprintable())[:200]


async def dial(
    listener: Callable[[], WSListener],
    url: str,
    ssl: SSLContext | None,
    timeout: float,  # noqa: ASYNC109
    ping: tuple[float, float],
    headers: Mapping[str, str] | None = None,
) -> WSTransport:
    """Open `url` within `timeout` seconds (TCP, TLS and the handshake), pinging after `ping[0]`
    seconds of silence and dropping a hub that does not answer within `ping[1]`; `headers` are
    added to the handshake (a Cookie or Authorization for an application's connect proxy)."""
    try:
        async with asyncio.timeout(max(timeout, 0.001)):
            transport, _ = await ws_connect(
                listener,
                url,
                ssl_context=ssl,
                websocket_handshake_timeout=max(timeout, 0.001),
                enable_auto_ping=True,
                auto_ping_idle_timeout=ping[0],
                auto_ping_reply_timeout=ping[1],
                extra_headers=dict(headers) if headers else None,
            )
    except WSHandshakeError as exc:
        status = int(exc.response.status) if exc.response is not None else 0
        body = refusal_body(exc)
        if status in RETRIED_STATUSES or status == 0:
            raise _Retry(f"HTTP {status}", status or None, body) from None
        raise HandshakeRefused(status, body) from None
    except SSLCertVerificationError as exc:  # the server is not who the URL says: retrying cannot help
        raise ConnectionRefusedError(f"the hub's TLS certificate is not trusted: {exc.verify_message}") from None
    except SSLError as exc:
        raise ConnectionRefusedError(
            f"TLS with {where(url)} failed ({exc.reason or exc}): is it a ws:// (not wss://) server?"
        ) from None
    except TimeoutError:
        hint = " (does the server speak TLS? wss:// needs --tls-cert)" if ssl is not None else ""
        raise _Retry(f"no answer within {timeout:g} s{hint}") from None
    except socket.gaierror as exc:  # the name does not resolve (now): a DNS hiccup may pass, so retried
        host = urlsplit(url).hostname
        raise _Retry(f"the host name {host} was not found ({exc.strerror or exc})") from None
    except OSError as exc:  # uvloop's "Connect call failed" carries the errno, not its words
        raise _Retry(os.strerror(exc.errno) if exc.errno else str(exc)) from None
    except (ValueError, TypeError):  # a mistake in the arguments: no retry can mend it
        raise
    except Exception as exc:  # picows' own errors (a connection closed during the handshake...)
        raise _Retry(redact_secrets(str(exc)) or type(exc).__name__) from None
    return transport
