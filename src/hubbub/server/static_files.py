"""`--static DIR`: the files under a directory, served at `/`, and never anything outside it.

A request path is percent-decoded once and then judged as a path under the
root: a NUL byte, a backslash, a `..` segment (however it was encoded) or a
path that resolves outside the root -- a symlink pointing out included -- is
simply not found (404), as is anything that is not a regular file. `/` and
any directory serve its `index.html`. The content type comes from the name
(`mimetypes`), text types with `charset=utf-8`, and `nosniff` so browsers do
not guess another.

Size: picows answers an HTTP request with one response buffer, so a file is
read whole into memory, in the event loop. That is fine for an app's pages,
scripts and styles; files over `MAX_BYTES` are refused (404, logged) rather
than held in memory per request. Large media belong behind a proxy or a CDN.
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
