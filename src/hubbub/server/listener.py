"""Accepting TCP sockets: the caps on how many one server holds, and running out of descriptors.

`Listener` runs the accept loop of a `Server`: it admits a socket or refuses it under
`--max-connections` (503) and `--max-connections-per-ip` (429), counts every refusal and every
`accept()` failure, and hands admitted sockets (with TLS, wrapped) to picows. Why the accept loop
is hubbub's own and how a refusal waits for its request: docs/topics/front-door.md.

With TLS, the handshakes in progress have caps of their own (`HandshakeBounds`: in all and per
address), checked after the socket caps: past either, the new socket is closed at once, before
any TLS state exists for it, and counted (`tls_capacity`, `tls_per_ip`), unless every place is
taken and the oldest handshake has run past `HandshakeBounds.evict_after`: that one is then
ended (`tls_evicted`) and the new socket takes its place. A `HeapTrimmer` hands
the heap back after a wave of sockets has closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
import ssl
from collections.abc import Callable
from typing import Any

from hubbub.core.metrics import Metrics
from hubbub.core.settings import Settings
from hubbub.server.heap import HeapTrimmer
from hubbub.server.tls import HandshakeBounds

log = logging.getLogger("hubbub.server.listener")

DEFAULT_MAX_CONNECTIONS = 65536
REFUSALS_WAITING = 64
"""Refused sockets that may wait for their request at once; more are answered at once."""
REFUSAL_WAIT = 1.0
"""Seconds a refused socket waits for its request before it is answered anyway."""
FD_RESERVE = 64 + 64 + REFUSALS_WAITING
"""Descriptors kept back from the connection cap: 64 for the process itself (stdio, the
event loop's own, the spare, logs, a NATS or Redis pub/sub connection), 64 for the two Redis
pools of 32 (broker and presence), and the refused sockets waiting for their request."""
LOG_INTERVAL = 5.0
"""At most one log line per this many seconds for each recurring refusal."""
ACCEPT_PAUSE = 0.1
"""Seconds accepting stops after an `accept()` failure that the spare cannot absorb."""
_ACCEPT_BATCH = 64
"""Sockets accepted per readiness callback: the rest wait for the next turn of the loop, so
a connection storm cannot starve the connections already open."""
_FD_ERRORS = (errno.EMFILE, errno.ENFILE)
_IGNORED = (errno.ECONNABORTED, errno.EPROTO, errno.EPERM)
"""A peer that reset before `accept()` returned, or a firewall's veto: that one socket is gone."""


def _answer(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


AT_CAPACITY = _answer("503 Service Unavailable", b"server at capacity\n")
OVER_PER_IP = _answer("429 Too Many Requests", b"too many connections from your address\n")
OUT_OF_FDS = _answer("503 Service Unavailable", b"server out of file descriptors\n")


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as Go's runtime does); return the soft limit.

    The soft limit is often 1024 while the hard one is far higher; a server that
    holds a socket per client wants all it may have.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and hard != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.debug("server.fd_limit_unchanged", extra={"soft": soft, "hard": hard, "error": str(exc)})
        else:
            soft = hard
    return soft


def connection_cap(configured: int | None, fd_limit: int) -> int:
    """`--max-connections`, or by default 65536 but no more than the descriptors the process may
    open minus `FD_RESERVE` (at most half of them when the limit is tiny)."""
    if configured is not None:
        return configured
    return max(1, min(DEFAULT_MAX_CONNECTIONS, fd_limit - min(FD_RESERVE, fd_limit // 2)))


def peer_key(address: Any) -> str:
    """What the per-address cap counts: the IPv4 address, or the IPv6 /64 (one host's usual share)."""
    host = str(address[0]) if isinstance(address, tuple) else str(address)
    if ":" not in host:
        return host
    try:
        packed = socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
    except OSError:
        return host
    if packed[:12] == b"\0" * 10 + b"\xff\xff":  # IPv4-mapped: the IPv4 address it is
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed[:8] + b"\0" * 8) + "/64"


class Tally:
    """A recurring event logged at most once per `interval`: the first at once, then one line
    per interval saying how many happened since (`count`), while they keep happening."""

    def __init__(self, event: str, level: int, interval: float = LOG_INTERVAL) -> None:
        self.event = event
        self.level = level
        self.interval = interval
        self.total = 0
        self._pending = 0
        self._extra: dict[str, Any] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, **extra: Any) -> None:
        self.total += 1
        if self._timer is None:
            log.log(self.level, self.event, extra={**extra, "count": 1})
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._flush)
        else:
            self._pending += 1
            self._extra = extra

    def _flush(self) -> None:
        if not self._pending:
            self._timer = None
            return
        log.log(self.level, self.event, extra={**self._extra, "count": self._pending})
        self._pending = 0
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._flush)

    def close(self) -> None:
        """Say what is still untold, and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            log.log(self.level, self.event, extra={**self._extra, "count": self._pending})
            self._pending = 0


class Slot:
    """One accepted socket's place under the caps; calling it gives the place back (once)."""

    __slots__ = ("_listener", "key")

    def __init__(self, listener: Listener, key: str) -> None:
        self._listener: Listener | None = listener
        self.key = key

    def __call__(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.release(self.key)


ProtocolFactory = Callable[[Slot], asyncio.BaseProtocol]
"""Makes the protocol of an admitted socket; it must call the slot when its connection is lost."""


class Listener:
    """Listening sockets with caps on what they accept (see the module docstring)."""

    def __init__(
        self,
        factory: ProtocolFactory,
        metrics: Metrics,
        max_connections: int,
        max_per_ip: int,
        fd_limit: int = 0,
        tls: ssl.SSLContext | None = None,
        handshakes: HandshakeBounds | None = None,
        send_buffer: int = 0,
    ) -> None:
        self.factory = factory
        self.send_buffer = send_buffer
        """`SO_SNDBUF` set on every admitted socket before anything else sees it (`--send-buffer`); 0: the kernel's."""
        self.tls = tls
        """The server's TLS context; None for plain TCP."""
        self.handshakes = handshakes or HandshakeBounds.of(Settings())
        """The caps on TLS handshakes in progress, and their timeout."""
        self.handshaking = 0
        """TLS handshakes in progress."""
        self.handshaking_per_ip: dict[str, int] = {}
        self._handshakes: dict[asyncio.Task[Any], float] = {}
        """The handshakes in progress, oldest first, with when each began."""
        self.metrics = metrics
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.fd_limit = fd_limit
        self.sockets: list[socket.socket] = []
        self.backlog = 0
        self.open = 0
        """Accepted sockets not yet closed."""
        self.per_ip: dict[str, int] = {}
        self._spare: int | None = None
        self._spare_lent = False
        """A refused socket holds the spare's descriptor until it is answered."""
        self._waiting: dict[socket.socket, tuple[bytes, asyncio.TimerHandle, Callable[[], None] | None]] = {}
        self._paused: asyncio.TimerHandle | None = None
        self._serving = False
        self._full = Tally("conn.rejected", logging.INFO)
        self._crowded = Tally("conn.rejected", logging.INFO)
        self._starved = Tally("accept.out_of_fds", logging.WARNING)
        """Connections answered 503 through the spare descriptor (`count` of them per line)."""
        self._paused_log = Tally("accept.paused", logging.WARNING)
        """accept() failures the spare could not absorb (`count` of pauses per line)."""
        self._tls_failed = Tally("tls.handshake_failed", logging.DEBUG)
        """TLS handshakes that failed (`count` of them per line): any peer can cause one."""
        self._tls_full = Tally("conn.rejected", logging.INFO)
        self._tls_crowded = Tally("conn.rejected", logging.INFO)
        self.trimmer = HeapTrimmer(lambda: self.open, metrics.heap_trims.inc)
        metrics.watch_sockets(lambda: self.open)
        metrics.watch_max_connections(lambda: self.max_connections)
        metrics.watch_tls_handshakes(lambda: self.handshaking)

    async def listen(self, host: str, port: int, backlog: int) -> None:
        """Bind every address `host` names (all interfaces when empty) and listen with `backlog`."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host or None, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        self.backlog = backlog
        seen: set[tuple[int, Any]] = set()
        try:
            for family, kind, proto, _, address in infos:
                if (family, address) in seen:
                    continue
                seen.add((family, address))
                sock = socket.socket(family, kind, proto)
                self.sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(backlog)
                sock.setblocking(False)
        except OSError:
            self._close_sockets()
            raise

    @property
    def addresses(self) -> list[str]:
        """The bound addresses (IPs), one per listening socket."""
        return [str(s.getsockname()[0]) for s in self.sockets]

    @property
    def refusals_waiting(self) -> int:
        """Refused sockets waiting for their request before they get their answer."""
        return len(self._waiting)

    def start(self) -> None:
        """Begin accepting."""
        self._spare = _open_spare()
        self._serving = True
        self._watch()

    def close(self) -> None:
        """Stop accepting and release the listening sockets; open connections are not touched."""
        self._serving = False
        self._unwatch()
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        self._close_sockets()
        for sock in list(self._waiting):
            self._answer(sock)
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        for tally in (self._full, self._crowded, self._starved, self._paused_log, self._tls_failed):
            tally.close()
        for tally in (self._tls_full, self._tls_crowded):
            tally.close()
        self.trimmer.close()

    def release(self, key: str) -> None:
        """A socket admitted under `key` is closed: its places are free again."""
        self.open -= 1
        left = self.per_ip[key] - 1
        if left:
            self.per_ip[key] = left
        else:
            del self.per_ip[key]
        self.trimmer.closed(self.open)

    def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            loop.add_reader(sock, self._accept, sock)

    def _unwatch(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            if sock.fileno() >= 0:
                loop.remove_reader(sock)

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()

    def _accept(self, listening: socket.socket) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, address = listening.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _IGNORED:
                    continue
                if not self._accept_failed(listening, exc):
                    return
                continue
            self._admit(sock, address)

    def _admit(self, sock: socket.socket, address: Any) -> None:
        key = peer_key(address)
        if self.open >= self.max_connections:
            self._refuse(sock, AT_CAPACITY)
            self.metrics.handshakes_rejected.labels("capacity").inc()
            self._full.add(reason="capacity", max_connections=self.max_connections)
            return
        held = self.per_ip.get(key, 0)
        if held >= self.max_per_ip:
            self._refuse(sock, OVER_PER_IP)
            self.metrics.handshakes_rejected.labels("per_ip").inc()
            self._crowded.add(reason="per_ip", peer=key, max_connections_per_ip=self.max_per_ip)
            return
        if self.tls is not None and not self._may_handshake(sock, key):
            return
        if self.send_buffer:
            # Bytes the kernel holds for a client that does not read count against no limit of
            # ours; capped here, right after accept, so that picows' accept line (at debug)
            # already shows the cap and nothing is ever written under the kernel's default.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        self.open += 1
        self.per_ip[key] = held + 1
        self.trimmer.opened(self.open)
        slot = Slot(self, key)
        began = False
        try:
            protocol = self.factory(slot)
            loop = asyncio.get_running_loop()
            if self.tls is None:
                attach = loop.connect_accepted_socket(lambda: protocol, sock)
            else:
                self._handshake_begins(key)
                began = True
                attach = loop.connect_accepted_socket(
                    lambda: protocol, sock, ssl=self.tls, ssl_handshake_timeout=self.handshakes.timeout
                )
            task = loop.create_task(attach)
            if began:
                self._handshakes[task] = loop.time()
        except BaseException:
            if began:
                self._handshake_ends(key)
            slot()
            sock.close()
            raise
        task.add_done_callback(lambda done: self._attached(done, slot, sock))

    def _may_handshake(self, sock: socket.socket, key: str) -> bool:
        """Whether a TLS handshake may begin for a socket from `key`; if not, it is closed and counted.

        Closed at once, not made to wait for its hello as a refusal under the socket caps is: a
        socket that sends nothing would hold its descriptor as long as it liked.
        """
        bounds = self.handshakes
        if self.handshaking_per_ip.get(key, 0) >= bounds.per_ip:
            reason = "tls_per_ip"
            self._tls_crowded.add(reason=reason, peer=key, max_tls_handshakes_per_ip=bounds.per_ip)
        elif self.handshaking >= bounds.total and not self._evict_oldest(bounds.evict_after):
            reason = "tls_capacity"
            self._tls_full.add(reason=reason, max_tls_handshakes=bounds.total)
        else:
            return True
        with contextlib.suppress(OSError):
            sock.recv(65536, socket.MSG_DONTWAIT)  # whatever of the hello came, so the close is a FIN
        sock.close()
        self.metrics.handshakes_rejected.labels(reason).inc()
        return False

    def _evict_oldest(self, age: float) -> bool:
        """End the oldest handshake in progress if it has run `age` seconds or more; whether it was.

        Its task is cancelled, which closes its socket; its place is given back when the task ends
        (`_attached`), so for a moment one more handshake than the cap may be under way.
        """
        oldest = next(iter(self._handshakes), None)
        if oldest is None or asyncio.get_running_loop().time() - self._handshakes[oldest] < age:
            return False
        del self._handshakes[oldest]
        oldest.cancel()
        self.metrics.handshakes_rejected.labels("tls_evicted").inc()
        return True

    def _handshake_begins(self, key: str) -> None:
        self.handshaking += 1
        self.handshaking_per_ip[key] = self.handshaking_per_ip.get(key, 0) + 1

    def _handshake_ends(self, key: str) -> None:
        self.handshaking -= 1
        left = self.handshaking_per_ip[key] - 1
        if left:
            self.handshaking_per_ip[key] = left
        else:
            del self.handshaking_per_ip[key]

    def _attached(self, task: asyncio.Task[Any], slot: Slot, sock: socket.socket) -> None:
        """The transport for an admitted socket exists (with TLS: its handshake is done), or could
        not be made: then free its place, and with TLS count a failed handshake."""
        if self.tls is not None:
            self._handshake_ends(slot.key)
            self._handshakes.pop(task, None)
        if not task.cancelled() and task.exception() is None:
            return
        slot()
        sock.close()
        if task.cancelled():
            return
        exc = task.exception()
        if self.tls is not None and isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError, EOFError)):
            self.metrics.handshakes_rejected.labels("tls").inc()
            self._tls_failed.add(error=type(exc).__name__, reason=getattr(exc, "reason", None) or "")
        else:
            log.info("accept.attach_failed", extra={"error": repr(exc)})

    def _refuse(self, sock: socket.socket, answer: bytes, then: Callable[[], None] | None = None) -> None:
        """Answer `answer` and close, once the request is read (see the module docstring);
        `then` runs when the socket is closed. With `then`, the socket may always wait. With
        TLS the answer is only the close (the request read is the client's hello)."""
        if self.tls is not None:
            answer = b""
        try:
            sock.recv(65536, socket.MSG_DONTWAIT)  # the request, or b"" when the peer already left
        except BlockingIOError:
            if then is not None or len(self._waiting) < REFUSALS_WAITING:
                loop = asyncio.get_running_loop()
                self._waiting[sock] = (answer, loop.call_later(REFUSAL_WAIT, self._answer, sock), then)
                loop.add_reader(sock, self._answer, sock)
                return
        except OSError:
            answer = b""
        _send_and_close(sock, answer)
        if then is not None:
            then()

    def _answer(self, sock: socket.socket) -> None:
        """A waiting refused socket's request came (or its time is up): answer it."""
        answer, timer, then = self._waiting.pop(sock)
        timer.cancel()
        asyncio.get_running_loop().remove_reader(sock)
        with contextlib.suppress(OSError):
            sock.recv(65536, socket.MSG_DONTWAIT)
        _send_and_close(sock, answer)
        if then is not None:
            then()

    def _accept_failed(self, listening: socket.socket, exc: OSError) -> bool:
        """Count and log a failed `accept()`; when descriptors ran out, answer the waiting
        connection through the spare. Return whether to keep accepting now."""
        code = exc.errno or 0
        name = errno.errorcode.get(code, str(code))
        if code in _FD_ERRORS and self._spare_lent:
            self._pause()  # the spare is answering one already; the others wait in the backlog
            return False
        if code not in _FD_ERRORS or self._spare is None:
            self._count_failure(name)
            self._pause()
            return False
        os.close(self._spare)
        self._spare = None
        try:
            sock = listening.accept()[0]
        except BlockingIOError:
            # Linux takes the descriptor before it looks at the queue: nobody was waiting.
            self._spare_back()
            return False
        except OSError:
            self._spare_back()
            self._count_failure(name)
            self._pause()
            return False
        self.metrics.accept_errors.labels(name).inc()
        self.metrics.handshakes_rejected.labels("fd_limit").inc()
        self._starved.add(errno=name, fd_limit=self.fd_limit, sockets=self.open)
        self._spare_lent = True
        self._refuse(sock, OUT_OF_FDS, then=self._spare_back)
        return self._spare is not None  # answered at once: go on; else wait for the answer

    def _spare_back(self) -> None:
        """The socket accepted on the spare descriptor is closed: take the spare again."""
        self._spare_lent = False
        self._spare = _open_spare()
        if self._paused is not None and self._spare is not None:
            self._paused.cancel()
            self._resume()

    def _count_failure(self, name: str) -> None:
        """An accept() failure the spare could not absorb: counted, and logged once per interval."""
        self.metrics.accept_errors.labels(name).inc()
        self._paused_log.add(errno=name, fd_limit=self.fd_limit, sockets=self.open, pause=ACCEPT_PAUSE)

    def _pause(self) -> None:
        """Stop accepting for ACCEPT_PAUSE: the connections wait in the backlog instead of a busy
        loop retrying."""
        if self._paused is not None or not self._serving:
            return
        self._unwatch()
        self._paused = asyncio.get_running_loop().call_later(ACCEPT_PAUSE, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if not self._serving:
            return
        if self._spare is None and not self._spare_lent:
            self._spare = _open_spare()
        self._watch()


def _open_spare() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def _send_and_close(sock: socket.socket, answer: bytes) -> None:
    try:
        sock.send(answer, socket.MSG_DONTWAIT)
    except OSError:
        pass  # the peer is gone, or its window is full: the close says the rest
    finally:
        sock.close()
