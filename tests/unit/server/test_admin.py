"""The admin dashboard's cookie (`hubbub.server.admin`): `Secure` under TLS, never without."""

from __future__ import annotations

from hubbub.auth.admin_sessions import AdminGate
from hubbub.core.hub import Hub
from hubbub.server.admin import AdminRoutes
from hubbub.server.admin_stats import AdminStats


def _routes(scheme: str) -> AdminRoutes:
    hub = Hub()
    return AdminRoutes(hub, AdminGate("correct-horse-battery"), AdminStats(hub), scheme, lambda head: True)


def test_the_cookie_is_secure_under_tls() -> None:
    for scheme, secure in (("https", True), ("http", False)):
        routes = _routes(scheme)
        for cookie in (routes._cookie("v1.x", 0), routes._clear()):
            parts = [part.strip() for part in cookie.split(";")]
            assert ("Secure" in parts) is secure
            assert {"HttpOnly", "SameSite=Strict", "Path=/admin"} <= set(parts)
