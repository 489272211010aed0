"""What a person sees while a run goes when stderr is not a terminal (CI, pipes,
nohup): a plain status line every few seconds. On a terminal, :mod:`surefetch.view`
draws a live display instead; rich is loaded only then."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

from .engine import Stats
from .fleet import Fleet
from .observe import Summary, status_line

__all__ = ["InputTotal", "StatusLines", "on_terminal", "say"]


def on_terminal() -> bool:
    """Whether stderr is a terminal (or ``FORCE_COLOR`` says to draw as on one, as rich
    reads it)."""
    return bool(os.environ.get("FORCE_COLOR")) or sys.stderr.isatty()


def say(line: str) -> None:
    """One line to stderr, at once."""
    print(line, file=sys.stderr, flush=True)


class InputTotal:
    """Counts the input's lines in a background thread, for the progress total.

    A plain daemon thread: it only reads a file, owns nothing, and a run that ends
    first simply stops asking (stdin has no total).
    """

    def __init__(self, path: str, header: bool) -> None:
        self.value: int | None = None
        if path != "-" and os.path.isfile(path):
            threading.Thread(target=self._count, args=(path, header), daemon=True).start()

    def _count(self, path: str, header: bool) -> None:
        lines = 0
        last = b"\n"
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        if last != b"\n":
            lines += 1
        self.value = max(0, lines - (1 if header else 0))


class StatusLines:
    """Writes :func:`status_line` every ``every`` seconds."""

    def __init__(
        self,
        summary: Summary,
        stats: Stats,
        total: InputTotal,
        every: float,
        stream: TextIO,
        fleet: Fleet | None = None,
    ) -> None:
        self._summary, self._stats, self._total = summary, stats, total
        self._fleet = fleet
        self._every = every
        self._stream = stream
        self._next = time.monotonic() + every

    def update(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._every
            line = status_line(self._summary, self._stats, self._total.value, self._stats.in_flight)
            if self._fleet is not None and (workers := self._fleet.progress_text()):
                line += f"; {workers}"
            print(line, file=self._stream, flush=True)

    def say(self, line: str) -> None:
        say(line)

    def close(self) -> None:
        pass
