"""The log cannot be forged, split or flooded by a client: formatters, rate limit, picows' errors."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import picows
import pytest

from hubbub.server import logs
from hubbub.server.logs import JsonFormatter, PicowsLog, RateLimitFilter, TextFormatter

HOSTILE = [
    "a\nb",
    "a\r\nb",
    "x\r2026-01-01T00:00:00.000Z error hubbub.core.hub forged",
    "\n2026-01-01T00:00:00.000Z error hubbub.core.hub handler.failed conn=1",
    "a\tb",
    "\x1b[31mred\x1b[0m",
    "evil\u202egnp.exe",
    "a\u2066b\u2069",
    "ad\u200bmin",
    "line\u2028sep\u2029",
    "\x85nel",
    "\x00nul\x7f",
    "x code=1000 user=admin",
    "user=admin",
    'quote" level=error "',
    "it's",
    "back\\slash",
    "",
    " ",
]

_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def _record(
    msg: str = "conn.closed",
    level: int = logging.INFO,
    name: str = "hubbub.core.hub",
    args: tuple[object, ...] = (),
    **extra: Any,
) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def _tokens(line: str) -> list[str]:
    """Split a text line the way a reader would: on spaces outside JSON strings."""
    tokens, current, quoted, escaped = [], "", False, False
    for c in line:
        if quoted:
            current += c
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                quoted = False
        elif c == " ":
            tokens.append(current)
            current = ""
        else:
            current += c
            quoted = c == '"'
    tokens.append(current)
    return tokens


@pytest.mark.parametrize("value", HOSTILE)
def test_text_values_cannot_forge_or_split_a_line(value: str) -> None:
    line = TextFormatter().format(_record(user=value, code=1000))
    assert line.isascii() and line.isprintable()  # no control, bidi or line-break character survives
    _, level, logger, event, *fields = _tokens(line)
    assert (level, logger, event) == ("info", "hubbub.core.hub", "conn.closed")
    assert [f.split("=", 1)[0] for f in fields] == ["user", "code"]  # no injected key
    assert json.loads(fields[0].split("=", 1)[1]) == value  # and the value reads back exactly
    assert fields[1] == "code=1000"


@pytest.mark.parametrize("value", HOSTILE)
def test_text_event_cannot_forge_a_line(value: str) -> None:
    """picows' messages are formatted with peer data: the event is quoted like a value."""
    line = TextFormatter().format(_record(msg="peer said %s", args=(value,)))
    assert line.isascii() and line.isprintable()
    assert json.loads(_tokens(line)[3]) == f"peer said {value}"


def test_plain_values_stay_plain() -> None:
    line = TextFormatter().format(_record(conn=7, user="alice", remote="127.0.0.1:5000", path="/ws", ok=True))
    assert line.endswith(" info hubbub.core.hub conn.closed conn=7 user=alice remote=127.0.0.1:5000 path=/ws ok=True")
    assert TextFormatter().format(_record(reason="a b")).endswith(' reason="a b"')


def test_text_traceback_lines_cannot_pass_for_records() -> None:
    try:
        raise ValueError("bad\n2026-01-01T00:00:00.000Z error hubbub.core.hub forged\r\x1b[2K\u2028also forged")
    except ValueError:
        record = _record("handler.failed", logging.ERROR, user="x")
        record.exc_info = sys.exc_info()
    first, *rest = TextFormatter().format(record).split("\n")
    assert first.endswith("handler.failed user=x")
    assert rest and all(line.startswith("  ") and line.isprintable() for line in rest)
    assert not any(c in "".join(rest) for c in _LINE_BREAKS)
    assert any("ValueError: bad" in line for line in rest)


@pytest.mark.parametrize("value", HOSTILE)
def test_json_values_cannot_split_the_line(value: str) -> None:
    line = JsonFormatter().format(_record(msg=value, user=value))
    assert line.isascii() and line.isprintable()
    doc = json.loads(line)
    assert doc["user"] == value and doc["event"] == value


def test_json_extra_fields_cannot_overwrite_the_base_keys() -> None:
    hostile = {"ts": "1970", "level": "critical", "logger": "root", "event": "forged", "traceback": "none"}
    record = _record(extra_event="kept")
    record.__dict__.update(hostile)  # as `extra=` would: logging refuses only LogRecord's own attributes
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "info" and doc["logger"] == "hubbub.core.hub" and doc["event"] == "conn.closed"
    assert doc["ts"] != "1970" and "traceback" not in doc
    assert doc["extra_ts"] == "1970" and doc["extra_level"] == "critical" and doc["extra_event"] == "kept"
    assert doc["extra_extra_event"] == "forged" and doc["extra_traceback"] == "none"


# ---- rate limit ------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _passes(limit: RateLimitFilter, n: int, msg: str = "conn.protocol_error", **kw: Any) -> list[logging.LogRecord]:
    return [r for r in (_record(msg, **kw) for _ in range(n)) if limit.filter(r)]


def test_rate_limit_allows_a_burst_then_the_rate_and_counts_what_it_dropped() -> None:
    clock = FakeClock()
    limit = RateLimitFilter(rate=10, burst=20, clock=clock)
    assert len(_passes(limit, 1000)) == 20
    clock.now += 0.5  # five tokens
    passed = _passes(limit, 1000)
    assert len(passed) == 5
    assert passed[0].__dict__["suppressed"] == 980 and "suppressed" not in passed[1].__dict__
    assert "suppressed=980" in TextFormatter().format(passed[0])
    clock.now += 60
    assert len(_passes(limit, 1000)) == 20  # a full burst again, never more


def test_rate_limit_is_per_logger_and_event_and_covers_errors() -> None:
    clock = FakeClock()
    limit = RateLimitFilter(rate=10, burst=20, clock=clock)
    assert len(_passes(limit, 50, "handler.failed", level=logging.ERROR)) == 20
    assert len(_passes(limit, 50, "conn.closed")) == 20
    assert len(_passes(limit, 50, "conn.closed", name="hubbub.other")) == 20
    assert len(_passes(limit, 50, "picows said %s", name="picows.server.17")) == 20  # a child logger


def test_rate_limit_keys_are_bounded() -> None:
    """A library that logs formatted strings gets one shared bucket past `max_keys`, not a memory leak."""
    clock = FakeClock()
    limit = RateLimitFilter(rate=10, burst=20, clock=clock, max_keys=8)
    passed = sum(limit.filter(_record(f"frame {i} was bad")) for i in range(10_000))
    assert len(limit._buckets) <= 9
    assert passed <= 8 + 20
    clock.now += 10  # every bucket refills: the old keys are forgotten to make room
    assert limit.filter(_record("new.event"))
    assert len(limit._buckets) <= 9


@pytest.fixture
def root_logging() -> Iterator[None]:
    """`logs.configure` replaces the root handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    quieted = [logging.getLogger(name) for name in ("picows", "httpx", "httpcore")]
    saved = root.handlers[:], root.level, [lg.level for lg in quieted]
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    for lg, level in zip(quieted, saved[2], strict=True):
        lg.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_configure_rate_limits_every_logger_on_the_handler(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", "text")
    (handler,) = logging.getLogger().handlers
    assert any(isinstance(f, RateLimitFilter) for f in handler.filters)
    child = logging.Logger("picows.server.42")  # the kind picows builds per connection, parent set by hand
    child.parent = logging.getLogger("picows")
    for _ in range(200):
        child.error("WS parser error: %s, initiate disconnect", (1002, "bad"))
        logging.getLogger("hubbub.core.hub").error("handler.failed", extra={"user": "x\ny"})
    lines = capsys.readouterr().err.splitlines()
    assert len([line for line in lines if "WS parser error" in line]) == 20
    assert len([line for line in lines if "handler.failed" in line]) == 20
    assert all('user="x\\ny"' in line for line in lines if "handler.failed" in line)


@pytest.mark.usefixtures("root_logging")
def test_the_http_clients_request_lines_are_kept_for_debugging(capsys: pytest.CaptureFixture[str]) -> None:
    """httpx logs each request at INFO: with webhooks or the proxy to the app that is a line per message."""
    logs.configure("info", "text")
    logging.getLogger("httpx").info('HTTP Request: POST http://app/hubbub/events "HTTP/1.1 200 OK"')
    logging.getLogger("httpx").warning("something httpx finds wrong")
    err = capsys.readouterr().err
    assert "HTTP Request" not in err and "something httpx finds wrong" in err
    logs.configure("debug", "text")
    logging.getLogger("httpx").info('HTTP Request: POST http://app/hubbub/events "HTTP/1.1 200 OK"')
    assert "HTTP Request" in capsys.readouterr().err


# ---- picows' per-connection log ----------------------------------------------------


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(1)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    handler = Recorder()
    loggers = [logging.getLogger("picows.test"), logging.getLogger("hubbub.server.connection")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
        lg.propagate = False
    yield handler
    for lg, (level, propagate) in zip(loggers, saved, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)
        lg.propagate = propagate


def test_picows_log_says_a_peers_protocol_error_once_at_info(recorder: Recorder) -> None:
    log = PicowsLog(logging.getLogger("picows.test"))
    assert not isinstance(log, logging.Logger)  # else picows would swap in a child Logger
    log.info(logs._ACCEPTED, ("127.0.0.1", 8000), ("127.0.0.1", 51000), 1, 2, 1, 1, "sse2")
    for _ in range(50):
        log.error(logs._PARSER_ERROR, (1002, "Received frame with invalid opcode=0x3"))
    above_debug = [r for r in recorder.records if r.levelno > logging.DEBUG]
    assert [r.msg for r in above_debug] == [logs._ACCEPTED, "conn.protocol_error"]
    (fault,) = [r for r in above_debug if r.name == "hubbub.server.connection"]
    assert fault.levelno == logging.INFO
    assert (fault.__dict__["remote"], fault.__dict__["code"], fault.__dict__["reason"]) == (
        "127.0.0.1:51000",
        1002,
        "Received frame with invalid opcode=0x3",
    )
    assert len([r for r in recorder.records if r.levelno == logging.DEBUG]) == 49


def test_picows_log_keeps_hubbubs_own_failures_at_error_once(recorder: Recorder) -> None:
    log = PicowsLog(logging.getLogger("picows.test"))
    for _ in range(3):
        try:
            raise RuntimeError("a bug in on_ws_frame")
        except RuntimeError:
            log.exception("Initiate disconnect because of exception from WSListener.on_ws_frame")
    errors = [r for r in recorder.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None and errors[0].name == "picows.test"
    assert not [r for r in recorder.records if r.levelno == logging.DEBUG and r.exc_info]


def test_picows_log_forwards_the_rest(recorder: Recorder) -> None:
    base = logging.getLogger("picows.test")
    log = PicowsLog(base)
    base.setLevel(1)
    assert log.isEnabledFor(9)  # picows' own debug level
    base.setLevel(logging.WARNING)
    assert not log.isEnabledFor(logging.INFO) and log.isEnabledFor(logging.WARNING)
    base.setLevel(1)
    log.debug("d %s", 1)
    log.log(9, "low %s", 2)
    log.warning("w")
    log.critical("c")
    assert [(r.levelno, r.getMessage()) for r in recorder.records] == [
        (logging.DEBUG, "d 1"),
        (9, "low 2"),
        (logging.WARNING, "w"),
        (logging.CRITICAL, "c"),
    ]


def test_picows_log_has_every_method_picows_calls() -> None:
    """Read from the installed picows.pyx, so that an upgrade calling something new fails here."""
    source = Path(picows.__file__).with_name("picows.pyx")
    if not source.exists():
        pytest.skip("this picows was installed without its .pyx source")
    called = set(re.findall(r"self\._logger\.(\w+)", source.read_text()))
    called -= {"name", "parent", "propagate", "getLogger"}  # only on a logging.Logger, or in a comment
    assert {"isEnabledFor", "error", "exception"} <= called
    assert all(callable(getattr(PicowsLog, name, None)) for name in called), called
    assert not hasattr(PicowsLog(logging.getLogger("x")), "__dict__")  # slots: small per connection
