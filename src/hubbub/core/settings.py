"""Settings of a hubbub server, with the defaults the CLI documents."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from hubbub.auth.tokens import MIN_SECRET_BYTES
from hubbub.errors import ConfigError
from hubbub.protocol.events import invalid_name_message, valid_name
from hubbub.protocol.origins import config_origin, parse_authority
from hubbub.protocol.session import Limits

API_KEY_MIN = 16
"""Shortest server API key accepted: a key is all that stands between the network and every API call."""
MAX_SHUTDOWN_TIMEOUT = 300.0
"""Longest `--shutdown-timeout`: an orchestrator's kill grace (Kubernetes: 30 s) is far below it anyway."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `hubbub serve` can be told; each field maps to one flag."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_message_size: int = 65536
    """A larger frame or reassembled message closes the connection with 1009."""
    ping_interval: float = 20.0
    """Seconds of silence from a peer before the server pings it."""
    ping_timeout: float = 20.0
    """Seconds a pinged peer has to answer before it is dropped."""
    send_queue_bytes: int = 1_048_576
    """Per-connection outbox bound; a connection that would exceed it is dropped (1013)."""
    send_buffer: int = 262_144
    """SO_SNDBUF of each client socket (Linux doubles it); 0 leaves it to the kernel's autotuning.

    The kernel holds a stalled client's bytes before the outbox sees any, and
    left to itself Linux lets that grow to `net.ipv4.tcp_wmem`'s maximum
    (4 MiB by default) per socket, memory that no limit of ours counts and that
    many stalled clients could pile up. Capped, a client that cannot keep up is
    dropped after about twice this + 256 KiB + `send_queue_bytes`. The price is
    throughput to a client that is both far and fast (512 KiB per round trip).
    At least 64 KiB: much smaller buffers starve even clients that keep up.
    """
    write_delay: float = 0.002
    """Seconds fan-out waits to gather more frames into each write; 0 writes every loop turn."""
    rate_limit: float = 20.0
    """Events per second a client may send on average; 0 means no limit.

    On by default: a person chatting sends a few a second at most, and a page
    that rejoins its rooms on reload sends a few dozen at once (`rate_burst`).
    """
    rate_burst: float = 100.0
    """Events a client may send at once; 0 means twice `rate_limit`."""
    frame_rate: float = 100.0
    """Pings, pongs and continuation frames a client may send per second (burst twice that).

    Always on, whatever `rate_limit` says: over it a ping goes unanswered, and
    a client that keeps over-sending is closed with 1008.
    """
    max_fragments: int = 1024
    """Most frames one message may span (1009 past it); browsers never fragment."""
    max_rooms_per_connection: int = 128
    """Rooms one connection may be in at once; past it `join_room` gets `limit_exceeded`."""
    users_file: str = ""
    """`name:HASH` lines (`hubbub hash-password`); when set, `/ws` wants a ticket from `POST /login`."""
    ticket_ttl: float = 5.0
    """Seconds a login's ticket stays valid (it is usable once)."""
    auth_secret: str = field(default="", repr=False)
    """HS256 secret of signed tokens (`hubbub.auth.tokens`); when set, `/ws` wants a token (or a ticket). Never
    printed: left out of the repr."""
    auth_audience: str = ""
    """With `auth_secret`: a token's `aud` must be this (empty: not checked)."""
    auth_issuer: str = ""
    """With `auth_secret`: a token's `iss` must be this (empty: not checked)."""
    allow_anonymous: bool = False
    """With `users_file` or `auth_secret`: let clients without a credential in too, named as without
    authentication."""
    allowed_origins: tuple[str, ...] = ()
    """`Origin` values accepted (scheme, host and port compared normalized); empty means same-host origins only."""
    allowed_hosts: tuple[str, ...] = ()
    """`Host` values answered on every route (`name` any port, `name:port` that port). Empty: the
    loopback names and the bound address when listening on loopback, else any host."""
    max_connections: int | None = None
    """Accepted sockets held at once (pre-handshake, HTTP and WebSocket); past it, 503. None:
    65536, or the file-descriptor limit minus a reserve when that is lower."""
    max_connections_per_ip: int = 16384
    """Accepted sockets held at once per client address (an IPv6 /64); past it, 429."""
    backlog: int = 2048
    """Listen backlog: connections the kernel queues before they are accepted (capped by somaxconn)."""
    tls_cert: str = ""
    """PEM certificate chain; with `tls_key`, the port serves `https://` and `wss://`. Empty: plain HTTP."""
    tls_key: str = ""
    """PEM private key (unencrypted) of `tls_cert`; never logged."""
    echo: bool = False
    """Serve `/echo` for protocol conformance runs."""
    close_timeout: float = 2.0
    """How long a polite close waits for the peer's close frame before aborting."""
    slow_close_grace: float = 0.25
    """How long a dropped slow consumer gets to take its 1013 before the RST."""
    shutdown_timeout: float = 3.0
    """How long shutdown waits for connections to close before aborting the rest (`--shutdown-timeout`)."""
    inbox_high_water: int = 64
    """Received messages queued per connection before the server stops reading from it."""
    broker: str = "memory"
    """`memory`, `redis://HOST:PORT/DB` or `nats://HOST:PORT`."""
    store: str = ""
    """Where offsets, history and presence live when the broker cannot keep them (`redis://...`)."""
    presence_ttl: float = 30.0
    """Seconds after which a silent node's presence entries expire."""
    history_size: int = 1000
    """Messages kept per room for resume and `get_history`; 0 keeps none."""
    history_ttl: float = 3600.0
    """Seconds a message stays in history."""
    history_max_bytes: int = 67_108_864
    """Bytes the memory broker's history may hold across all rooms; past it, the oldest messages go first.

    `history_size` bounds each room, not their number: without this, a flood
    of large messages over many rooms would hold `history_size` x message size
    x rooms. Counted as the stored events plus a fixed overhead per message and
    per room, so that it tracks the memory actually held. The Redis backends
    keep history in Redis, which bounds it by `history_size` and `history_ttl`
    per room (and `maxmemory`).
    """
    presence_events: bool = True
    """Send `member_joined` / `member_left` to rooms; False for clients that do not know them
    (presence is still recorded, and `get_presence` answers)."""
    static_dir: str = ""
    """Serve the files under this directory at `/` instead of the built-in chat page (`hubbub.server.static_files`)."""
    node_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    """This node's name in presence entries and bus heartbeats."""
    # The server API.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    """Keys of the server API (`/api/...`, `hubbub.integration.server_api`): a call with `Authorization: apikey K`
    for any of them is served; none set, `/api/...` answers 404. Never printed: left out of the repr."""
    api_from: str = "server"
    """The `from` of messages published through the server API when the call gives none."""

    # Webhooks.
    webhook_secret: str = field(default="", repr=False)
    """The secret shared with the application: webhooks and proxy requests carry the HMAC-SHA256 of their
    body under it (`hubbub.auth.signing`). Never printed: left out of the repr."""
    webhooks: tuple[str, ...] = ()
    """URLs (http or https) every webhook event is POSTed to (`hubbub.integration.webhooks`); needs `webhook_secret`."""
    webhook_messages: bool = False
    """Also send a `message` event for every message this node publishes (for apps that store chat)."""
    webhook_timeout: float = 5.0
    """Seconds one POST may take in all (connect, send, answer) before it counts as failed and is retried."""
    webhook_retry_for: float = 60.0
    """Seconds an event is retried (backoff with jitter) after its first attempt before it is given up."""
    webhook_queue: int = 10_000
    """Events waiting per URL at most; past it new events are dropped (counted and logged)."""
    webhook_queue_bytes: int = 67_108_864
    """Bytes of events waiting per URL at most (each counted as 1 KiB plus its message); past it, dropped."""
    webhook_concurrency: int = 16
    """POSTs in flight per URL at most: that many rooms are sent in parallel, each in order."""

    # The proxies to the app.
    connect_proxy: str = ""
    """URL the application answers handshakes at (`hubbub.integration.app_proxy`): a `/ws` handshake without a ticket or
    token is POSTed there first, and the app's answer gives the identity, rooms and info. Empty: off."""
    publish_proxy: str = ""
    """URL the application judges each client `send_message` at (publish, rewrite or refuse). Empty: off."""
    proxy_headers: tuple[str, ...] = ("Cookie", "Authorization")
    """Request headers of a handshake passed on to the connect proxy (the others never leave hubbub)."""
    proxy_timeout: float = 1.0
    """Seconds a proxy call may take in all (connect, send, answer); later is 503 or `unavailable`. At most 5:
    picows drops a socket whose handshake is not done 10 s after it was accepted."""
    proxy_max_waiting: int = 256
    """Handshakes waiting on the connect proxy at once, in total; past it a handshake gets 503 unasked."""

    log_level: str = "info"
    log_format: str = "text"
    extra: dict[str, str] = field(default_factory=dict)

    def limits(self) -> Limits:
        """The per-connection bounds of `hubbub.protocol.session`, from these settings."""
        return Limits(
            max_message_size=self.max_message_size,
            max_fragments=self.max_fragments,
            rate=self.rate_limit,
            burst=self.rate_burst or 2 * self.rate_limit,
            frame_rate=self.frame_rate,
            frame_burst=2 * self.frame_rate,
        )

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, not {self.port}")
        if self.max_message_size < 125:
            raise ConfigError("--max-message-size must be at least 125 bytes")
        if self.ping_interval <= 0 or self.ping_timeout <= 0:
            raise ConfigError("--ping-interval and --ping-timeout must be positive")
        if self.send_queue_bytes < self.max_message_size:
            raise ConfigError("--send-queue-bytes must be at least --max-message-size")
        if self.send_buffer != 0 and self.send_buffer < 65536:
            # Measured on loopback: at 16 KiB, clients that kept up were dropped
            # (throughput collapsed); 32 KiB and up held. 64 KiB leaves a margin.
            raise ConfigError("--send-buffer must be 0 (the kernel decides) or at least 65536 bytes")
        if not 0 <= self.write_delay <= 1:
            raise ConfigError("--write-delay must be between 0 and 1 second")
        if self.rate_limit < 0 or self.rate_burst < 0:
            raise ConfigError("--rate-limit and --rate-burst must be at least 0")
        if self.frame_rate < 1:
            raise ConfigError("--frame-rate must be at least 1")
        if self.max_rooms_per_connection < 1:
            raise ConfigError("--max-rooms-per-connection must be at least 1")
        if not 0 < self.ticket_ttl <= 3600:
            raise ConfigError("--ticket-ttl must be more than 0 and at most 3600 seconds")
        if self.allow_anonymous and not (self.users_file or self.auth_secret):
            raise ConfigError(
                "--allow-anonymous needs --users or --auth-secret (without them every client is anonymous)"
            )
        if self.auth_secret and len(self.auth_secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"--auth-secret must be at least {MIN_SECRET_BYTES} bytes (RFC 7518: HS256 keys)")
        if (self.auth_audience or self.auth_issuer) and not self.auth_secret:
            raise ConfigError("--auth-audience and --auth-issuer need --auth-secret")
        if self.presence_ttl <= 0 or self.history_ttl <= 0 or self.history_size < 0:
            raise ConfigError("--presence-ttl and --history-ttl must be positive, --history-size at least 0")
        if self.history_max_bytes <= 0:
            raise ConfigError("--history-max-bytes must be positive (--history-size 0 keeps no history)")
        if self.log_format not in ("text", "json"):
            raise ConfigError("--log-format must be text or json")
        for origin in self.allowed_origins:
            if "://" not in origin:
                raise ConfigError(f"--allowed-origin needs a scheme, like https://example.com: {origin!r}")
            if config_origin(origin) is None:
                raise ConfigError(f"--allowed-origin must be scheme://host[:port], with no path: {origin!r}")
        for host in self.allowed_hosts:
            if parse_authority(host) is None:
                raise ConfigError(f"--allowed-host must be a host name or address, optionally :port: {host!r}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigError("--max-connections must be at least 1")
        if self.max_connections_per_ip < 1 or self.backlog < 1:
            raise ConfigError("--max-connections-per-ip and --backlog must be at least 1")
        if not 0 < self.shutdown_timeout <= MAX_SHUTDOWN_TIMEOUT:
            raise ConfigError(f"--shutdown-timeout must be more than 0 and at most {MAX_SHUTDOWN_TIMEOUT:g} seconds")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together: give both, or neither")
        self._check_integration()

    def _check_integration(self) -> None:
        """The checks of the server API, webhooks and the proxies to the app."""
        # The server API.
        for key in self.api_keys:  # the message never holds the key
            if len(key) < API_KEY_MIN or not all("!" <= c <= "~" and c != "," for c in key):
                raise ConfigError(
                    f"--api-key must be at least {API_KEY_MIN} printable ASCII characters, with no space or comma"
                    " (try: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
        if not valid_name(self.api_from):
            raise ConfigError(f"--api-from: {invalid_name_message(self.api_from)}")

        # Webhooks.
        if self.webhooks and not self.webhook_secret:
            raise ConfigError("--webhook needs --webhook-secret (or HUBBUB_WEBHOOK_SECRET): the app must verify events")
        if self.webhook_messages and not self.webhooks:
            raise ConfigError("--webhook-messages needs --webhook URL")
        for url in self.webhooks:
            try:
                parts = urlsplit(url)
                good = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
            except ValueError:  # a bad port or IPv6 literal
                good = False
            if not good:  # shown without a query or user info: either may hold a credential
                shown = url.split("?")[0].rpartition("@")[2][:200]
                raise ConfigError(f"--webhook must be an http:// or https:// URL with a host, not {shown!r}")
        if not 0 < self.webhook_timeout <= 300 or not 0 <= self.webhook_retry_for <= 86400:
            raise ConfigError("--webhook-timeout must be in (0, 300] seconds, --webhook-retry-for in [0, 86400]")
        if not 1 <= self.webhook_queue <= 10_000_000 or not 1 <= self.webhook_concurrency <= 1024:
            raise ConfigError("--webhook-queue must be in [1, 10000000], --webhook-concurrency in [1, 1024]")
        if self.webhook_queue_bytes < self.max_message_size + 1024:
            raise ConfigError("--webhook-queue-bytes must be at least --max-message-size + 1024 (one message event)")

        # The proxies to the app.
        for url, flag in ((self.connect_proxy, "--connect-proxy"), (self.publish_proxy, "--publish-proxy")):
            if url and not url.startswith(("http://", "https://")):
                raise ConfigError(f"{flag} must be an http:// or https:// URL: {url!r}")
            if url and not self.webhook_secret:  # as --webhook: an unsigned request is one the app cannot trust
                raise ConfigError(
                    f"{flag} needs --webhook-secret (or HUBBUB_WEBHOOK_SECRET): the app must verify hubbub's requests"
                )
        if not 0 < self.proxy_timeout <= 5:
            # picows closes a socket that has not completed its handshake 10 s after it was accepted
            # (server.py): a held handshake must have its answer well before, its request's own time included
            raise ConfigError("--proxy-timeout must be more than 0 and at most 5 seconds")
        if self.proxy_max_waiting < 1:
            raise ConfigError("--proxy-max-waiting must be at least 1")
        for name in self.proxy_headers:
            if not name or not all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in name):
                raise ConfigError(f"--proxy-header must be an HTTP header name: {name!r}")
