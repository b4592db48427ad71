"""hubbub.js under node's test runner, so that `python -m pytest` covers the browser client too.

clients/js/test/ starts its own `hubbub serve` processes (this interpreter, `HUBBUB_PYTHON`) and
proxies, and checks the client against them: connect, rooms, ack and error promises, timeouts,
resume after a cut connection and after a restart, the offline queue, `recovered: false`, tickets
and token refresh. Node 20.11 or newer is needed (its WebSocket is behind `--experimental-websocket`;
Node 22 has it by default); without node the test is skipped, saying why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hubbub.server.server import Server
from tests.conftest import ServerFactory

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "js"
pytestmark = pytest.mark.timeout(300)


def _node() -> tuple[str, tuple[int, int]]:
    """The node binary and its version; skips (or fails, where CI requires node) without a usable one."""
    node = shutil.which("node")
    version = (0, 0)
    if node is not None:
        found = re.match(r"v(\d+)\.(\d+)", subprocess.run([node, "--version"], capture_output=True, text=True).stdout)
        version = (int(found[1]), int(found[2])) if found else version
    if node is None or version < (20, 11):
        message = "node 20.11 or newer is not installed: the hubbub.js tests need it (apt-get install nodejs)"
        if os.environ.get("HUBBUB_REQUIRE_NODE"):
            pytest.fail(message)
        pytest.skip(message)
    return node, version


def test_hubbub_js_passes_its_node_tests() -> None:
    node, version = _node()
    flags = ["--experimental-websocket"] if version < (22, 0) else []
    env = {**os.environ, "HUBBUB_PYTHON": sys.executable, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [node, *flags, "--test", "--test-timeout=90000", "--test-reporter=spec", "test/"],
        cwd=CLIENT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, f"node --test failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    counts = dict(re.findall(r"\N{INFORMATION SOURCE} (tests|pass|fail) (\d+)", result.stdout))
    assert int(counts.get("tests", 0)) >= 20 and counts.get("fail") == "0", result.stdout[-3000:]


async def test_the_server_serves_hubbub_js_and_its_types(server: Server) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        js = await http.get("/hubbub.js")
        types = await http.get("/hubbub.d.ts")
    assert js.status_code == 200
    assert js.headers["content-type"] == "application/javascript; charset=utf-8"
    assert js.content == (CLIENT / "hubbub.js").read_bytes()  # clients/js/ is the served file
    assert b"export class Hubbub" in js.content
    assert types.status_code == 200
    assert types.content == (CLIENT / "hubbub.d.ts").read_bytes()


async def test_a_page_of_another_origin_may_import_hubbub_js_and_read_healthz(make_server: ServerFactory) -> None:
    """An app's page beside hubbub (another port: the connect proxy's setup) imports `/hubbub.js` in CORS
    mode, and hubbub.js reads `/healthz` to tell a refused handshake from a dead server: both answer it.
    A page of an origin that may not open `/ws` reads no health."""
    app = "http://127.0.0.1:9"
    server = await make_server(allowed_origins=(app,))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        js = await http.get("/hubbub.js", headers={"Origin": "http://elsewhere.example"})
        health = await http.get("/healthz", headers={"Origin": app})
        foreign = await http.get("/healthz", headers={"Origin": "http://elsewhere.example"})
        plain = await http.get("/healthz")
    assert js.headers["access-control-allow-origin"] == "*"  # public bytes, the same for every page
    assert (health.status_code, health.headers["access-control-allow-origin"]) == (200, app)
    assert health.headers["vary"] == "Origin"
    assert "access-control-allow-origin" not in foreign.headers
    assert "access-control-allow-origin" not in plain.headers
