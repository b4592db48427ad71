"""The generated reference pages (docs/reference/) say what the code says now.

`python tools/docgen.py` writes them from the argparse parser, the settings'
declarations, the docstrings of the public API and the collectors of a fresh
hub; a flag, a setting, a docstring or a metric changed without running it
leaves a page that lies, and this fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tools import docgen

ROOT = Path(__file__).resolve().parents[2]


def test_the_generated_pages_are_up_to_date() -> None:
    stale = docgen.stale(ROOT)
    assert not stale, f"stale: {stale}; run `python tools/docgen.py` and commit the pages"


def test_the_pages_do_not_depend_on_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = docgen.cli_reference(), docgen.config_reference()
    monkeypatch.setenv("HUBBUB_PORT", "9999")
    monkeypatch.setenv("HUBBUB_LOG_LEVEL", "debug")
    assert (docgen.cli_reference(), docgen.config_reference()) == before
    assert os.environ["HUBBUB_PORT"] == "9999"  # restored for whoever reads it next


def test_the_pages_name_what_a_reader_looks_for() -> None:
    cli, python, metrics = docgen.cli_reference(), docgen.python_reference(), docgen.metrics_reference()
    assert "## `hubbub serve`" in cli and "`--send-queue-bytes N`" in cli and "(default 1048576)" in cli
    assert "## `hubbub config`" in cli and "`--config FILE`" in cli
    for name in (
        "hubbub.Hub",
        "hubbub.Connection",
        "hubbub.Settings",
        "hubbub.EventError",
        "hubbub.client.client.connect",
    ):
        assert name in python
    assert "`NOT_IN_ROOM` | `'not_in_room'`" in python
    assert "on_ws_frame" not in python  # picows' callbacks are not the app's API
    assert "`hubbub_slow_consumers_dropped_total` | counter" in metrics


def test_the_metrics_page_lists_the_metrics_of_features_that_are_off_by_default() -> None:
    """A metric registered only with its feature on (`--auth-jwks-url`, the proxies, `--webhook`,
    `--api-key`) is listed too: every `Counter("hubbub_...")` and `Gauge("hubbub_...")` in the source."""
    metrics = docgen.metrics_reference()
    declared = {
        match[2] + ("_total" if match[1] == "Counter" else "")
        for path in (ROOT / "src" / "hubbub").rglob("*.py")
        for match in re.finditer(r'\b(Counter|Gauge|Histogram)\(\s*"(hubbub_\w+)"', path.read_text())
    }
    assert {"hubbub_jwks_fetches_total", "hubbub_proxy_join_waiting", "hubbub_webhooks_queued"} <= declared
    assert not [name for name in sorted(declared) if f"| `{name}` |" not in metrics]


def test_the_config_page_has_every_key_its_type_default_and_variable() -> None:
    from hubbub.cli.settings import SERVE_OPTIONS

    config = docgen.config_reference()
    for option in SERVE_OPTIONS:
        assert f"| `{option.key}` |" in config and f"`{option.env}`" in config and f"`{option.flag}`" in config
    assert "| `max_message_size` | integer, at least 1 | `65536` | `--max-message-size`," in config
    assert "| `allowed_origin` | list of strings | `[]` |" in config
    assert '| `log_format` | `text` or `json` | `"text"` |' in config


def test_check_mode_reports_a_stale_page_and_exits_1(tmp_path: Path) -> None:
    for path, build in docgen.PAGES.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(build())
    (tmp_path / "docs/reference/config.md").write_text("old\n")
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools/docgen.py"), "--check", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert run.stderr.strip() == "stale: docs/reference/config.md (run python tools/docgen.py)"
