"""The textbook's promise to a learner: the whole server, comments included, fits in one sitting."""

from __future__ import annotations

from pathlib import Path

import hubbub.textbook.server

MAX_LINES = 400
"""Issue 18: `hubbub.textbook` is at most 400 lines with its comments."""


def test_the_textbook_server_is_at_most_400_lines_with_its_comments() -> None:
    source = Path(hubbub.textbook.server.__file__).read_text(encoding="utf-8")
    lines = len(source.splitlines())
    assert lines <= MAX_LINES, f"server.py has {lines} lines; the learner was promised at most {MAX_LINES}"
