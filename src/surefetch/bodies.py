"""Bodies stored as files named by their SHA-256, instead of inline in records."""

from __future__ import annotations

import os
import threading

__all__ = ["BodyStore"]


class BodyStore:
    """A content-addressed folder: a body with SHA-256 ``abcdef...`` is stored at
    ``ab/cd/abcdef...``, written to a temporary name and renamed, so a file that
    exists is always complete. Equal bodies are stored once.

    Files are not synced one by one (that would cost a disk flush per response);
    :meth:`sync` flushes them all, and the sinks call it before committing each batch
    of records, so a durable record never points at a body that is not.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self._dirty = False
        self._lock = threading.Lock()
        self.stored = 0

    def put(self, body: bytes, sha256: str) -> str:
        """Store ``body`` (whose hex digest is ``sha256``); return its relative path."""
        relative = os.path.join(sha256[:2], sha256[2:4], sha256)
        path = os.path.join(self.root, relative)
        if os.path.exists(path):
            return relative
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, path)
        with self._lock:
            self._dirty = True
            self.stored += 1
        return relative

    def sync(self) -> None:
        """Make every body stored so far durable (one file-system-wide flush)."""
        with self._lock:
            dirty, self._dirty = self._dirty, False
        if dirty:
            os.sync()
