"""`hubbub bench`: a fan-out load generator that reports throughput and latency (`hubbub.client.bench`)."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

from hubbub.errors import ConfigError

NAME = "bench"
OVERRIDES = ("clients", "rooms", "msgs", "window", "size", "stalled")
"""The scenario's numbers a flag may override."""


class _BenchHelp(argparse.RawDescriptionHelpFormatter):
    """Keeps the scenario list's lines, and wraps the long paragraphs of the description."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(
            textwrap.fill(line, width, subsequent_indent=indent + " " * (9 if line.startswith("  ") else 0))
            for line in text.splitlines()
        )


def add_parser(sub: Any) -> None:
    from hubbub.client.bench import MEASURES, SCENARIO_HELP, SCENARIOS

    scenarios = "\n".join(f"  {name:<6} {text}" for name, text in SCENARIO_HELP.items())
    p: argparse.ArgumentParser = sub.add_parser(
        NAME,
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
    for name in OVERRIDES:
        p.add_argument(f"--{name}", type=int, help=f"override the scenario's {name}")
    p.add_argument("--procs", type=int, default=0, help="worker processes (default: up to 4)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for deliveries (default %(default)s)")
    p.add_argument("--server-pid", type=int, default=0, help="report this process's CPU per delivery and RSS growth")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--ca", metavar="FILE", help="for wss:// URLs: trust this PEM certificate (e.g. a self-signed one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace) -> int:
    """0 when every message arrived; 1 when some were lost or the hub failed; 2 for a bad flag."""
    from hubbub.client.bench import SCENARIOS, Plan, to_json
    from hubbub.client.bench import run as bench
    from hubbub.client.errors import InvalidURL, check_url

    preset = dict(SCENARIOS[args.scenario])
    for name in OVERRIDES:
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
        result = bench(
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
