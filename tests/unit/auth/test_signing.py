"""The signature of webhook and proxy bodies (hubbub.auth.signing)."""

from __future__ import annotations

import hashlib
import hmac

from hubbub.auth.signing import sign, verify


def test_sign_is_hmac_sha256_hex_with_its_scheme() -> None:
    body = b'{"type":"connected"}'
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign("s3cret", body) == expected
    assert sign(b"s3cret", body) == expected


def test_verify_accepts_its_own_and_refuses_anything_else() -> None:
    body = b"{}"
    good = sign("k", body)
    assert verify("k", body, good)
    assert not verify("other", body, good)
    assert not verify("k", b"{} ", good)
    assert not verify("k", body, None)
    assert not verify("k", body, good.removeprefix("sha256="))
    assert not verify("k", body, "sha1=" + good[7:])
