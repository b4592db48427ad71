"""The client's TLS: an `ssl.SSLContext` that verifies the hub, against the system's CAs or a given one."""

from __future__ import annotations

import ssl

from hubbub.errors import ConfigError

__all__ = ["client_context"]


def client_context(ca: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the server: against the system's CAs, or only `ca` (a PEM
    file, e.g. a self-signed certificate) when given. `ConfigError` when `ca` cannot be used."""
    if ca is None:
        return ssl.create_default_context()
    try:
        with open(ca, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"--ca: cannot read {ca}: {exc.strerror or exc}") from None
    try:
        return ssl.create_default_context(cafile=ca)
    except ssl.SSLError as exc:
        raise ConfigError(f"--ca {ca}: not a PEM certificate ({exc.reason or 'not usable'})") from None
