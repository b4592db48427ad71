"""Every code block of README.md and of the tutorial (docs/tutorial/) runs, so an example can never rot.

A page's blocks run in order in one fresh directory, as a learner would type
them, against real `hubbub` processes:

- **Shell blocks** (`sh`, `bash`, `shell`) run in bash with `set -euo pipefail`:
  every command must succeed. `hubbub` is this checkout's (`python -m hubbub`).
  `hubbub serve` runs in the background, as in a second terminal, and stays up
  for the page's later blocks; a new one on a port replaces the old one, as a
  learner's Ctrl-C and restart would. `hubbub chat` reads the block's piped
  input, or none (end of input quits it).
- **Python blocks** (`python`) run as a script with a timeout. A block that
  builds a `Hub` and runs it (`serve(`, `run(`) is a server: it must come to
  listen on its port. One that builds a `Hub` and does not is a module, which
  a later block serves with `--app MODULE:ATTR`: it is saved as MODULE.py. Any other is
  a client, run against the page's server on the port it names (a plain
  `hubbub serve` started for it when the page has none there): it must exit 0,
  or still be running at the end having printed something and no traceback (a
  client that listens for ever).
- The directory has `examples/` of the repository (pages say "from the
  repository root"), nothing else of it.
- Ports are the page's own: every `127.0.0.1:N`, `localhost:N`, `--port N` and
  `port=N` of a page is mapped to one free port, so pages can run beside other
  servers on the machine; `redis://127.0.0.1:6379` is a private redis-server.
- README.md's `##` sections stand alone: a section's servers stop before the
  next section runs. A tutorial page's sections follow on from each other.
- `pip install` lines do not run: the test runs in the environment they would
  make, and must not change it.

Markers, an HTML comment on the lines just above a block, say what cannot run
as written, and why (each must give a reason, which the test checks):

- `<!-- doc-test: skip: REASON -->` does not run the block;
- `<!-- doc-test: file: NAME -->` writes the block to NAME (a module a later
  block serves with `--app`) instead of running it;
- `<!-- doc-test: self-signed: FILE FILE -->` first writes a self-signed
  certificate and its key to those two files (a real one cannot be had here);
- `<!-- doc-test: expect: TEXT -->` the block's output must contain TEXT (one
  marker per line of text; each is checked).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import RedisProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "docs" / "tutorial.md", *sorted((ROOT / "docs" / "tutorial").glob("*.md"))]
INDEPENDENT_SECTIONS = {ROOT / "README.md"}
"""Pages whose `##` sections stand alone: a section's servers are stopped before the next one runs.
(A tutorial's sections follow on from each other: its servers live until the page ends.)"""
SHELL = {"sh", "bash", "shell", "console"}
PYTHON = {"python", "py", "python3"}
MARKER = re.compile(r"<!--\s*doc-test:\s*([\w-]+)\s*:?\s*(.*?)\s*-->")
KINDS = {"skip", "file", "self-signed", "expect"}
PORT = re.compile(r"(?<=127\.0\.0\.1:)\d{2,5}\b|(?<=localhost:)\d{2,5}\b|(?<=--port )\d+\b|(?<=port=)\d+\b")
URL_PORT = re.compile(r"(?:127\.0\.0\.1|localhost):(\d{2,5})\b")
SERVE_LINE = re.compile(r"^(\s*hubbub serve\b[^\n]*?)\s*&?\s*$", re.M)
BLOCK_TIMEOUT = 60.0
LISTEN_TIMEOUT = 30.0
pytestmark = pytest.mark.timeout(180)


@dataclasses.dataclass
class Block:
    """One fenced code block of a page, with the markers written above it."""

    page: Path
    line: int
    lang: str
    text: str
    markers: list[tuple[str, str]]
    section: int = 0
    """Which `#`/`##` section of the page the block is in."""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def marker(self, kind: str) -> str | None:
        return next((arg for k, arg in self.markers if k == kind), None)


def blocks(page: Path) -> list[Block]:
    """The page's shell and Python blocks, in order."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = section = 0
    while i < len(lines):
        fence = re.match(r"^(```+|~~~+)\s*([\w+-]*)", lines[i])
        if not fence:
            section += bool(re.match(r"#{1,2} ", lines[i]))
            i += 1
            continue
        start, lang = i, fence.group(2).lower()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(fence.group(1))), len(lines))
        markers: list[tuple[str, str]] = []
        k = start - 1
        while k >= 0 and MARKER.fullmatch(lines[k].strip()):
            m = MARKER.fullmatch(lines[k].strip())
            assert m is not None
            markers.insert(0, (m.group(1), m.group(2)))
            k -= 1
        if lang in SHELL | PYTHON:
            text = "\n".join(lines[start + 1 : end]) + "\n"
            found.append(Block(page, start + 1, lang, text, markers, section))
        i = end + 1
    return found


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks(page)]


COLLECTED = all_blocks()
"""The blocks as collected: a page edited while the tests run is run as it was when they started."""


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class PageRun:
    """One page's directory, ports, servers and private Redis; runs its blocks in order, once each."""

    def __init__(self, page: Path, workdir: Path) -> None:
        self.page = page
        self.dir = workdir
        (workdir / "examples").symlink_to(ROOT / "examples")  # pages run "from the repository root"
        self.state = workdir / ".doc-test"
        self.state.mkdir(parents=True)
        self.ports: dict[str, int] = {}
        self.redis: RedisProcess | None = None
        self.results: dict[int, tuple[str, str]] = {}
        """Each block's outcome (`ok`, `fail`, `skip`, `xfail`) and what it printed."""
        self.procs: list[subprocess.Popen[bytes]] = []
        """The servers this test started itself (a block's bash starts others): kept to be reaped."""
        self.blocks = [b for b in COLLECTED if b.page == page]
        self.env = {
            **os.environ,
            "DOC_PYTHON": sys.executable,
            "DOC_STATE": str(self.state),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            "USER": "learner",
            "PYTHONUNBUFFERED": "1",
        }
        self.env = {k: v for k, v in self.env.items() if not k.startswith("HUBBUB_")}

    # ---- ports and servers ---------------------------------------------------------------

    def localize(self, text: str) -> str:
        """The block with the page's own ports and Redis in place of the ones it names."""
        if "redis://127.0.0.1:6379" in text:
            if self.redis is None:
                self.redis = RedisProcess()
                asyncio.run(self.redis.start())
            text = text.replace("redis://127.0.0.1:6379", f"redis://127.0.0.1:{self.redis.port}")
        redis_port = str(self.redis.port) if self.redis else None

        def port(match: re.Match[str]) -> str:
            if match.group(0) == redis_port:
                return match.group(0)
            return str(self.ports.setdefault(match.group(0), free_port()))

        return PORT.sub(port, text)

    def pid_file(self, port: int) -> Path:
        return self.state / f"port-{port}.pid"

    def stop_server(self, port: int) -> None:
        """Stop the server this page started on `port`, if any (by its pid, never by name)."""
        path = self.pid_file(port)
        if not path.exists():
            return
        pid = int(path.read_text())
        path.unlink()
        for sig, wait in ((signal.SIGTERM, 8.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(pid, os.WNOHANG) != (0, 0):
                        return
                except ChildProcessError:  # not our child (started by a block's bash): poll it
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        return
                time.sleep(0.05)

    def start_process(self, argv: list[str], port: int, log: Path) -> None:
        """Start a server process on `port` in place of this page's last one there; wait until it listens."""
        self.stop_server(port)
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, cwd=self.dir, env=self.env, stdout=out, stderr=out)
        self.procs.append(proc)
        self.pid_file(port).write_text(str(proc.pid))
        deadline = time.monotonic() + 20
        while not _listening(port):
            assert proc.poll() is None, f"the server exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"nothing listens on {port}:\n{log.read_text()}"
            time.sleep(0.05)

    def ensure_server(self, port: int) -> None:
        """A plain `hubbub serve` on `port` unless one of this page's servers is there."""
        if not self.pid_file(port).exists():
            argv = [sys.executable, "-m", "hubbub", "serve", "--port", str(port)]
            self.start_process(argv, port, self.state / f"serve-{port}.log")

    def stop_servers(self) -> None:
        for path in list(self.state.glob("port-*.pid")):
            self.stop_server(int(path.stem.removeprefix("port-")))

    def close(self) -> None:
        self.stop_servers()
        for proc in self.procs:
            proc.wait(5)
        if self.redis is not None:
            self.redis.stop()

    # ---- blocks ------------------------------------------------------------------------------

    def result(self, index: int) -> tuple[str, str]:
        """Run every block up to `index` that has not run yet; block `index`'s outcome and output."""
        for i in range(len(self.results), index + 1):
            if self.page in INDEPENDENT_SECTIONS and i > 0 and self.blocks[i].section != self.blocks[i - 1].section:
                self.stop_servers()
            try:
                self.results[i] = self.run(self.blocks[i])
            except AssertionError as exc:
                self.results[i] = ("fail", str(exc))
        return self.results[index]

    def run(self, block: Block) -> tuple[str, str]:
        for kind, arg in block.markers:
            assert kind in KINDS, f"{block.where}: unknown marker doc-test: {kind}"
            assert arg, f"{block.where}: marker doc-test: {kind} needs its argument (a reason, a file)"
        if block.marker("skip"):
            return "skip", f"{block.where}: " + (block.marker("skip") or "")
        name = block.marker("file")
        if name:
            (self.dir / name).write_text(block.text)
            return "ok", f"wrote {name}"
        files = block.marker("self-signed")
        if files:
            self.self_signed(*files.split()[:2])
        status, output = self.run_shell(block) if block.lang in SHELL else self.run_python(block)
        for kind, expected in block.markers:
            if kind == "expect" and status == "ok" and expected not in output:
                return "fail", f"{block.where}: expected {expected!r} in the output:\n{output}"
        return status, output

    def self_signed(self, cert: str, key: str) -> None:
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-addext"),
                *("subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2", "-keyout", key, "-out", cert),
            ],
            cwd=self.dir,
            check=True,
            capture_output=True,
            timeout=60,
        )

    def run_shell(self, block: Block) -> tuple[str, str]:
        text = block.text.replace("\\\n", " ")
        lines = [re.sub(r"^(\s*)pip install [^&;]*&&\s*", r"\1", ln) for ln in text.split("\n")]  # then cmd runs
        text = "\n".join(": pip install skipped" if re.match(r"\s*pip install", ln) else ln for ln in lines)

        def with_port(match: re.Match[str]) -> str:
            line = match.group(1)
            return line if "--port" in line else f"{line} --port 8000"

        text = self.localize(SERVE_LINE.sub(with_port, text))
        served = {int(p) for p in re.findall(r"^\s*hubbub serve\b.*--port (\d+)", text, re.M)}
        for port in {int(p) for p in URL_PORT.findall(text)} - served:
            if not self.redis or port != self.redis.port:
                self.ensure_server(port)
        for port in served:
            self.stop_server(port)
        script = PRELUDE + text
        try:
            run = subprocess.run(
                ["bash", "-c", script],
                cwd=self.dir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            return "fail", f"{block.where}: still running after {BLOCK_TIMEOUT} s:\n{exc.stdout!r}\n{exc.stderr!r}"
        output = run.stdout + run.stderr
        return _status(run.returncode == 0), f"{block.where}: exit {run.returncode}\n{output}"

    def app_module(self, block: Block) -> str | None:
        """The module a later block of the page serves with `--app MODULE:ATTR` and no block wrote."""
        later = self.blocks[self.blocks.index(block) + 1 :]
        for other in later:
            for module in re.findall(r"--app ([\w.]+):", other.text):
                if not (self.dir / f"{module}.py").exists() and "." not in module:
                    return str(module)
        return None

    def run_python(self, block: Block) -> tuple[str, str]:
        text = self.localize(block.text)
        script = self.state / f"block_{block.line}.py"
        script.write_text(text)
        argv = [sys.executable, str(script)]
        ports = [int(p) for p in re.findall(r"port=(\d+)", text)] + [int(p) for p in URL_PORT.findall(text)]
        module = self.app_module(block) if "Hub(" in text and not SERVES.search(text) else None
        if module is not None:  # a module for `hubbub serve --app`, which a later block serves
            (self.dir / f"{module}.py").write_text(text)
            return "ok", f"{block.where}: written as {module}.py, for --app"
        if "Hub(" in text:  # a server: it must come to listen
            port = ports[0] if ports else 8000
            if not ports and _listening(port):
                return "skip", f"{block.where} serves on the default port 8000, which another process holds"
            self.start_process(argv, port, self.state / f"block_{block.line}.log")
            return "ok", f"{block.where}: listening on {port}"
        for port in ports:
            self.ensure_server(port)
        out_path, err_path = script.with_suffix(".out"), script.with_suffix(".err")
        with out_path.open("wb") as out_file, err_path.open("wb") as err_file:
            proc = subprocess.Popen(argv, cwd=self.dir, env=self.env, stdout=out_file, stderr=err_file)
        # Done when it exits; a listener (an endless `async for`) is judged once it has printed and
        # then run on for a few seconds, or after LISTEN_TIMEOUT.
        start = time.monotonic()
        printed_at: float | None = None
        while proc.poll() is None:
            now = time.monotonic()
            if printed_at is None and out_path.stat().st_size:
                printed_at = now
            if (printed_at is not None and now - printed_at > 3) or now - start > LISTEN_TIMEOUT:
                proc.kill()
                proc.wait()
                out, err = out_path.read_bytes(), err_path.read_bytes()
                output = (out + err).decode(errors="replace")
                ok = bool(out.strip()) and b"Traceback" not in err
                return _status(ok), f"{block.where}: still running after {now - start:.0f} s (a listener):\n{output}"
            time.sleep(0.1)
        out, err = out_path.read_bytes(), err_path.read_bytes()
        output = (out + err).decode(errors="replace")
        return _status(proc.returncode == 0), f"{block.where}: exit {proc.returncode}\n{output}"


SERVES = re.compile(r"\b(?:serve|run|run_async)\(")
"""A Python block that builds a `Hub` and calls one of these runs a server; without, it is a module."""


def _status(ok: bool) -> str:
    return "ok" if ok else "fail"


PRELUDE = r"""set -euo pipefail
hubbub() {
  if [ "${1:-}" = serve ]; then _doc_serve "${@:2}"; return; fi
  if [ "${1:-}" = chat ]; then timeout 30 "$DOC_PYTHON" -m hubbub "$@"; return; fi
  "$DOC_PYTHON" -m hubbub "$@"
}
_doc_serve() {  # in the background, as in a second terminal; returns once it listens
  local port="" prev=""
  for a in "$@"; do [ "$prev" = --port ] && port="$a"; prev="$a"; done
  "$DOC_PYTHON" -m hubbub serve "$@" >>"$DOC_STATE/serve-$port.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$DOC_STATE/port-$port.pid"
  for _ in $(seq 400); do
    if ! kill -0 "$pid" 2>/dev/null; then cat "$DOC_STATE/serve-$port.log" >&2; return 1; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "hubbub serve did not listen on $port" >&2; return 1
}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, PageRun]]:
    started: dict[Path, PageRun] = {}
    yield started
    for run in started.values():
        run.close()


def _id(block: Block) -> str:
    return block.where


@pytest.mark.parametrize("block", COLLECTED, ids=_id)
def test_code_block_runs(block: Block, runs: dict[Path, PageRun], tmp_path_factory: pytest.TempPathFactory) -> None:
    if block.page not in runs:
        runs[block.page] = PageRun(block.page, tmp_path_factory.mktemp(block.page.stem))
    run = runs[block.page]
    status, output = run.result(run.blocks.index(block))
    if status == "skip":
        pytest.skip(output)
    if status == "xfail":
        pytest.xfail(output)
    assert status == "ok", output
    if os.environ.get("DOC_TEST_VERBOSE"):
        print(output)


def test_the_pages_have_blocks_and_every_marker_says_why() -> None:
    found = all_blocks()
    assert {b.page for b in found} >= {ROOT / "README.md"}
    assert len([b for b in found if b.page.parent.name == "tutorial"]) >= 6
    for b in found:
        for kind, arg in b.markers:
            assert kind in KINDS, f"{b.where}: unknown marker {kind}"
            assert len(arg.split()) >= (3 if kind == "skip" else 1), f"{b.where}: {kind} without its reason"
