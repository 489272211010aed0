"""A whole fetch job: input file to output file, resumable, stoppable.

This is what `surefetch fetch` runs; library users can run it too. It joins a source,
the engine and a sink, keeps counts that can be read while it goes, and makes every
record durable in batches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ._index import UrlIndex
from ._spawn import discard
from .bodies import BodyStore
from .client import Client
from .distributed import Distributed, run_redis
from .engine import Stats, run
from .fleet import Fleet
from .parallel import _config, run_parallel
from .polite import Politeness
from .record import Record
from .sinks import JsonlSink, Resume, SqliteSink, open_sink, retry_filter
from .sources import item_batches

__all__ = ["FetchJob", "Job"]

log = logging.getLogger("surefetch.job")

#: How often buffered records are checked for being due for a durable commit.
_TICK = 0.25


@dataclass(frozen=True, slots=True)
class Job:
    """What to fetch and where the records go.

    - ``input``: a path, or ``-`` for stdin; ``input_format``: lines, csv or jsonl
      (default: by extension); ``url_column``: the CSV column / JSON field of the URL.
    - ``method``, ``data``: the request of every row (JSON lines rows may override).
    - ``output``: a path (``-`` for stdout); ``output_format``: jsonl or sqlite
      (default: by extension). An existing output is resumed.
    - ``restart``: move an existing output aside and start over.
    - ``retry_failed``: fetch again the stored failures it selects (``"all"``, or kinds,
      status classes and statuses: ``"read_timeout,5xx"``).
    - ``store_body``: put bodies in records; ``bodies``: a folder to store them in as
      files instead.
    - ``workers``: processes that fetch (see :mod:`surefetch.parallel`); ``loop``: their
      event loop (auto, uvloop, asyncio).
    - ``politeness``: per-host rate, adaptive concurrency, retry budget and circuit
      breakers (:mod:`surefetch.polite`); ``robots``: obey robots.txt.
    - ``distributed``: coordinate workers through Redis instead of fetching here
      (:mod:`surefetch.distributed`); ``workers`` is then not used.
    """

    input: str
    output: str
    input_format: str | None = None
    output_format: str | None = None
    url_column: str = "url"
    method: str = "GET"
    data: bytes | None = None
    restart: bool = False
    retry_failed: str | None = None
    store_body: bool = True
    bodies: str | None = None
    workers: int = 1
    loop: str = "auto"
    politeness: Politeness = field(default_factory=Politeness)
    robots: bool = False
    distributed: Distributed | None = None

    def __post_init__(self) -> None:
        retry_filter(self.retry_failed)  # raises ValueError for unknown words
        if self.workers < 1:
            raise ValueError(f"workers must be a whole number >= 1, got {self.workers}")


@dataclass
class FetchJob:
    """Runs a :class:`Job` with a client; its counters can be read while it runs."""

    job: Job
    client: Client
    #: Called with every record after the sink took it (e.g. to count outcomes).
    on_record: Callable[[Record], None] | None = None
    #: Called every ``watch_every`` seconds while the run goes (e.g. to redraw progress).
    watch: Callable[[], None] | None = None
    watch_every: float = 0.25
    stats: Stats = field(default_factory=Stats)
    kinds: Counter[str] = field(default_factory=Counter)
    resume: Resume | None = None
    sink: JsonlSink | SqliteSink | None = None
    #: Set when the run went through its whole input (not stopped or cancelled).
    completed: bool = False
    #: Records moved out because their URL is no longer in the input, and where to.
    removed: int = 0
    removed_to: str | None = None
    #: With ``distributed``: what each worker does (for the progress and the summary).
    fleet: Fleet = field(default_factory=Fleet)
    started: float = field(default_factory=time.monotonic)

    async def execute(self, stop: asyncio.Event | None = None) -> None:
        """Run the job to its end, or until ``stop`` is set and the requests in flight
        are done. Opens and closes the client; every record emitted is durable when
        this returns or raises (including on cancellation)."""
        job = self.job
        retry = retry_filter(job.retry_failed)
        sink, resume = await asyncio.to_thread(
            open_sink, job.output, fmt=job.output_format, restart=job.restart, retry=retry
        )
        self.sink, self.resume = sink, resume
        bodies = BodyStore(job.bodies) if job.bodies else None
        if bodies is not None:
            sink.before_commit = bodies.sync
        seen = UrlIndex()
        kinds = self.kinds
        on_record = self.on_record
        # Log levels are set before a run starts: ask once, not once per record.
        log_failed = log.isEnabledFor(logging.INFO)
        log_fetched = log.isEnabledFor(logging.DEBUG)

        async def emit(record: Record) -> None:
            error = record.error
            if error is not None:
                kinds[error.kind] += 1
                if log_failed:
                    _log_record(logging.INFO, "failed %s: %s", record)
            elif log_fetched:
                _log_record(logging.DEBUG, "fetched %s: HTTP %s", record)
            if sink.add(record):
                await sink.flush()
            if on_record is not None:
                on_record(record)

        source = item_batches(
            job.input,
            fmt=job.input_format,
            url_column=job.url_column,
            method=job.method,
            data=job.data,
        )
        store_body = job.store_body and bodies is None
        try:
            async with asyncio.TaskGroup() as tg:
                tickers = [tg.create_task(_tick(sink))]
                if self.watch is not None:
                    tickers.append(tg.create_task(_every(self.watch_every, self.watch)))
                if job.distributed is not None:
                    config = _config(
                        self.client,
                        1,
                        1,
                        store_body,
                        job.bodies,
                        job.loop,
                        job.politeness,
                        job.robots,
                    )
                    await run_redis(
                        job.distributed,
                        config,
                        source,
                        emit,
                        durable=lambda: sink.durable,
                        seen=seen,
                        done=resume.done,
                        stop=stop,
                        stats=self.stats,
                        fleet=self.fleet,
                    )
                elif job.workers > 1:
                    await run_parallel(
                        self.client,
                        source,
                        emit,
                        workers=job.workers,
                        store_body=store_body,
                        seen=seen,
                        done=resume.done,
                        stop=stop,
                        bodies=job.bodies,
                        stats=self.stats,
                        loop=job.loop,
                        politeness=job.politeness,
                        robots=job.robots,
                    )
                else:
                    discard()  # workers started early (surefetch._spawn) are not needed
                    async with self.client:
                        await run(
                            self.client,
                            source,
                            emit,
                            store_body=store_body,
                            seen=seen,
                            done=resume.done,
                            stop=stop,
                            bodies=bodies,
                            stats=self.stats,
                            politeness=job.politeness,
                            robots=job.robots,
                        )
                for ticker in tickers:
                    ticker.cancel()
        finally:
            await sink.close()
        self.completed = stop is None or not stop.is_set()
        if self.completed and resume.records + sink.written > len(seen):
            # Some stored records are for URLs that are no longer in the input.
            self.removed, self.removed_to = await asyncio.to_thread(sink.keep_only, seen)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _log_record(level: int, message: str, record: Record) -> None:
    detail = record.error.message if record.error else record.status
    log.log(
        level,
        message,
        record.url,
        detail,
        extra={
            "url": record.url,
            "attempt": record.attempts,
            "kind": record.error.kind if record.error else None,
            "status": record.status,
            "elapsed_ms": record.elapsed_ms,
        },
    )


async def _every(seconds: float, call: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(seconds)
        call()


async def _tick(sink: JsonlSink | SqliteSink) -> None:
    """Commit buffered records that have waited long enough, also when no new ones come."""
    while True:
        await asyncio.sleep(_TICK)
        await sink.flush_if_due()
