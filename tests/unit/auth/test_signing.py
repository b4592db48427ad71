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


def test_verify_refuses_a_header_past_ascii_without_raising() -> None:
    """An app's framework hands the header as latin-1 text; `hmac.compare_digest` raises TypeError on a
    str past ASCII, which would make a forged header a 500 instead of a refusal."""
    body = b"{}"
    good = sign("k", body)
    assert not verify("k", body, good[:-1] + "\xe9")
    assert not verify("k", body, "sha256=\udcff")
