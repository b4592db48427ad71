"""Structured logging: `key=value` text or JSON lines, one event per record.

Call sites log a short event name and put the facts in `extra`, e.g.
`log.info("conn.closed", extra={"conn": 7, "code": 1000})`. Normal life
(connects, closes with 1000/1001/1006) is logged at debug, so a healthy server
at the default level says little beyond its start and stop.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """`ts level logger event key=value ...`, with a traceback only for real errors."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname.lower(), record.name, record.getMessage()]
        parts += [f"{k}={v!r}" if isinstance(v, str) and " " in v else f"{k}={v}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send hubbub's (and its libraries') logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    picows = logging.getLogger("picows")
    picows.setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)
    picows.addFilter(_peer_faults_are_not_errors)


def _peer_faults_are_not_errors(record: logging.LogRecord) -> bool:
    """Drop picows' error line for a peer's protocol violation (a jumbo frame, bad
    framing): the peer's fault, closed with its code, which hubbub logs itself as
    `conn.closed`. Errors in hubbub's own callbacks still get through."""
    return not (isinstance(record.msg, str) and record.msg.startswith("WS parser error"))
