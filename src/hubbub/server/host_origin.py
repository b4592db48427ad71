"""`HostOrigin`: the `Host` and `Origin` rules one server applies, asked by every stage and route.

It holds the names the server answers to (set once it is bound), the scheme it speaks and
`--allowed-origin`; the rules themselves are `hubbub.protocol.origins`. Each asker answers a
refusal in its own words (docs/topics/front-door.md).
"""

from __future__ import annotations

from picows import WSUpgradeRequest

from hubbub.protocol.origins import HostPolicy, origin_allowed

__all__ = ["HostOrigin"]


class HostOrigin:
    """Which `Host` and `Origin` one server accepts (docs/security.md)."""

    def __init__(self, scheme: str, allowed_origins: tuple[str, ...]) -> None:
        self.scheme = scheme
        """What the server speaks; a same-host `Origin` must have this scheme (`https` with TLS)."""
        self.allowed_origins = allowed_origins
        self.hosts = HostPolicy(None)
        """Which `Host` headers are answered; set from the bound addresses when the server starts."""

    def host_ok(self, request: WSUpgradeRequest, target_authority: str) -> bool:
        """Whether the request is for a name this server answers to: its one `Host` header, and
        the authority of an absolute-form target (`GET http://name/ws`) when there is one."""
        if self.hosts.names is None:
            return True
        hosts = request.headers.getall("Host", [])
        if len(hosts) != 1 or not self.hosts.allows(hosts[0]):
            return False
        return not target_authority or self.hosts.allows(target_authority)

    def origin_ok(self, request: WSUpgradeRequest) -> bool:
        """Whether picows' request comes from no browser page, or from one that may open `/ws`."""
        headers = request.headers
        origins = headers.getall("Origin", [])
        if len(origins) > 1:
            return False
        return origin_allowed(origins[0] if origins else None, headers.get("Host"), self.allowed_origins, self.scheme)

    def allows(self, headers: dict[str, list[str]]) -> bool:
        """A request read below picows (lowercased header names) under the rules of `/ws`: a `Host`
        this server answers, and a same-host or allowed `Origin` (or none)."""
        hosts = headers.get("host", [])
        if self.hosts.names is not None and (len(hosts) != 1 or not self.hosts.allows(hosts[0])):
            return False
        origins = headers.get("origin", [])
        if len(origins) > 1:
            return False
        return origin_allowed(
            origins[0] if origins else None, hosts[0] if hosts else None, self.allowed_origins, self.scheme
        )
