"""`hubbub bench` against a real server process: it measures, tables and JSON, and fails clearly."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest

from tests.integration.test_cli import _free_port, _spawn, _wait_listening


async def _bench(serve: list[str], bench: list[str], with_pid: bool = False) -> dict[str, Any]:
    """Run `hubbub bench ... --json` against a fresh `hubbub serve` process; its JSON result."""
    port = _free_port()
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
    port = _free_port()
    out = subprocess.run(
        [sys.executable, "-m", "hubbub", "bench", "smoke", "--url", f"ws://127.0.0.1:{port}/ws", "--procs", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "could not connect" in out.stderr and "Traceback" not in out.stderr
