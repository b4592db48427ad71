"""Autobahn|Testsuite cases against `/echo`, driven by kosoku (a Python driver of the suite's cases).

`/echo` runs through the same connection machinery as `/ws` (reader, outbox,
writer, close rules), so this is the protocol conformance of the hub itself.
"""

from __future__ import annotations

import pytest
from kosoku import FailureError, run_fuzzingclient

from tests.conftest import ServerFactory

SECTIONS = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
DOUBLE_CLOSE = "7.1.2"
"""Two close frames in one read: answered with 1000. picows alone would answer 1002
(it parses one frame ahead); hubbub.server.pacer is what makes this pass."""


async def _run(make_server: ServerFactory, cases: list[str], exclude: list[str] | None = None) -> list[object]:
    # Autobahn sends thousands of messages and fragments as fast as it can: the
    # per-client budgets a public server needs are lifted for the conformance run.
    server = await make_server(
        echo=True,
        max_message_size=16 * 2**20,
        send_queue_bytes=64 * 2**20,
        write_delay=0,
        rate_limit=0,
        frame_rate=1e9,
        max_fragments=2**22,
    )
    url = f"ws://127.0.0.1:{server.port}/echo"
    try:
        return list(await run_fuzzingclient(url, cases=cases, exclude_cases=exclude, concurrency=4))
    except FailureError as failure:
        return list(failure.results)


@pytest.mark.timeout(120)
async def test_autobahn_sections_pass(make_server: ServerFactory) -> None:
    results = await _run(make_server, SECTIONS)
    assert len(results) > 200
    bad = [
        (r.case_id, r.behavior.value, r.behavior_close.value, r.result)  # type: ignore[attr-defined]
        for r in results
        if not r.passed  # type: ignore[attr-defined]
        or r.behavior.value in ("FAILED", "UNIMPLEMENTED")  # type: ignore[attr-defined]
        or r.behavior_close.value in ("FAILED", "WRONG CODE", "UNCLEAN")  # type: ignore[attr-defined]
    ]
    assert bad == []


async def test_double_close_is_answered_with_1000(make_server: ServerFactory) -> None:
    (result,) = await _run(make_server, [DOUBLE_CLOSE])
    assert result.passed  # type: ignore[attr-defined]
    assert result.remote_close_code == 1000  # type: ignore[attr-defined]
