"""JSON Lines output: one record per line, appended in durable batches, resumable."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from .._index import UrlIndex
from ..errors import SurefetchError
from ..record import Record
from .base import BatchingSink, Outcome, Resume

#: A record as JSON, without the newline (the commit adds them).
_encode_line = msgspec.json.Encoder().encode

__all__ = ["JsonlSink", "OutputError", "aside_name"]

_outcome = msgspec.json.Decoder(Outcome)


class OutputError(SurefetchError):
    """An existing output cannot be resumed as it is (it is left untouched)."""


def aside_name(path: str, what: str) -> str:
    """``out.jsonl`` -> ``out.<what>-20261125T160405Z.jsonl``: a name for a moved copy."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    root, ext = os.path.splitext(path)
    name = f"{root}.{what}-{stamp}{ext}"
    n = 1
    while os.path.exists(name):
        n += 1
        name = f"{root}.{what}-{stamp}-{n}{ext}"
    return name


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonlSink(BatchingSink[bytes]):
    """Appends records to a file (or stdout) as JSON lines.

    Open it with :meth:`open`, which first reads what the file already holds so that
    the run continues where the last one stopped.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        if path == "-":
            self._fd = os.dup(1)
        else:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @classmethod
    def open(
        cls,
        path: str,
        *,
        restart: bool = False,
        retry: Callable[[Outcome], bool] | None = None,
    ) -> tuple[JsonlSink, Resume]:
        """Prepare ``path`` for this run and open it.

        An existing file is resumed: a torn last line is cut away, records that
        ``retry`` selects are removed (atomically: a crash leaves the old file or the
        new one), and the URLs of the rest are returned as done. With ``restart`` the
        old file is moved aside first, never deleted.
        """
        resume = Resume(UrlIndex())
        if path != "-" and os.path.exists(path):
            if restart:
                resume.moved_to = aside_name(path, "old")
                os.rename(path, resume.moved_to)
            else:
                _scan(path, resume, retry)
        return cls(path), resume

    def _prepare(self, record: Record) -> bytes:
        return _encode_line(record)

    def _commit(self, batch: list[bytes]) -> None:
        # One copy for the whole batch: each record line is joined with its newline here.
        data = memoryview(b"\n".join(batch) + b"\n")
        while data:
            data = data[os.write(self._fd, data) :]
        if self.path != "-":
            os.fsync(self._fd)

    def _close_storage(self) -> None:
        os.close(self._fd)

    def keep_only(self, wanted: UrlIndex) -> tuple[int, str | None]:
        """Move records whose URL is not in ``wanted`` to a side file (call after close).

        Returns how many were moved and where.
        """
        if self.path == "-":
            return 0, None
        tmp = f"{self.path}.tmp"
        moved = 0
        side = aside_name(self.path, "removed")
        with open(self.path, "rb") as src, open(tmp, "wb") as keep, open(side, "wb") as gone:
            for line in src:
                if _outcome.decode(line).url in wanted:
                    keep.write(line)
                else:
                    gone.write(line)
                    moved += 1
            keep.flush()
            os.fsync(keep.fileno())
            gone.flush()
            os.fsync(gone.fileno())
        if not moved:
            os.unlink(tmp)
            os.unlink(side)
            return 0, None
        os.replace(tmp, self.path)
        _fsync_dir(self.path)
        return moved, side


def _scan(path: str, resume: Resume, retry: Callable[[Outcome], bool] | None) -> None:
    _repair_tail(path, resume)
    tmp = f"{path}.tmp" if retry is not None else None
    out = open(tmp, "wb") if tmp else None  # noqa: SIM115 - closed below
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    outcome = _outcome.decode(line)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    raise OutputError(
                        f"{path} line {number} is not a surefetch record; "
                        "fix or move the file, or pass --restart"
                    ) from None
                if retry is not None and retry(outcome):
                    resume.dropped += 1
                    continue
                resume.done.add(outcome.url)
                resume.records += 1
                if out is not None:
                    out.write(line)
        if out is not None and tmp is not None:
            out.flush()
            os.fsync(out.fileno())
            out.close()
            if resume.dropped:
                os.replace(tmp, path)
                _fsync_dir(path)
    finally:
        if out is not None:
            out.close()
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _repair_tail(path: str, resume: Resume) -> None:
    """Cut away a last line that a crash left without its newline (a torn write, or the
    NUL padding some file systems leave after a power cut)."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if not size:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        keep = 0
        end = size
        while end > 0:
            start = max(0, end - (1 << 16))
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        resume.repaired = size - keep
