"""The `hubbub` command: `serve`, `bench`, `chat`, `hash-password`, `token` and `publish`.

Every flag of `serve` can also be set by an environment variable named
`HUBBUB_<FLAG>` (`--send-queue-bytes` is `HUBBUB_SEND_QUEUE_BYTES`); a flag on
the command line wins. Bad values get a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from hubbub import backends
from hubbub._version import __version__
from hubbub.core.settings import Settings
from hubbub.errors import ConfigError
from hubbub.server import tls
from hubbub.server.run import run_async, run_server

if TYPE_CHECKING:
    from hubbub.core.hub import Hub

log = logging.getLogger("hubbub.cli")


def _env(flag: str) -> str | None:
    return os.environ.get("HUBBUB_" + flag.lstrip("-").replace("-", "_").upper())


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A bad command line: one line naming the (sub)command and what is wrong, then exit 2.

        argparse's default prints the whole usage block first, burying the one line that
        matters; `--help` still prints it for whoever asks.
        """
        message = re.sub(r"^argument ([^:]+): ", r"\1: ", message)
        message = re.sub(r"^command: invalid choice: ('[^']*')", r"unknown command \1", message)
        if message == "the following arguments are required: command":
            message = f"choose a command: {', '.join(_commands(self))} (hubbub --help says what each does)"
        self.exit(2, f"{self.prog}: {message}\n")

    def add_env_argument(self, flag: str, **kwargs: Any) -> None:
        """`add_argument` whose default comes from `HUBBUB_<FLAG>` when set."""
        env = _env(flag)
        if env is not None:
            if kwargs.get("action") == "store_true":
                kwargs["default"] = env.lower() in ("1", "true", "yes", "on")
            elif kwargs.get("action") == "append":
                kwargs["default"] = [v for v in env.split(",") if v]
            else:
                kind = kwargs.get("type", str)
                try:
                    kwargs["default"] = kind(env)
                except (ValueError, argparse.ArgumentTypeError):
                    self.error(f"HUBBUB_{flag.lstrip('-').replace('-', '_').upper()}: invalid value {env!r}")
        self.add_argument(flag, **kwargs)


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands' parsers by name (empty for a parser without subcommands)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """`parser.parse_args`, but an unknown flag is reported by its subcommand (`hubbub serve: unrecognized
    arguments: --prot`), as every other bad flag is, not by the top-level parser."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        _commands(parser).get(getattr(args, "command", ""), parser).error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _add_serve(sub: Any) -> None:
    p: _Parser = sub.add_parser("serve", help="run the hub server", description="Run the hub server.")
    p.add_env_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_env_argument("--port", type=int, default=8000, help="port to listen on (default %(default)s)")
    p.add_env_argument(
        "--max-message-size",
        type=_positive_int,
        default=65536,
        metavar="BYTES",
        help="largest frame or message accepted; larger closes with 1009 (default %(default)s)",
    )
    p.add_env_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        metavar="S",
        help="ping a peer silent this long (default %(default)s)",
    )
    p.add_env_argument(
        "--ping-timeout",
        type=float,
        default=20.0,
        metavar="S",
        help="drop a peer whose pong is this late (default %(default)s)",
    )
    p.add_env_argument(
        "--send-queue-bytes",
        type=_positive_int,
        default=1_048_576,
        metavar="N",
        help="per-connection outbox bound in bytes (default %(default)s)",
    )
    p.add_env_argument(
        "--send-buffer",
        type=int,
        default=262_144,
        metavar="BYTES",
        help="kernel send buffer (SO_SNDBUF) per client, at least 65536; a stalled client is dropped after about 2 x"
        " this + 256 KiB + --send-queue-bytes of backlog; 0 leaves it to the kernel's autotuning (up to 4 MiB on Linux)"
        " (default %(default)s)",
    )
    p.add_env_argument(
        "--write-delay",
        type=float,
        default=0.002,
        metavar="S",
        help="gather frames this long into each write; 0 writes every loop turn (default %(default)s)",
    )
    p.add_env_argument(
        "--rate-limit",
        type=float,
        default=20.0,
        metavar="N",
        help="events per second a client may send on average; over it: rate_limited, and 1008 if it persists;"
        " 0 turns it off (default %(default)s)",
    )
    p.add_env_argument(
        "--rate-burst",
        type=float,
        default=100.0,
        metavar="N",
        help="events a client may send at once; 0 means 2 x --rate-limit (default %(default)s)",
    )
    p.add_env_argument(
        "--frame-rate",
        type=float,
        default=100.0,
        metavar="N",
        help="pings, pongs and continuation frames a client may send per second, burst 2 x N; over it pings go"
        " unanswered and a client that persists is closed with 1008 (default %(default)s)",
    )
    p.add_env_argument(
        "--max-rooms-per-connection",
        type=_positive_int,
        default=128,
        metavar="N",
        help="rooms one connection may be in; past it join_room gets limit_exceeded (default %(default)s)",
    )
    p.add_env_argument(
        "--users",
        default="",
        metavar="FILE",
        help="name:HASH lines (hubbub hash-password); clients then log in with POST /login and connect with"
        " /ws?ticket=T (default: no authentication)",
    )
    p.add_env_argument(
        "--ticket-ttl",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds a login's single-use ticket stays valid (default %(default)s)",
    )
    _add_secret(p)
    p.add_env_argument(
        "--auth-audience",
        default="",
        metavar="A",
        help="with --auth-secret: a token's aud claim must be A (default: not checked)",
    )
    p.add_env_argument(
        "--auth-issuer",
        default="",
        metavar="I",
        help="with --auth-secret: a token's iss claim must be I (default: not checked)",
    )
    p.add_env_argument(
        "--allow-anonymous",
        action="store_true",
        help="with --users or --auth-secret: let clients without a ticket or token in too",
    )
    p.add_env_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="accept this Origin, scheme://host[:port] (repeatable); default: same host only",
    )
    p.add_env_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST",
        help="answer requests whose Host is this name (any port) or name:port (repeatable); default: on a"
        " loopback address the loopback names, else any host",
    )
    p.add_env_argument(
        "--max-connections",
        type=_positive_int,
        default=None,
        metavar="N",
        help="sockets held at once, before and after the handshake; past it: 503 (default 65536, or the"
        " file-descriptor limit minus 192 if lower)",
    )
    p.add_env_argument(
        "--max-connections-per-ip",
        type=_positive_int,
        default=16384,
        metavar="N",
        help="sockets held at once per client address (IPv6: per /64); past it: 429 (default %(default)s)",
    )
    p.add_env_argument(
        "--backlog",
        type=_positive_int,
        default=2048,
        metavar="N",
        help="listen backlog, capped by net.core.somaxconn (default %(default)s)",
    )
    p.add_env_argument(
        "--shutdown-timeout",
        type=float,
        default=3.0,
        metavar="S",
        help="at SIGTERM, seconds clients get to take their 1001 close (and webhooks to drain, 2 s of it at"
        " most) before the rest is aborted; at most 300 (default %(default)s)",
    )
    p.add_env_argument(
        "--tls-cert",
        default="",
        metavar="FILE",
        help="PEM certificate (chain); with --tls-key the port serves https:// and wss:// (default: plain HTTP)",
    )
    p.add_env_argument(
        "--tls-key", default="", metavar="FILE", help="PEM private key of --tls-cert, unencrypted (never logged)"
    )
    p.add_env_argument("--broker", default="memory", help="memory, redis://HOST:PORT/DB or nats://HOST:PORT")
    p.add_env_argument(
        "--store", default="", help="with --broker nats://: redis://HOST:PORT/DB for offsets, history and presence"
    )
    p.add_env_argument(
        "--presence-ttl",
        type=float,
        default=30.0,
        metavar="S",
        help="a dead node's presence expires after this long (default %(default)s)",
    )
    p.add_env_argument(
        "--history-size",
        type=int,
        default=1000,
        metavar="N",
        help="messages kept per room for resume (default %(default)s)",
    )
    p.add_env_argument(
        "--history-ttl",
        type=float,
        default=3600.0,
        metavar="S",
        help="seconds a message stays in history (default %(default)s)",
    )
    p.add_env_argument(
        "--history-max-bytes",
        type=_positive_int,
        default=67_108_864,
        metavar="BYTES",
        help="bytes of history the memory broker holds across all rooms; the oldest go first (default %(default)s)",
    )
    p.add_env_argument("--node-id", default=None, help="this node's name in presence (default: random)")
    p.add_env_argument(
        "--app",
        default="",
        metavar="MODULE:ATTR",
        help="serve this application's Hub, or a function returning one, imported with the current directory"
        " first on sys.path (default: the plain hub)",
    )
    p.add_env_argument(
        "--static",
        default="",
        metavar="DIR",
        help="serve the files under DIR at / (index.html for a directory) instead of the chat page",
    )
    p.add_env_argument(
        "--no-presence-events",
        action="store_true",
        help="send no member_joined/member_left (presence is still recorded for get_presence)",
    )
    # ---- server API flags (issue 11) below this line ----
    p.add_env_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="enable the server API (/api/...) for calls with 'Authorization: apikey KEY' (repeatable; prefer"
        " HUBBUB_API_KEY, comma-separated: a flag shows in ps)",
    )
    p.add_env_argument(
        "--api-from",
        default="server",
        metavar="NAME",
        help="the from of messages published through the API when the call gives none (default %(default)s)",
    )

    # ---- webhook flags (issue 11) below this line ----
    p.add_env_argument(
        "--webhook-secret",
        default="",
        metavar="S",
        help="the secret shared with the application: webhooks and proxy requests carry the HMAC-SHA256 of their"
        " body under it in X-Hubbub-Signature; required by --webhook, --connect-proxy and --publish-proxy"
        " (prefer HUBBUB_WEBHOOK_SECRET: a flag shows in ps)",
    )
    p.add_env_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="URL",
        help="POST every event (connected, member_joined, room_vacated, ...) to this http(s) URL, signed with"
        " --webhook-secret (repeatable)",
    )
    p.add_env_argument(
        "--webhook-messages", action="store_true", help="also send a message event for each message published"
    )
    p.add_env_argument(
        "--webhook-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="one POST's time in all before it is retried (default %(default)s)",
    )
    p.add_env_argument(
        "--webhook-retry-for",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long a failing event is retried, with backoff, before it is given up (default %(default)s)",
    )
    p.add_env_argument(
        "--webhook-queue",
        type=_positive_int,
        default=10_000,
        metavar="N",
        help="events waiting per URL at most; past it new ones are dropped (default %(default)s)",
    )
    p.add_env_argument(
        "--webhook-queue-bytes",
        type=_positive_int,
        default=67_108_864,
        metavar="BYTES",
        help="bytes of events waiting per URL at most (a message event counts its message); past it new ones"
        " are dropped (default %(default)s)",
    )
    p.add_env_argument(
        "--webhook-concurrency",
        type=_positive_int,
        default=16,
        metavar="N",
        help="POSTs in flight per URL: rooms sent in parallel, each in order (default %(default)s)",
    )

    # ---- proxy flags (issue 11) below this line ----
    p.add_env_argument(
        "--connect-proxy",
        default="",
        metavar="URL",
        help="POST each /ws handshake without a ticket or token to the application at URL first; its answer"
        " gives the identity, rooms and info (401/403 refuse; no answer: 503)",
    )
    p.add_env_argument(
        "--publish-proxy",
        default="",
        metavar="URL",
        help="POST each client send_message to the application at URL first: it publishes, rewrites or refuses",
    )
    p.add_env_argument(
        "--proxy-header",
        action="append",
        default=[],
        metavar="NAME",
        help="a handshake header passed on to --connect-proxy (repeatable; default Cookie and Authorization)",
    )
    p.add_env_argument(
        "--proxy-timeout",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds a proxy call may take in all; later: 503 or unavailable (default %(default)s)",
    )
    p.add_env_argument(
        "--proxy-max-waiting",
        type=_positive_int,
        default=256,
        metavar="N",
        help="handshakes waiting on --connect-proxy at once; past it: 503 (default %(default)s)",
    )

    # ---- end of the issue 11 flags ----
    p.add_env_argument("--echo", action="store_true", default=False, help="serve /echo for conformance runs")
    p.add_env_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="(default %(default)s)"
    )
    p.add_env_argument("--log-format", default="text", choices=["text", "json"], help="(default %(default)s)")


def _add_secret(p: _Parser) -> None:
    """`--auth-secret` and `--auth-secret-file`; the help never shows the value (it may come from the env)."""
    p.add_env_argument(
        "--auth-secret",
        default="",
        metavar="S",
        help="HS256 secret of signed tokens (JWT), at least 32 bytes; /ws then wants ?token=T or the subprotocol"
        " hubbub.token.T (prefer HUBBUB_AUTH_SECRET or --auth-secret-file: a flag shows in ps)",
    )
    p.add_env_argument(
        "--auth-secret-file",
        default="",
        metavar="FILE",
        help="read --auth-secret from FILE (one trailing newline stripped)",
    )


def _secret(args: argparse.Namespace) -> str:
    """The secret of `--auth-secret` or `--auth-secret-file` (not both); `ConfigError` for a bad file."""
    if not args.auth_secret_file:
        return str(args.auth_secret)
    if args.auth_secret:
        raise ConfigError("give --auth-secret or --auth-secret-file, not both")
    try:
        with open(args.auth_secret_file, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise ConfigError(f"cannot read --auth-secret-file {args.auth_secret_file}: {reason}") from None
    secret = text[:-1] if text.endswith("\n") else text
    if secret.endswith("\r"):
        secret = secret[:-1]
    if not secret:
        raise ConfigError(f"--auth-secret-file {args.auth_secret_file} is empty")
    return secret


def _add_token(sub: Any) -> None:
    p: _Parser = sub.add_parser(
        "token",
        help="mint a signed token for --auth-secret",
        description="Print one HS256 token (JWT) for a hub started with the same --auth-secret.",
    )
    p.add_argument("--sub", required=True, help="the identity the token connects as")
    p.add_argument("--ttl", type=float, default=3600.0, metavar="S", help="seconds it is valid (default %(default)s)")
    p.add_argument(
        "--rooms",
        default=None,
        metavar="LIST",
        help="comma-separated rooms it may join, exact names or prefix* patterns (default: any room)",
    )
    p.add_argument("--audience", default=None, help="its aud claim (the hub's --auth-audience)")
    p.add_argument("--issuer", default=None, help="its iss claim (the hub's --auth-issuer)")
    _add_secret(p)


def _token(args: argparse.Namespace) -> int:
    """`hubbub token`: one token on stdout; a bad input is one line on stderr and exit 2."""
    from hubbub.auth.tokens import MIN_SECRET_BYTES, mint_token

    try:
        secret = _secret(args)
        if not secret:
            raise ConfigError("no secret: give --auth-secret, --auth-secret-file or HUBBUB_AUTH_SECRET")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"--auth-secret must be at least {MIN_SECRET_BYTES} bytes")
        if not args.sub:
            raise ConfigError("--sub must not be empty")
        if not 0 < args.ttl < 10 * 365 * 86400:
            raise ConfigError("--ttl must be positive (and under ten years)")
        rooms = None if args.rooms is None else [r.strip() for r in args.rooms.split(",") if r.strip()]
        backends_require_jwt()
    except ConfigError as exc:
        print(f"hubbub token: {exc}", file=sys.stderr)
        return 2
    print(mint_token(secret, args.sub, args.ttl, rooms, args.audience, args.issuer))
    return 0


def backends_require_jwt() -> None:
    """`MissingExtra` (a `ConfigError`) unless PyJWT is installed."""
    try:
        import jwt  # noqa: F401
    except ImportError:
        raise backends.MissingExtra("tokens need the PyJWT package: pip install 'hubbub[auth]'") from None


def _add_bench(sub: Any) -> None:
    from hubbub.client.bench import MEASURES, SCENARIO_HELP, SCENARIOS

    scenarios = "\n".join(f"  {name:<6} {text}" for name, text in SCENARIO_HELP.items())
    p: _Parser = sub.add_parser(
        "bench",
        help="fan-out load generator",
        description="Load a hub with publishers and subscribers; report throughput and latency."
        f"\n\nscenarios:\n{scenarios}\n\n{MEASURES}\n\nRun the server with --rate-limit 0: a publisher"
        " sends thousands of messages a second.",
        formatter_class=_BenchHelp,
    )
    p.add_argument(
        "scenario", nargs="?", default="F1", choices=sorted(SCENARIOS), help="preset, described above (default F1)"
    )
    p.add_argument(
        "--url",
        default="ws://127.0.0.1:8000/ws",
        help="the hub's WebSocket URL; several, comma-separated, spread the clients (default %(default)s)",
    )
    for name in ("clients", "rooms", "msgs", "window", "size", "stalled"):
        p.add_argument(f"--{name}", type=int, help=f"override the scenario's {name}")
    p.add_argument("--procs", type=int, default=0, help="worker processes (default: up to 4)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for deliveries (default %(default)s)")
    p.add_argument("--server-pid", type=int, default=0, help="report this process's CPU per delivery and RSS growth")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--ca", metavar="FILE", help="for wss:// URLs: trust this PEM certificate (e.g. a self-signed one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


class _BenchHelp(argparse.RawDescriptionHelpFormatter):
    """Keeps the scenario list's lines, and wraps the long paragraphs of the description."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        return "\n".join(
            textwrap.fill(line, width, subsequent_indent=indent + " " * (9 if line.startswith("  ") else 0))
            for line in text.splitlines()
        )


def _bench(args: argparse.Namespace) -> int:
    from hubbub.client.bench import SCENARIOS, Plan, run, to_json
    from hubbub.client.errors import InvalidURL, check_url

    preset = dict(SCENARIOS[args.scenario])
    for name in ("clients", "rooms", "msgs", "window", "size", "stalled"):
        value = getattr(args, name)
        if value is not None:
            if value < 0 or (value == 0 and name not in ("stalled",)):
                print(f"hubbub bench: --{name} must be positive", file=sys.stderr)
                return 2
            preset[name] = value
    plan = Plan(url=args.url, timeout=args.timeout, ca=args.ca)
    try:
        for url in plan.urls:
            check_url(url)
        plan.ssl_context()
    except (ConfigError, InvalidURL) as exc:
        print(f"hubbub bench: {exc}", file=sys.stderr)
        return 2
    for name, value in preset.items():
        setattr(plan, name, value)
    try:
        result = run(
            plan,
            args.scenario,
            args.procs,
            args.server_pid,
            progress=sys.stderr.isatty() and not args.no_progress and not args.json,
        )
    except (ConnectionError, OSError) as exc:
        print(f"hubbub bench: {exc}", file=sys.stderr)
        return 1
    print(to_json(result) if args.json else result.table())
    return 0 if result.lost == 0 else 1


def _add_chat(sub: Any) -> None:
    p: _Parser = sub.add_parser(
        "chat",
        help="terminal chat",
        description="Chat in a room from the terminal; /help lists the commands once connected.",
    )
    p.add_argument(
        "url",
        nargs="?",
        default="ws://127.0.0.1:8000/ws",
        help="the hub, ws:// or wss:// (a page's http:// URL is taken for its hub's) (default %(default)s)",
    )
    p.add_argument("--room", default="lobby", help="room to join (default %(default)s)")
    p.add_argument(
        "--name",
        default=os.environ.get("USER") or "guest",
        help="display name, ignored when the URL has a token or ticket (the hub names you from it)"
        " (default: $USER, or guest when $USER is unset or empty)",
    )
    p.add_argument("--ca", metavar="FILE", help="for wss://: trust this PEM certificate (e.g. a self-signed one)")


def _add_hash_password(sub: Any) -> None:
    sub.add_parser(
        "hash-password",
        help="hash a password for --users",
        description="Read a password on stdin (a trailing newline is not part of it) and print its argon2id hash,"
        " for a name:HASH line of a --users file.",
    )


def _hash_password() -> int:
    """`hubbub hash-password`: stdin to one hash line; a bad input is one line on stderr and exit 2."""
    from hubbub.auth.passwords import hash_password

    if sys.stdin.isatty():  # typed by hand: not echoed
        import getpass

        data = getpass.getpass("password: ").encode()
    else:
        data = sys.stdin.buffer.read()
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    try:
        password = data.decode()
    except UnicodeDecodeError:
        print("hubbub hash-password: the password is not UTF-8", file=sys.stderr)
        return 2
    if not password:
        print("hubbub hash-password: empty password (give it on stdin)", file=sys.stderr)
        return 2
    try:
        print(hash_password(password))
    except ConfigError as exc:
        print(f"hubbub hash-password: {exc}", file=sys.stderr)
        return 2
    return 0


def _add_publish(sub: Any) -> None:
    p: _Parser = sub.add_parser(
        "publish",
        help="publish a message through the server API",
        description="Publish one message to a room through a server's API (hubbub serve --api-key) and print its"
        " offset. The key comes from --api-key or HUBBUB_API_KEY (the first, if comma-separated).",
    )
    p.add_argument("url", nargs="?", help="the server's HTTP address, e.g. http://127.0.0.1:8000")
    p.add_argument("--room", help="the room to publish to")
    p.add_argument("--message", metavar="M", help="the message: JSON if it parses as JSON, else this text")
    p.add_argument("--from", dest="sender", metavar="NAME", help="its from (default: the server's --api-from)")
    p.add_argument(
        "--api-key", metavar="K", help="an API key of the server (prefer HUBBUB_API_KEY: a flag shows in ps)"
    )
    p.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds to wait (default %(default)s)")


def _publish(args: argparse.Namespace) -> int:
    """`hubbub publish`: the offset on stdout; one line on stderr and exit 2 for bad flags, 1 when the
    server refuses or cannot be reached."""
    import msgspec

    from hubbub.client.api import ApiClient, ApiError

    key = args.api_key or next((k for k in (_env("--api-key") or "").split(",") if k), "")
    missing = [flag for flag in ("url", "room", "message") if getattr(args, flag) is None]
    if missing or not key:
        wanted = ["the URL" if name == "url" else f"--{name}" for name in missing] or ["--api-key or HUBBUB_API_KEY"]
        print(f"hubbub publish: give {', '.join(wanted)}", file=sys.stderr)
        return 2
    try:
        message = msgspec.json.decode(args.message)
    except msgspec.DecodeError:
        message = args.message
    try:
        with ApiClient(args.url, key, timeout=args.timeout) as api:
            offset = api.publish(args.room, message, from_=args.sender)
    except ValueError as exc:
        print(f"hubbub publish: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"hubbub publish: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(offset)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hubbub", description="A real-time event hub over WebSockets.")
    parser.add_argument("--version", action="version", version=f"hubbub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_serve(sub)
    _add_bench(sub)
    _add_chat(sub)
    _add_hash_password(sub)
    _add_token(sub)
    _add_publish(sub)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(
        host=args.host,
        port=args.port,
        max_message_size=args.max_message_size,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        send_queue_bytes=args.send_queue_bytes,
        send_buffer=args.send_buffer,
        write_delay=args.write_delay,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        frame_rate=args.frame_rate,
        max_rooms_per_connection=args.max_rooms_per_connection,
        users_file=args.users,
        ticket_ttl=args.ticket_ttl,
        auth_secret=_secret(args),
        auth_audience=args.auth_audience,
        auth_issuer=args.auth_issuer,
        allow_anonymous=args.allow_anonymous,
        broker=args.broker,
        store=args.store,
        presence_ttl=args.presence_ttl,
        history_size=args.history_size,
        history_ttl=args.history_ttl,
        history_max_bytes=args.history_max_bytes,
        **({"node_id": args.node_id} if args.node_id else {}),
        allowed_origins=tuple(args.allowed_origin),
        allowed_hosts=tuple(args.allowed_host),
        max_connections=args.max_connections,
        max_connections_per_ip=args.max_connections_per_ip,
        backlog=args.backlog,
        shutdown_timeout=args.shutdown_timeout,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        echo=args.echo,
        presence_events=not args.no_presence_events,
        static_dir=args.static,
        # ---- server API settings below this line ----
        api_keys=tuple(args.api_key),
        api_from=args.api_from,
        # ---- webhook settings below this line ----
        webhook_secret=args.webhook_secret,
        webhooks=tuple(args.webhook),
        webhook_messages=args.webhook_messages,
        webhook_timeout=args.webhook_timeout,
        webhook_retry_for=args.webhook_retry_for,
        webhook_queue=args.webhook_queue,
        webhook_queue_bytes=args.webhook_queue_bytes,
        webhook_concurrency=args.webhook_concurrency,
        # ---- proxy settings below this line ----
        connect_proxy=args.connect_proxy,
        publish_proxy=args.publish_proxy,
        proxy_headers=tuple(args.proxy_header) or ("Cookie", "Authorization"),
        proxy_timeout=args.proxy_timeout,
        proxy_max_waiting=args.proxy_max_waiting,
        # ---- end of the issue 11 settings ----
        log_level=args.log_level,
        log_format=args.log_format,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.command == "serve":
        try:
            settings = _settings(args)
            backends.check(settings)
            if settings.tls_cert:
                tls.server_context(settings.tls_cert, settings.tls_key)  # a bad file: one line, exit 2
        except backends.MissingExtra as exc:
            print(f"hubbub serve: {exc}", file=sys.stderr)
            return 2
        except ConfigError as exc:
            _commands(parser)["serve"].error(str(exc))
        if settings.users_file:
            from hubbub.auth.passwords import Users

            try:
                Users.load(settings.users_file)  # a bad file: one line and exit 2, before anything starts
            except ConfigError as exc:
                print(f"hubbub serve: {exc}", file=sys.stderr)
                return 2
        app: Hub | None = None
        try:
            if settings.static_dir:
                from hubbub.server.static_files import StaticFiles

                try:
                    StaticFiles(settings.static_dir)
                except OSError:
                    raise ConfigError(f"--static: {settings.static_dir!r} is not a readable directory") from None
            if args.app:
                from hubbub.integration.apps import load_app

                app = load_app(args.app, settings)
        except ConfigError as exc:
            print(f"hubbub serve: {exc}", file=sys.stderr)
            return 2
        code = run_server(settings, app)
        if code:
            return code
    if args.command == "hash-password":
        return _hash_password()
    if args.command == "token":
        return _token(args)
    if args.command == "bench":
        return _bench(args)
    if args.command == "publish":
        return _publish(args)
    if args.command == "chat":
        from hubbub.client import chat

        try:
            return int(run_async(chat.run(args.url, args.room, args.name, ca=args.ca)))
        except KeyboardInterrupt:
            return 0
        except ValueError as exc:  # ConfigError (--ca), InvalidURL, a bad --room
            print(f"hubbub chat: {exc}", file=sys.stderr)
            return 2
        except ConnectionError as exc:  # HubUnreachable, HandshakeRefused, an untrusted certificate
            print(f"hubbub chat: {exc}", file=sys.stderr)
            return 1
    return 0
