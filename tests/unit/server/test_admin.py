"""The admin dashboard's cookie (`hubbub.server.admin`): `Secure` under TLS, never without."""

from __future__ import annotations

from hubbub.auth.admin_sessions import AdminGate, AdminSession
from hubbub.core.hub import Hub
from hubbub.server.admin import AdminRoutes, _entry
from hubbub.server.admin_stats import AdminStats


def _routes(scheme: str) -> AdminRoutes:
    hub = Hub()
    return AdminRoutes(hub, AdminGate("correct-horse-battery"), AdminStats(hub), scheme, lambda head: True)


def test_the_cookie_is_secure_under_tls_or_behind_a_tls_proxy() -> None:
    """`Secure` when hubbub speaks TLS, or when the session logged in from an `https://` page (a
    TLS-terminating proxy in front); never else."""
    for scheme, over_https, secure in (
        ("https", False, True),
        ("http", True, True),
        ("http", False, False),
    ):
        routes = _routes(scheme)
        found = AdminSession("n", 0, 0, over_https)
        for cookie in (routes._cookie("v1.x", found), routes._clear(found)):
            parts = [part.strip() for part in cookie.split(";")]
            assert ("Secure" in parts) is secure
            assert {"HttpOnly", "SameSite=Strict", "Path=/admin"} <= set(parts)


async def test_the_sampler_reads_the_counters_the_node_keeps() -> None:
    clock = [1000.0]
    hub = Hub()
    stats = AdminStats(hub, clock=lambda: clock[0])
    await stats.tick()
    metrics = hub.metrics
    metrics.received.inc(10)
    metrics.delivered.inc(40)
    metrics.slow_dropped.inc(2)
    metrics.errors.labels("rate_limited").inc(3)
    metrics.errors.labels("bad_json").inc(5)  # not a rate limit
    clock[0] += 2.0
    await stats.tick()
    local = stats.local
    assert local is not None
    assert (local.received, local.delivered, local.slow_dropped, local.rate_limited) == (10, 40, 2, 3)
    assert (local.in_rate, local.out_rate, local.slow_rate, local.limited_rate) == (5.0, 20.0, 1.0, 1.5)
    assert local.rss > 0 and local.node == hub.node_id
    assert len(stats.series) == 2 and stats.series[-1][2:4] == (5.0, 20.0)
    assert b'"in_rate":5.0' in stats.encoded  # what every dashboard is answered


def test_a_presence_key_gives_node_connection_and_since() -> None:
    assert _entry("node-a:17:1800000000") == ("node-a", 17, 1800000000.0)
    assert _entry("a:b:17:1800000000") == ("a:b", 17, 1800000000.0)  # a node id with a colon
    assert _entry("node-a:17") == ("node-a", 17, None)  # a node of an older version
