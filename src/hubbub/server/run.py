"""Serving a hub until SIGTERM or SIGINT: what `hubbub serve` and `hubbub.run(hub)` share.

It installs the signal handlers, opens the backends the settings name, prints
the start line and reports a start-up that fails in one line on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

from hubbub import backends
from hubbub.backends.broker import BrokerUnavailable
from hubbub.core.settings import Settings
from hubbub.errors import ConfigError
from hubbub.server import logs

if TYPE_CHECKING:
    from hubbub.core.hub import Hub
    from hubbub.server.server import Server

log = logging.getLogger("hubbub.cli")


def run_async(main: Any) -> Any:
    """Run a coroutine on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(main)
    return uvloop.run(main)


def start_line(server: Server) -> str:
    """The line a person reads at start-up: the page to open and the WebSocket URL.

    The host is one a browser on this machine can use: the first `--allowed-host` when
    given (a proxy's public name), 127.0.0.1 (or ::1) for a wildcard `--host`, else `--host`.
    """
    s = server.settings
    port = server.port
    if s.allowed_hosts:
        first = s.allowed_hosts[0]  # `name`, `name:port`, `[v6]` or `[v6]:port`
        has_port = ":" in first.rsplit("]", 1)[-1]
        authority = first if has_port else f"{first}:{port}"
    else:
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(s.host, s.host)
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    ws = "wss" if server.scheme == "https" else "ws"
    page = f"files of {s.static_dir}" if s.static_dir else "chat page"
    admin = f", admin at {server.scheme}://{authority}/admin" if s.admin_password else ""
    return f"hubbub: serving {server.scheme}://{authority}/ ({page}), {ws}://{authority}/ws{admin}"


def _print_start_line(server: Server) -> None:
    """On stdout, for people: the logs (stderr) may be JSON lines for machines."""
    print(start_line(server), flush=True)


async def _serve(settings: Settings, app: Hub | None = None) -> None:
    """Run the server until SIGTERM or SIGINT.

    The signal handlers are installed before the broker is reached, and the
    start-up is a task of its own: a signal while a broker is still being
    reached (up to `STARTUP_TIMEOUT`) abandons it and exits 0, instead of
    being ignored until the start-up ends. A start-up that fails raises
    `BrokerUnavailable` or `OSError`, which `main` reports in one line.

    `app`, the hub of `--app`, gets these settings and backends (`Hub.configure`).
    """
    from hubbub.backends import open_backends
    from hubbub.core.hub import Hub
    from hubbub.server.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    broker, presence = open_backends(settings)
    if app is not None:
        app.configure(settings, broker, presence)
        hub = app
    else:
        hub = Hub(settings, broker, presence)
    ready = asyncio.Event()
    serving = asyncio.ensure_future(serve(hub, ready=ready, stop=stop, started=_print_start_line))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if serving.done() or ready.is_set():
        await serving  # serve() itself shuts down once it listens and `stop` is set
        return
    log.info("server.start_abandoned", extra={"broker": backends.redact(settings.broker)})
    serving.cancel()
    await asyncio.wait({serving})
    if not serving.cancelled():
        serving.exception()  # a start-up that failed at the same moment: we are stopping anyway
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(settings.shutdown_timeout):
            await hub.shutdown()


def run_server(settings: Settings, app: Hub | None) -> int:
    """Serve until SIGTERM or SIGINT (0), or report in one line why it could not start (1, or 2 for
    settings that cannot work)."""
    logs.configure(settings.log_level, settings.log_format)
    try:
        run_async(_serve(settings, app))
    except BrokerUnavailable as exc:
        print(f"hubbub: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # e.g. a TLS file that cannot be used, met at start
        print(f"hubbub: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hubbub: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def run(hub: Hub) -> None:
    """Serve an application's `hub` from a script, as `hubbub serve --app` would: `hubbub.run(hub)`.

    It prints the start line (the URL to open), logs as `hub.settings` says, and
    returns when Ctrl-C or SIGTERM has closed every connection with 1001: no
    traceback. The backends come from `hub.settings` (`broker`, `store`), as
    for `--app`. A port in use or a broker that cannot be reached is one line
    on stderr and `SystemExit(1)`; settings that cannot work, `SystemExit(2)`.
    """
    code = run_server(hub.settings, hub)
    if code:
        raise SystemExit(code)
