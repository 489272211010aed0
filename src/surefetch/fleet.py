"""What the coordinator of a distributed run (``fetch --redis``) sees of its workers:
which are alive, how many records each sent and at what rate lately, and the URLs they
reclaimed from workers gone. Shown in the progress and the summary."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Fleet", "WorkerFigures", "worker_of"]

#: The shortest time over which a worker's rate is measured again.
_RATE_EVERY = 1.0


def worker_of(session: str) -> str:
    """A worker's name from the name of one of its sessions (``name-N``)."""
    return session.rpartition("-")[0]


@dataclass
class WorkerFigures:
    """One worker, as its coordinator sees it."""

    #: Records it sent that were written (this run).
    records: int = 0
    #: Records/s over the last second or so.
    rate: float = 0.0
    alive: bool = False
    #: URLs it reclaimed from workers gone, and of them those that ended worker_lost
    #: (this run's sessions).
    reclaimed: int = 0
    lost: int = 0
    #: (records, time) when the rate was last measured.
    _mark: tuple[int, float] = (0, 0.0)


@dataclass
class Fleet:
    """The workers of one coordinator run, by name."""

    workers: dict[str, WorkerFigures] = field(default_factory=dict)
    #: Each session's (reclaimed, lost) as it last said (sessions of earlier epochs of
    #: this run included), by the session's name.
    _sessions: dict[str, tuple[int, int]] = field(default_factory=dict)

    def took(self, session: str, records: int) -> None:
        """``records`` of session ``session`` were written."""
        figures = self._figures(worker_of(session))
        figures.records += records

    def observe(self, alive: list[str], said: dict[str, str], now: float) -> None:
        """What Redis holds at time ``now`` (s): the sessions ``alive`` (heartbeat not
        expired) and what each session ``said`` of itself (``"reclaimed lost"``)."""
        for session, text in said.items():
            first, _, second = text.partition(" ")
            if first.isdigit() and second.isdigit():
                self._sessions[session] = (int(first), int(second))
                self._figures(worker_of(session))
        live = {worker_of(session) for session in alive}
        totals: dict[str, tuple[int, int]] = {}
        for session, (reclaimed, lost) in self._sessions.items():
            r, d = totals.get(worker_of(session), (0, 0))
            totals[worker_of(session)] = (r + reclaimed, d + lost)
        for name in live:
            self._figures(name)
        for name, figures in self.workers.items():
            figures.alive = name in live
            figures.reclaimed, figures.lost = totals.get(name, (0, 0))
            records, then = figures._mark
            if not then:
                figures._mark = (figures.records, now)
            elif now - then >= _RATE_EVERY:
                figures.rate = (figures.records - records) / (now - then)
                figures._mark = (figures.records, now)

    @property
    def alive(self) -> int:
        return sum(f.alive for f in self.workers.values())

    @property
    def reclaimed(self) -> int:
        return sum(f.reclaimed for f in self.workers.values())

    @property
    def lost(self) -> int:
        return sum(f.lost for f in self.workers.values())

    def progress_text(self, shown: int = 3) -> str:
        """``workers 2 alive: vm1-4242-a1b2 5,210/s, vm2-977-c3d4 4,980/s; 12 reclaimed``
        (the fastest alive first, then by name; empty before any worker is seen)."""
        if not self.workers:
            return ""
        alive = sorted(
            ((name, f) for name, f in self.workers.items() if f.alive),
            key=lambda nf: (-nf[1].rate, nf[0]),
        )
        named = ", ".join(f"{name} {f.rate:,.0f}/s" for name, f in alive[:shown])
        more = f", {len(alive) - shown} more" if len(alive) > shown else ""
        text = f"workers {len(alive)} alive" + (f": {named}{more}" if named else "")
        gone = len(self.workers) - len(alive)
        if gone:
            text += f", {gone} gone"
        if self.reclaimed:
            text += f"; {self.reclaimed:,} URLs reclaimed"
        return text

    def summary_text(self, shown: int = 5) -> str:
        """``from 3 workers (a 120, b 100, c 80); 12 URLs reclaimed from workers gone
        (1 worker_lost)``: the busiest first; empty if no worker sent a record."""
        busiest = sorted(
            ((name, f.records) for name, f in self.workers.items() if f.records),
            key=lambda kv: (-kv[1], kv[0]),
        )
        if not busiest:
            return ""
        named = ", ".join(f"{name} {n}" for name, n in busiest[:shown])
        more = f", {len(busiest) - shown} more" if len(busiest) > shown else ""
        text = f"from {len(busiest)} worker{'s' * (len(busiest) != 1)} ({named}{more})"
        if self.reclaimed:
            text += f"; {self.reclaimed} URLs reclaimed from workers gone"
            if self.lost:
                text += f" ({self.lost} worker_lost)"
        return text

    def _figures(self, name: str) -> WorkerFigures:
        figures = self.workers.get(name)
        if figures is None:
            figures = self.workers[name] = WorkerFigures()
        return figures
