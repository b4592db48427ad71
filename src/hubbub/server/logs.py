"""Structured logging: `key=value` text or JSON lines, one event per record, that no client can forge or flood.

Call sites log a short event name with the facts in `extra`
(`log.info("conn.closed", extra={"conn": 7, "code": 1000})`); normal life is logged at debug.
`configure` installs a formatter and a `RateLimitFilter`; `PicowsLog` turns picows' per-frame
errors into one line per connection. How the log is hardened: docs/topics/front-door.md.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, Final

from hubbub.core.connection import peer_address
from hubbub.protocol.redaction import redact_arg

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

_TOKEN: Final = re.compile(r"[\w.:/@+\-]+", re.ASCII)
"""A value written as is in the text format: ASCII letters, digits and `_ . : / @ + -`."""

_RESERVED: Final = frozenset({"ts", "level", "logger", "event", "traceback"})
"""The keys of the JSON format that `extra` fields may not overwrite."""


_ACCEPTED: Final = "New connection accepted: %s <- %s, recvbuf=%d, sendbuf=%d, quickack=%d, nodelay=%d, mask_impl=%s"
_PARSER_ERROR: Final = "WS parser error: %s, initiate disconnect"
"""picows' format strings (picows.pyx, 2.3) for an accepted connection and a peer's framing fault."""

_conn_log = logging.getLogger("hubbub.server.connection")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _text_value(value: object) -> str:
    """`value` as one unambiguous token: as is when plain, else a JSON string (ASCII-only).

    JSON escaping turns newlines, CR, tabs, ESC, quotes, backslashes and every
    non-ASCII character (bidi overrides included) into visible escapes, and the
    quotes keep spaces and `=` inside the value.
    """
    text = str(value) if type(value) is not str else value
    if _TOKEN.fullmatch(text) is not None:
        return text
    return json.dumps(text)


def _text_block(text: str) -> str:
    """A traceback (which may quote client values) as indented lines with no control characters.

    Every line break Python knows (including U+2028 and lone CRs) starts a new
    line indented by two spaces, so no line of it can pass for a record, which
    starts with a timestamp; other unprintable characters are escaped.
    """
    lines = []
    for line in text.splitlines():
        if not line.isprintable():
            line = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in line)
        lines.append("  " + line)
    return "\n".join(lines)


class TextFormatter(logging.Formatter):
    """`ts level logger event key=value ...`, with a traceback only for real errors.

    One record is one line (plus its indented traceback): the event and every
    value are written as is only when they are plain tokens, else as JSON
    strings, so `name="a\\nts error ..."` or `reason="x code=1000"` stay inside
    their quotes.
    """

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _timestamp(record),
            record.levelname.lower(),
            _text_value(record.name),
            _text_value(record.getMessage()),
        ]
        parts += [f"{k}={_text_value(v)}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + _text_block(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers.

    `json.dumps` escapes control and non-ASCII characters (`ensure_ascii`), so
    a value cannot split the line; an `extra` field named like a base key
    (`event`, `level`...) is written as `extra_<name>` instead of replacing it.
    """

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in _fields(record).items():
            while key in _RESERVED or key in doc:
                key = "extra_" + key
            doc[key] = value
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=True)


class RateLimitFilter(logging.Filter):
    """At most `rate` lines per second (bursts of `burst`) per logger and event name.

    Most of what hubbub logs can be caused by a client: a rejected handshake, a
    protocol error, a handler failing on its input (an ERROR with a traceback).
    On the handler, this filter sees every record, children's included. Lines
    over the limit are dropped and counted; the next line of that event that
    passes carries `suppressed=N`. The event is `record.msg` before formatting
    (hubbub's event names are constants), so the key costs no formatting.

    Keys are bounded: past `max_keys`, buckets that have refilled are forgotten,
    and if that is not enough (a library logging formatted strings) the extra
    events share one bucket, so they are limited too.

    Cost: a dict look-up and a little float arithmetic per record (about
    0.3 us; the formatting that follows costs ten times that).
    """

    _OVERFLOW: Final = ("", "")

    def __init__(
        self,
        rate: float = 10.0,
        burst: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        super().__init__()
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[tuple[str, str], list[float]] = {}
        """Per key: [tokens, time of the last refill, lines dropped since the last one passed]."""
        self._pruned_at = -1e9

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        key = (record.name, msg if type(msg) is str else "")
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._new_bucket(key, now)
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        bucket[1] = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens < 1.0:
            bucket[0] = tokens
            bucket[2] += 1
            return False
        bucket[0] = tokens - 1.0
        if bucket[2]:
            record.suppressed = int(bucket[2])
            bucket[2] = 0
        return True

    def _new_bucket(self, key: tuple[str, str], now: float) -> list[float]:
        buckets = self._buckets
        if len(buckets) >= self._max_keys:
            if now - self._pruned_at >= 1.0:  # a scan of every key, at most once a second
                self._pruned_at = now
                for old in [
                    k for k, b in buckets.items() if not b[2] and b[0] + (now - b[1]) * self.rate >= self.burst
                ]:
                    del buckets[old]
            if len(buckets) >= self._max_keys:
                key = self._OVERFLOW
                if key in buckets:
                    return buckets[key]
        bucket = buckets[key] = [self.burst, now, 0.0]
        return bucket


class PicowsLog:
    """What picows logs about one connection, with a peer's faults said once, at info.

    picows reports each malformed frame at ERROR ("WS parser error"); a client
    can send them by the thousand. Given a `logging.Logger`, picows would make a
    child logger per connection (`picows.server.<fd>`), out of reach of filters
    on its parent. Given another object it uses it as is, calling only
    `isEnabledFor`, `debug`, `info`, `warning`, `error`, `exception` and `log`
    (picows.pyx, 2.3). So the server gives each connection one of these.

    Everything below ERROR goes to `logger` unchanged. The first ERROR of a
    connection is its last word (picows closes it right after): a parser error
    becomes `conn.protocol_error` at info, with the close code and picows'
    reason; any other error (a failure in hubbub's own callbacks) goes to
    `logger` as it is, traceback included. Later errors of the same connection
    go to `logger` at debug. It holds three slots: 65 bytes per connection,
    where the child `Logger` picows would keep took 555 (tracemalloc).
    """

    __slots__ = ("_faulted", "_logger", "_remote")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._faulted = False
        self._remote = ""

    def isEnabledFor(self, level: int) -> bool:  # the logging API's name
        return self._logger.isEnabledFor(level)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        # picows logs raw request heads at debug ("New data: %s"): their tickets and credentials go first
        self._logger.debug(msg, *(redact_arg(arg) for arg in args), **kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        if not self._remote and len(args) > 1 and msg == _ACCEPTED:
            self._remote = peer_address(args[1])
        self._logger.info(msg, *args, **kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._logger.warning(msg, *args, **kwargs)

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=exc_info, **kwargs)

    def critical(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.log(logging.CRITICAL, msg, *args, **kwargs)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level < logging.INFO:
            self._logger.log(level, msg, *(redact_arg(arg) for arg in args), **kwargs)
        elif level < logging.ERROR:
            self._logger.log(level, msg, *args, **kwargs)
        elif self._faulted:
            kwargs.pop("exc_info", None)
            self._logger.debug(msg, *args, **kwargs)
        else:
            self._faulted = True
            if msg == _PARSER_ERROR:
                code, reason = _code_and_reason(args)
                _conn_log.info("conn.protocol_error", extra={"remote": self._remote, "code": code, "reason": reason})
            else:
                self._logger.log(level, msg, *args, **kwargs)


def _code_and_reason(args: tuple[object, ...]) -> tuple[int, str]:
    """The close code and reason out of picows' `WSProtocolError.args`: `((code, reason),)`."""
    detail = args[0] if args else None
    if isinstance(detail, tuple) and len(detail) >= 2:
        try:
            return int(detail[0]), str(detail[1])
        except (TypeError, ValueError):
            pass
    return 1002, str(detail)


_HTTP_LOGGERS = ("httpx", "httpcore")
"""The HTTP client's loggers (webhooks, the proxy to the app): quiet but for warnings, unless debugging."""


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send hubbub's (and its libraries') logs to stderr in the chosen format, rate-limited."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RateLimitFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    picows = logging.getLogger("picows")
    picows.setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)
    # httpx logs every request at INFO: one line per webhook POST and per proxy call (per message, with
    # --webhook-messages or --publish-proxy) is normal life, not news; their failures are hubbub's own lines
    for chatty in _HTTP_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)
