"""Signatures on what hubbub sends to an application: webhooks and proxy requests.

The receiver must be able to tell that a request came from its hubbub and was
not altered: each body is signed with HMAC-SHA256 under a secret the two share,
and the signature travels in one header, `X-Hubbub-Signature: sha256=<hex>`
(the form GitHub and Pusher-style webhooks use, so existing verifiers work).
The receiver recomputes it over the raw body and compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Hubbub-Signature"
"""The header that carries a body's signature."""
_SCHEME = "sha256="


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, body: bytes) -> str:
    """The header value for `body`: `sha256=` and the hex HMAC-SHA256 of the body under `secret`."""
    return _SCHEME + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` under `secret`, compared in constant time."""
    if header is None or not header.startswith(_SCHEME):
        return False
    # as bytes: `compare_digest` raises TypeError on a str past ASCII, and the header is anyone's text
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode("utf-8", "surrogatepass"))
