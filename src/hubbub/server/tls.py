"""TLS for the one port: the server's `ssl.SSLContext`.

hubbub speaks TLS itself when given `--tls-cert` and `--tls-key`: the same
port then serves `https://` and `wss://`, every route included. The context
is built once, at start-up, so that a missing file or a key that does not
match its certificate is a one-line error (exit 2) before anything listens.
The messages name the files and never their content: the key is a secret.
"""

from __future__ import annotations

import ssl

from hubbub.errors import ConfigError

TLS_HANDSHAKE_TIMEOUT = 10.0
"""Seconds an accepted socket has to finish its TLS handshake before it is closed (its
place under the caps is held meanwhile); the HTTP request then has picows' own 10 s."""


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
