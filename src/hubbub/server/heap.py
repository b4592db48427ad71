"""Giving the heap back after a wave of sockets: glibc's `malloc_trim`, when many have closed.

The event loop is one thread, so glibc serves it from one arena, and memory freed there stays
in the process: glibc returns only the top of the heap, and only past a threshold that grows
with the largest block freed. A wave of short-lived sockets (a few thousand TLS handshakes that
never finish, each holding OpenSSL state and uvloop's 256 KiB read buffer) leaves the heap
as large as the wave's peak, with most of it free; the next wave lands on other pages, and
the resident memory climbs wave after wave though nothing is in use. `malloc_trim(0)` hands
every free page back to the kernel.

`HeapTrimmer` calls it when the sockets open fell to half or less of their peak since the
last trim, and at least `WAVE` of them closed: at most once per `INTERVAL`, a little after
the wave (`DELAY`), so the rest of it closes first. A trim walks the free blocks and holds the
loop about 2 ms after a wave of 256 handshakes, 33 ms after one of 2,000 (a 680 MB heap):
at most once per `INTERVAL`. A server whose clients come and go while most stay never trims.
Where there is no glibc (musl, macOS), the trimmer does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger("hubbub.server.heap")

WAVE = 128
"""Sockets that must have closed since the peak for a trim to be worth it."""
INTERVAL = 10.0
"""Seconds between two trims at least."""
DELAY = 1.0
"""Seconds a trim waits once a wave is seen, so that the rest of it closes first."""


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer:
    """Watches the number of open sockets (`closed` after each close) and trims after a wave."""

    def __init__(self, count: Callable[[], int], on_trim: Callable[[], None] | None = None) -> None:
        """`count` reads the sockets open; `on_trim` is called after each trim (a metric)."""
        self._trim = _malloc_trim()
        self._count = count
        self._on_trim = on_trim
        self.peak = 0
        """The most sockets open at once since the last trim."""
        self.trims = 0
        self._last = -INTERVAL
        self._timer: asyncio.TimerHandle | None = None

    @property
    def available(self) -> bool:
        """Whether this C library can trim (glibc)."""
        return self._trim is not None

    def opened(self, now_open: int) -> None:
        """A socket was accepted: `now_open` are open."""
        if now_open > self.peak:
            self.peak = now_open

    def closed(self, now_open: int) -> None:
        """A socket closed: `now_open` are open."""
        if self._timer is not None or self._trim is None:
            return
        if self.peak - now_open < WAVE or now_open * 2 > self.peak:
            return
        wait = max(DELAY, self._last + INTERVAL - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(wait, self._run)

    def _run(self) -> None:
        self._timer = None
        assert self._trim is not None
        started = time.monotonic()
        self._trim(0)
        self._last = time.monotonic()
        self.trims += 1
        now_open = self._count()
        log.info(
            "heap.trimmed",
            extra={"peak_sockets": self.peak, "sockets": now_open, "ms": round((self._last - started) * 1000, 1)},
        )
        self.peak = now_open
        if self._on_trim is not None:
            self._on_trim()

    def close(self) -> None:
        """Cancel a pending trim."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
