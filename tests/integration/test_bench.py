"""`hubbub bench` against a real server process: it measures, tables and JSON, and fails clearly."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from typing import Any

import pytest

from hubbub.client.bench import SCENARIO_HELP, SCENARIOS, Result, percentile, to_json
from tests.cluster import free_port
from tests.integration.test_cli import _spawn, _wait_listening


async def _bench(serve: list[str], bench: list[str], with_pid: bool = False) -> dict[str, Any]:
    """Run `hubbub bench ... --json` against a fresh `hubbub serve` process; its JSON result."""
    port = free_port()
    # Benchmarks run with the per-client rate limit off: one publisher sends thousands a second.
    server = _spawn("serve", "--port", str(port), "--rate-limit", "0", *serve)
    try:
        await _wait_listening(port, server)
        pid = ["--server-pid", str(server.pid)] if with_pid else []
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "hubbub", "bench", *bench, "--url", f"ws://127.0.0.1:{port}/ws", *pid, "--json"],
            capture_output=True,
            text=True,
            timeout=50,
        )
    finally:
        server.terminate()
        server.wait(5)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.timeout(60)
async def test_bench_smoke_delivers_everything_and_reports_json() -> None:
    result = await _bench([], ["smoke", "--procs", "2"], with_pid=True)
    assert result["expected"] == result["received"] == 50 * 100 and result["lost"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["server_cpu_us_per_delivery"] > 0 and result["server_rss_bytes_per_conn"] > 0, result
    assert result["slow_consumers_dropped"] == 0  # read from hubbub's /metrics


@pytest.mark.timeout(60)
async def test_bench_reports_the_stalled_member_it_got_dropped() -> None:
    """F4 in small: the stalled member is dropped and the others still get everything."""
    result = await _bench(
        ["--send-queue-bytes", "131072", "--send-buffer", "65536"],
        ["F4", "--clients", "20", "--msgs", "2000", "--size", "1000", "--procs", "1"],
    )
    assert result["slow_consumers_dropped"] == 1
    assert result["expected"] == result["received"] == 20 * 2000


def test_bench_without_a_server_says_so() -> None:
    port = free_port()
    out = subprocess.run(
        [sys.executable, "-m", "hubbub", "bench", "smoke", "--url", f"ws://127.0.0.1:{port}/ws", "--procs", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "could not connect" in out.stderr and "Traceback" not in out.stderr


def _bench_against(port: int, *bench: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hubbub", "bench", *bench, "--url", f"ws://127.0.0.1:{port}/ws", "--procs", "2"],
        capture_output=True,
        text=True,
        timeout=50,
    )


@pytest.mark.timeout(60)
async def test_bench_against_a_rate_limited_server_stops_early_saying_why() -> None:
    """A default server (20 events a second per client): not a wait for the 120 s timeout and a count of
    losses, but one line, soon, that names --rate-limit 0."""
    port = free_port()
    server = _spawn("serve", "--port", str(port))
    try:
        await _wait_listening(port, server)
        started = time.monotonic()
        out = await asyncio.to_thread(_bench_against, port, "smoke", "--msgs", "2000")
        took = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(5)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("hubbub bench: the server answered rate_limited") and "--rate-limit 0" in out.stderr
    assert took < 30


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--max-connections-per-ip", "5"], "HTTP 429 Too Many Requests"),
        (["--max-connections", "5"], "HTTP 503 Service Unavailable"),
    ],
)
async def test_bench_refused_for_a_connection_cap_names_the_flag(flags: list[str], words: str) -> None:
    port = free_port()
    server = _spawn("serve", "--port", str(port), "--rate-limit", "0", *flags)
    try:
        await _wait_listening(port, server)
        out = await asyncio.to_thread(_bench_against, port, "smoke")
    finally:
        server.terminate()
        server.wait(5)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert words in out.stderr and f"a higher {flags[0]}" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("path", "words"), [("/", "HTTP 200 OK: no hub at this path (it is usually /ws)"), ("/nope", "HTTP 404")]
)
async def test_bench_at_a_path_without_a_hub_says_so(path: str, words: str) -> None:
    port = free_port()
    server = _spawn("serve", "--port", str(port), "--rate-limit", "0")
    try:
        await _wait_listening(port, server)
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "hubbub", "bench", "smoke", "--url", f"ws://127.0.0.1:{port}{path}", "--procs", "1"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        server.terminate()
        server.wait(5)
    assert out.returncode == 1 and words in out.stderr and "no hub at this path" in out.stderr, out.stderr


def _result(**figures: Any) -> Result:
    base: dict[str, Any] = {
        "scenario": "smoke",
        "clients": 50,
        "rooms": 5,
        "expected": 5000,
        "received": 5000,
        "seconds": 1.0,
        "deliveries_per_s": 5000.0,
        "p50_ms": 1.0,
        "p90_ms": 2.0,
        "p99_ms": 3.0,
        "max_ms": 4.0,
        "connect_s": 0.1,
    }
    return Result(**{**base, **figures}).vetted(asked_server=True)


def test_bench_never_prints_a_negative_or_meaningless_figure() -> None:
    """A busy server can make "server RSS per connection -102 bytes". A figure that
    cannot be measured is n/a with its reason, in the table and (null + unmeasured) in JSON."""
    busy = _result(server_rss_bytes_per_conn=-102.0, server_cpu_us_per_delivery=0.3, slow_consumers_dropped=-4)
    table = " ".join(busy.table().split())
    assert "server RSS per connection n/a (server busy: its RSS did not grow" in table
    assert "slow consumers dropped n/a (the server's counter went back" in table
    assert "server CPU per delivery 0.300 us" in table and not re.search(r"-\d", table)
    doc = json.loads(to_json(busy))
    assert doc["server_rss_bytes_per_conn"] is None and "server_rss_bytes_per_conn" in doc["unmeasured"]
    nothing = _result(received=0, deliveries_per_s=0.0, p50_ms=None, p90_ms=None, p99_ms=None, max_ms=None)
    table = " ".join(nothing.table().split())
    assert "latency p50/p90/p99/max n/a (no message arrived)" in table
    assert "server CPU per delivery n/a (nothing was delivered)" in table
    assert percentile([], 0.5) is None


def test_bench_help_describes_every_scenario() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hubbub", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert out.returncode == 0
    for name in SCENARIOS:
        assert f"\n  {name:<6} {SCENARIO_HELP[name][:20]}" in out.stdout
    assert "never as a negative number" in out.stdout.replace("\n", " ")
