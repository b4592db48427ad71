"""Several hubbub nodes as real processes, and a private Redis they share.

Tests that kill nodes or restart Redis use their own redis-server on a free
port, so they never disturb the machine's Redis on 6379.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port no socket uses on any address now, and one no outgoing connection will take.

    A port the kernel picks with bind(0) comes from the ephemeral range, the same range every
    outgoing connection (to Redis, to NATS, to a node) takes its local port from: between this
    call and the server's bind, a client somewhere in the suite can take it, and the node then
    exits with "Address already in use" (seen in CI). So the port is drawn below that range, where
    the kernel never hands out local ports, checked free on the wildcard address (which conflicts
    with every address's use), and never handed out twice in one run.
    """
    low, _ = _ephemeral_range()
    floor = 10_000 if low > 12_000 else 1_024
    for _attempt in range(200):
        port = random.randrange(floor, low)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # a machine with no room below its ephemeral range
        s.bind(("", 0))
        chosen: int = s.getsockname()[1]
        return chosen


async def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {port}") from None
            await asyncio.sleep(0.05)


class RedisProcess:
    """A throwaway redis-server that a test may stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None


class Node:
    """One `hubbub serve` process."""

    def __init__(self, broker: str, *extra: str, port: int | None = None, node_id: str = "") -> None:
        self.port = port or free_port()
        # Publishers in these tests send at full speed: the per-client rate limit is not what they test.
        self.args = ["serve", "--port", str(self.port), "--broker", broker, "--log-level", "warning"]
        self.args += ["--rate-limit", "0", *extra]
        if node_id:
            self.args += ["--node-id", node_id]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> Node:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the node; a pipe could fill up
        self.proc = subprocess.Popen([sys.executable, "-m", "hubbub", *self.args], stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            try:
                await wait_port(self.port, timeout=0.5)
                return self
            except AssertionError:
                if self.proc.poll() is not None:
                    code = self.proc.returncode
                    raise AssertionError(f"node on {self.port} exited {code}: {self.stderr()}") from None
                if time.monotonic() > deadline:
                    raise AssertionError(f"nothing listens on {self.port} after 30 s: {self.stderr()}") from None

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def health(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode()
