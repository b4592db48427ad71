"""TLS for the one port: the server's `ssl.SSLContext`.

hubbub speaks TLS itself when given `--tls-cert` and `--tls-key`: the same
port then serves `https://` and `wss://`, every route included. The context
is built once, at start-up, so that a missing file or a key that does not
match its certificate is a one-line error (exit 2) before anything listens.
The messages name the files and never their content: the key is a secret.

What a handshake costs, and what bounds it (`HandshakeBounds`, enforced by the
listener): the private-key operation runs on the event loop, about twice as long
with an RSA-2048 key as with an ECDSA P-256 one (prefer EC certificates); each
handshake in progress holds about 60 KB of OpenSSL and uvloop state. TLS 1.3
session tickets are on (Python's default: two per handshake, stateless), so a
returning browser skips the certificate signature.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hubbub.errors import ConfigError

if TYPE_CHECKING:
    from hubbub.core.settings import Settings


@dataclass(frozen=True, slots=True)
class HandshakeBounds:
    """How many TLS handshakes may be in progress, in all and per address, and for how long each.

    The time counts from the accept; the socket's place under the caps is held meanwhile, and the
    HTTP request then has picows' own 10 s.
    """

    total: int
    per_ip: int
    timeout: float
    evict_after: float = 1.0
    """With every place taken, a new socket takes the place of the oldest handshake if that one has
    run this long: an honest handshake takes two round trips, so a crowd of sockets that never finish
    must be renewed this often to keep new clients out, not once per `timeout`."""

    @classmethod
    def of(cls, settings: Settings) -> HandshakeBounds:
        """`--max-tls-handshakes`, `--max-tls-handshakes-per-ip`, `--tls-handshake-timeout`."""
        return cls(settings.max_tls_handshakes, settings.max_tls_handshakes_per_ip, settings.tls_handshake_timeout)


def _no_passphrase() -> bytes:
    """Answer OpenSSL's passphrase prompt with nothing: an encrypted key fails at once
    instead of a server waiting on a terminal for a password."""
    return b""


def _readable(flag: str, path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context for `cert` (PEM, the chain after the leaf) and `key` (PEM, unencrypted);
    TLS 1.2 or newer. `ConfigError` with one line when either cannot be used."""
    _readable("--tls-cert", cert)
    _readable("--tls-key", key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except ssl.SSLError as exc:
        # The reason is OpenSSL's (e.g. KEY_VALUES_MISMATCH, NO_START_LINE), never the file's bytes.
        reason = exc.reason or "not usable"
        raise ConfigError(
            f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate and its unencrypted private key ({reason})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"--tls-cert / --tls-key: cannot read: {exc.strerror or exc}") from None
    return context
