"""The live display of a run on a terminal (rich); imported only when stderr is one
(the plain status lines are in :mod:`surefetch.status`)."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .engine import Stats
from .fleet import Fleet
from .observe import Summary, throttle_text, throttled_hosts
from .status import InputTotal

__all__ = ["LiveView"]

_KIND_STYLE = {"ok": "green", "http_status": "yellow"}


class LiveView:
    """A progress bar with rate, ETA and in-flight count, and a live count per outcome.

    Redrawn by :meth:`update` (called a few times a second by the run), never per
    record, so it costs next to nothing.
    """

    def __init__(
        self, summary: Summary, stats: Stats, total: InputTotal, fleet: Fleet | None = None
    ) -> None:
        self._summary, self._stats, self._total = summary, stats, total
        self._fleet = fleet
        self._console = console = Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("in flight {task.fields[in_flight]}"),
            console=console,
            expand=True,
        )
        self._task = self._progress.add_task("fetch", total=None, rate="", in_flight=0)
        self._live = Live(self._render(), console=console, auto_refresh=False, transient=False)
        self._live.start()

    def _render(self) -> Group:
        summary = self._summary
        outcomes = Text()
        outcomes.append(f"ok {summary.ok:,}", style="green")
        for kind, n in summary.kinds.most_common():
            outcomes.append("   ")
            outcomes.append(f"{kind} {n:,}", style=_KIND_STYLE.get(kind, "red"))
        classes = Text(
            "   ".join(f"{k} {n:,}" for k, n in sorted(summary.status_classes.items())),
            style="dim",
        )
        lines: list[Progress | Text] = [self._progress, outcomes, classes]
        throttled = throttled_hosts(self._stats, 3)
        if throttled:
            lines.append(
                Text.assemble(
                    ("slowed down: ", "yellow"),
                    "   ".join(f"{host} {throttle_text(t)}" for host, t in throttled),
                )
            )
        if self._fleet is not None and (workers := self._fleet.progress_text()):
            lines.append(Text(workers, style="cyan"))
        return Group(*lines)

    def update(self) -> None:
        summary, stats = self._summary, self._stats
        handled = summary.records + stats.duplicates + stats.already_done
        elapsed = time.monotonic() - summary.started
        rate = summary.records / elapsed if elapsed > 0 else 0.0
        self._progress.update(
            self._task,
            completed=handled,
            total=self._total.value,
            rate=f"{rate:,.0f}/s",
            in_flight=stats.in_flight,
        )
        self._live.update(self._render(), refresh=True)

    def say(self, line: str) -> None:
        """Print one line above the display, as it is (no markup, no wrapping)."""
        self._console.print(line, highlight=False, markup=False, soft_wrap=True)

    def close(self) -> None:
        self.update()
        self._live.stop()
