#!/usr/bin/env python3
"""Handshake latency with an identity provider's token (keys from a cached JWKS) against hubbub's own HS256.

    python3 benchmarks/token_handshakes.py                         # 2,000 handshakes per kind, this tree
    python3 benchmarks/token_handshakes.py -n 5000 --kinds HS256 RS256 ES256 EdDSA --src /work/wt/x/src

Starts `python3 -m hubbub serve --auth-secret S --auth-jwks-url http://127.0.0.1:P/jwks` (the tree's
`--src` on PYTHONPATH, pinned to core 1 when there are two), serving the JWKS itself from this
process (fetched once, at the server's start, then cached: the measured handshakes never fetch).
This process (pinned to core 0) opens one TCP connection per handshake, sends the upgrade request
with `?token=T`, reads the answer head (101 expected) and closes: the time from connect to the head
is one sample. Kinds take turns in rounds of 100, so drift on a shared machine hits each alike.
Also measures `Verifier.verify` alone, in this process, per kind (the signature check's share).

Prints, per kind: handshakes, median, p99, max (ms), handshakes/s (sequential), and the
in-process verify cost (µs). One JSON line per run goes to benchmarks/results/token-handshakes-<date>.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

SECRET = "benchmark-secret-" + "s" * 48
KEYS: dict[str, Any] = {
    "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": ec.generate_private_key(ec.SECP256R1()),
    "EdDSA": ed25519.Ed25519PrivateKey.generate(),
}


def jwks() -> bytes:
    keys = [
        {**jwt.algorithms.RSAAlgorithm.to_jwk(KEYS["RS256"].public_key(), as_dict=True), "kid": "RS256"},
        {**jwt.algorithms.ECAlgorithm.to_jwk(KEYS["ES256"].public_key(), as_dict=True), "kid": "ES256"},
        {**jwt.algorithms.OKPAlgorithm.to_jwk(KEYS["EdDSA"].public_key(), as_dict=True), "kid": "EdDSA"},
    ]
    return json.dumps({"keys": keys}).encode()


def token(kind: str, sub: str) -> str:
    claims = {"sub": sub, "exp": int(time.time()) + 3600}
    if kind == "HS256":
        return jwt.encode(claims, SECRET, algorithm="HS256")
    return jwt.encode(claims, KEYS[kind], algorithm=kind, headers={"kid": kind})


async def serve_jwks(body: bytes) -> tuple[asyncio.Server, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write((head + "Cache-Control: max-age=3600\r\nConnection: close\r\n\r\n").encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def handshake(port: int, tok: str) -> float:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws?token={tok} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    elapsed = time.perf_counter() - start
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    writer.close()
    await writer.wait_closed()
    return elapsed


async def wait_listening(port: int, proc: asyncio.subprocess.Process) -> None:
    for _ in range(200):
        if proc.returncode is not None:
            raise RuntimeError("the server exited")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the server did not listen")


async def measure(args: argparse.Namespace, two_cores: bool) -> dict[str, list[float]]:
    """Seconds per handshake, by kind, against a server started here (module docstring)."""
    jwks_server, jwks_port = await serve_jwks(jwks())
    env = {**os.environ, "PYTHONPATH": args.src, "HUBBUB_AUTH_SECRET": SECRET}
    command = [sys.executable, "-m", "hubbub", "serve", "--port", str(args.port), "--log-level", "warning"]
    command += ["--auth-jwks-url", f"http://127.0.0.1:{jwks_port}/jwks", "--max-connections-per-ip", "100000"]
    if two_cores:
        command = ["taskset", "-c", "1", *command]
    proc = await asyncio.create_subprocess_exec(*command, env=env)
    samples: dict[str, list[float]] = {kind: [] for kind in args.kinds}
    try:
        await wait_listening(args.port, proc)
        tokens = {kind: token(kind, f"user-{kind}") for kind in args.kinds}
        for kind in args.kinds:  # warm up: the first fetch, imports, caches
            for _ in range(50):
                await handshake(args.port, tokens[kind])
        rounds = -(-args.n // 100)
        for _ in range(rounds):
            for kind in args.kinds:
                for _ in range(100):
                    samples[kind].append(await handshake(args.port, tokens[kind]))
    finally:
        proc.terminate()
        await proc.wait()
        jwks_server.close()
    return samples


def verify_cost(kinds: list[str], src: str) -> dict[str, float]:
    """µs per `Verifier.verify` of each kind, in this process."""
    sys.path.insert(0, src)
    from hubbub.auth.keys import parse_jwks
    from hubbub.auth.tokens import Verifier

    verifier = Verifier(SECRET, parse_jwks(jwks()))
    costs = {}
    for kind in kinds:
        tok = token(kind, "bench")
        verifier.verify(tok)
        n = 2000
        start = time.perf_counter()
        for _ in range(n):
            verifier.verify(tok)
        costs[kind] = (time.perf_counter() - start) / n * 1e6
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="handshakes per kind")
    parser.add_argument("--kinds", nargs="+", default=["HS256", "RS256", "ES256", "EdDSA"])
    parser.add_argument("--src", default=str(Path(__file__).resolve().parent.parent / "src"))
    parser.add_argument("--port", type=int, default=0, help="the server's port (default: a free one)")
    args = parser.parse_args()
    if not args.port:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.cluster import free_port

        args.port = free_port()
    two_cores = (os.cpu_count() or 1) >= 2
    if two_cores:
        os.sched_setaffinity(0, {0})
    samples = asyncio.run(measure(args, two_cores))
    costs = verify_cost(args.kinds, args.src)
    rows = []
    print(f"{'kind':8} {'n':>6} {'median ms':>10} {'p99 ms':>8} {'max ms':>8} {'hs/s':>7} {'verify µs':>10}")
    for kind in args.kinds:
        got = sorted(samples[kind])
        row = {
            "kind": kind,
            "n": len(got),
            "median_ms": statistics.median(got) * 1e3,
            "p99_ms": got[int(len(got) * 0.99) - 1] * 1e3,
            "max_ms": got[-1] * 1e3,
            "per_s": len(got) / sum(got),
            "verify_us": costs[kind],
        }
        rows.append(row)
        print(
            f"{kind:8} {row['n']:>6} {row['median_ms']:>10.3f} {row['p99_ms']:>8.3f} {row['max_ms']:>8.3f}"
            f" {row['per_s']:>7.0f} {row['verify_us']:>10.1f}"
        )
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    commit = subprocess.run(
        ["git", "-C", args.src, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    line = {"date": datetime.datetime.now(datetime.UTC).isoformat(), "commit": commit, "rows": rows}
    with open(results / f"token-handshakes-{datetime.date.today():%Y-%m-%d}.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
