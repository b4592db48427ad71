"""Autobahn|Testsuite cases against `/echo`, driven by kosoku (a Python driver of the suite's cases).

`/echo` runs through the same connection machinery as `/ws` (reader, outbox,
writer, close rules), so this is the protocol conformance of the hub itself.
"""

from __future__ import annotations

import pytest
from kosoku import FailureError, run_fuzzingclient

from tests.conftest import ServerFactory

SECTIONS = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
KNOWN_UPSTREAM = ["7.1.2"]
"""picows parses one frame ahead: a second close frame arriving in the same read
as the first is rejected (1002) before the first is delivered, so the server
never gets to answer the first with 1000. Tracked in docs/lifecycle.md."""


async def _run(make_server: ServerFactory, cases: list[str], exclude: list[str] | None = None) -> list[object]:
    server = await make_server(echo=True, max_message_size=16 * 2**20, send_queue_bytes=64 * 2**20)
    url = f"ws://127.0.0.1:{server.port}/echo"
    try:
        return list(await run_fuzzingclient(url, cases=cases, exclude_cases=exclude, concurrency=4))
    except FailureError as failure:
        return list(failure.results)


@pytest.mark.timeout(120)
async def test_autobahn_sections_pass(make_server: ServerFactory) -> None:
    results = await _run(make_server, SECTIONS, KNOWN_UPSTREAM)
    assert len(results) > 200
    bad = [
        (r.case_id, r.behavior.value, r.behavior_close.value, r.result)  # type: ignore[attr-defined]
        for r in results
        if not r.passed  # type: ignore[attr-defined]
        or r.behavior.value in ("FAILED", "UNIMPLEMENTED")  # type: ignore[attr-defined]
        or r.behavior_close.value in ("FAILED", "WRONG CODE", "UNCLEAN")  # type: ignore[attr-defined]
    ]
    assert bad == []


@pytest.mark.xfail(reason="picows rejects a second close frame before delivering the first", strict=True)
async def test_autobahn_double_close(make_server: ServerFactory) -> None:
    results = await _run(make_server, KNOWN_UPSTREAM)
    assert all(r.passed for r in results)  # type: ignore[attr-defined]
