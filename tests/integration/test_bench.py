"""`hubbub bench` against a real server process: it measures, tables and JSON, and fails clearly."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from tests.integration.test_cli import _free_port, _spawn, _wait_listening


@pytest.mark.timeout(60)
async def test_bench_smoke_delivers_everything_and_reports_json() -> None:
    port = _free_port()
    server = _spawn("serve", "--port", str(port))
    try:
        await _wait_listening(port, server)
        out = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "hubbub",
                "bench",
                "smoke",
                "--url",
                f"ws://127.0.0.1:{port}/ws",
                "--server-pid",
                str(server.pid),
                "--procs",
                "2",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=50,
        )
    finally:
        server.terminate()
        server.wait(5)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["expected"] == result["received"] == 50 * 100 and result["lost"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["server_cpu_us_per_delivery"] > 0 and result["server_rss_bytes_per_conn"] > 0, result
    assert result["slow_consumers_dropped"] == 0  # read from hubbub's /metrics


@pytest.mark.timeout(60)
async def test_bench_reports_the_stalled_member_it_got_dropped() -> None:
    """F4 in small: the stalled member is dropped and the others still get everything."""
    port = _free_port()
    server = _spawn("serve", "--port", str(port), "--send-queue-bytes", "131072", "--send-buffer", "65536")
    try:
        await _wait_listening(port, server)
        out = await asyncio.to_thread(
            subprocess.run,
            [
                *(sys.executable, "-m", "hubbub", "bench", "F4", "--url", f"ws://127.0.0.1:{port}/ws"),
                *("--clients", "20", "--msgs", "2000", "--size", "1000", "--procs", "1", "--json"),
            ],
            capture_output=True,
            text=True,
            timeout=50,
        )
    finally:
        server.terminate()
        server.wait(5)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
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
