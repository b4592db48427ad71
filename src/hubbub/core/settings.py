"""Settings of a hubbub server: each setting of `hubbub serve` declared once, as a field of `Settings`.

A field declared with `setting(...)` carries its default, help, topic and checks
(`hubbub.core.options`); the flag, the `HUBBUB_*` variable, the config file's
key and the reference pages are derived from it. The fields without one are
for Python callers only. `Settings.__post_init__` checks every setting, then
the settings that only work together.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields

from hubbub.core import checks
from hubbub.core.options import SPEC, Option, Topic, from_field, named, setting
from hubbub.errors import ConfigError
from hubbub.protocol.namespaces import JoinRule, Namespace, Namespaces, PublishRule
from hubbub.protocol.session import Limits

MAX_SHUTDOWN_TIMEOUT = 300.0
"""Longest `--shutdown-timeout`: an orchestrator's kill grace (Kubernetes: 30 s) is far below it anyway."""

REPLAY_BURST_SECONDS = 8.0
"""A connection may save up this many seconds of `replay_rate` (its burst)."""
REPLAY_TOTAL_BURST_SECONDS = 4.0
"""The node may save up this many seconds of `replay_rate_total` (its burst)."""


def _node_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything `hubbub serve` can be told (`hubbub.Settings(port=8001, ...)` in Python)."""

    # ---- listening ----
    host: str = setting("127.0.0.1", topic=Topic.NETWORK, help="address to listen on")
    port: int = setting(8000, topic=Topic.NETWORK, check=checks.port, help="port to listen on")
    tls_cert: str = setting(
        "",
        topic=Topic.NETWORK,
        metavar="FILE",
        help="PEM certificate (chain); with --tls-key the port serves https:// and wss:// (default: plain HTTP)",
    )
    tls_key: str = setting(
        "", topic=Topic.NETWORK, metavar="FILE", help="PEM private key of --tls-cert, unencrypted (never logged)"
    )
    allowed_hosts: tuple[str, ...] = setting(
        (),
        topic=Topic.NETWORK,
        key="allowed_host",
        metavar="HOST",
        check=checks.hosts,
        help="answer requests whose Host is this name (any port) or name:port (repeatable); default: on a"
        " loopback address the loopback names, else any host",
    )
    allowed_origins: tuple[str, ...] = setting(
        (),
        topic=Topic.NETWORK,
        key="allowed_origin",
        metavar="ORIGIN",
        check=checks.origins,
        help="accept this Origin, scheme://host[:port] (repeatable); default: same host only",
        doc="Scheme, host and port are compared normalized.",
    )
    backlog: int = setting(
        2048,
        topic=Topic.NETWORK,
        positive=True,
        metavar="N",
        check=checks.at_least(1),
        help="listen backlog, capped by net.core.somaxconn",
    )
    static_dir: str = setting(
        "",
        topic=Topic.NETWORK,
        key="static",
        metavar="DIR",
        help="serve the files under DIR at / (index.html for a directory) instead of the chat page",
    )
    echo: bool = setting(False, topic=Topic.NETWORK, help="serve /echo for conformance runs")

    # ---- limits ----
    max_message_size: int = setting(
        65536,
        topic=Topic.LIMITS,
        positive=True,
        metavar="BYTES",
        check=checks.at_least(125, " bytes"),
        help="largest frame or message accepted; larger closes with 1009",
    )
    send_queue_bytes: int = setting(
        1_048_576, topic=Topic.LIMITS, positive=True, metavar="N", help="per-connection outbox bound in bytes"
    )
    send_buffer: int = setting(
        262_144,
        topic=Topic.LIMITS,
        metavar="BYTES",
        check=checks.send_buffer,
        help="kernel send buffer (SO_SNDBUF) per client, at least 65536; a stalled client is dropped after about"
        " 2 x this + 256 KiB + --send-queue-bytes of backlog; 0 leaves it to the kernel's autotuning"
        " (up to 4 MiB on Linux)",
        doc="Left to itself, Linux lets a stalled client's kernel buffer grow to `net.ipv4.tcp_wmem`'s maximum"
        " (4 MiB by default) per socket, memory that no limit of hubbub's counts. The price of a cap is throughput"
        " to a client that is both far and fast (512 KiB per round trip). Much smaller buffers starve even"
        " clients that keep up. Linux doubles the value.",
    )
    write_delay: float = setting(
        0.002,
        topic=Topic.LIMITS,
        metavar="S",
        check=lambda v: None if 0 <= v <= 1 else "must be between 0 and 1 second",
        help="gather frames this long into each write; 0 writes every loop turn",
    )
    write_timeout: float = setting(
        10.0,
        topic=Topic.LIMITS,
        metavar="S",
        check=checks.at_least(0, " seconds"),
        help="drop a client whose writes have not drained this long (1013, as a full outbox), however quiet its"
        " rooms and however lively its pings and pongs; 0 turns it off",
        doc="Drained means the outbox and the transport's buffer above the kernel emptied, or the transport fell"
        " back to its low-water mark after it paused the writer. A client that reads nothing holds what it was"
        " sent (up to `send_queue_bytes` plus the transport's 256 KiB) until then, and no longer. Bytes that"
        " only the kernel holds are given up by the kernel at twice this (`TCP_USER_TIMEOUT`, on Linux): an"
        " RST, counted as a 1006 close. Gorilla's `writeWait` is 10 s too.",
    )
    replay_rate: int = setting(
        262_144,
        topic=Topic.LIMITS,
        metavar="BYTES",
        check=checks.at_least(0, " bytes a second"),
        help="bytes a second one connection may have replayed by join_room with since and get_history, 8 s of it"
        " (at least one full answer) at once; over it: rate_limited, nothing done; 0 turns it off",
        doc="The 8 s burst (2 MiB by default) holds four answers at their cap (half of `send_queue_bytes`), so a"
        " page that reloads and rejoins a few busy rooms with `since` never meets it; a client that cycles"
        " joins to be sent the same history again is held to this rate.",
    )
    replay_rate_total: int = setting(
        8_388_608,
        topic=Topic.LIMITS,
        metavar="BYTES",
        check=checks.at_least(0, " bytes a second"),
        help="bytes a second the whole node may replay (join_room with since, get_history), 4 s of it (at least"
        " one full answer) at once; over it: rate_limited, nothing done; 0 turns it off",
        doc="Bounds what many connections replaying at once (a crowd joining with `since: 0`) make the node copy"
        " and hold: by default at most 32 MiB at once and 8 MiB a second after.",
    )
    rate_limit: float = setting(
        20.0,
        topic=Topic.LIMITS,
        metavar="N",
        check=checks.at_least(0),
        help="events per second a client may send on average; over it: rate_limited, and 1008 if it persists;"
        " 0 turns it off",
        doc="A person chatting sends a few a second at most, and a page that rejoins its rooms on reload sends"
        " a few dozen at once (`rate_burst`).",
    )
    rate_burst: float = setting(
        100.0,
        topic=Topic.LIMITS,
        metavar="N",
        check=checks.at_least(0),
        help="events a client may send at once; 0 means 2 x --rate-limit",
    )
    frame_rate: float = setting(
        100.0,
        topic=Topic.LIMITS,
        metavar="N",
        check=checks.at_least(1),
        help="pings, pongs and continuation frames a client may send per second, burst 2 x N; over it pings go"
        " unanswered and a client that persists is closed with 1008",
        doc="Always on, whatever `rate_limit` says.",
    )
    join_rate: float = setting(
        5.0,
        topic=Topic.LIMITS,
        metavar="N",
        check=checks.at_least(0),
        help="join_room and leave_room a client may send per second on average, on top of --rate-limit; over it:"
        " rate_limited, and 1008 if it persists; 0 turns it off",
        doc="Each join or leave writes presence and may be announced to the whole room, so a client changing rooms"
        " costs far more than one sending a message. A person switching rooms sends two a second at most.",
    )
    join_burst: float = setting(
        100.0,
        topic=Topic.LIMITS,
        metavar="N",
        check=checks.at_least(1),
        help="join_room and leave_room a client may send at once (a page joining its rooms at load)",
    )
    max_rooms_per_connection: int = setting(
        128,
        topic=Topic.LIMITS,
        positive=True,
        metavar="N",
        check=checks.at_least(1),
        help="rooms one connection may be in; past it join_room gets limit_exceeded",
    )
    max_connections: int | None = setting(
        None,
        topic=Topic.LIMITS,
        positive=True,
        metavar="N",
        example="65536",
        check=lambda v: None if v is None or v >= 1 else "must be at least 1",
        help="sockets held at once, before and after the handshake; past it: 503 (default 65536, or the"
        " file-descriptor limit minus 192 if lower)",
    )
    max_connections_per_ip: int = setting(
        16384,
        topic=Topic.LIMITS,
        positive=True,
        metavar="N",
        check=checks.at_least(1),
        help="sockets held at once per client address (IPv6: per /64); past it: 429",
    )
    max_tls_handshakes: int = setting(
        256,
        topic=Topic.LIMITS,
        positive=True,
        metavar="N",
        check=checks.at_least(1),
        help="with TLS: handshakes in progress at once; past it a new socket is closed at once, unanswered",
        doc="Each handshake in progress holds about 60 KB and its private-key operation runs on the event loop:"
        " 256 bounds both (15 MB; about 0.3 s of the loop with RSA-2048, half that with an ECDSA P-256"
        " certificate, if all 256 hellos land at once) and still lets the loop run flat out for clients a"
        " quarter of a second away.",
    )
    max_tls_handshakes_per_ip: int = setting(
        16,
        topic=Topic.LIMITS,
        positive=True,
        metavar="N",
        check=checks.at_least(1),
        help="with TLS: handshakes in progress at once per client address (IPv6: per /64); past it a new socket"
        " is closed at once, unanswered",
    )
    tls_handshake_timeout: float = setting(
        5.0,
        topic=Topic.LIMITS,
        metavar="S",
        check=checks.within(0, 60, "must be more than 0 and at most 60 seconds"),
        help="with TLS: seconds a socket has to finish its handshake before it is closed",
        doc="An honest handshake takes two round trips; five seconds leave a client a second away room to"
        " retransmit, and a socket that sends nothing or trickles its hello gives its place back twice as"
        " soon as with 10 s.",
    )

    # ---- keepalive and shutdown ----
    ping_interval: float = setting(
        20.0, topic=Topic.KEEPALIVE, metavar="S", check=checks.positive, help="ping a peer silent this long"
    )
    ping_timeout: float = setting(
        20.0, topic=Topic.KEEPALIVE, metavar="S", check=checks.positive, help="drop a peer whose pong is this late"
    )
    shutdown_timeout: float = setting(
        3.0,
        topic=Topic.KEEPALIVE,
        metavar="S",
        check=checks.within(
            0, MAX_SHUTDOWN_TIMEOUT, f"must be more than 0 and at most {MAX_SHUTDOWN_TIMEOUT:g} seconds"
        ),
        help="at SIGTERM, seconds clients get to take their 1001 close (and webhooks to drain, 2 s of it at"
        " most) before the rest is aborted; at most 300",
    )

    # ---- authentication ----
    users_file: str = setting(
        "",
        topic=Topic.AUTH,
        key="users",
        metavar="FILE",
        help="name:HASH lines (hubbub hash-password); clients then log in with POST /login and connect with"
        " /ws?ticket=T (default: no authentication)",
    )
    ticket_ttl: float = setting(
        5.0,
        topic=Topic.AUTH,
        metavar="S",
        check=checks.within(0, 3600, "must be more than 0 and at most 3600 seconds"),
        help="seconds a login's single-use ticket stays valid",
    )
    auth_secret: str = setting(
        "",
        topic=Topic.AUTH,
        metavar="S",
        secret=True,
        check=checks.auth_secret,
        help="HS256 secret of signed tokens (JWT), at least 32 bytes; /ws then wants ?token=T or the subprotocol"
        " hubbub.token.T (prefer HUBBUB_AUTH_SECRET or --auth-secret-file: a flag shows in ps)",
    )
    auth_jwks_url: str = setting(
        "",
        topic=Topic.AUTH,
        metavar="URL",
        check=checks.jwks_url,
        help="an identity provider's JWKS (https://; http:// only for a loopback host): /ws then accepts its"
        " RS256, RS384, RS512, PS256, ES256, ES384 and EdDSA tokens; keys are cached and refreshed",
    )
    auth_public_key: str = setting(
        "",
        topic=Topic.AUTH,
        metavar="FILE",
        help="a PEM public key (RSA, EC P-256/P-384 or Ed25519) whose tokens /ws accepts, instead of a JWKS",
    )
    auth_user_claim: str = setting(
        "sub",
        topic=Topic.AUTH,
        metavar="C",
        check=checks.claim_name,
        help="the token claim that names the user, in every kind of token (e.g. email)",
    )
    auth_rooms_claim: str = setting(
        "rooms",
        topic=Topic.AUTH,
        metavar="C",
        check=checks.claim_name,
        help="the token claim that lists the rooms a user may join, in every kind of token",
    )
    auth_audience: str = setting(
        "",
        topic=Topic.AUTH,
        metavar="A",
        help="with signed tokens (--auth-secret, --auth-jwks-url, --auth-public-key): a token's aud claim must"
        " be A (default: not checked)",
    )
    auth_issuer: str = setting(
        "",
        topic=Topic.AUTH,
        metavar="I",
        help="with signed tokens: a token's iss claim must be I (default: not checked)",
    )
    allow_anonymous: bool = setting(
        False,
        topic=Topic.AUTH,
        help="with --users or signed tokens: let clients without a ticket or token in too",
    )

    # ---- cluster, presence and history ----
    broker: str = setting("memory", topic=Topic.CLUSTER, help="memory, redis://HOST:PORT/DB or nats://HOST:PORT")
    store: str = setting(
        "",
        topic=Topic.CLUSTER,
        help="with --broker nats://: redis://HOST:PORT/DB for offsets, history and presence",
    )
    node_id: str = setting(
        "",
        factory=_node_id,
        topic=Topic.CLUSTER,
        example='"node-1"',
        help="this node's name in presence entries and bus heartbeats (default: random)",
    )
    presence_ttl: float = setting(
        30.0,
        topic=Topic.CLUSTER,
        metavar="S",
        check=checks.positive,
        help="a dead node's presence expires after this long",
    )
    presence_events: bool = setting(
        True,
        topic=Topic.CLUSTER,
        key="no_presence_events",
        invert=True,
        help="send no member_joined/member_left (presence is still recorded for get_presence)",
    )
    presence_interval: float = setting(
        0.5,
        topic=Topic.CLUSTER,
        metavar="S",
        check=lambda v: None if 0 <= v <= 10 else "must be between 0 and 10 seconds",
        help="gather a room's member_joined/member_left this long and send only the net changes (a leave and"
        " rejoin in between announce nothing); 0 announces each change at once",
        doc="Flushes fall on multiples of the interval of the wall clock, on every node alike, so a change is"
        " announced at most this long after it happened. A room's churn then costs its members at most one event"
        " per identity per interval, however fast its members come and go.",
    )
    presence_events_max_members: int = setting(
        1000,
        topic=Topic.CLUSTER,
        metavar="N",
        check=checks.at_least(0),
        help="in a room of more than N names, send presence_count {room, count} at each presence flush instead"
        " of member_joined/member_left; 0: never",
        doc="A flush costs each member one event per name that changed: up to N x N events per interval in a"
        " room of N that churns. Above the threshold it costs one small event per member. A hubbub extension"
        " (docs/protocol.md); clients that want the names ask `get_presence`.",
    )
    history_size: int = setting(
        1000,
        topic=Topic.CLUSTER,
        metavar="N",
        check=checks.at_least(0),
        help="messages kept per room for resume and get_history; 0 keeps none",
    )
    history_ttl: float = setting(
        3600.0, topic=Topic.CLUSTER, metavar="S", check=checks.positive, help="seconds a message stays in history"
    )
    history_max_bytes: int = setting(
        67_108_864,
        topic=Topic.CLUSTER,
        positive=True,
        metavar="BYTES",
        check=lambda v: None if v > 0 else "must be positive (--history-size 0 keeps no history)",
        help="bytes of history the memory broker holds across all rooms; the oldest go first",
        doc="`history_size` bounds each room, not their number: without this, a flood of large messages over"
        " many rooms would hold `history_size` x message size x rooms. Counted as the stored events plus a fixed"
        " overhead per message and per room. The Redis backends keep history in Redis, bounded by"
        " `history_size` and `history_ttl` per room (and `maxmemory`).",
    )

    # ---- the application ----
    api_keys: tuple[str, ...] = setting(
        (),
        topic=Topic.APPLICATION,
        key="api_key",
        metavar="KEY",
        secret=True,
        check=checks.api_keys,
        help="enable the server API (/api/...) for calls with 'Authorization: apikey KEY' (repeatable; prefer"
        " HUBBUB_API_KEY, comma-separated: a flag shows in ps)",
    )
    api_from: str = setting(
        "server",
        topic=Topic.APPLICATION,
        metavar="NAME",
        check=checks.api_from,
        help="the from of messages published through the API when the call gives none",
    )
    admin_password: str = setting(
        "",
        topic=Topic.APPLICATION,
        metavar="P",
        secret=True,
        check=checks.admin_password,
        help="turn on the admin dashboard at /admin, behind this password (at least 12 characters; prefer"
        " HUBBUB_ADMIN_PASSWORD: a flag shows in ps); without it /admin is 404",
        doc="Every node given the same password accepts the same dashboard session (the cookie is signed with a"
        " key derived from it), so the dashboard works behind a load balancer. docs/howto/admin.md.",
    )

    # ---- webhooks ----
    webhook_secret: str = setting(
        "",
        topic=Topic.WEBHOOKS,
        metavar="S",
        secret=True,
        help="the secret shared with the application: webhooks and proxy requests carry the HMAC-SHA256 of their"
        " body under it in X-Hubbub-Signature; required by --webhook and the proxies (--connect-proxy,"
        " --publish-proxy, --join-proxy)"
        " (prefer HUBBUB_WEBHOOK_SECRET: a flag shows in ps)",
    )
    webhooks: tuple[str, ...] = setting(
        (),
        topic=Topic.WEBHOOKS,
        key="webhook",
        metavar="URL",
        check=checks.webhook_urls,
        help="POST every event (connected, member_joined, room_vacated, ...) to this http(s) URL, signed with"
        " --webhook-secret (repeatable)",
    )
    webhook_messages: bool = setting(
        False, topic=Topic.WEBHOOKS, help="also send a message event for each message published"
    )
    webhook_timeout: float = setting(
        5.0,
        topic=Topic.WEBHOOKS,
        metavar="SECONDS",
        check=checks.within(0, 300, "must be in (0, 300] seconds"),
        help="one POST's time in all before it is retried",
    )
    webhook_retry_for: float = setting(
        60.0,
        topic=Topic.WEBHOOKS,
        metavar="SECONDS",
        check=lambda v: None if 0 <= v <= 86400 else "must be in [0, 86400] seconds",
        help="how long a failing event is retried, with backoff, before it is given up",
    )
    webhook_queue: int = setting(
        10_000,
        topic=Topic.WEBHOOKS,
        positive=True,
        metavar="N",
        check=lambda v: None if 1 <= v <= 10_000_000 else "must be in [1, 10000000]",
        help="events waiting per URL at most; past it new ones are dropped",
    )
    webhook_queue_bytes: int = setting(
        67_108_864,
        topic=Topic.WEBHOOKS,
        positive=True,
        metavar="BYTES",
        help="bytes of events waiting per URL at most (a message event counts its message); past it new ones"
        " are dropped",
    )
    webhook_concurrency: int = setting(
        16,
        topic=Topic.WEBHOOKS,
        positive=True,
        metavar="N",
        check=lambda v: None if 1 <= v <= 1024 else "must be in [1, 1024]",
        help="POSTs in flight per URL: rooms sent in parallel, each in order",
    )

    # ---- the proxy to the application ----
    connect_proxy: str = setting(
        "",
        topic=Topic.PROXY,
        metavar="URL",
        check=checks.proxy_url,
        help="POST each /ws handshake without a ticket or token to the application at URL first; its answer"
        " gives the identity, rooms and info (401/403 refuse; no answer: 503)",
    )
    publish_proxy: str = setting(
        "",
        topic=Topic.PROXY,
        metavar="URL",
        check=checks.proxy_url,
        help="POST each client send_message to the application at URL first: it publishes, rewrites or refuses",
    )
    join_proxy: str = setting(
        "",
        topic=Topic.PROXY,
        metavar="URL",
        check=checks.proxy_url,
        help="POST each client join_room (resumes too) to the application at URL first: 200 admits, 403 is"
        " forbidden, no answer unavailable; asked for the rooms of namespaces whose join rule is proxy, and"
        " for rooms outside every namespace",
        doc="A room of a namespace with another `join` rule is never asked about. The request and its answer:"
        " docs/integration.md.",
    )
    rpc_proxy: str = setting(
        "",
        topic=Topic.PROXY,
        metavar="URL",
        check=checks.proxy_url,
        help="POST each client rpc whose method no --app registered to the application at URL; its answer"
        " is the call's (403: forbidden; no answer: unavailable)",
    )
    proxy_headers: tuple[str, ...] = setting(
        ("Cookie", "Authorization"),
        topic=Topic.PROXY,
        key="proxy_header",
        metavar="NAME",
        check=checks.header_names,
        help="a handshake header passed on to --connect-proxy (repeatable; default Cookie and Authorization)",
        doc="The other headers of a handshake never leave hubbub.",
    )
    proxy_timeout: float = setting(
        1.0,
        topic=Topic.PROXY,
        metavar="S",
        # picows closes a socket whose handshake is not done 10 s after it was accepted: a held
        # handshake must have its answer well before, its request's own time included
        check=checks.within(0, 5, "must be more than 0 and at most 5 seconds"),
        help="seconds a proxy call may take in all; later: 503 or unavailable",
    )
    proxy_max_waiting: int = setting(
        256,
        topic=Topic.PROXY,
        positive=True,
        metavar="N",
        check=checks.at_least(1),
        help="handshakes waiting on --connect-proxy at once (past it: 503), and as many joins waiting on"
        " --join-proxy and rpc calls waiting on --rpc-proxy (past it: unavailable)",
    )

    # ---- logging ----
    log_level: str = setting(
        "info", topic=Topic.LOGGING, choices=("debug", "info", "warning", "error"), help="how much to log"
    )
    log_format: str = setting(
        "text",
        topic=Topic.LOGGING,
        choices=("text", "json"),
        check=lambda v: None if v in ("text", "json") else "must be text or json",
        help="text for people, json for one object a line",
    )

    # ---- for Python callers only ----
    max_fragments: int = 1024
    """Most frames one message may span (1009 past it); browsers never fragment."""
    close_timeout: float = 2.0
    """How long a polite close waits for the peer's close frame before aborting."""
    slow_close_grace: float = 0.25
    """How long a dropped slow consumer gets to take its 1013 before the RST."""
    inbox_high_water: int = 64
    """Received messages queued per connection before the server stops reading from it."""
    extra: dict[str, str] = field(default_factory=dict)
    namespaces: tuple[Namespace, ...] = ()
    """Rules per group of rooms, first match wins (the config file's `[[namespaces]]`; docs/topics/channels.md)."""

    def namespace_rules(self) -> Namespaces:
        """The namespaces, matched with a cache, the server's history settings for what they leave out."""
        return Namespaces(self.namespaces, self.history_size, self.history_ttl)

    @property
    def tokens(self) -> bool:
        """Whether `/ws` accepts signed tokens: an HS256 secret, an identity provider's JWKS or a PEM key.

        Each counts as "authentication on" the same way (a credential is required unless
        `--allow-anonymous`, `GET /login` says `token`, the `refresh` event is registered)."""
        return bool(self.auth_secret or self.auth_jwks_url or self.auth_public_key)

    def limits(self) -> Limits:
        """The per-connection bounds of `hubbub.protocol.session`, from these settings."""
        return Limits(
            max_message_size=self.max_message_size,
            max_fragments=self.max_fragments,
            rate=self.rate_limit,
            burst=self.rate_burst or 2 * self.rate_limit,
            frame_rate=self.frame_rate,
            frame_burst=2 * self.frame_rate,
            join_rate=self.join_rate,
            join_burst=self.join_burst,
        )

    def __post_init__(self) -> None:
        """Every setting's own checks, then those of settings that only work together; `ConfigError`."""
        for option in OPTIONS:
            assert option.attr is not None
            problem = option.invalid(getattr(self, option.attr))
            if problem is not None:
                raise ConfigError(named(option.flag, problem))
        if self.send_queue_bytes < self.max_message_size:
            raise ConfigError("--send-queue-bytes must be at least --max-message-size")
        if self.allow_anonymous and not (self.users_file or self.tokens):
            raise ConfigError(
                "--allow-anonymous needs --users, --auth-secret, --auth-jwks-url or --auth-public-key"
                " (without them every client is anonymous)"
            )
        if (self.auth_audience or self.auth_issuer) and not self.tokens:
            raise ConfigError(
                "--auth-audience and --auth-issuer need --auth-secret, --auth-jwks-url or --auth-public-key"
            )
        if self.auth_jwks_url and self.auth_public_key:
            raise ConfigError("--auth-jwks-url and --auth-public-key are two sources of the same keys: give one")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together: give both, or neither")
        if self.webhooks and not self.webhook_secret:
            raise ConfigError("--webhook needs --webhook-secret (or HUBBUB_WEBHOOK_SECRET): the app must verify events")
        if self.webhook_messages and not self.webhooks:
            raise ConfigError("--webhook-messages needs --webhook URL")
        if self.webhook_queue_bytes < self.max_message_size + 1024:
            raise ConfigError("--webhook-queue-bytes must be at least --max-message-size + 1024 (one message event)")
        proxies = (
            (self.connect_proxy, "--connect-proxy"),
            (self.publish_proxy, "--publish-proxy"),
            (self.join_proxy, "--join-proxy"),
            (self.rpc_proxy, "--rpc-proxy"),
        )
        for url, flag in proxies:
            if url and not self.webhook_secret:  # as --webhook: an unsigned request is one the app cannot trust
                raise ConfigError(
                    f"{flag} needs --webhook-secret (or HUBBUB_WEBHOOK_SECRET): the app must verify hubbub's requests"
                )

        self._check_namespaces()

    def _check_namespaces(self) -> None:
        """Every namespace is a `Namespace` (a list is taken as a tuple), and the proxies their rules name
        are configured."""
        if isinstance(self.namespaces, list):
            object.__setattr__(self, "namespaces", tuple(self.namespaces))
        if not isinstance(self.namespaces, tuple) or not all(isinstance(n, Namespace) for n in self.namespaces):
            raise ConfigError("namespaces must be a tuple of Namespace")
        for ns in self.namespaces:
            if ns.publish is PublishRule.PROXY and not self.publish_proxy:
                raise ConfigError(f'namespace {ns.pattern!r}: publish = "proxy" needs --publish-proxy')
            if ns.join is JoinRule.PROXY and not self.join_proxy:
                raise ConfigError(f'namespace {ns.pattern!r}: join = "proxy" needs --join-proxy')
            if ns.join is JoinRule.TOKEN and not (self.tokens or self.connect_proxy):
                # only signed tokens and the connect proxy's answers carry rooms: nobody could ever join
                raise ConfigError(
                    f'namespace {ns.pattern!r}: join = "token" needs credentials that name rooms:'
                    " --auth-secret, --auth-jwks-url, --auth-public-key or --connect-proxy"
                )


OPTIONS: tuple[Option, ...] = tuple(from_field(f) for f in fields(Settings) if SPEC in f.metadata)
"""The settings a person can set, in the order `--help`, the config file and the reference show them."""
