"""The `hubbub` command is a table of subcommands: each a module with `NAME`, `add_parser` and `run`."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

import hubbub.cli
from hubbub.cli.main import COMMANDS, build_parser, main
from hubbub.cli.parser import commands


def test_every_subcommand_is_a_module_of_its_own_in_the_table() -> None:
    assert list(commands(build_parser())) == [command.NAME for command in COMMANDS]
    assert {"serve", "config", "token", "bench", "chat", "publish", "hash-password"} <= set(commands(build_parser()))
    for command in COMMANDS:
        assert command.__name__ == "hubbub.cli." + command.NAME.replace("-", "_")
        assert callable(command.add_parser) and callable(command.run)


def test_no_module_of_the_cli_is_long() -> None:
    for path in Path(hubbub.cli.__file__).parent.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 500, path.name


@pytest.mark.parametrize("argv", [["--help"], *([name, "--help"] for name in ("serve", "config", "token", "bench"))])
def test_help_is_printed_and_exits_0(argv: list[str]) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0 and out.getvalue().startswith("usage: hubbub")


def test_config_prints_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# hubbub serve's settings") and "\nport = 8000\n" in printed
    assert all(line == line.rstrip() for line in printed.splitlines())
