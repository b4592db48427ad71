"""`--static DIR`: the files under a directory, served at `/`, and never anything outside it.

A path that is not a regular file under the root (a `..`, a NUL byte, a backslash, a symlink
pointing out, anything over `MAX_BYTES`) is not found: 404. `StaticFiles` raises
`NotADirectoryError` when made for a path that is not a directory. Why files are read whole:
docs/topics/front-door.md.
"""

from __future__ import annotations

import logging
import mimetypes
import os
from pathlib import Path
from urllib.parse import unquote

log = logging.getLogger("hubbub.static")

MAX_BYTES = 4 * 1024 * 1024
"""The largest file served (read whole, in the loop: see the module's docstring)."""


class StaticFiles:
    """The files under `root`: `lookup(path)` gives a file's bytes and content type, or None (404)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root).resolve(strict=True)
        if not self.root.is_dir():
            raise NotADirectoryError(root)

    def lookup(self, url_path: str) -> tuple[bytes, str] | None:
        """The body and content type for `url_path` (still percent-encoded), or None: not found."""
        target = self._resolve(url_path)
        if target is None:
            return None
        try:
            size = target.stat().st_size
            if size > MAX_BYTES:
                log.warning("static.too_large", extra={"path": url_path[:200], "size": size})
                return None
            body = target.read_bytes()
        except OSError:
            return None
        return body, content_type(target.name)

    def _resolve(self, url_path: str) -> Path | None:
        try:
            decoded = unquote(url_path, errors="strict")
        except UnicodeDecodeError:
            return None
        if "\x00" in decoded or "\\" in decoded:
            return None
        parts = [p for p in decoded.split("/") if p]
        if any(p in (".", "..") for p in parts):
            return None
        try:
            target = self.root.joinpath(*parts).resolve(strict=True)
        except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, an odd name
            return None
        if target != self.root and not target.is_relative_to(self.root):
            return None  # a symlink pointing out of the root
        if target.is_dir():
            target = (target / "index.html").resolve()
            if not target.is_relative_to(self.root):
                return None
        return target if target.is_file() and os.access(target, os.R_OK) else None


def content_type(name: str) -> str:
    """The `Content-Type` for a file name; text types in UTF-8, unknown ones as bytes."""
    kind, _ = mimetypes.guess_type(name, strict=False)
    if kind is None:
        return "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json", "image/svg+xml"):
        return f"{kind}; charset=utf-8"
    return kind
