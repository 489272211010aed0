"""JSON Lines output: one record per line, written in batches."""

from __future__ import annotations

import os
import time
from typing import BinaryIO

from ..record import Record, encode

__all__ = ["JsonlSink"]


class JsonlSink:
    """Appends records to a file (or stdout) as JSON lines.

    Records are buffered and written when the buffer passes ``flush_bytes`` or
    ``flush_seconds`` have gone by since the last write, and always on close, so a
    run's output is complete when it ends and never lags far behind while it goes.
    """

    def __init__(
        self,
        path: str,
        *,
        flush_bytes: int = 256 * 1024,
        flush_seconds: float = 1.0,
    ) -> None:
        self.path = path
        self._file: BinaryIO = (
            os.fdopen(os.dup(1), "wb", buffering=0)
            if path == "-"
            else open(path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        )
        self._buffer = bytearray()
        self._flush_bytes = flush_bytes
        self._flush_seconds = flush_seconds
        self._last_flush = time.monotonic()
        self.written = 0

    async def write(self, record: Record) -> None:
        self._buffer += encode(record)
        self.written += 1
        if len(self._buffer) >= self._flush_bytes or (
            time.monotonic() - self._last_flush >= self._flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Write out what is buffered."""
        if self._buffer:
            self._file.write(self._buffer)
            self._buffer.clear()
        self._last_flush = time.monotonic()

    async def close(self) -> None:
        """Write out everything and close the file (synced to disk)."""
        if self._file.closed:
            return
        try:
            self.flush()
            if self.path != "-":
                os.fsync(self._file.fileno())
        finally:
            self._file.close()
