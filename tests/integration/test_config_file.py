"""`hubbub serve --config FILE` and `hubbub config` as a user runs them: real processes, real ports.

The file `hubbub config` prints is served as it is; a flag wins over a
`HUBBUB_*` variable, which wins over the file; a mistake in the file is one
line naming the file and the key, and exit code 2; a variable that names no
setting is named in a warning.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import free_port

pytestmark = pytest.mark.timeout(30)


def _env(**extra: str) -> dict[str, str]:
    """This environment without the variables of settings (a CI may export some), plus `extra`."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("HUBBUB_") or k.startswith("HUBBUB_REQUIRE_")},
        **extra,
    }


def _hubbub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hubbub", *args], capture_output=True, text=True, timeout=20, env=env or _env()
    )


async def _listening_port(proc: subprocess.Popen[str]) -> int:
    """The port of the start line the server prints on stdout."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
    assert line.startswith("hubbub: serving http://127.0.0.1:"), line + (proc.stderr.read() if proc.stderr else "")
    return int(line.split("127.0.0.1:")[1].split("/")[0])


async def _serve(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Start `hubbub serve ARGS`, read its port, stop it: the port and what it said on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubbub", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        port = await _listening_port(proc)
    finally:
        proc.terminate()
        code = await asyncio.to_thread(proc.wait, 10)
    assert code == 0
    return port, proc.stderr.read() if proc.stderr else ""


async def test_the_printed_file_is_served_and_flags_then_variables_then_the_file_win(tmp_path: Path) -> None:
    printed = _hubbub("config")
    assert printed.returncode == 0 and printed.stderr == ""
    in_file, in_env, in_flag = free_port(), free_port(), free_port()
    config = tmp_path / "hubbub.toml"
    config.write_text(
        printed.stdout.replace("\nport = 8000\n", f"\nport = {in_file}\n").replace(
            '\nlog_format = "text"\n', '\nlog_format = "json"\n'
        )
    )
    port, said = await _serve("--config", str(config), env=_env())
    assert port == in_file and said.startswith("{")  # the file's log_format too
    port, _ = await _serve("--config", str(config), env=_env(HUBBUB_PORT=str(in_env)))
    assert port == in_env
    port, _ = await _serve("--config", str(config), "--port", str(in_flag), env=_env(HUBBUB_PORT=str(in_env)))
    assert port == in_flag
    port, _ = await _serve(env=_env(HUBBUB_CONFIG=str(config)))
    assert port == in_file


async def test_a_variable_that_names_no_setting_is_warned_about_and_ignored() -> None:
    port = free_port()
    served, said = await _serve("--port", str(port), env=_env(HUBBUB_PROT="8012"))
    assert served == port
    assert said.splitlines()[0] == (
        "hubbub serve: warning: HUBBUB_PROT names no setting (did you mean HUBBUB_PORT?); ignored"
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("prot = 8000", "{file}: unknown key 'prot' (did you mean 'port'?)"),
        ("[[namespaces]]\nname = 'chat'", "{file}: namespaces[1]: unknown key 'name'"),
        ("port = '8000'", '{file}: port must be an integer, not "8000"'),
        ("allowed_origin = 'https://a.example'", '{file}: allowed_origin must be a list of strings, not "https:'),
        ("max_message_size = 100", "{file}: max_message_size must be at least 125 bytes"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_the_key_and_exit_2(tmp_path: Path, text: str, line: str) -> None:
    config = tmp_path / "hubbub.toml"
    config.write_text(text + "\n")
    out = _hubbub("serve", "--config", str(config))
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr.startswith("hubbub serve: " + line.format(file=config)) and out.stderr.count("\n") == 1


def test_a_file_that_cannot_be_read_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = _hubbub("serve", "--config", str(tmp_path / "none.toml"))
    assert (out.returncode, out.stderr) == (
        2,
        f"hubbub serve: --config: cannot read {tmp_path}/none.toml: No such file or directory\n",
    )
