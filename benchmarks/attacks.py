#!/usr/bin/env python3
"""Attacks by a hostile client, each against a fresh hubbub server, seen from three honest clients.

    python3 benchmarks/attacks.py all --src src                     # this tree, every attack
    python3 benchmarks/attacks.py ping-noread join-flood --duration 4 --src /work/wt/attackbench/src
    python3 benchmarks/attacks.py all --src /tmp/before/src --src /tmp/after/src \\
        --server-args "" --server-args "--rate-limit 0"            # A/B: A B per attack, side by side
    python3 benchmarks/attacks.py --list

Each run starts `python3 -m hubbub serve --port P --log-level info [--server-args]` with the
tree's `--src` (a `src` directory, or a checkout holding one) on PYTHONPATH, pinned to core 1;
this script pins itself to core 0 (when two cores exist). Three honest clients (`websockets`,
in a child process, from 127.0.0.2) join room `honest` and each send `send_message` with an
`id` at `--honest-rate` per second; latency is the time to the ack. They run `--baseline`
seconds alone, then during the attack (`--duration` seconds, plus `--settle` after it). The
attacker speaks raw WebSocket over asyncio streams (from 127.0.0.3; the members of
`room-flood` each from their own 127.0.1.x), so it can send any frame.

Bounds: every attack stops at `--duration` (join-flood at its count, 100,000 joins, or at
`--timeout`), at `--timeout` in any case, and as soon as the server's RSS passes
`--rss-ceiling-mb` (sampled every 100 ms; past 1.25 x the ceiling the server is killed).

Per run it reports honest p50/p99/max and failures (disconnects; requests still unanswered at
the end count with their age), the server's RSS before/peak/after (VmRSS), its CPU share, the
log bytes and lines written during the attack (and the commonest events), what became of the
attacker (closed with a code, reset, or still connected, and after how long) and its rate.
One JSON line per run is appended to benchmarks/results/attacks-<date>.jsonl (with the tree's
commit and server args), and a table is printed at the end.

Attacks (`--list` prints them):
  ping-noread   floods 125-byte pings and never reads (receive buffer 4 KiB)
  ping-read     floods 4-byte pings and reads the pongs
  fragments     a text frame with FIN=0, then empty continuation frames without end
  room-flood    100 members that read everything, and one that pipelines send_message to them
  history       one client in 500 rooms sends 60 KB messages round-robin (reads its echoes)
  join-flood    100,000 join_room pipelined on one connection, then a close
  deep-json     send_message whose message is JSON nested 5,000 deep, pipelined
  malformed     one malformed frame per connection (6 kinds in turn), 4 connections at a time
  presence-churn  1,000 named members of one room (reading everything) each leave and rejoin once a second
                (--churn-gap S: the rejoin S seconds after the leave)
  join-burst    1,000 named clients join one room at once, then read what it announces
  tls-trickle   waves of sockets that send nothing or trickle a TLS ClientHello at 1 byte/s
  tls-replay    32 at once, again and again: a recorded ClientHello, the server's flight read, close
  login-flood   40 wrong-password POST /login at once for one user, from fresh addresses (10 logins
                each, 0.4 new a second), while another user logs in once a second (server:
                --users with both, --allow-anonymous for the honest clients)
  stalled-replay  --stallers sockets (receive buffer 4 KiB) each join a room of 1,000 60 KB messages with
                since 0, never read, and send an unsolicited pong every 10 s (or a third of --duration)
  replay-cycle  --cyclers readers each send leave_room + join_room {since: 0} on that room 9 times a second

The TLS attacks run the server with a self-signed certificate made in a temporary directory
(`--tls-key-type`, RSA-2048 by default); the honest clients then speak wss, and a probe (in a
process of its own) opens a new wss connection every 0.5 s from 127.0.0.4 and times it up to
the ack of its join.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
HERE = SCRIPT.parent
HOST = "127.0.0.1"
"""Every connection goes to this address; the sources below are loopback addresses too."""
HONEST_IP = "127.0.0.2"
ATTACKER_IP = "127.0.0.3"
PROBE_IP = "127.0.0.4"
MEMBER_NET = "127.0.1."
HONEST_ROOM = "honest"
BIG_READ = 1 << 18
MAX_ITERATIONS = 10**9
"""A count bound for loops whose real bound is a deadline."""


# ---- frames ------------------------------------------------------------------------


def client_frame(opcode: int, payload: bytes = b"", fin: bool = True, mask: bytes | None = None) -> bytes:
    """A client frame, masked as RFC 6455 requires (a zero key leaves the payload as it is)."""
    key = os.urandom(4) if mask is None else mask
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    if key != b"\0\0\0\0" and n:
        stream = int.from_bytes((key * (n // 4 + 1))[:n], "big")
        payload = (int.from_bytes(payload, "big") ^ stream).to_bytes(n, "big")
    return head + key + payload


def event_frame(type_: str, payload: dict[str, Any], event_id: int | str | None = None) -> bytes:
    doc: dict[str, Any] = {"type": type_, "payload": payload}
    if event_id is not None:
        doc["id"] = event_id
    return client_frame(0x1, json.dumps(doc, separators=(",", ":")).encode())


def close_code_at_end(tail: bytes) -> int | None:
    """The code of a server close frame that ends `tail`, if one does (server frames are unmasked)."""
    i = tail.rfind(b"\x88")
    for _ in range(16):
        if i < 0 or i + 1 >= len(tail):
            return None
        n = tail[i + 1]
        if n == 0 and i + 2 == len(tail):
            return 1005
        if 2 <= n <= 125 and i + 2 + n == len(tail):
            code = int.from_bytes(tail[i + 2 : i + 4], "big")
            if 1000 <= code <= 4999:
                return code
        i = tail.rfind(b"\x88", 0, i)
    return None


class FrameParser:
    """Server frames out of a byte stream, incrementally."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos, end = 0, len(buf)
        for _ in range(MAX_ITERATIONS):
            if end - pos < 2:
                break
            second = buf[pos + 1]
            n, head = second & 0x7F, 2
            if n == 126:
                if end - pos < 4:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif n == 127:
                if end - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if second & 0x80:
                head += 4
            if end - pos < head + n:
                break
            out.append((buf[pos] & 0x0F, bytes(buf[pos + head : pos + head + n])))
            pos += head + n
        del buf[:pos]
        return out


# ---- a raw WebSocket client ----------------------------------------------------------


_TCP_ESTABLISHED, _TCP_CLOSE = 1, 7


class Refused(Exception):
    """The handshake was answered with another status than 101."""

    def __init__(self, status: int) -> None:
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status


@dataclass
class Peer:
    """One raw WebSocket connection and what became of it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    opened: float
    bytes_in: int = 0
    ended: float | None = None
    how: str | None = None
    """How it ended, as first noticed: `closed` (a close frame came), `eof`, `reset` (a read or
    write failed), or from the socket's TCP state: `fin` (the server closed) or `rst`."""
    code: int | None = None
    """The close frame's code, when one was read (possibly after `ended`)."""
    tail: bytes = b""

    def end(self, how: str, code: int | None = None) -> None:
        if self.ended is None:
            self.ended, self.how = time.monotonic(), how
        if code is not None and self.code is None:
            self.code = code

    def poll_tcp(self) -> None:
        """Notice that the server closed or reset the connection, even when nothing is read."""
        if self.ended is not None:
            return
        sock = self.writer.get_extra_info("socket")
        try:
            state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] if sock is not None else 1
        except OSError:
            state = 7
        if state != _TCP_ESTABLISHED:
            self.end("rst" if state == _TCP_CLOSE else "fin")

    async def send(self, data: bytes, until: float) -> bool:
        """Write and wait for the transport to take it (at most until `until`); False once it has ended."""
        if self.ended is not None:
            return False
        try:
            self.writer.write(data)
            async with asyncio.timeout(max(0.0, until - time.monotonic())):
                await self.writer.drain()
        except TimeoutError:
            return True
        except (ConnectionError, OSError, RuntimeError):
            self.end("reset")
            return False
        return True

    async def count(self, close_reply: bool = False, until_close: bool = False) -> None:
        """Read everything, count it, and notice a close frame at the end of a read.

        Bounded by its caller's cancellation (every attack cancels its readers) and by
        MAX_ITERATIONS reads.
        """
        read = self.reader.read
        for _ in range(MAX_ITERATIONS):
            try:
                data = await read(BIG_READ)
            except (ConnectionError, OSError):
                self.end("reset")
                return
            if not data:
                self.end("eof")
                return
            self.bytes_in += len(data)
            self.tail = (self.tail + data[-130:])[-130:]
            if self.code is None and 0x88 in self.tail:
                code = close_code_at_end(self.tail)
                if code is not None:
                    self.end("closed", code)
                    if close_reply:
                        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                            self.writer.write(client_frame(0x8, struct.pack("!H", 1000)))
                    if until_close:
                        return

    async def frames(self, on_text: Callable[[bytes], None]) -> None:
        """Read and parse every frame; text payloads go to `on_text`. Bounded like `count`."""
        parser = FrameParser()
        for _ in range(MAX_ITERATIONS):
            try:
                data = await self.reader.read(BIG_READ)
            except (ConnectionError, OSError):
                self.end("reset")
                return
            if not data:
                self.end("eof")
                return
            self.bytes_in += len(data)
            for opcode, payload in parser.feed(data):
                if opcode == 0x1:
                    on_text(payload)
                elif opcode == 0x8:
                    self.end("closed", int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.transport.abort()

    def fate(self, since: float) -> dict[str, Any]:
        if self.ended is None:
            return {"status": "connected"}
        return {"status": self.how, "code": self.code, "after_s": round(self.ended - since, 3)}

    def fate_text(self) -> str:
        if self.ended is None:
            return "connected"
        return f"{self.how} {self.code}" if self.code is not None else str(self.how)


async def open_peer(port: int, ip: str, rcvbuf: int = 0, tls: ssl.SSLContext | None = None, query: str = "") -> Peer:
    """Connect from `ip` to the server's /ws (over TLS with `tls`; with `query`, e.g. `name=x`) and upgrade;
    `Refused` when it answers otherwise."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((ip, 0))
        async with asyncio.timeout(10):
            await loop.sock_connect(sock, (HOST, port))
            reader, writer = await asyncio.open_connection(
                sock=sock, limit=1 << 20, ssl=tls, server_hostname="localhost" if tls else None
            )
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                f"GET /ws{'?' + query if query else ''} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
    except BaseException:
        sock.close()
        raise
    status = int(head.split(b" ", 2)[1])
    if status != 101:
        writer.transport.abort()
        raise Refused(status)
    return Peer(reader, writer, time.monotonic())


async def join_all(peer: Peer, rooms: list[str], until: float) -> tuple[int, Counter[str]]:
    """Join `rooms` (pipelined, with ids) and wait for their answers: (acks, errors by code)."""
    acks, errors = [0], Counter[str]()

    def on_text(payload: bytes) -> None:
        if payload.startswith(b'{"type":"ack"'):
            acks[0] += 1
        elif payload.startswith(b'{"type":"error"'):
            errors[error_code(payload)] += 1

    reader = asyncio.create_task(peer.frames(on_text))
    try:
        for start in range(0, len(rooms), 500):
            chunk = b"".join(
                event_frame("join_room", {"room": r}, f"j{start + i}") for i, r in enumerate(rooms[start : start + 500])
            )
            if not await peer.send(chunk, until):
                break
            await asyncio.sleep(0)  # the reader must keep up, or the server drops this as a slow consumer
        for _ in range(MAX_ITERATIONS):
            if acks[0] + sum(errors.values()) >= len(rooms) or peer.ended is not None or time.monotonic() > until:
                break
            await asyncio.sleep(0.02)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return acks[0], errors


_CODE = re.compile(rb'"code":"([a-z_]+)"')


def error_code(payload: bytes) -> str:
    found = _CODE.search(payload)
    return found.group(1).decode() if found else "?"


# ---- the attacks -------------------------------------------------------------------------


@dataclass
class Ctx:
    """What an attack works with, and where it writes what it saw (`report`, filled as it goes)."""

    port: int
    opts: argparse.Namespace
    abort: asyncio.Event
    rss: Callable[[], int]
    """The server's RSS in bytes, as last sampled."""
    start: float = 0.0
    end: float = 0.0
    """The attack window's end (`--duration`)."""
    limit: float = 0.0
    """The hard end (`--timeout`)."""
    report: dict[str, Any] = field(default_factory=dict)
    peers: list[Peer] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    """Moments worth a look in the honest latencies (join-flood's close)."""
    tls: ssl.SSLContext | None = None
    """A client context that trusts the server's certificate, for the TLS attacks."""
    ca: str = ""
    """That certificate's file."""

    def over(self) -> bool:
        return self.abort.is_set() or time.monotonic() >= self.end

    async def watch(self) -> None:
        """Every 100 ms, the TCP state of every peer (until cancelled, or the hard end)."""
        for _ in range(MAX_ITERATIONS):
            if time.monotonic() > self.limit:
                return
            for peer in self.peers:
                peer.poll_tcp()
            await asyncio.sleep(0.1)

    def reader(self, peer: Peer, close_reply: bool = False) -> None:
        self.tasks.append(asyncio.create_task(peer.count(close_reply)))

    async def flood(self, peer: Peer, batch: bytes, per_batch: int, unit: str) -> None:
        """Write `batch` again and again, as fast as the socket takes it, until the window ends."""
        sent, t0, report = 0, time.monotonic(), self.report
        report.update(unit=unit, sent=0, bytes_sent=0)
        for _ in range(MAX_ITERATIONS):
            if self.over() or not await peer.send(batch, self.end):
                break
            sent += per_batch
            report["sent"], report["bytes_sent"] = sent, report["bytes_sent"] + len(batch)
            await asyncio.sleep(0)  # let the readers of this process run
        rate(report, sent, time.monotonic() - t0)


def rate(report: dict[str, Any], sent: int, seconds: float) -> None:
    report["seconds"] = round(seconds, 3)
    report["rate_per_s"] = round(sent / seconds, 1) if seconds > 0 else 0.0
    report["mb_per_s"] = round(report.get("bytes_sent", 0) / seconds / 1e6, 2) if seconds > 0 else 0.0


class Attack:
    """An attack: `setup` before the honest baseline (not timed), `run` is the attack window."""

    name = ""
    about = ""
    tls = False
    """Whether the server speaks TLS for this attack (a self-signed certificate, made per run)."""

    async def server_args(self, tree: Tree) -> tuple[str, ...]:
        """Flags the server needs for this attack, beside the tree's (made before it starts)."""
        return ()

    async def setup(self, ctx: Ctx) -> None:
        return None

    async def run(self, ctx: Ctx) -> None:
        raise NotImplementedError

    def attacker(self, ctx: Ctx) -> dict[str, Any]:
        """What became of the attacker (its first connection by default), at the window's end."""
        return ctx.peers[0].fate(ctx.start) if ctx.peers else {"status": "none"}

    def after(self, ctx: Ctx) -> dict[str, Any]:
        """What became of the bystanders, once the attacker has gone and `--settle` has passed."""
        return {}


def batch_of(frame: bytes, size: int = 65536) -> tuple[bytes, int]:
    count = max(1, size // len(frame))
    return frame * count, count


class PingNoRead(Attack):
    name, about = "ping-noread", "floods 125-byte pings and never reads (receive buffer 4 KiB)"

    async def setup(self, ctx: Ctx) -> None:
        peer = await open_peer(ctx.port, ATTACKER_IP, rcvbuf=4096)
        peer.writer.transport.pause_reading()  # never read: the pongs pile up on the server
        ctx.peers.append(peer)

    async def run(self, ctx: Ctx) -> None:
        batch, count = batch_of(client_frame(0x9, b"p" * 125))
        await ctx.flood(ctx.peers[0], batch, count, "pings")


class PingRead(Attack):
    name, about = "ping-read", "floods 4-byte pings and reads the pongs"

    async def setup(self, ctx: Ctx) -> None:
        ctx.peers.append(await open_peer(ctx.port, ATTACKER_IP))

    async def run(self, ctx: Ctx) -> None:
        peer = ctx.peers[0]
        ctx.reader(peer)
        batch, count = batch_of(client_frame(0x9, b"ping"))
        await ctx.flood(peer, batch, count, "pings")
        ctx.report["pongs_read"] = peer.bytes_in // 6  # a pong of 4 bytes is a 6-byte frame


class Fragments(Attack):
    name, about = "fragments", "a text frame with FIN=0, then empty continuation frames without end"

    async def setup(self, ctx: Ctx) -> None:
        ctx.peers.append(await open_peer(ctx.port, ATTACKER_IP))

    async def run(self, ctx: Ctx) -> None:
        peer = ctx.peers[0]
        ctx.reader(peer)
        if await peer.send(client_frame(0x1, b'{"type":', fin=False), ctx.end):
            batch, count = batch_of(client_frame(0x0, b"", fin=False))
            await ctx.flood(peer, batch, count, "frames")


class RoomFlood(Attack):
    name, about = "room-flood", "100 members that read everything, and one that pipelines send_message to them"
    room = "crowd"

    async def setup(self, ctx: Ctx) -> None:
        members = ctx.opts.members
        ctx.peers.append(await open_peer(ctx.port, ATTACKER_IP))
        for i in range(members):
            ctx.peers.append(await open_peer(ctx.port, f"{MEMBER_NET}{1 + i % 250}"))
        until = time.monotonic() + 30
        for peer in ctx.peers:
            acks, errors = await join_all(peer, [self.room], until)
            if acks != 1:
                raise RuntimeError(f"room-flood: a member could not join: {dict(errors)}")
        for peer in ctx.peers[1:]:
            ctx.reader(peer, close_reply=True)

    async def run(self, ctx: Ctx) -> None:
        attacker = ctx.peers[0]
        ctx.reader(attacker)
        message = event_frame("send_message", {"room": self.room, "message": "m" * 48})
        batch, count = batch_of(message, 16384)
        await ctx.flood(attacker, batch, count, "messages")

    def after(self, ctx: Ctx) -> dict[str, Any]:
        members = ctx.peers[1:]
        after = sorted(p.ended - ctx.start for p in members if p.ended is not None)
        return {
            "members": {
                "count": len(members),
                "fates": dict(Counter(p.fate_text() for p in members)),
                "dropped_median_s": round(after[len(after) // 2], 3) if after else None,
                "mb_read_each": round(sum(p.bytes_in for p in members) / max(1, len(members)) / 1e6, 2),
            }
        }


class History(Attack):
    name, about = "history", "one client in 500 rooms sends 60 KB messages round-robin (reads its echoes)"

    async def setup(self, ctx: Ctx) -> None:
        peer = await open_peer(ctx.port, ATTACKER_IP)
        ctx.peers.append(peer)
        rooms = [f"h-{i}" for i in range(ctx.opts.rooms)]
        acks, errors = await join_all(peer, rooms, time.monotonic() + 60)
        ctx.report["rooms_joined"], ctx.report["join_errors"] = acks, dict(errors)

    async def run(self, ctx: Ctx) -> None:
        """At most `--history-window` messages in flight: it reads its echoes, so it is no slow consumer."""
        peer, echoes = ctx.peers[0], [0]
        arrived = asyncio.Event()

        def on_text(payload: bytes) -> None:
            if payload.startswith(b'{"type":"new_message"'):
                echoes[0] += 1
                arrived.set()

        ctx.tasks.append(asyncio.create_task(peer.frames(on_text)))
        rooms = max(1, ctx.report["rooms_joined"])
        body = b"x" * 60000
        sent, t0, report = 0, time.monotonic(), ctx.report
        report.update(unit="messages", sent=0, bytes_sent=0)
        for i in range(MAX_ITERATIONS):
            for _ in range(MAX_ITERATIONS):
                if sent - echoes[0] < ctx.opts.history_window or ctx.over() or peer.ended is not None:
                    break
                arrived.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await arrived.wait()
            if ctx.over():
                break
            text = b'{"type":"send_message","payload":{"room":"h-%d","message":"%b"}}' % (i % rooms, body)
            frame = client_frame(0x1, text, mask=b"\0\0\0\0")
            if not await peer.send(frame, ctx.end):
                break
            sent += 1
            report["sent"], report["bytes_sent"] = sent, report["bytes_sent"] + len(frame)
        report["echoes"] = echoes[0]
        rate(report, sent, time.monotonic() - t0)


class JoinFlood(Attack):
    name, about = "join-flood", "100,000 join_room pipelined on one connection, then a close"

    async def setup(self, ctx: Ctx) -> None:
        ctx.peers.append(await open_peer(ctx.port, ATTACKER_IP))

    async def run(self, ctx: Ctx) -> None:
        peer, report, watch = ctx.peers[0], ctx.report, ctx.opts.close_watch
        rooms = [f"j-{i}" for i in range(ctx.opts.joins)]
        t0 = time.monotonic()
        report.update(unit="joins", sent=len(rooms))
        rss0 = ctx.rss()
        acks, errors = await join_all(peer, rooms, ctx.limit - watch - 5)
        t1 = time.monotonic()
        report.update(accepted=acks, refused=dict(errors), answered_s=round(t1 - t0, 3))
        report["rate_per_s"] = round((acks + sum(errors.values())) / (t1 - t0), 1)
        report["rss_per_join_b"] = round((ctx.rss() - rss0) / max(1, acks))
        report["fate_before_close"] = peer.fate(ctx.start)
        # The close: a close frame, then wait (bounded) for the server's answer and its EOF.
        ctx.marks["close"] = time.monotonic()
        if peer.ended is None:
            closing = asyncio.create_task(peer.frames(lambda _: None))
            await peer.send(client_frame(0x8, struct.pack("!H", 1000)), time.monotonic() + 5)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await asyncio.shield(closing)
            closing.cancel()
            if peer.ended is not None:
                report["close_answered_s"] = round(peer.ended - ctx.marks["close"], 3)
        await asyncio.sleep(watch)  # the honest clients see the stall, if any

    def attacker(self, ctx: Ctx) -> dict[str, Any]:
        before = ctx.report.get("fate_before_close")
        return before if before and before["status"] != "connected" else {"status": "closed by itself"}


class DeepJson(Attack):
    name, about = "deep-json", "send_message whose message is JSON nested 5,000 deep, pipelined"

    async def setup(self, ctx: Ctx) -> None:
        peer = await open_peer(ctx.port, ATTACKER_IP)
        ctx.peers.append(peer)
        await join_all(peer, ["deep"], time.monotonic() + 10)

    async def run(self, ctx: Ctx) -> None:
        peer, answers = ctx.peers[0], Counter[str]()

        def on_text(payload: bytes) -> None:
            if payload.startswith(b'{"type":"error"'):
                answers[error_code(payload)] += 1
            elif payload.startswith(b'{"type":"ack"'):
                answers["ack"] += 1

        ctx.tasks.append(asyncio.create_task(peer.frames(on_text)))
        deep = b"[" * 5000 + b"]" * 5000
        text = b'{"type":"send_message","payload":{"room":"deep","message":%b},"id":1}' % deep
        batch, count = batch_of(client_frame(0x1, text))
        await ctx.flood(peer, batch, count, "messages")
        ctx.report["answers"] = answers


MALFORMED: dict[str, bytes] = {
    "unmasked": bytes((0x81, 2)) + b"{}",
    "opcode-3": client_frame(0x3, b"x"),
    "ping-126": client_frame(0x9, b"x" * 126),
    "ping-fin0": client_frame(0x9, b"x", fin=False),
    "close-999": client_frame(0x8, struct.pack("!H", 999)),
    "len64-msb": bytes((0x81, 0xFF)) + struct.pack("!Q", 1 << 63) + b"\0\0\0\0",
}


class Malformed(Attack):
    name, about = "malformed", "one malformed frame per connection (6 kinds in turn), 4 connections at a time"

    async def run(self, ctx: Ctx) -> None:
        report = ctx.report
        report.update(unit="frames", sent=0, bytes_sent=0)
        outcomes: dict[str, Counter[str]] = {k: Counter() for k in MALFORMED}
        kinds = list(MALFORMED.items())
        t0 = time.monotonic()

        async def worker(w: int) -> None:
            for i in range(MAX_ITERATIONS):
                if ctx.over():
                    return
                kind, data = kinds[(w + i) % len(kinds)]
                try:
                    peer = await open_peer(ctx.port, ATTACKER_IP)
                except Refused as exc:
                    outcomes[kind][f"http {exc.status}"] += 1
                    await asyncio.sleep(0.01)
                    continue
                except (OSError, TimeoutError) as exc:
                    outcomes[kind][type(exc).__name__] += 1
                    await asyncio.sleep(0.01)
                    continue
                try:
                    await peer.send(data, ctx.end)
                    report["sent"] += 1
                    report["bytes_sent"] += len(data)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(2):
                            await peer.count(until_close=True)
                    outcomes[kind][str(peer.code) if peer.how == "closed" else str(peer.how)] += 1
                finally:
                    peer.abort()

        await asyncio.gather(*(worker(w) for w in range(4)))
        report["outcomes"] = {k: dict(v) for k, v in outcomes.items()}
        rate(report, report["sent"], time.monotonic() - t0)

    def attacker(self, ctx: Ctx) -> dict[str, Any]:
        return {"status": "one connection per frame"}


async def open_members(ctx: Ctx, count: int, prefix: str) -> list[Peer]:
    """`count` named clients (`prefix`0, `prefix`1, ...), each from one of the 127.0.1.x addresses."""
    peers: list[Peer] = []
    for start in range(0, count, 50):
        peers += await asyncio.gather(
            *(
                open_peer(ctx.port, f"{MEMBER_NET}{1 + i % 250}", query=f"name={prefix}{i}")
                for i in range(start, min(count, start + 50))
            )
        )
    return peers


async def join_together(peers: list[Peer], room: str, until: float) -> tuple[int, Counter[str]]:
    """Every peer joins `room` at once: (acks, errors by code)."""
    answers = await asyncio.gather(*(join_all(peer, [room], until) for peer in peers))
    errors: Counter[str] = Counter()
    for _, refused in answers:
        errors.update(refused)
    return sum(acks for acks, _ in answers), errors


def members_after(ctx: Ctx, members: list[Peer]) -> dict[str, Any]:
    """What became of a room's members, and what they were sent."""
    return {
        "members": {
            "count": len(members),
            "fates": dict(Counter(p.fate_text() for p in members)),
            "mb_read_each": round(sum(p.bytes_in for p in members) / max(1, len(members)) / 1e6, 3),
        }
    }


class PresenceChurn(Attack):
    name, about = (
        "presence-churn",
        "1,000 named members of one room (reading everything) each leave and rejoin once a second",
    )
    room = "churn"

    async def setup(self, ctx: Ctx) -> None:
        members = await open_members(ctx, ctx.opts.churners, "c")
        ctx.peers += members
        acks, errors = await join_together(members, self.room, time.monotonic() + 60)
        if acks != len(members):
            raise RuntimeError(f"presence-churn: {len(members) - acks} members could not join: {dict(errors)}")
        for peer in members:
            ctx.reader(peer, close_reply=True)

    async def run(self, ctx: Ctx) -> None:
        report, members = ctx.report, ctx.peers
        leave, join = event_frame("leave_room", {"room": self.room}), event_frame("join_room", {"room": self.room})
        gap = ctx.opts.churn_gap
        sent = [0]
        t0 = time.monotonic()

        async def churn(peer: Peer, phase: float) -> None:
            await asyncio.sleep(phase)
            due = time.monotonic()
            for _ in range(MAX_ITERATIONS):
                if gap <= 0:
                    if ctx.over() or not await peer.send(leave + join, ctx.end):
                        return
                else:  # leave, and rejoin `gap` later: changes spaced apart do not cancel out
                    if ctx.over() or not await peer.send(leave, ctx.end):
                        return
                    await asyncio.sleep(gap)
                    if not await peer.send(join, ctx.end):
                        return
                sent[0] += 2
                due += 1.0
                await asyncio.sleep(max(0.0, due - time.monotonic()))

        report.update(unit="joins+leaves", bytes_sent=0)
        await asyncio.gather(*(churn(p, i / len(members)) for i, p in enumerate(members)))
        report["sent"] = sent[0]
        report["bytes_sent"] = sent[0] * (len(leave) + len(join)) // 2
        rate(report, sent[0], time.monotonic() - t0)

    def attacker(self, ctx: Ctx) -> dict[str, Any]:
        return {"status": f"{len(ctx.peers)} members: " + ", ".join(f"{k} {v}" for k, v in self.fates(ctx).items())}

    @staticmethod
    def fates(ctx: Ctx) -> Counter[str]:
        return Counter(p.fate_text() for p in ctx.peers)

    def after(self, ctx: Ctx) -> dict[str, Any]:
        return members_after(ctx, ctx.peers)


class JoinBurst(Attack):
    name, about = "join-burst", "1,000 named clients join one room at once, then read what it announces"
    room = "burst"

    async def setup(self, ctx: Ctx) -> None:
        ctx.peers += await open_members(ctx, ctx.opts.churners, "b")

    async def run(self, ctx: Ctx) -> None:
        report, members = ctx.report, ctx.peers
        t0 = time.monotonic()
        report.update(unit="joins", sent=len(members), bytes_sent=len(members) * 40)
        acks, errors = await join_together(members, self.room, ctx.limit - 5)
        report.update(accepted=acks, refused=dict(errors), answered_s=round(time.monotonic() - t0, 3))
        for peer in members:
            ctx.reader(peer, close_reply=True)
        rate(report, len(members), time.monotonic() - t0)
        await asyncio.sleep(max(0.0, ctx.end - time.monotonic()))  # the announcements go out meanwhile

    def attacker(self, ctx: Ctx) -> dict[str, Any]:
        return {
            "status": f"{len(ctx.peers)} members: " + ", ".join(f"{k} {v}" for k, v in PresenceChurn.fates(ctx).items())
        }

    def after(self, ctx: Ctx) -> dict[str, Any]:
        return members_after(ctx, ctx.peers)


def client_hello() -> bytes:
    """A real TLS ClientHello (TLS 1.3 with 1.2 allowed), as a client's first flight: what
    an attacker records once and replays, never doing any cryptography itself."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


async def raw_socket(port: int, ip: str) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.bind((ip, 0))
        async with asyncio.timeout(5):
            await loop.sock_connect(sock, (HOST, port))
    except BaseException:
        sock.close()
        raise
    return sock


class Probe:
    """A new wss connection every 0.5 s from its own address, timed from connect to the ack of its
    join; it runs in a child process (`attacks.py _probe ...`, see `ProbeProcess`), so that what it
    measures is the server's delay, not the attacker's own loop."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.failures: Counter[str] = Counter()

    async def run(self, port: int, tls: ssl.SSLContext | None, stop: asyncio.Event, deadline: float) -> None:
        for i in range(MAX_ITERATIONS):
            if stop.is_set() or time.monotonic() > deadline:
                return
            t0 = time.monotonic()
            try:
                async with asyncio.timeout(5):
                    peer = await open_peer(port, PROBE_IP, tls=tls)
                    try:
                        answer = await self.join(peer, f"probe-{i}")
                    finally:
                        peer.abort()
                if answer.startswith(b'{"type":"ack"'):
                    self.samples.append(time.monotonic() - t0)
                else:
                    self.failures[f"join {error_code(answer)}"] += 1
            except (OSError, TimeoutError, Refused, ssl.SSLError, asyncio.IncompleteReadError) as exc:
                self.failures[type(exc).__name__] += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, t0 + 0.5 - time.monotonic())):
                    await stop.wait()

    @staticmethod
    async def join(peer: Peer, room: str) -> bytes:
        """Join `room`; the answer (an ack or an error), or b"" when the connection ended first."""
        peer.writer.write(event_frame("join_room", {"room": room}, "probe"))
        parser = FrameParser()
        for _ in range(MAX_ITERATIONS):
            data = await peer.reader.read(BIG_READ)
            if not data:
                return b""
            for opcode, payload in parser.feed(data):
                if opcode == 0x1 and b'"id":"probe"' in payload:
                    return payload
        return b""

    def report(self) -> dict[str, Any]:
        chosen = sorted(self.samples)
        if not chosen:
            return {"n": 0, "failures": dict(self.failures)}

        def pct(p: float) -> float:
            return round(chosen[min(len(chosen) - 1, int(p * len(chosen)))] * 1000, 1)

        return {"n": len(chosen), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "failures": dict(self.failures)}


async def probe_main(port: int, ca: str, max_s: float) -> None:
    """The child process of `ProbeProcess`: probes until SIGUSR1 (or `max_s`), then prints its report."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stop.set)
    probe = Probe()
    await probe.run(port, ssl.create_default_context(cafile=ca) if ca else None, stop, time.monotonic() + max_s)
    print(json.dumps(probe.report()), flush=True)


class ProbeProcess:
    """`Probe` in its own process, from the parent's side."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, ctx: Ctx, ca: str) -> ProbeProcess:
        max_s = max(1.0, ctx.limit - time.monotonic())
        args = (str(SCRIPT), "_probe", str(ctx.port), ca, str(max_s))
        return cls(await asyncio.create_subprocess_exec(sys.executable, *args, stdout=asyncio.subprocess.PIPE))

    async def stop(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGUSR1)
        try:
            async with asyncio.timeout(10):
                out = await self.proc.stdout.read()
                await self.proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            return {"error": "the probe did not answer"}
        lines = out.decode().strip().splitlines()
        report: dict[str, Any] = json.loads(lines[-1]) if lines else {"error": "the probe said nothing"}
        return report


class TlsTrickle(Attack):
    name, about = "tls-trickle", "waves of sockets that send nothing or trickle a TLS ClientHello at 1 byte/s"
    tls = True

    async def run(self, ctx: Ctx) -> None:
        """Waves of `--tls-sockets` sockets, half silent and half trickling, each from its own
        127.0.2.x address; a wave ends when the server has closed them all, then the next begins."""
        hello, report = client_hello(), ctx.report
        probe = await ProbeProcess.start(ctx, ctx.ca)
        fates: Counter[str] = Counter()
        waves: list[dict[str, Any]] = []
        report.update(unit="sockets", sent=0, bytes_sent=0)
        t0 = time.monotonic()

        async def one(k: int) -> None:
            loop = asyncio.get_running_loop()
            try:
                sock = await raw_socket(ctx.port, f"127.0.{2 + k // 250}.{1 + k % 250}")
            except (OSError, TimeoutError) as exc:
                fates[type(exc).__name__] += 1
                return
            opened = time.monotonic()
            try:
                for byte in hello if k % 2 else b"":
                    if ctx.abort.is_set() or time.monotonic() > ctx.limit:
                        break
                    await loop.sock_sendall(sock, bytes((byte,)))
                    report["bytes_sent"] += 1
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            if await loop.sock_recv(sock, 4096) == b"":
                                break
                else:
                    async with asyncio.timeout(max(0.1, ctx.limit - time.monotonic())):
                        for _ in range(MAX_ITERATIONS):
                            if await loop.sock_recv(sock, 4096) == b"":
                                break
                held = time.monotonic() - opened
                fates["closed at once" if held < 0.5 else f"closed after {round(held)} s"] += 1
            except (ConnectionError, OSError):
                fates["reset"] += 1
            except TimeoutError:
                fates["still open"] += 1
            finally:
                sock.close()

        for _ in range(MAX_ITERATIONS):
            if ctx.over():
                break
            rss0, w0 = ctx.rss(), time.monotonic()
            await asyncio.gather(*(one(k) for k in range(ctx.opts.tls_sockets)))
            report["sent"] += ctx.opts.tls_sockets
            await asyncio.sleep(1.5)  # the server's heap trim comes a second after the wave
            waves.append({"s": round(time.monotonic() - w0, 1), "rss_mb": [rss0 >> 20, ctx.rss() >> 20]})
        report.update(waves=waves, fates=dict(fates), probe=await probe.stop())
        rate(report, report["sent"], time.monotonic() - t0)

    def attacker(self, ctx: Ctx) -> dict[str, Any]:
        return {"status": "waves of sockets"}


class TlsReplay(Attack):
    name, about = "tls-replay", "32 at once, again and again: a recorded ClientHello, the server's flight read, close"
    tls = True

    async def run(self, ctx: Ctx) -> None:
        hello, report = client_hello(), ctx.report
        probe = await ProbeProcess.start(ctx, ctx.ca)
        outcomes: Counter[str] = Counter()
        report.update(unit="handshakes", sent=0, bytes_sent=0)
        t0 = time.monotonic()

        async def worker() -> None:
            loop = asyncio.get_running_loop()
            for _ in range(MAX_ITERATIONS):
                if ctx.over():
                    return
                try:
                    sock = await raw_socket(ctx.port, ATTACKER_IP)
                except (OSError, TimeoutError) as exc:
                    outcomes[type(exc).__name__] += 1
                    await asyncio.sleep(0.01)
                    continue
                try:
                    await loop.sock_sendall(sock, hello)
                    report["bytes_sent"] += len(hello)
                    async with asyncio.timeout(5):
                        got = await loop.sock_recv(sock, 65536)  # the server's flight: its signature is made
                    outcomes["served" if got else "closed at once"] += 1
                    report["sent"] += 1 if got else 0
                except (ConnectionError, OSError):
                    outcomes["reset"] += 1
                except TimeoutError:
                    outcomes["no answer in 5 s"] += 1
                finally:
                    sock.close()

        await asyncio.gather(*(worker() for _ in range(ctx.opts.tls_concurrency)))
        report.update(outcomes=dict(outcomes), probe=await probe.stop())
        rate(report, report["sent"], time.monotonic() - t0)

    def attacker(self, ctx: Ctx) -> dict[str, Any]:
        return {"status": f"{ctx.opts.tls_concurrency} at a time"}


LOGIN_NET = "127.0.2."
"""The login flood's addresses: 127.0.2.1, .2, ... (then 127.0.3.x), each used for at most 10 logins."""
HONEST_LOGIN_IP = "127.0.0.4"
LOGIN_PASSWORDS = {"alice": "correct horse battery", "bob": "hunter2 hunter2"}


async def post_login(port: int, source: str, name: str, password: str) -> tuple[int, str]:
    """One `POST /login` from `source`: its status (0 if it failed) and Retry-After."""
    body = json.dumps({"username": name, "password": password}).encode()
    head = f"POST /login HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    try:
        async with asyncio.timeout(30):
            reader, writer = await asyncio.open_connection(HOST, port, local_addr=(source, 0))
            try:
                writer.write(head + body)
                answer = await reader.read(4096)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return 0, ""
    wait = re.search(rb"(?i)\r\nretry-after: *([0-9]+)", answer)
    try:
        return int(answer.split(b" ", 2)[1]), wait.group(1).decode() if wait else ""
    except (IndexError, ValueError):
        return 0, ""


class LoginFlood(Attack):
    name = "login-flood"
    about = "40 wrong-password logins at once for one user from fresh addresses; another user logs in beside them"
    concurrency = 40
    per_address = 10
    new_addresses_per_s = 0.4
    honest_logins_per_s = 1.0

    def __init__(self) -> None:
        self._users: dict[str, tempfile.TemporaryDirectory[str]] = {}

    async def server_args(self, tree: Tree) -> tuple[str, ...]:
        """A users file with alice and bob, hashed by the tree's own `hubbub hash-password`."""
        key = str(tree.src)
        if key not in self._users:
            folder = tempfile.TemporaryDirectory(prefix="hubbub-login-flood-")
            lines = []
            for user, password in LOGIN_PASSWORDS.items():
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "hubbub",
                    "hash-password",
                    env=dict(os.environ, PYTHONPATH=str(tree.src)),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                out, _ = await proc.communicate(password.encode())
                if proc.returncode != 0:
                    raise RuntimeError("login-flood: hubbub hash-password failed (is argon2-cffi installed?)")
                lines.append(f"{user}:{out.decode().strip()}\n")
            await asyncio.to_thread(Path(folder.name, "users").write_text, "".join(lines))
            self._users[key] = folder
        return ("--users", str(Path(self._users[key].name, "users")), "--allow-anonymous")

    async def setup(self, ctx: Ctx) -> None:
        """Three logins of the honest user alone, one after the other: what a login costs unattacked."""
        times = []
        for _ in range(3):
            started = time.monotonic()
            status, _ = await post_login(ctx.port, HONEST_LOGIN_IP, "bob", LOGIN_PASSWORDS["bob"])
            if status != 200:
                raise RuntimeError(f"login-flood: the honest user cannot log in ({status})")
            times.append(time.monotonic() - started)
        ctx.report["honest_login_alone_ms"] = round(1000 * sorted(times)[1])

    async def run(self, ctx: Ctx) -> None:
        report, statuses, honest = ctx.report, Counter[str](), list[tuple[int, float]]()
        report.update(unit="logins", sent=0)
        t0 = time.monotonic()
        used = [0, 0]  # addresses handed out, logins on the current one
        turn = asyncio.Lock()

        async def address() -> str | None:
            """The next attacker address with a login left; a new one every 2.5 s (the first 4 at once)."""
            async with turn:
                if used[1] >= self.per_address or used[0] == 0:
                    ready = t0 + max(0, used[0] - 3) / self.new_addresses_per_s
                    if ready > ctx.end:
                        return None
                    await asyncio.sleep(max(0.0, ready - time.monotonic()))
                    used[0], used[1] = used[0] + 1, 0
                used[1] += 1
                n = used[0]
                return f"127.0.{2 + n // 250}.{1 + n % 250}"

        async def attacker() -> None:
            for _ in range(MAX_ITERATIONS):
                source = await address()
                if source is None or ctx.over():
                    return
                status, _ = await post_login(ctx.port, source, "alice", "not the password")
                statuses[str(status)] += 1
                report["sent"] += 1

        async def honest_logins() -> None:
            logins: list[asyncio.Task[None]] = []

            async def one() -> None:
                started = time.monotonic()
                status, _ = await post_login(ctx.port, HONEST_LOGIN_IP, "bob", LOGIN_PASSWORDS["bob"])
                honest.append((status, time.monotonic() - started))

            for _ in range(MAX_ITERATIONS):
                if ctx.over():
                    break
                logins.append(asyncio.create_task(one()))
                await asyncio.sleep(1 / self.honest_logins_per_s)
            await asyncio.gather(*logins)

        await asyncio.gather(honest_logins(), *(attacker() for _ in range(self.concurrency)))
        rate(report, report["sent"], time.monotonic() - t0)
        times = sorted(t for _, t in honest)
        report["attacker_statuses"] = dict(statuses)
        report["addresses"] = used[0]
        report["honest_logins"] = {
            "ok": sum(1 for status, _ in honest if status == 200),
            "total": len(honest),
            "statuses": dict(Counter(str(status) for status, _ in honest)),
            "p50_ms": round(1000 * times[len(times) // 2]) if times else None,
            "max_ms": round(1000 * times[-1]) if times else None,
        }

    def attacker(self, ctx: Ctx) -> dict[str, Any]:
        return {"status": f"{ctx.report.get('addresses', 0)} addresses"}


ARCHIVE = "archive"
"""The room stalled-replay and replay-cycle ask to be replayed: `--archive` messages of 60 KB."""


async def fill_archive(ctx: Ctx, publishers: int = 5) -> None:
    """Publish `--archive` messages of 60 KB to ARCHIVE from `publishers` connections, each with at most 2
    in flight (they read every echo, and must not be dropped as slow consumers) and within the event
    rate limit (90 at once, then 18 a second); then they go."""
    count = ctx.opts.archive
    peers = [await open_peer(ctx.port, ATTACKER_IP) for _ in range(publishers)]
    body = b"a" * 60000
    until = time.monotonic() + 50
    errors: Counter[str] = Counter()
    done = [0]

    async def publish(k: int, peer: Peer, share: int) -> None:
        acked = [0]
        arrived = asyncio.Event()

        def on_text(payload: bytes) -> None:
            if payload.startswith(b'{"type":"ack"'):
                acked[0] += 1
                arrived.set()
            elif payload.startswith(b'{"type":"error"'):
                errors[error_code(payload)] += 1
                arrived.set()

        # One reader from the start (join_all's would take bytes of the next frames with it when cancelled).
        reader = asyncio.create_task(peer.frames(on_text))
        await peer.send(event_frame("join_room", {"room": ARCHIVE}, "join"), until)
        for _ in range(MAX_ITERATIONS):
            if acked[0] or time.monotonic() > until or peer.ended is not None:
                break
            await asyncio.sleep(0.01)
        acked[0] -= 1  # the join's
        t0 = time.monotonic()
        try:
            for i in range(share):
                for _ in range(MAX_ITERATIONS):
                    if i - acked[0] < 2 or time.monotonic() > until or peer.ended is not None:
                        break
                    arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.1):
                            await arrived.wait()
                if i >= 90:
                    await asyncio.sleep(max(0.0, t0 + (i - 90) / 18 - time.monotonic()))
                text = b'{"type":"send_message","payload":{"room":"%b","message":"%b"},"id":%d}' % (
                    ARCHIVE.encode(),
                    body,
                    i,
                )
                if not await peer.send(client_frame(0x1, text, mask=b"\0\0\0\0"), until):
                    break
            for _ in range(MAX_ITERATIONS):
                if acked[0] >= share or time.monotonic() > until or peer.ended is not None:
                    break
                await asyncio.sleep(0.05)
            done[0] += acked[0]
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    try:
        shares = [count // publishers + (1 if k < count % publishers else 0) for k in range(publishers)]
        await asyncio.gather(*(publish(k, peer, shares[k]) for k, peer in enumerate(peers)))
        if done[0] < count:
            raise RuntimeError(f"{ARCHIVE}: {done[0]} of {count} messages published, errors {dict(errors)}")
    finally:
        for peer in peers:
            peer.abort()


class StalledReplay(Attack):
    name = "stalled-replay"
    about = "sockets (receive buffer 4 KiB) join a room of 60 KB messages with since 0, never read, and pong"

    async def setup(self, ctx: Ctx) -> None:
        await fill_archive(ctx)

    async def run(self, ctx: Ctx) -> None:
        report, count = ctx.report, ctx.opts.stallers
        join = event_frame("join_room", {"room": ARCHIVE, "since": 0}, 1)
        report.update(unit="sockets", sent=0, bytes_sent=0, refused_http=0)
        t0 = time.monotonic()

        async def one() -> None:
            try:
                peer = await open_peer(ctx.port, ATTACKER_IP, rcvbuf=4096)
            except Refused:
                report["refused_http"] += 1
                return
            except (OSError, TimeoutError):
                return
            peer.writer.transport.pause_reading()  # never read
            ctx.peers.append(peer)
            if await peer.send(join, ctx.end):
                report["sent"] += 1
                report["bytes_sent"] += len(join)

        for start in range(0, count, 100):
            if ctx.over():
                break
            await asyncio.gather(*(one() for _ in range(min(100, count - start))))
        report["opened_s"] = round(time.monotonic() - t0, 3)
        pong, every = client_frame(0xA, b"alive"), min(10.0, max(0.5, ctx.opts.duration / 3))
        for _ in range(MAX_ITERATIONS):  # an unsolicited pong now and then, so that the heartbeat is content
            if ctx.over():
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(every, ctx.end - time.monotonic()))):
                    await ctx.abort.wait()
            for peer in ctx.peers:
                if peer.ended is None:
                    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                        peer.writer.write(pong)
                        report["bytes_sent"] += len(pong)
        rate(report, report["sent"], time.monotonic() - t0)

    def attacker(self, ctx: Ctx) -> dict[str, Any]:
        after = sorted(p.ended - ctx.start for p in ctx.peers if p.ended is not None)
        return {
            "status": dict(Counter(p.fate_text() for p in ctx.peers)),
            "dropped": len(after),
            "dropped_median_s": round(after[len(after) // 2], 3) if after else None,
        }


class ReplayCycle(Attack):
    name = "replay-cycle"
    about = "readers each send leave_room + join_room {since: 0} on a room of 60 KB messages 9 times a second"

    async def setup(self, ctx: Ctx) -> None:
        await fill_archive(ctx)
        for _ in range(ctx.opts.cyclers):
            ctx.peers.append(await open_peer(ctx.port, ATTACKER_IP))

    async def run(self, ctx: Ctx) -> None:
        report = ctx.report
        answers: Counter[str] = Counter()
        report.update(unit="cycles", sent=0, bytes_sent=0)

        def on_text(payload: bytes) -> None:
            if payload.startswith(b'{"type":"error"'):
                answers[error_code(payload)] += 1
            elif payload.startswith(b'{"type":"ack"'):
                answers["ack"] += 1
            elif payload.startswith(b'{"type":"new_message"'):
                answers["replayed"] += 1

        for peer in ctx.peers:
            ctx.tasks.append(asyncio.create_task(peer.frames(on_text)))
        t0 = time.monotonic()

        async def cycle(peer: Peer) -> None:
            for i in range(MAX_ITERATIONS):
                if ctx.over():
                    return
                data = event_frame("leave_room", {"room": ARCHIVE}, f"l{i}") + event_frame(
                    "join_room", {"room": ARCHIVE, "since": 0}, f"j{i}"
                )
                if not await peer.send(data, ctx.end):
                    return
                report["sent"] += 1
                report["bytes_sent"] += len(data)
                await asyncio.sleep(1 / 9)

        await asyncio.gather(*(cycle(peer) for peer in ctx.peers))
        seconds = time.monotonic() - t0
        rate(report, report["sent"], seconds)
        bytes_out = sum(p.bytes_in for p in ctx.peers)
        report["answers"] = dict(answers)
        report["mb_out"] = round(bytes_out / 1e6, 2)
        report["mb_out_per_s"] = round(bytes_out / seconds / 1e6, 2) if seconds > 0 else 0.0
        report["amplification"] = round(bytes_out / max(1, report["bytes_sent"]), 1)


ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in (
        PingNoRead(),
        PingRead(),
        Fragments(),
        RoomFlood(),
        History(),
        JoinFlood(),
        DeepJson(),
        Malformed(),
        PresenceChurn(),
        JoinBurst(),
        TlsTrickle(),
        TlsReplay(),
        LoginFlood(),
        StalledReplay(),
        ReplayCycle(),
    )
}


# ---- the honest clients (a child process: `attacks.py _honest ...`) -----------------------


async def honest_main(port: int, clients: int, per_s: float, ip: str, max_s: float, ca: str = "") -> None:
    """Three (`clients`) honest members of room `honest`: send_message with an id at `per_s`, time the ack.

    Prints `ready` once all have joined; on SIGUSR1 (or after `max_s`) prints one JSON line:
    samples `[sent_at, latency_s, answered]` (an unanswered request counts with its age),
    requests lost with a connection, and failures `[at, client, what]`. With `ca`, over wss
    trusting that certificate.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, stop.set)
    samples: list[tuple[float, float, bool]] = []
    failures: list[tuple[float, int, str]] = []
    lost = [0]
    joined = [asyncio.Event() for _ in range(clients)]
    deadline = time.monotonic() + max_s
    tls = ssl.create_default_context(cafile=ca) if ca else None

    async def client(k: int) -> None:
        seq = 0
        for _ in range(50):  # reconnections
            if stop.is_set() or time.monotonic() > deadline:
                return
            pending: dict[int, float] = {}
            try:
                async with connect(
                    f"{'wss' if tls else 'ws'}://{HOST}:{port}/ws",
                    ssl=tls,
                    local_addr=(ip, 0),
                    proxy=None,
                    ping_interval=None,
                    open_timeout=5,
                    close_timeout=1,
                    compression=None,
                ) as ws:
                    await ws.send(json.dumps({"type": "join_room", "payload": {"room": HONEST_ROOM}, "id": "join"}))
                    async with asyncio.timeout(10):
                        for _ in range(1000):
                            if json.loads(await ws.recv()).get("id") == "join":
                                break
                    joined[k].set()

                    async def receive(pending: dict[int, float] = pending) -> None:
                        async for raw in ws:
                            doc = json.loads(raw)
                            sent = pending.pop(doc.get("id"), None) if doc.get("type") in ("ack", "error") else None
                            if sent is not None:
                                samples.append((sent, time.monotonic() - sent, True))
                                if doc["type"] == "error":
                                    failures.append((time.monotonic(), k, "error " + str(doc["payload"].get("code"))))

                    receiving = asyncio.create_task(receive())
                    next_at = time.monotonic()
                    for _ in range(MAX_ITERATIONS):
                        if stop.is_set() or time.monotonic() > deadline or receiving.done():
                            break
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(max(0.0, next_at - time.monotonic())):
                                await stop.wait()
                        if stop.is_set():
                            break
                        seq += 1
                        pending[seq] = time.monotonic()
                        message = {
                            "type": "send_message",
                            "payload": {"room": HONEST_ROOM, "message": f"h{k}"},
                            "id": seq,
                        }
                        async with asyncio.timeout(5):
                            await ws.send(json.dumps(message))
                        next_at = max(next_at + 1 / per_s, time.monotonic() - 1 / per_s)
                    with contextlib.suppress(TimeoutError):  # the last answers, briefly
                        async with asyncio.timeout(2):
                            for _ in range(200):
                                if not pending or receiving.done():
                                    break
                                await asyncio.sleep(0.02)
                    now = time.monotonic()
                    samples.extend((sent, now - sent, False) for sent in pending.values())
                    pending.clear()
                    if receiving.done() and not receiving.cancelled():
                        failed = receiving.exception()
                        code = failed.rcvd.code if isinstance(failed, ConnectionClosed) and failed.rcvd else None
                        failures.append((time.monotonic(), k, f"closed {code}" if code else "closed by the server"))
                    receiving.cancel()
                    if stop.is_set() or time.monotonic() > deadline:
                        return
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                failures.append((time.monotonic(), k, f"closed {code}"))
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                failures.append((time.monotonic(), k, type(exc).__name__))
            lost[0] += len(pending)
            await asyncio.sleep(0.25)

    tasks = [asyncio.create_task(client(k)) for k in range(clients)]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(20):
            await asyncio.gather(*(j.wait() for j in joined))
    print("ready" if all(j.is_set() for j in joined) else "not ready", flush=True)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            await stop.wait()
    stop.set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        task.cancel()
    print(json.dumps({"samples": samples, "failures": failures, "lost": lost[0]}), flush=True)


class Honest:
    """The honest clients' process, from the parent's side."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, port: int, opts: argparse.Namespace, max_s: float, ca: str = "") -> Honest:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "_honest",
            str(port),
            str(opts.honest_clients),
            str(opts.honest_rate),
            HONEST_IP if opts.spread_ips else HOST,
            str(max_s),
            ca,
            stdout=asyncio.subprocess.PIPE,
        )
        honest = cls(proc)
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(30):
                line = await proc.stdout.readline()
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            await honest.kill()
            raise RuntimeError(f"the honest clients could not join ({line.strip().decode() or 'no answer'})")
        return honest

    async def stop(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGUSR1)
        try:
            async with asyncio.timeout(15):
                out = await self.proc.stdout.read()
                await self.proc.wait()
        except TimeoutError:
            await self.kill()
            return {"samples": [], "failures": [], "lost": 0, "error": "honest clients did not answer"}
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return result

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.proc.wait()


def latency_stats(samples: list[list[Any]], t0: float, t1: float) -> dict[str, Any]:
    """p50/p99/max in ms of the requests sent in [t0, t1)."""
    chosen = sorted(s[1] for s in samples if t0 <= s[0] < t1)
    unanswered = sum(1 for s in samples if t0 <= s[0] < t1 and not s[2])
    if not chosen:
        return {"n": 0, "unanswered": 0}

    def pct(p: float) -> float:
        return round(chosen[min(len(chosen) - 1, int(p * len(chosen)))] * 1000, 1)

    return {"n": len(chosen), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0), "unanswered": unanswered}


# ---- the server and what it costs ------------------------------------------------------------


@dataclass
class Tree:
    """A source tree to run: its `src` directory, commit and the server flags it gets."""

    label: str
    src: Path
    commit: str
    """The last commit that changed `src` (+dirty when it has changes not committed)."""
    server_args: list[str]
    head: str = ""
    """The checkout's HEAD."""


def resolve_tree(path: str, label: str, server_args: str) -> Tree:
    src = Path(path).resolve()
    if not (src / "hubbub").is_dir() and (src / "src" / "hubbub").is_dir():
        src = src / "src"
    if not (src / "hubbub").is_dir():
        raise SystemExit(f"attacks.py: no hubbub package in {path}")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True).stdout.strip()

    # The last commit that changed the tree: the code measured, whatever was committed elsewhere since.
    commit = git("log", "-1", "--format=%h", "--", ".") or "unknown"
    if git("status", "--porcelain", "--", "."):
        commit += "+dirty"
    return Tree(label, src, commit, shlex.split(server_args), git("rev-parse", "--short", "HEAD"))


_SAMPLE = re.compile(r"^(hubbub_[a-z_]+_total)(\{[^}]*\})? ([0-9.e+]+)$")


async def scrape(port: int, tls: ssl.SSLContext | None = None) -> dict[str, float] | None:
    """The server's `hubbub_*_total` counters from GET /metrics (None if it does not answer in 5 s)."""
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection(
                HOST, port, ssl=tls, server_hostname="localhost" if tls else None
            )
            try:
                writer.write(f"GET /metrics HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode())
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = re.search(r"(?i)content-length: *([0-9]+)", head)
                body = await (reader.readexactly(int(length.group(1))) if length else reader.read(1 << 22))
            finally:
                writer.close()
    except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    counters: dict[str, float] = {}
    for line in body.decode().splitlines():
        found = _SAMPLE.match(line)
        if found:
            counters[found.group(1).removeprefix("hubbub_") + (found.group(2) or "")] = float(found.group(3))
    return counters


def counter_diff(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float] | None:
    """What the attack window added to each counter that moved (None when a scrape failed)."""
    if before is None or after is None:
        return None
    return {k: v - before.get(k, 0.0) for k, v in sorted(after.items()) if v != before.get(k, 0.0)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def proc_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def proc_cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def new_log() -> tuple[Path, Any]:
    handle = tempfile.NamedTemporaryFile(prefix="hubbub-attack-", suffix=".log", delete=False)  # noqa: SIM115
    return Path(handle.name), handle


_LEVEL = re.compile(rb"^\S+ (debug|info|warning|error|critical) (\S+) (\S+)")
_LOGGER_NUMBER = re.compile(r"\.[0-9]+$")
"""picows names its loggers `picows.server.15`: the number goes, so that they count as one."""
_JSON_LEVEL = re.compile(rb'"level": "(\w+)", "logger": "([^"]+)", "event": "([^"]+)"')


def log_stats(path: Path, start: int, end: int) -> dict[str, Any]:
    """Bytes and lines the server wrote between two offsets, by level, and the commonest events."""
    levels, events, lines = Counter[str](), Counter[str](), 0
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(max(0, end - start))
    for line in data.splitlines():
        lines += 1
        found = _LEVEL.match(line) or _JSON_LEVEL.search(line)
        if found:
            level, logger, event = (g.decode(errors="replace") for g in found.groups())
            levels[level] += 1
            events[f"{level} {_LOGGER_NUMBER.sub('', logger)} {event}"] += 1
    return {"bytes": end - start, "lines": lines, "levels": dict(levels), "top": events.most_common(4)}


def self_signed(directory: str, kind: str) -> tuple[str, str]:
    """A certificate for localhost and 127.0.0.1 and its key, made by `openssl` in `directory`:
    RSA-2048 (`rsa`) or ECDSA P-256 (`ec`)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    new_key = ("-newkey", "rsa:2048") if kind == "rsa" else ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
    subprocess.run(
        [
            *("openssl", "req", "-x509", *new_key, "-nodes", "-subj", "/CN=localhost", "-days", "1"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


async def start_server(
    tree: Tree, port: int, log: Any, pin: bool, extra: tuple[str, ...] = ()
) -> asyncio.subprocess.Process:
    env = dict(os.environ, PYTHONPATH=str(tree.src))
    args = [sys.executable, "-m", "hubbub", "serve", "--port", str(port), "--log-level", "info", *extra]
    args += tree.server_args
    taskset = shutil.which("taskset")
    if pin and taskset:
        args = [taskset, "-c", "1", *args]
    proc = await asyncio.create_subprocess_exec(*args, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    if pin and not taskset:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, {1})
    for _ in range(100):
        if proc.returncode is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} (flags: {' '.join(tree.server_args)})")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(HOST, port)
            writer.close()
            return proc
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not listen within 10 s")


async def stop_server(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(6):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


class Sampler:
    """The server's RSS every 100 ms; past the ceiling the attack is aborted, past 1.25 x the server killed."""

    def __init__(self, proc: asyncio.subprocess.Process, ceiling_kb: int, abort: asyncio.Event) -> None:
        self.proc, self.ceiling_kb, self.abort = proc, ceiling_kb, abort
        self.rss_kb = proc_rss_kb(proc.pid)
        self.peak_kb = self.rss_kb
        self.aborted: str | None = None
        self.started = time.monotonic()

    async def run(self, limit: float) -> None:
        for _ in range(MAX_ITERATIONS):
            if time.monotonic() > limit:
                return
            if self.proc.returncode is not None:
                self.aborted = self.aborted or f"server exited ({self.proc.returncode})"
                self.abort.set()
                return
            self.rss_kb = proc_rss_kb(self.proc.pid)
            self.peak_kb = max(self.peak_kb, self.rss_kb)
            if self.rss_kb > self.ceiling_kb and not self.abort.is_set():
                self.aborted = f"RSS ceiling {self.ceiling_kb // 1024} MB at {time.monotonic() - self.started:.1f} s"
                self.abort.set()
            if self.rss_kb > self.ceiling_kb * 5 // 4:
                self.aborted = (self.aborted or "") + "; server killed at 1.25 x the ceiling"
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
            await asyncio.sleep(0.1)

    def reset_peak(self) -> None:
        self.peak_kb, self.started = self.rss_kb, time.monotonic()


async def run_one(attack: Attack, tree: Tree, opts: argparse.Namespace) -> dict[str, Any]:
    """One attack against one tree, on a fresh server; returns the JSON document of the run."""
    port = free_port()
    log_path, log = new_log()
    abort = asyncio.Event()
    doc: dict[str, Any] = {
        "attack": attack.name,
        "tree": tree.label,
        "src": str(tree.src),
        "commit": tree.commit,
        "head": tree.head,
        "server_args": tree.server_args,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "duration_s": opts.duration,
        "baseline_s": opts.baseline,
        "loadavg_before": loadavg(),
    }
    honest: Honest | None = None
    sampling: asyncio.Task[None] | None = None
    certs = tempfile.TemporaryDirectory(prefix="hubbub-attack-tls-")
    ca, extra, tls = "", tuple[str, ...](), None
    if attack.tls:
        ca, key = self_signed(certs.name, opts.tls_key_type)
        extra, tls = ("--tls-cert", ca, "--tls-key", key), ssl.create_default_context(cafile=ca)
        doc["tls_key_type"] = opts.tls_key_type
    extra = (*extra, *await attack.server_args(tree))
    proc = await start_server(tree, port, log, opts.pin, extra)
    sampler = Sampler(proc, opts.rss_ceiling_mb * 1024, abort)
    ctx = Ctx(port, opts, abort, lambda: sampler.rss_kb * 1024, tls=tls, ca=ca)
    try:
        hard = time.monotonic() + opts.timeout + opts.baseline + 120
        sampling = asyncio.create_task(sampler.run(hard))
        async with asyncio.timeout(60):
            await attack.setup(ctx)
        honest = await Honest.start(port, opts, opts.timeout + opts.baseline + 60, ca)
        await asyncio.sleep(0.5)  # warm-up, not counted: the first requests of a connection are slower
        t_base = time.monotonic()
        await asyncio.sleep(opts.baseline)
        rss_before, log0, cpu0 = sampler.rss_kb, log_path.stat().st_size, proc_cpu_s(proc.pid)
        sampler.reset_peak()
        counters0 = await scrape(port, tls)
        ctx.start = time.monotonic()
        ctx.end, ctx.limit = ctx.start + opts.duration, ctx.start + opts.timeout
        ctx.tasks.append(asyncio.create_task(ctx.watch()))
        try:
            async with asyncio.timeout(opts.timeout):
                await attack.run(ctx)
                # The window lasts --duration even when the attacker is done sooner (closed by the
                # server, say), so that the honest clients of every tree are measured as long.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, ctx.end - time.monotonic())):
                        await abort.wait()
        except TimeoutError:
            doc["hard_timeout"] = True
        except (OSError, Refused) as exc:
            doc["attack_error"] = repr(exc)
        t_end = time.monotonic()
        attacker = attack.attacker(ctx) | {k: v for k, v in ctx.report.items() if k != "fate_before_close"}
        if ctx.peers:
            ctx.peers[0].abort()  # the attacker goes; the bystanders stay, watched, until after --settle
        await asyncio.sleep(opts.settle)
        attacker |= attack.after(ctx)
        for task in ctx.tasks:
            task.cancel()
        for peer in ctx.peers:
            peer.abort()
        t_settled = time.monotonic()
        cpu1 = proc_cpu_s(proc.pid)
        counters1 = await scrape(port, tls)
        result = await honest.stop()
        honest = None
        log1 = log_path.stat().st_size
        samples = result["samples"]
        doc |= {
            "attack_s": round(t_end - ctx.start, 3),
            "aborted": sampler.aborted,
            "honest_baseline": latency_stats(samples, t_base, ctx.start),
            "honest_attack": latency_stats(samples, ctx.start, t_settled),
            "honest_failures": [f for f in result["failures"] if f[0] >= ctx.start],
            "honest_lost": result["lost"],
            "rss_mb": {
                "before": round(rss_before / 1024, 1),
                "peak": round(sampler.peak_kb / 1024, 1),
                "after": round(proc_rss_kb(proc.pid) / 1024, 1),
            },
            "server_cpu_pct": round(100 * (cpu1 - cpu0) / max(1e-9, t_settled - ctx.start), 1),
            "log": log_stats(log_path, log0, log1),
            "server_counters": counter_diff(counters0, counters1),
            "attacker": attacker,
            "loadavg_after": loadavg(),
        }
        for mark, at in ctx.marks.items():
            doc[f"honest_after_{mark}"] = latency_stats(samples, at - 0.1, t_settled)
        if proc.returncode is not None:
            doc["server_exit"] = proc.returncode
    finally:
        if honest is not None:
            await honest.kill()
        for task in ctx.tasks:
            task.cancel()
        for peer in ctx.peers:
            peer.abort()
        if sampling is not None:
            sampling.cancel()
        await stop_server(proc)
        certs.cleanup()
        log.close()
        if opts.keep_logs:
            doc["log_path"] = str(log_path)
        else:
            log_path.unlink(missing_ok=True)
    return doc


# ---- the table ------------------------------------------------------------------------------


def short(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def speed(attacker: dict[str, Any]) -> str:
    """The attacker's rate; for a burst shorter than half a second (it was closed), what it sent."""
    unit = attacker.get("unit", "")
    if attacker.get("seconds", 1.0) < 0.5:
        return f"{short(attacker.get('sent', 0))} {unit} in {attacker.get('seconds', 0):.2f}s"
    return f"{short(attacker.get('rate_per_s', 0))} {unit}/s"


def fate_text(doc: dict[str, Any]) -> str:
    a = doc.get("attacker", {})
    status = a.get("status", "?")
    text = status if a.get("code") is None else f"{status} {a['code']}"
    if a.get("after_s") is not None:
        text += f" @{a['after_s']:.1f}s"
    members = a.get("members")
    if members:
        text += f"; members {','.join(f'{k}x{v}' for k, v in members['fates'].items())}"
    if doc.get("aborted"):
        text += f"; ABORT {doc['aborted']}"
    return text


def print_table(docs: list[dict[str, Any]]) -> None:
    head = ("attack", "tree", "base p99", "p50 ms", "p99 ms", "max ms", "fail", "RSS before/peak/after MB")
    head += ("cpu%", "log KB", "lines", "attacker rate", "attacker")
    fmt = "{:11} {:16} {:>8} {:>7} {:>7} {:>7} {:>4} {:>24} {:>4} {:>8} {:>7} {:>15}  {}"
    print(fmt.format(*head))
    for doc in sorted(docs, key=lambda d: (list(ATTACKS).index(d["attack"]), d.get("order", 0))):
        if "error" in doc:
            print(f"{doc['attack']:11} {doc['tree'][:16]:16} failed: {doc['error']}")
            continue
        base, h, r, a = doc["honest_baseline"], doc["honest_attack"], doc["rss_mb"], doc["attacker"]
        unit = a.get("unit", "")
        print(
            fmt.format(
                doc["attack"],
                doc["tree"][:16],
                base.get("p99_ms", "-"),
                h.get("p50_ms", "-"),
                h.get("p99_ms", "-"),
                h.get("max_ms", "-"),
                len(doc["honest_failures"]) + doc["honest_lost"],
                f"{r['before']:.0f}/{r['peak']:.0f}/{r['after']:.0f}",
                f"{doc['server_cpu_pct']:.0f}",
                f"{doc['log']['bytes'] / 1024:.0f}",
                doc["log"]["lines"],
                speed(a),
                fate_text(doc),
            )
        )
    print()
    for doc in docs:
        if "error" in doc:
            continue
        a, notes = doc["attacker"], []
        if doc["attack"] == "join-flood":
            notes.append(
                f"accepted {a.get('accepted')}, refused {a.get('refused')}, {a.get('rss_per_join_b')} B/join, "
                f"server answered the close in {a.get('close_answered_s')} s, honest max after the close "
                f"{doc.get('honest_after_close', {}).get('max_ms')} ms"
            )
        if doc["attack"] in ("history", "fragments", "ping-noread"):
            grown = (doc["rss_mb"]["peak"] - doc["rss_mb"]["before"]) * 2**20
            per = grown / max(1, a.get("sent", 0))
            unit = a.get("unit", "?")[:-1]
            notes.append(
                f"sent {a.get('bytes_sent', 0) / 1e6:.0f} MB; RSS +{grown / 1e6:.0f} MB, {per:,.1f} B per {unit}"
            )
        if doc["attack"] in ("deep-json",):
            notes.append(f"answers {a.get('answers')}")
        if doc["attack"] == "malformed":
            notes.append(f"outcomes {a.get('outcomes')}")
        if doc["attack"] == "tls-trickle":
            notes.append(f"waves {a.get('waves')}; fates {a.get('fates')}; new wss {a.get('probe')}")
        if doc["attack"] == "tls-replay":
            notes.append(f"outcomes {a.get('outcomes')}; new wss {a.get('probe')}")
        if doc["attack"] == "login-flood" and a.get("honest_logins"):
            h = a["honest_logins"]
            notes.append(
                f"honest logins {h['ok']}/{h['total']} ok {h['statuses']}, p50 {h['p50_ms']} ms, max {h['max_ms']} ms "
                f"(alone {a.get('honest_login_alone_ms')} ms); "
                f"attacker {a.get('attacker_statuses')}"
            )
        if doc["attack"] == "room-flood" and a.get("members"):
            m = a["members"]
            notes.append(f"members dropped median @{m['dropped_median_s']} s, {m['mb_read_each']} MB read each")
        if doc["honest_failures"]:
            notes.append(f"honest failures {Counter(f[2] for f in doc['honest_failures'])}")
        notes.append(f"log {doc['log']['levels']} top {doc['log']['top'][:2]}")
        print(f"{doc['attack']} [{doc['tree']}]: " + "; ".join(notes))


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("attacks", nargs="*", help=f"all, or some of: {' '.join(ATTACKS)}")
    p.add_argument("--src", action="append", default=[], help="a source tree (repeat for A/B); default: this one")
    p.add_argument(
        "--server-args", action="append", default=[], help="extra server flags: once for every tree, or once per --src"
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds of attack (default %(default)s)")
    p.add_argument(
        "--baseline", type=float, default=3.0, help="seconds of honest traffic alone first (default %(default)s)"
    )
    p.add_argument("--settle", type=float, default=1.0, help="seconds measured after the attack (default %(default)s)")
    p.add_argument(
        "--timeout", type=float, default=120.0, help="hard limit of one attack in seconds (default %(default)s)"
    )
    p.add_argument(
        "--rss-ceiling-mb", type=int, default=1500, help="abort an attack past this RSS (default %(default)s)"
    )
    p.add_argument("--rounds", type=int, default=1, help="runs of each attack on each tree, interleaved (default 1)")
    p.add_argument("--honest-clients", type=int, default=3)
    p.add_argument("--honest-rate", type=float, default=20.0, help="requests per second per honest client")
    p.add_argument("--members", type=int, default=100, help="room-flood's reading members (default %(default)s)")
    p.add_argument(
        "--churners", type=int, default=1000, help="presence-churn's and join-burst's members (default %(default)s)"
    )
    p.add_argument(
        "--churn-gap",
        type=float,
        default=0.0,
        help="presence-churn: seconds between a member's leave and its rejoin (default %(default)s: back to back)",
    )
    p.add_argument("--rooms", type=int, default=500, help="history's rooms (default %(default)s)")
    p.add_argument("--history-window", type=int, default=8, help="history's messages in flight (default %(default)s)")
    p.add_argument("--joins", type=int, default=100_000, help="join-flood's joins (default %(default)s)")
    p.add_argument("--close-watch", type=float, default=3.0, help="join-flood: seconds watched after the close")
    p.add_argument("--tls-sockets", type=int, default=2000, help="tls-trickle: sockets per wave (default %(default)s)")
    p.add_argument("--tls-concurrency", type=int, default=32, help="tls-replay: hellos in flight (default %(default)s)")
    p.add_argument(
        "--tls-key-type", choices=("rsa", "ec"), default="rsa", help="the TLS attacks' certificate (default rsa)"
    )
    p.add_argument("--archive", type=int, default=1000, help="60 KB messages replayed by stalled-replay, replay-cycle")
    p.add_argument("--stallers", type=int, default=2000, help="stalled-replay's sockets (default %(default)s)")
    p.add_argument("--cyclers", type=int, default=20, help="replay-cycle's readers (default %(default)s)")
    p.add_argument("--one-ip", dest="spread_ips", action="store_false", help="every client from 127.0.0.1")
    p.add_argument("--no-pin", dest="pin", action="store_false", help="no CPU pinning")
    p.add_argument("--keep-logs", action="store_true", help="keep each server's log file (path in the JSON)")
    p.add_argument("--out", default=str(HERE / "results" / f"attacks-{datetime.date.today():%Y-%m-%d}.jsonl"))
    p.add_argument("--list", action="store_true", help="list the attacks and exit")
    opts = p.parse_args(argv)
    if opts.list:
        for attack in ATTACKS.values():
            print(f"{attack.name:14} {attack.about}")
        raise SystemExit(0)
    names = list(ATTACKS) if not opts.attacks or "all" in opts.attacks else opts.attacks
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        p.error(f"unknown attack(s) {' '.join(unknown)}; known: {' '.join(ATTACKS)}")
    opts.attacks = names
    if not opts.src:
        opts.src = [str(HERE.parent / "src")]
    if len(opts.server_args) > 1 and len(opts.server_args) != len(opts.src):
        p.error("--server-args: give it once, or once per --src")
    if opts.duration <= 0 or opts.timeout < opts.duration or opts.rounds < 1:
        p.error("--duration must be positive, --timeout at least --duration, --rounds at least 1")
    return opts


async def amain(opts: argparse.Namespace) -> int:
    args = opts.server_args or [""]
    trees = [resolve_tree(s, "", args[i] if len(args) > 1 else args[0]) for i, s in enumerate(opts.src)]
    for i, tree in enumerate(trees):
        tree.label = f"{'AB'[i] if len(trees) == 2 else i + 1}:{tree.commit}" if len(trees) > 1 else tree.commit
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    docs: list[dict[str, Any]] = []
    order = 0
    for name in opts.attacks:
        for _ in range(opts.rounds):
            for tree in trees:
                order += 1
                print(f"attacks.py: {name} on {tree.label} (load {loadavg()})", file=sys.stderr, flush=True)
                try:
                    doc = await run_one(ATTACKS[name], tree, opts)
                except (RuntimeError, OSError, TimeoutError, Refused) as exc:
                    doc = {"attack": name, "tree": tree.label, "commit": tree.commit, "error": str(exc) or repr(exc)}
                doc["order"] = order
                docs.append(doc)
                append_line(out, doc)
    print_table(docs)
    print(f"\nresults appended to {out}")
    return 0


def append_line(out: Path, doc: dict[str, Any]) -> None:
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(doc) + "\n")


def run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_honest"]:
        port, clients, per_s, ip, max_s, ca = argv[1:7]
        run(honest_main(int(port), int(clients), float(per_s), ip, float(max_s), ca))
        return 0
    if argv[:1] == ["_probe"]:
        port, ca, max_s = argv[1:4]
        run(probe_main(int(port), ca, float(max_s)))
        return 0
    opts = parse_args(argv)
    if opts.pin and len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {0})  # the server gets core 1
    else:
        opts.pin = False
    return int(run(amain(opts)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
