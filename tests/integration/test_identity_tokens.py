"""An identity provider's tokens on real sockets: `--auth-jwks-url` against a local JWKS server,
`--auth-public-key`, the claims flags, the refusals, and a hostile or absent provider.

`JwksServer` is the provider: a loopback HTTP server that answers each request with what the test
says (a key set, a status, a trickle, a gigabyte, a redirect, silence) and counts the requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from hubbub.auth import jwks as jwks_module
from hubbub.auth.logins import mint_token
from hubbub.server.key_hold import KeyHold
from hubbub.server.server import Server
from tests.conftest import ServerFactory
from tests.helpers import EventClient, eventually, ws_url

SECRET = "identity-test-secret-" + "k" * 32
Chunks = AsyncIterator[bytes]
Answer = Callable[[], bytes | Chunks]

# ---- keys and tokens --------------------------------------------------------------------------


@cache
def private_key(kind: str) -> Any:
    """One private key per kind, made once per run (an RSA key takes a while)."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "rsa-other":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    assert kind == "ed25519"
    return ed25519.Ed25519PrivateKey.generate()


KIND = {
    "RS256": "rsa",
    "RS384": "rsa",
    "RS512": "rsa",
    "PS256": "rsa",
    "ES256": "p256",
    "ES384": "p384",
    "EdDSA": "ed25519",
}
"""The key kind each algorithm signs with."""


def jwk(kind: str, kid: str) -> dict[str, Any]:
    """The public JWK of `kind`'s key, named `kid`."""
    public = private_key(kind).public_key()
    if kind.startswith("rsa"):
        data = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    elif kind == "ed25519":
        data = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    else:
        data = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    return {**data, "kid": kid, "use": "sig"}


def key_set(*keys: tuple[str, str]) -> bytes:
    """A JWKS of (kind, kid) pairs."""
    return msgspec.json.encode({"keys": [jwk(kind, kid) for kind, kid in keys]})


ALL_KEYS = key_set(("rsa", "rsa-1"), ("p256", "p256-1"), ("p384", "p384-1"), ("ed25519", "ed-1"))
KID = {"rsa": "rsa-1", "p256": "p256-1", "p384": "p384-1", "ed25519": "ed-1"}


def public_pem(kind: str) -> bytes:
    return bytes(
        private_key(kind)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def sign(alg: str = "RS256", kid: str | None = "", life: float = 60, kind: str = "", **claims: Any) -> str:
    """A token of `alg`, signed with its kind's key, naming `kid` ("" : the kind's own; None: none)."""
    kind = kind or KIND[alg]
    headers = {} if kid is None else {"kid": kid or KID[kind]}
    body = {"sub": "alice", "exp": int(time.time() + life), **claims}
    return jwt.encode(body, private_key(kind), algorithm=alg, headers=headers)


# ---- the provider -----------------------------------------------------------------------------


def answer(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}"
    return (head + "Connection: close\r\n\r\n").encode() + body


async def trickled(data: bytes, every: float) -> Chunks:
    for n in range(len(data)):
        yield data[n : n + 1]
        await asyncio.sleep(every)


async def endless() -> Chunks:
    """A 200 that streams a gigabyte as fast as it is read (no Content-Length: read to the end)."""
    yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
    block = b" " * 65536
    for _ in range(2**30 // len(block)):
        yield block


async def silence() -> Chunks:
    await asyncio.sleep(3600)
    yield b""


class JwksServer:
    """A loopback identity provider: each GET gets `answer()`; `requests` counts them."""

    def __init__(self, body: bytes = ALL_KEYS, extra: str = "") -> None:
        self.answer: Answer = lambda: answer(body, extra=extra)
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def serve(self, body: bytes, extra: str = "") -> None:
        """Answer `body` from now on."""
        self.answer = lambda: answer(body, extra=extra)

    async def __aenter__(self) -> JwksServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/.well-known/jwks.json"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            answered = self.answer()
            if isinstance(answered, bytes):
                writer.write(answered)
            else:
                async for chunk in answered:
                    writer.write(chunk)
                    await writer.drain()
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def provider() -> AsyncIterator[JwksServer]:
    async with JwksServer() as server:
        yield server


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounds short enough for a test: a fetch may take 1 s, and may follow another after 0.3 s."""
    monkeypatch.setattr(jwks_module, "FETCH_TIMEOUT", 1.0)
    monkeypatch.setattr(jwks_module, "MIN_INTERVAL", 0.3)


async def jwks_server(make_server: ServerFactory, provider: JwksServer, **overrides: Any) -> Server:
    server: Server = await make_server(auth_jwks_url=provider.url(), **overrides)
    return server


async def status_of(url: str, **kwargs: Any) -> int:
    """The handshake's status: 101 when it connects."""
    try:
        async with connect(url, open_timeout=10, **kwargs):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def identity(server: Server, token: str) -> str:
    """The name a client connected with `token` gets, as its own message shows it."""
    client = await EventClient.open(ws_url(server, query=f"token={token}&name=mallory"))
    try:
        await client.join("lobby")
        await client.request("send_message", {"room": "lobby", "message": "hi", "from": "mallory"})
        return str((await client.recv_type("new_message"))["payload"]["from"])
    finally:
        await client.close()


# ---- what is accepted -------------------------------------------------------------------------


@pytest.mark.parametrize("alg", list(KIND))
async def test_each_algorithm_of_a_jwks_connects_as_the_tokens_sub(
    make_server: ServerFactory, provider: JwksServer, alg: str
) -> None:
    server = await jwks_server(make_server, provider)
    assert await identity(server, sign(alg)) == "alice"


async def test_the_subprotocol_carries_a_providers_token_too(make_server: ServerFactory, provider: JwksServer) -> None:
    server = await jwks_server(make_server, provider)
    offer = [Subprotocol("hubbub"), Subprotocol(f"hubbub.token.{sign('ES256')}")]
    async with connect(ws_url(server), subprotocols=offer) as ws:
        assert ws.subprotocol == "hubbub"


async def test_user_and_rooms_claims_are_the_configured_ones_for_every_token_kind(
    make_server: ServerFactory, provider: JwksServer
) -> None:
    server = await jwks_server(
        make_server, provider, auth_secret=SECRET, auth_user_claim="email", auth_rooms_claim="hubbub_rooms"
    )
    provider_token = sign("RS256", email="alice@example.com", hubbub_rooms=["team-*"], rooms=["lobby"])
    assert await identity(server, sign("RS256", email="alice@example.com")) == "alice@example.com"
    client = await EventClient.open(ws_url(server, query=f"token={provider_token}"))
    assert (await client.request("join_room", {"room": "team-red"}))["type"] == "ack"
    assert (await client.request("join_room", {"room": "lobby"}))["payload"]["code"] == "forbidden"
    await client.close()
    # hubbub's own HS256 token is read with the same claims; one without the user claim is refused
    own = jwt.encode({"email": "bob@example.com", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert await identity(server, own) == "bob@example.com"
    assert await status_of(ws_url(server, query=f"token={sign('RS256')}")) == 401  # `sub` but no `email`


async def test_a_secret_and_a_jwks_together_each_verify_their_own_kind(
    make_server: ServerFactory, provider: JwksServer
) -> None:
    server = await jwks_server(make_server, provider, auth_secret=SECRET, auth_audience="hub", auth_issuer="idp")
    assert await identity(server, mint_token(SECRET, "bob", 60, audience="hub", issuer="idp")) == "bob"
    assert await identity(server, sign("ES384", aud="hub", iss="idp")) == "alice"


@pytest.mark.parametrize("kind", ["rsa", "p256", "ed25519"])
async def test_a_pem_public_key_verifies_the_algorithms_of_its_type(
    make_server: ServerFactory, tmp_path: Path, kind: str
) -> None:
    pem = tmp_path / "key.pem"
    pem.write_bytes(public_pem(kind))
    server = await make_server(auth_public_key=str(pem))
    for alg in (a for a, k in KIND.items() if k == kind):
        assert await identity(server, sign(alg, kid="any-kid")) == "alice", alg
        assert await identity(server, sign(alg, kid=None)) == "alice", alg
    other = "ES256" if kind != "p256" else "EdDSA"
    assert await status_of(ws_url(server, query=f"token={sign(other)}")) == 401  # the key's type decides


async def test_get_login_and_a_credential_less_handshake_see_a_jwks_as_auth_on(
    make_server: ServerFactory, provider: JwksServer
) -> None:
    server = await jwks_server(make_server, provider)
    async with httpx.AsyncClient() as http:
        mode = (await http.get(f"http://127.0.0.1:{server.port}/login")).json()
    assert mode == {"login": False, "token": True, "anonymous": False}
    assert await status_of(ws_url(server)) == 401
    open_server = await jwks_server(make_server, provider, allow_anonymous=True)
    assert await status_of(ws_url(open_server, query="name=guest")) == 101


# ---- what is refused --------------------------------------------------------------------------


def _unsigned() -> str:
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT","kid":"rsa-1"}').decode()
    claims = jwt.utils.base64url_encode(f'{{"sub":"alice","exp":{int(time.time()) + 60}}}'.encode()).decode()
    return f"{header}.{claims}."


def _confused() -> str:
    """HS256, with the provider's public key (as its PEM) for the HMAC secret: algorithm confusion."""
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT","kid":"rsa-1"}')
    body = jwt.utils.base64url_encode(msgspec.json.encode({"sub": "alice", "exp": int(time.time()) + 60}))
    signed = header + b"." + body
    signature = hmac.new(public_pem("rsa"), signed, hashlib.sha256).digest()
    return (signed + b"." + jwt.utils.base64url_encode(signature)).decode()


REFUSED: dict[str, Callable[[], str]] = {
    "alg-none": _unsigned,
    "hs256-with-the-public-key": _confused,
    "kid-not-in-the-set": lambda: sign("RS256", kid="not-there"),
    "known-kid-other-key": lambda: sign("RS256", kid="rsa-1", kind="rsa-other"),
    "alg-not-of-the-key": lambda: sign("ES256", kid="rsa-1"),
    "expired": lambda: sign("RS256", life=-60),
    "wrong-aud": lambda: sign("RS256", aud="another-api", iss="https://idp.example/"),
    "wrong-iss": lambda: sign("RS256", aud="hub", iss="https://evil.example/"),
    "no-aud": lambda: sign("RS256", iss="https://idp.example/"),
}


@pytest.mark.parametrize("with_secret", [False, True], ids=["jwks", "jwks+secret"])
@pytest.mark.parametrize("case", list(REFUSED))
async def test_refused_tokens_get_401_at_the_handshake(
    make_server: ServerFactory, provider: JwksServer, case: str, with_secret: bool
) -> None:
    extra = {"auth_secret": SECRET} if with_secret else {}
    server = await jwks_server(make_server, provider, auth_audience="hub", auth_issuer="https://idp.example/", **extra)
    good = sign("RS256", aud="hub", iss="https://idp.example/")
    assert await status_of(ws_url(server, query=f"token={good}")) == 101
    assert await status_of(ws_url(server, query=f"token={REFUSED[case]()}")) == 401


async def test_algorithm_confusion_is_refused_with_a_pem_key_too(make_server: ServerFactory, tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    pem.write_bytes(public_pem("rsa"))
    for extra in ({}, {"auth_secret": SECRET}):
        server = await make_server(auth_public_key=str(pem), **extra)
        assert await status_of(ws_url(server, query=f"token={_confused()}")) == 401
        assert await status_of(ws_url(server, query=f"token={_unsigned()}")) == 401


# ---- refresh -------------------------------------------------------------------------------------


async def test_refresh_takes_a_providers_token_for_the_same_user_claim(
    make_server: ServerFactory, provider: JwksServer
) -> None:
    server = await jwks_server(make_server, provider, auth_user_claim="email")
    first = sign("RS256", life=60, email="alice@example.com")
    client = await EventClient.open(ws_url(server, query=f"token={first}"))
    later = sign("ES256", life=600, email="alice@example.com", rooms=["team-*"])
    answer_ = await client.request("refresh", {"token": later})
    assert answer_["type"] == "ack", answer_
    other = await client.request("refresh", {"token": sign("RS256", life=900, email="mallory@example.com")})
    assert other["payload"]["code"] == "forbidden"
    assert (await client.request("join_room", {"room": "lobby"}))["payload"]["code"] == "forbidden"
    await client.close()


# ---- the cache and its refreshes ----------------------------------------------------------------


async def test_twenty_unknown_kids_in_a_row_cost_at_most_a_handful_of_fetches(
    make_server: ServerFactory, provider: JwksServer
) -> None:
    """The default interval (5 s) holds whatever clients send: each of 20 random `kid`s is 401."""
    server = await jwks_server(make_server, provider)
    assert await identity(server, sign("RS256")) == "alice"  # the first fetch is done
    for _ in range(20):
        token = sign("RS256", kid=uuid.uuid4().hex)
        assert await status_of(ws_url(server, query=f"token={token}")) == 401
    assert provider.requests <= 3, provider.requests
    assert await identity(server, sign("EdDSA")) == "alice"


async def test_a_flood_of_random_kids_at_once_costs_one_fetch_per_interval(
    make_server: ServerFactory, provider: JwksServer, quick: None
) -> None:
    server = await jwks_server(make_server, provider)
    await eventually(lambda: server.jwks is not None and server.jwks.loaded)
    start = time.monotonic()
    tokens = [sign("RS256", kid=uuid.uuid4().hex) for _ in range(200)]
    statuses = await asyncio.gather(*(status_of(ws_url(server, query=f"token={t}")) for t in tokens))
    elapsed = time.monotonic() - start
    assert set(statuses) == {401}
    assert provider.requests <= 2 + elapsed / jwks_module.MIN_INTERVAL, (provider.requests, elapsed)


async def test_a_rotated_key_is_fetched_while_its_handshake_waits(
    make_server: ServerFactory, provider: JwksServer, quick: None
) -> None:
    """The provider adds a key; the first token naming it waits for one fetch and connects."""
    provider.serve(key_set(("rsa", "rsa-1")))
    server = await jwks_server(make_server, provider)
    assert await identity(server, sign("RS256")) == "alice"
    provider.serve(key_set(("rsa", "rsa-1"), ("rsa-other", "rsa-2")))
    await asyncio.sleep(jwks_module.MIN_INTERVAL)
    before = provider.requests
    assert await identity(server, sign("RS256", kid="rsa-2", kind="rsa-other")) == "alice"
    assert provider.requests == before + 1


async def test_keys_are_refetched_when_their_max_age_ends(
    make_server: ServerFactory, provider: JwksServer, quick: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jwks_module, "MIN_TTL", 0.5)
    provider.serve(key_set(("rsa", "rsa-1")), extra="Cache-Control: public, max-age=1\r\n")
    server = await jwks_server(make_server, provider)
    await eventually(lambda: provider.requests == 1)
    provider.serve(key_set(("p256", "p256-1")), extra="Cache-Control: max-age=3600\r\n")  # rsa-1 revoked
    await eventually(lambda: provider.requests == 2, timeout=5)
    await asyncio.sleep(0.1)
    assert await status_of(ws_url(server, query=f"token={sign('ES256')}")) == 101
    await asyncio.sleep(1.5)
    assert provider.requests == 2  # the new max-age holds
    assert await status_of(ws_url(server, query=f"token={sign('RS256')}")) == 401  # no more rsa-1


async def test_a_handshake_with_a_known_kid_never_waits_on_a_hung_provider(
    make_server: ServerFactory, provider: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jwks_module, "FETCH_TIMEOUT", 30.0)
    monkeypatch.setattr(jwks_module, "MIN_INTERVAL", 0.1)
    server = await jwks_server(make_server, provider)
    assert await identity(server, sign("RS256")) == "alice"
    provider.answer = silence
    await asyncio.sleep(0.2)
    hold = asyncio.ensure_future(status_of(ws_url(server, query=f"token={sign('RS256', kid='new')}")))
    await eventually(lambda: provider.requests == 2)  # a fetch hangs now, a handshake waits on it
    start = time.monotonic()
    for alg in ("RS256", "ES256", "EdDSA"):
        assert await status_of(ws_url(server, query=f"token={sign(alg)}")) == 101
    assert time.monotonic() - start < 3.0  # the fetch hangs for 30 s
    hold.cancel()
    await asyncio.gather(hold, return_exceptions=True)


async def test_cached_keys_keep_working_while_the_provider_is_down(
    make_server: ServerFactory, provider: JwksServer, quick: None, caplog: pytest.LogCaptureFixture
) -> None:
    server = await jwks_server(make_server, provider)
    assert await identity(server, sign("ES256")) == "alice"
    provider.answer = lambda: answer(b"down", "500 Internal Server Error")
    for _ in range(3):
        await asyncio.sleep(jwks_module.MIN_INTERVAL)
        assert await status_of(ws_url(server, query=f"token={sign('RS256', kid='rotated')}")) == 401
        assert await status_of(ws_url(server, query=f"token={sign('RS256')}")) == 101
    assert provider.requests >= 3
    failed = [r for r in caplog.records if r.getMessage() == "auth.jwks_failed"]
    assert len(failed) == 1, failed  # the first failure; the next ones are counted, within LOG_EVERY
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{server.port}/metrics")).text
    assert 'hubbub_jwks_fetches_total{outcome="loaded"} 1.0' in metrics
    failures = float(metrics.split('hubbub_jwks_fetches_total{outcome="failed"} ')[1].split()[0])
    assert 3 <= failures <= provider.requests - 1, (failures, provider.requests)  # a retry may be under way
    assert "hubbub_jwks_keys 4.0" in metrics


async def test_without_any_key_a_handshake_is_503_logged_once(
    make_server: ServerFactory, provider: JwksServer, quick: None, caplog: pytest.LogCaptureFixture
) -> None:
    provider.answer = lambda: answer(b"down", "503 Service Unavailable")
    server = await jwks_server(make_server, provider)
    for _ in range(10):
        assert await status_of(ws_url(server, query=f"token={sign('RS256')}")) == 503
    assert [r.getMessage() for r in caplog.records].count("handshake.no_keys") == 1
    # hubbub's own tokens are not the provider's: a configured secret keeps working meanwhile
    both = await jwks_server(make_server, provider, auth_secret=SECRET)
    assert await identity(both, mint_token(SECRET, "bob", 60)) == "bob"
    # the provider comes back: the next fetch brings the keys
    provider.serve(ALL_KEYS)
    await eventually(lambda: server.jwks is not None and server.jwks.loaded, timeout=10)
    assert await identity(server, sign("RS256")) == "alice"


# ---- a hostile provider ---------------------------------------------------------------------------

HOSTILE: dict[str, Callable[[str], Answer]] = {
    "trickle": lambda _: lambda: trickled(answer(ALL_KEYS), 0.05),
    "1GB": lambda _: endless,
    "redirect": lambda target: lambda: answer(b"", "302 Found", f"Location: {target}\r\n"),
    "hang": lambda _: silence,
    "not-json": lambda _: lambda: answer(b"<html>sign in</html>"),
    "deep": lambda _: lambda: answer(b'{"keys": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "no-usable-key": lambda _: (
        lambda: answer(msgspec.json.encode({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "rsa-1"}]}))
    ),
    "gzip": lambda _: lambda: answer(b"\x1f\x8b" + b"\x00" * 100, extra="Content-Encoding: gzip\r\n"),
}


@pytest.mark.parametrize("hostile", list(HOSTILE))
async def test_a_hostile_provider_costs_a_bounded_fetch_and_the_handshake_gets_503(
    make_server: ServerFactory, quick: None, caplog: pytest.LogCaptureFixture, hostile: str
) -> None:
    """The JWKS trickles, streams a gigabyte, redirects (to a set that would admit the token), hangs,
    is not a key set, nests 100,000 deep, holds only a symmetric key, or comes compressed: the
    handshake waits at most the fetch timeout, gets 503, and at most the size bound is read."""
    async with JwksServer() as elsewhere, JwksServer() as provider:
        provider.answer = HOSTILE[hostile](elsewhere.url())
        tracemalloc.start()
        start = time.monotonic()
        try:
            server = await jwks_server(make_server, provider)
            status = await status_of(ws_url(server, query=f"token={sign('RS256')}"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        elapsed = time.monotonic() - start
        assert elsewhere.requests == 0  # a redirect is not followed
    assert status == 503
    assert elapsed < jwks_module.FETCH_TIMEOUT + 1.5, elapsed
    assert peak < 8 * 1024 * 1024, peak
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ---- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--auth-jwks-url", "http://idp.example/jwks"], "--auth-jwks-url must be https://"),
        (["--auth-jwks-url", "ftp://idp.example/jwks"], "--auth-jwks-url must be an https:// URL"),
        (["--auth-public-key", "/nonexistent.pem"], "--auth-public-key /nonexistent.pem: "),
        (["--auth-public-key", "/dev/null"], "not a PEM public key"),
        (
            ["--auth-jwks-url", "https://idp.example/jwks", "--auth-public-key", "/dev/null"],
            "give one",
        ),
        (["--auth-audience", "hub"], "--auth-audience and --auth-issuer need --auth-secret, --auth-jwks-url"),
        (["--auth-user-claim", ""], "--auth-user-claim must be a claim name"),
    ],
)
def test_bad_token_flags_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hubbub", "serve", "--port", "0", *args], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith("hubbub serve: "), out.stderr  # as every other bad flag says it


def _pem_files(tmp_path: Path) -> dict[str, Path]:
    """Files a user might give `--auth-public-key` by mistake: a short RSA key and private keys."""
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    texts = {
        "short": short.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "pkcs8": private_key("p256").private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        "rsa-private": short.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
        "encrypted": private_key("ed25519").private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass"),
        ),
    }
    for name, text in texts.items():
        (tmp_path / f"{name}.pem").write_bytes(text)
    return {name: tmp_path / f"{name}.pem" for name in texts}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("short", "an RSA key of 1024 bits is too short (at least 2048 bits)"),
        ("pkcs8", "this is a private key: give its public key"),
        ("rsa-private", "this is a private key: give its public key"),
        ("encrypted", "this is a private key: give its public key"),
    ],
)
def test_a_short_or_private_public_key_says_so_in_one_line_and_exit_2(tmp_path: Path, name: str, message: str) -> None:
    path = _pem_files(tmp_path)[name]
    out = subprocess.run(
        [sys.executable, "-m", "hubbub", "serve", "--port", "0", "--auth-public-key", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr == f"hubbub serve: --auth-public-key {path}: {message}" + (
        " (openssl pkey -pubout)\n" if "private" in message else "\n"
    )


async def test_a_loopback_http_jwks_and_audience_without_a_secret_are_accepted(
    make_server: ServerFactory, provider: JwksServer
) -> None:
    server = await jwks_server(make_server, provider, auth_audience="hub")
    assert await status_of(ws_url(server, query=f"token={sign('PS256', aud='hub')}")) == 101


async def test_at_most_max_waiting_handshakes_wait_for_a_fetch(
    make_server: ServerFactory, provider: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch that hangs holds at most `MAX_WAITING` handshakes; the next ones are answered at once (401),
    and a held one gets 503 when the server stops rather than silence."""
    from hubbub.server import key_hold

    monkeypatch.setattr(key_hold, "MAX_WAITING", 3)
    monkeypatch.setattr(jwks_module, "FETCH_TIMEOUT", 30.0)
    monkeypatch.setattr(jwks_module, "MIN_INTERVAL", 0.1)
    server = await jwks_server(make_server, provider)
    assert await identity(server, sign("RS256")) == "alice"
    provider.answer = silence
    await asyncio.sleep(0.2)
    held = [
        asyncio.ensure_future(status_of(ws_url(server, query=f"token={sign('RS256', kid=f'k{n}')}"))) for n in range(3)
    ]
    await eventually(lambda: server.door is not None and provider.requests == 2)
    await asyncio.sleep(0.2)
    start = time.monotonic()
    assert await status_of(ws_url(server, query=f"token={sign('RS256', kid='k4')}")) == 401
    assert time.monotonic() - start < 3.0  # the fetch hangs for 30 s
    assert not any(task.done() for task in held)
    await server.stop()
    assert await asyncio.gather(*held) == [503, 503, 503]


async def test_one_address_cannot_take_every_place_waiting_for_a_fetch(
    make_server: ServerFactory, provider: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handshakes waiting for a key set fetch are bounded per address as those waiting on the connect
    proxy are: one address holds its share (16 of 64 here); past it its handshakes are checked at once
    (401), while a client of another address is still held for the fetch that brings its key."""
    from hubbub.server import key_hold

    monkeypatch.setattr(key_hold, "MAX_WAITING", 64)
    monkeypatch.setattr(jwks_module, "FETCH_TIMEOUT", 30.0)
    monkeypatch.setattr(jwks_module, "MIN_INTERVAL", 0.1)
    server = await jwks_server(make_server, provider, max_connections_per_ip=100, max_connections=400)
    assert await identity(server, sign("RS256")) == "alice"
    provider.answer = silence
    await asyncio.sleep(0.2)
    attacker = {"local_addr": ("127.0.0.2", 0)}
    held = [
        asyncio.ensure_future(status_of(ws_url(server, query=f"token={sign('RS256', kid=f'k{n}')}"), **attacker))
        for n in range(16)
    ]
    await eventually(lambda: server.door is not None and provider.requests == 2)
    hold = key_hold_of(server)
    await eventually(lambda: hold.waiting == 16)
    start = time.monotonic()
    for n in range(16, 20):  # its share is taken: checked with the keys at hand, not held
        token = sign("RS256", kid=f"k{n}")
        assert await status_of(ws_url(server, query=f"token={token}"), **attacker) == 401
    assert time.monotonic() - start < 3.0  # the fetch hangs for 30 s
    honest = asyncio.ensure_future(status_of(ws_url(server, query=f"token={sign('RS256', kid='new')}")))
    await eventually(lambda: hold.waiting == 17)  # held, not refused
    assert not honest.done() and not any(task.done() for task in held)
    await server.stop()
    assert await asyncio.gather(*held, honest) == [503] * 17
    assert hold.waiting == 0 and hold.places.per_address == 16


def key_hold_of(server: Server) -> KeyHold:
    """The server's `KeyHold` stage (`--auth-jwks-url`), from its front door's stages."""
    assert server.door is not None
    return next(stage for stage in server.door.stages if isinstance(stage, KeyHold))


def _odd_alg_token(alg: object) -> str:
    """A token whose header's `alg` is no string (a list, an object): nothing verifies it."""
    header = msgspec.json.encode({"alg": alg, "kid": "k1", "typ": "JWT"})
    part = jwt.utils.base64url_encode(header).decode()
    return f"{part}.{jwt.utils.base64url_encode(b'{}').decode()}.AAAA"


async def _sse_status(port: int, token: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /sse?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    try:
        line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    return int(line.split(b" ")[1]) if line else 0


@pytest.mark.parametrize("kind", ["jwks", "secret"])
async def test_a_header_alg_that_is_not_a_string_is_401_not_a_traceback(
    make_server: ServerFactory, provider: JwksServer, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """`{"alg": [1]}`: `alg in ASYMMETRIC` raised TypeError (a list is unhashable) in the front door's
    key hold and in the handshake, before any signature was checked, for any client."""
    caplog.set_level(logging.INFO)
    if kind == "jwks":
        server = await jwks_server(make_server, provider)
    else:
        server = await make_server(auth_secret=SECRET)
    for alg in ([1], {"a": 1}):
        token = _odd_alg_token(alg)
        assert await status_of(ws_url(server, query=f"token={token}")) == 401
        offer = [Subprotocol("hubbub"), Subprotocol(f"hubbub.token.{token}")]
        assert await status_of(ws_url(server), subprotocols=offer) == 401
        assert await _sse_status(server.port, token) == 401
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
