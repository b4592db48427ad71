"""Several hubbub nodes as real processes, and a private Redis they share.

Tests that kill nodes or restart Redis use their own redis-server on a free
port, so they never disturb the machine's Redis on 6379.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port() -> int:
    """A TCP port no socket uses on any address now: free for a server on 127.0.0.1 and on 0.0.0.0.

    A port free on 127.0.0.1 alone may be another address's (a connection out of the machine's
    own address holds its local port there), and a server binding 0.0.0.0 to it fails with
    "Address already in use"; the wildcard address conflicts with every address's use.
    """
    with socket.socket() as s:
        s.bind(("", 0))
        port: int = s.getsockname()[1]
        return port


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
        await wait_port(self.port)
        return self

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
