"""`Host` and `Origin` at the door: DNS rebinding, scheme and port, the allowlists, every route.

The origin rule is the textbook's too: the tests that take `any_server` or `make_any_server` run
against both servers. The `Host` rule (DNS rebinding) is hubbub's alone.
"""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from hubbub.core.settings import Settings
from hubbub.errors import ConfigError
from hubbub.protocol.origins import HostPolicy, parse_authority, parse_origin
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import EventClient
from tests.integration.conftest import AnyServerFactory, Running

UPGRADE = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
]


async def status_of(
    port: int, path: str = "/ws", headers: list[tuple[str, str]] | None = None, target: str | None = None
) -> int:
    """Send one request with exactly these headers (no Host unless given); return the status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"GET {target or path} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in headers or []]
        if path in ("/ws", "/echo"):
            key = base64.b64encode(os.urandom(16)).decode()
            lines += [f"{k}: {v}" for k, v in [*UPGRADE, ("Sec-WebSocket-Key", key)]]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return int(head.split()[1])
    finally:
        writer.close()


def rejected(server: Server, reason: str) -> float:
    value: float = server.hub.metrics.handshakes_rejected.labels(reason)._value.get()
    return value


async def test_dns_rebinding_pair_is_refused(server: Server) -> None:
    """A page on evil.example rebound to 127.0.0.1: Host and Origin agree, and both name evil.example."""
    port = server.port
    evil = [("Host", f"evil.example:{port}"), ("Origin", f"http://evil.example:{port}")]
    assert await status_of(port, "/ws", evil) == 403
    assert rejected(server, "host") == 1
    assert not server.hub.connections
    good = [("Host", f"127.0.0.1:{port}"), ("Origin", f"http://127.0.0.1:{port}")]
    assert await status_of(port, "/ws", good) == 101


@pytest.mark.parametrize(
    "host",
    ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "LOCALHOST.:{port}", "localhost", "localhost:9999"],
)
async def test_loopback_names_pass_on_any_port(any_server: Running, host: str) -> None:
    """On loopback the loopback names are answered whatever the port: an SSH tunnel may forward another."""
    host = host.format(port=any_server.port)
    origin = f"http://{host}"
    assert await status_of(any_server.port, "/ws", [("Host", host), ("Origin", origin)]) == 101


@pytest.mark.parametrize("path", ["/", "/healthz", "/metrics", "/ws", "/echo", "/nothing-here"])
async def test_every_route_checks_host(make_server: ServerFactory, path: str) -> None:
    server = await make_server(echo=True)
    port = server.port
    assert await status_of(port, path, [("Host", f"evil.example:{port}")]) == 403
    assert await status_of(port, path, []) == 403  # no Host at all
    assert await status_of(port, path, [("Host", f"127.0.0.1:{port}"), ("Host", "evil.example")]) == 403
    # an absolute-form target names its own host, and it must be ours too
    assert await status_of(port, path, [("Host", f"127.0.0.1:{port}")], f"http://evil.example{path}") == 403
    expected = {"/ws": 101, "/echo": 101, "/nothing-here": 404}.get(path, 200)
    assert await status_of(port, path, [("Host", f"127.0.0.1:{port}")]) == expected
    assert rejected(server, "host") == 4


async def test_origin_must_match_scheme_host_and_port(any_server: Running) -> None:
    port = any_server.port
    host = [("Host", f"127.0.0.1:{port}")]
    for origin in (f"https://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}", "http://127.0.0.1", "null"):
        assert await status_of(port, "/ws", [*host, ("Origin", origin)]) == 403, origin
    assert await status_of(port, "/ws", [*host, ("Origin", f"http://127.0.0.1:{port}"), ("Origin", "null")]) == 403
    if any_server.hub is not None:  # hubbub counts refusals by reason in its metrics
        assert any_server.hub.metrics.handshakes_rejected.labels("origin")._value.get() == 5
    assert await status_of(port, "/ws", [*host, ("Origin", f"HTTP://127.0.0.1:{port}")]) == 101
    # Host without a port is port 80 for http, and so is an Origin without one
    for origin in ("http://127.0.0.1", "http://127.0.0.1:80"):
        assert await status_of(port, "/ws", [("Host", "127.0.0.1"), ("Origin", origin)]) == 101


async def test_allowlist_is_compared_normalized(make_any_server: AnyServerFactory) -> None:
    server = await make_any_server(allowed_origins=("HTTPS://Chat.Example.com:443/", "http://dev.example:80"))
    port = server.port
    host = [("Host", f"127.0.0.1:{port}")]
    for origin in ("https://chat.example.com", "https://CHAT.example.com:443", "http://dev.example"):
        assert await status_of(port, "/ws", [*host, ("Origin", origin)]) == 101, origin
    for origin in (
        "http://chat.example.com",  # wrong scheme
        "https://chat.example.com:8443",  # wrong port
        "https://chat.example.com.evil",
        "https://chat.example.com/",  # a browser never sends a path: not an origin
        f"http://127.0.0.1:{port}",  # the list replaces the same-host default
    ):
        assert await status_of(port, "/ws", [*host, ("Origin", origin)]) == 403, origin


async def test_allowed_host_behind_a_tls_proxy(make_server: ServerFactory) -> None:
    """The documented reverse-proxy setup: the proxy forwards the public name over plain HTTP."""
    server = await make_server(allowed_origins=("https://chat.example.com",), allowed_hosts=("chat.example.com",))
    port = server.port
    browser = [("Host", "chat.example.com"), ("Origin", "https://chat.example.com")]
    assert await status_of(port, "/ws", browser) == 101
    assert await status_of(port, "/healthz", [("Host", "chat.example.com")]) == 200
    # the list replaces the loopback default
    assert await status_of(port, "/healthz", [("Host", f"127.0.0.1:{port}")]) == 403
    pinned = await make_server(allowed_hosts=("chat.example.com:8443",))
    assert await status_of(pinned.port, "/healthz", [("Host", "chat.example.com:8443")]) == 200
    assert await status_of(pinned.port, "/healthz", [("Host", "chat.example.com")]) == 403


async def test_a_good_websocket_client_is_unaffected(any_server: Running) -> None:
    client = await EventClient.open(any_server.url(), origin=f"http://127.0.0.1:{any_server.port}")
    await client.join("lobby")
    await client.close()


def test_host_policy_defaults() -> None:
    loopback = HostPolicy.for_listener((), ["127.0.0.1"], "127.0.0.1")
    assert loopback.allows("localhost:1") and loopback.allows("[::1]") and loopback.allows("127.0.0.1:8000")
    assert not loopback.allows("127.0.0.2") and not loopback.allows("evil.example") and not loopback.allows(None)
    assert HostPolicy.for_listener((), ["127.0.0.2"], "127.0.0.2").allows("127.0.0.2:80")
    assert HostPolicy.for_listener((), ["::1"], "localhost").allows("localhost")
    # not loopback: we cannot know our public names, so any Host passes
    for bound in (["0.0.0.0"], ["192.0.2.7"], ["127.0.0.1", "::"]):
        assert HostPolicy.for_listener((), bound, "").allows("anything.example")
    listed = HostPolicy.for_listener(("Chat.Example.com.", "[2001:db8::1]:8080"), ["0.0.0.0"], "")
    assert listed.allows("chat.example.com") and listed.allows("CHAT.example.com:9")
    assert listed.allows("[2001:db8::1]:8080") and not listed.allows("[2001:db8::1]")
    assert not listed.allows("chat.example.com.evil") and not listed.allows("chat.example.com:x")


def test_parsing() -> None:
    assert parse_authority("Example.COM.:080") == ("example.com", 80)
    assert parse_authority("[::1]:8000") == ("::1", 8000)
    assert parse_authority("h:") == ("h", None)
    for bad in ("", ":80", "h:99999", "[::1", "[nope]:1", "h:8a", "a b", "h:80:80", "::1"):
        assert parse_authority(bad) is None, bad
    assert parse_origin("HTTPS://A.example") == ("https", "a.example", 443)
    assert parse_origin("http://a:8080") == ("http", "a", 8080)
    assert parse_origin("chrome-extension://abc") == ("chrome-extension", "abc", None)
    for bad in ("null", "a.example", "http://a/", "http://u@a", "http://a?x", "1http://a"):
        assert parse_origin(bad) is None, bad


def test_bad_allowlists_are_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="no path"):
        Settings(allowed_origins=("https://a.example/chat",))
    with pytest.raises(ConfigError, match="allowed-host"):
        Settings(allowed_hosts=("a.example/x",))
    assert Settings(allowed_origins=("https://a.example/",), allowed_hosts=("[::1]:80",))
