"""`Jwks`: an identity provider's public keys (`--auth-jwks-url`), fetched, cached and refreshed.

Checking a token never waits on the network: `key_for` answers from the cache, and a `kid` the
cache does not hold (a rotated key) or an empty cache starts a fetch in the background. Fetches
are one at a time and at most one every `min_interval` seconds, whatever clients send: a flood of
tokens naming random keys costs one fetch per interval. The cache lives as long as the answer's
`Cache-Control: max-age` (between `MIN_TTL` and `MAX_TTL`; `DEFAULT_TTL` without one), then a task
refreshes it; a provider that is down or answers nonsense leaves the cached keys in use, and is
asked again after a growing delay. A fetch is bounded: `timeout` for all of it, `MAX_JWKS_BYTES`
read at most, no redirect followed, no compression inflated. Failures are logged at most once per
`LOG_EVERY`. The front door holds a handshake whose `kid` a fetch under way may bring
(hubbub.server.key_hold). Why: docs/topics/auth.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge

from hubbub.auth.keys import KeySet, parse_jwks
from hubbub.auth.tokens import KeysUnavailable, UnknownKey

__all__ = ["DEFAULT_TTL", "MAX_JWKS_BYTES", "MAX_TTL", "MIN_INTERVAL", "MIN_TTL", "Jwks"]

log = logging.getLogger("hubbub.auth.jwks")

FETCH_TIMEOUT = 5.0
"""Seconds one fetch may take in all (connect, TLS, answer)."""
MAX_JWKS_BYTES = 256 * 1024
"""Bytes of a JWKS read at most (a provider's is a few KB); a longer answer is a failed fetch."""
MIN_INTERVAL = 5.0
"""Seconds between two fetches at least, whatever tokens clients send."""
DEFAULT_TTL = 300.0
"""Seconds the keys are kept when the answer has no `Cache-Control: max-age`."""
MIN_TTL = 60.0
"""A shorter `max-age` (or `no-cache`) is raised to this: the set is not fetched for every handshake."""
MAX_TTL = 86400.0
"""A longer `max-age` is lowered to this: a revoked key is dropped within a day."""
MAX_BACKOFF = 300.0
"""Longest delay before asking a failing provider again (it doubles from `min_interval`)."""
LOG_EVERY = 60.0
"""Seconds between two log lines of failed fetches (those between are counted in the next)."""

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)


def cache_lifetime(cache_control: str | None, floor: float = MIN_TTL, ceiling: float = MAX_TTL) -> float:
    """Seconds to keep a JWKS answered with this `Cache-Control` value (module docstring)."""
    if not cache_control:
        return min(max(DEFAULT_TTL, floor), ceiling)
    found = _MAX_AGE.search(cache_control)
    if found is None:
        lowered = cache_control.lower()
        seconds = 0.0 if "no-cache" in lowered or "no-store" in lowered else DEFAULT_TTL
    else:
        seconds = float(found.group(1))
    return min(max(seconds, floor), ceiling)


def _loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


class _FetchFailed(Exception):
    """A fetch without a usable key set; the message (never a body) says why."""


class Jwks:
    """The keys of `--auth-jwks-url`, cached (module docstring); `start` at the server's start, `close` at its stop."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float | None = None,
        min_interval: float | None = None,
        min_ttl: float | None = None,
        max_bytes: int | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """`timeout`, `min_interval`, `min_ttl`, `max_bytes`: the module's bounds when None (read at the
        call, so tests may shorten them); `registry`: where `hubbub_jwks_fetches_total` and
        `hubbub_jwks_keys` go (the hub's, for /metrics)."""
        self.url = url
        self.timeout = FETCH_TIMEOUT if timeout is None else timeout
        self.min_interval = MIN_INTERVAL if min_interval is None else min_interval
        self.min_ttl = MIN_TTL if min_ttl is None else min_ttl
        self.max_bytes = MAX_JWKS_BYTES if max_bytes is None else max_bytes
        self.fetches = 0
        """Fetches started so far (each one request to the provider)."""
        self._set: KeySet | None = None
        self._expires = -math.inf
        self._last_attempt = -math.inf
        self._failures = 0
        self._last_log = -math.inf
        self._not_logged = 0
        self._refusals_logged = False
        self._fetching: asyncio.Task[None] | None = None
        self._runner: asyncio.Task[None] | None = None
        registry = registry if registry is not None else CollectorRegistry()
        self._fetched = Counter(
            "hubbub_jwks_fetches",
            "Fetches of the identity provider's key set (--auth-jwks-url), by outcome.",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("loaded", "failed"):
            self._fetched.labels(outcome)
        keys = Gauge("hubbub_jwks_keys", "Keys of the identity provider's set in use now.", registry=registry)
        keys.set_function(lambda: float(len(self._set.keys)) if self._set is not None else 0.0)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
            follow_redirects=False,  # a JWKS that moved is a configuration to fix, not a hop to take
            trust_env=not _loopback(url),  # HTTPS_PROXY and the CA bundle variables apply to a provider afar
        )

    # ---- the cache -------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether a key set was ever fetched (then it is used until a newer one comes)."""
        return self._set is not None

    def key_for(self, kid: str | None, alg: str) -> Any:
        """The cached key for a token's `kid` and `alg`, never waiting; a miss starts a fetch (rate-limited)."""
        if self._set is None:
            self._start()
            raise KeysUnavailable("the identity provider's keys are not loaded")
        try:
            return self._set.key_for(kid, alg)
        except UnknownKey:
            self._start()
            raise

    def worth_waiting(self, kid: str) -> bool:
        """Whether a handshake naming `kid` should wait for a fetch: the cache lacks it, and a fetch is
        under way or may start now."""
        if self._set is not None and kid in self._set.keys:
            return False
        fetching = self._fetching is not None and not self._fetching.done()
        return fetching or time.monotonic() - self._last_attempt >= self.min_interval

    def first_refusal(self) -> bool:
        """True once per time without keys: the caller logs that handshakes are refused (503), once."""
        if self._set is not None or self._refusals_logged:
            return False
        self._refusals_logged = True
        return True

    async def refresh(self) -> None:
        """Fetch now, or join the fetch under way; nothing when one happened less than `min_interval` ago.

        The caller's cancellation leaves the fetch running for the others who wait on it."""
        task = self._start()
        if task is not None:
            await asyncio.wait({task})

    def _start(self) -> asyncio.Task[None] | None:
        """The fetch under way, or a new one when the interval allows; None otherwise."""
        if self._fetching is not None and not self._fetching.done():
            return self._fetching
        now = time.monotonic()
        if now - self._last_attempt < self.min_interval:
            return None
        self._last_attempt = now
        self.fetches += 1
        self._fetching = asyncio.get_running_loop().create_task(self._fetch(), name="jwks-fetch")
        return self._fetching

    # ---- the task --------------------------------------------------------------

    def start(self) -> None:
        """Fetch now, and again whenever the keys expire (or, failing, after a growing delay)."""
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="jwks-refresh")

    async def close(self) -> None:
        """Stop the refreshes and any fetch under way, and close the HTTP client (idempotent)."""
        tasks = [t for t in (self._runner, self._fetching) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runner = None
        await self._client.aclose()

    async def _run(self) -> None:
        while True:
            await self.refresh()
            due = self._expires if self._failures == 0 else self._last_attempt + self._backoff()
            await asyncio.sleep(max(due, self._last_attempt + self.min_interval) - time.monotonic())

    def _backoff(self) -> float:
        return float(min(MAX_BACKOFF, self.min_interval * 2 ** min(self._failures - 1, 16)))

    async def _fetch(self) -> None:
        """One fetch: the cache replaced by its keys, or kept as it was (and the failure logged)."""
        try:
            body, cache_control = await self._get()
            fresh = parse_jwks(body)
        except _FetchFailed as exc:
            self._failed(str(exc))
            return
        except ValueError as exc:  # parse_jwks: not a key set, or none usable
            self._failed(f"malformed: {exc}")
            return
        except Exception as exc:  # a provider's bytes that break a library: a failed fetch all the same, so that
            # the refresh task lives on and the held keys stay (cancellation is not caught)
            self._failed(f"unreadable: {type(exc).__name__}")
            return
        self._fetched.labels("loaded").inc()
        ttl = cache_lifetime(cache_control, self.min_ttl)
        self._expires = time.monotonic() + ttl
        previous, self._set = self._set, fresh
        recovered, self._failures = self._failures, 0
        self._refusals_logged = False
        if previous is None or previous.keys.keys() != fresh.keys.keys() or recovered:
            log.info(
                "auth.jwks_loaded",
                extra={"keys": len(fresh.keys), "skipped": fresh.skipped, "ttl": ttl, "failed_before": recovered},
            )

    async def _get(self) -> tuple[bytes, str | None]:
        """The body and `Cache-Control` of a 200 from the URL, within every bound; `_FetchFailed` otherwise."""
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client.stream("GET", self.url, headers=headers) as response:
                    if response.status_code != 200:
                        moved = " (redirects are not followed)" if response.is_redirect else ""
                        raise _FetchFailed(f"status {response.status_code}{moved}")
                    encoding = response.headers.get("content-encoding", "identity").strip().lower()
                    if encoding not in ("", "identity"):
                        raise _FetchFailed("a compressed answer")
                    declared = response.headers.get("content-length", "")
                    if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
                        raise _FetchFailed(f"longer than {self.max_bytes} bytes")
                    data = bytearray()
                    async for chunk in response.aiter_raw():  # the bytes as sent, never inflated
                        data += chunk
                        if len(data) > self.max_bytes:
                            raise _FetchFailed(f"longer than {self.max_bytes} bytes")
                    return bytes(data), response.headers.get("cache-control")
        except (TimeoutError, httpx.TimeoutException):
            raise _FetchFailed(f"no answer within {self.timeout} s") from None
        except httpx.HTTPError as exc:
            raise _FetchFailed(f"unreachable: {type(exc).__name__}") from None

    def _failed(self, reason: str) -> None:
        """Count a failed fetch; log it, at most once per `LOG_EVERY` (the first failure always)."""
        self._failures += 1
        self._fetched.labels("failed").inc()
        now = time.monotonic()
        if self._failures > 1 and now - self._last_log < LOG_EVERY:
            self._not_logged += 1
            return
        self._last_log = now
        skipped, self._not_logged = self._not_logged, 0
        log.warning(
            "auth.jwks_failed",
            extra={
                "reason": reason,
                "keys_kept": len(self._set.keys) if self._set is not None else 0,
                "retry_in": self._backoff(),
                "not_logged_since": skipped,
            },
        )
