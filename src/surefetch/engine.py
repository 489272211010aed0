"""The bulk engine: a dispatcher and a fixed pool of workers under one TaskGroup.

    source ──► dispatcher ──► ready queue ──► workers ──► client ──► emit(record)
               (dedupe, check,   (bounded)     (one per
                per-host slots,                 unit of global
                bounded backlog)                concurrency)

Global concurrency holds because there are exactly ``limits.concurrency`` workers,
each with one request at a time. Per-host concurrency holds because a URL enters the
ready queue only with one of its host's ``limits.per_host`` slots; a URL whose host
is full waits in that host's backlog, and the worker that finishes a request to the
host takes the next one from there, keeping the slot. So a busy host never blocks a
worker that could serve another host, and the memory held is bounded by the backlog
(``max_backlog`` URLs) plus the index of URLs seen, whatever the input's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from yarl import URL

from ._index import UrlIndex
from .bodies import BodyStore
from .client import check_url
from .errors import ClientStateError, FetchError, InternalError, InvalidURLError
from .record import Record, failure_record, response_record
from .redact import redact_url
from .sources import Item

if TYPE_CHECKING:
    from .client import Client

__all__ = ["RecordStream", "Stats", "run"]

log = logging.getLogger("surefetch.engine")

Emit = Callable[[Record], Awaitable[None]]


@dataclass(slots=True)
class Stats:
    """Counts of one run."""

    #: Input items read.
    read: int = 0
    #: Items skipped because their URL came earlier in the input.
    duplicates: int = 0
    #: Items skipped because their URL already has a record (resume).
    already_done: int = 0
    #: Records emitted, by outcome.
    ok: int = 0
    failed: int = 0
    #: Items read but not fetched because the run was asked to stop.
    abandoned: int = 0
    #: URLs being fetched right now (retry waits included).
    in_flight: int = 0

    @property
    def records(self) -> int:
        return self.ok + self.failed


async def _as_async(items: Iterable[str | Item] | AsyncIterable[str | Item]) -> AsyncIterator[Item]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item if isinstance(item, Item) else Item(item)
    else:
        for item in items:
            yield item if isinstance(item, Item) else Item(item)


async def admitted(
    items: Iterable[str | Item] | AsyncIterable[str | Item],
    emit: Emit,
    stats: Stats,
    *,
    seen: UrlIndex | None,
    done: UrlIndex | None,
) -> AsyncIterator[tuple[Item, URL, str]]:
    """The items worth fetching, with their parsed URL and host key (``name:port``).

    Skips (and counts) repeated URLs and URLs in ``done``; emits the ``invalid_url``
    record of a URL that cannot be fetched, right away.
    """
    async for item in _as_async(items):
        stats.read += 1
        url = item.url
        key = redact_url(url)  # what the record will say, so resume can match it
        if seen is not None and not seen.add(key):
            stats.duplicates += 1
            continue
        if done is not None and key in done:
            stats.already_done += 1
            continue
        try:
            target = check_url(url)
        except InvalidURLError as exc:
            stats.failed += 1
            await emit(failure_record(url, exc, meta=item.meta))
            continue
        yield item, target, f"{target.raw_host}:{target.port}"


async def run(
    client: Client,
    items: Iterable[str | Item] | AsyncIterable[str | Item],
    emit: Emit,
    *,
    store_body: bool = True,
    dedupe: bool = True,
    seen: UrlIndex | None = None,
    done: UrlIndex | None = None,
    stop: asyncio.Event | None = None,
    bodies: BodyStore | None = None,
    stats: Stats | None = None,
    max_backlog: int | None = None,
) -> Stats:
    """Fetch every item with ``client`` and ``await emit(record)`` once per distinct URL.

    - ``dedupe``: fetch a URL once however often it appears; ``seen`` may pass the
      index to use (it then holds every input URL when the run ends).
    - ``done``: URLs that already have a record (a resumed run); they are skipped.
    - ``stop``: when set, no new request starts; the run returns once the requests in
      flight have finished and their records are emitted. Unstarted items get no
      record (they are counted in ``Stats.abandoned``).
    - ``bodies``: store bodies in files there instead of inline.
    - ``stats``: the counters to update (to watch them while the run goes).

    If ``emit`` or the source raises, the run stops and the error propagates (wrapped
    in an ExceptionGroup by the task group); a single URL's failure never does.
    """
    limits = client.limits
    per_host = limits.per_host
    backlog_cap = max_backlog or max(1024, 16 * limits.concurrency)
    stats = stats if stats is not None else Stats()
    if dedupe and seen is None:
        seen = UrlIndex()
    stopping = stop if stop is not None else asyncio.Event()
    ready: asyncio.Queue[tuple[Item, str, URL] | None] = asyncio.Queue(limits.concurrency)
    active: dict[str, int] = {}
    waiting: dict[str, deque[tuple[Item, URL]]] = {}
    backlog = 0
    room = asyncio.Event()

    async def fetch(item: Item, target: URL) -> None:
        stats.in_flight += 1
        try:
            response = await client.request(
                item.method or "GET",
                target,
                headers=item.headers,
                data=item.data,
            )
        except FetchError as exc:
            record = failure_record(item.url, exc, meta=item.meta)
        except Exception as exc:  # a bug: never lose the URL, never stay silent
            log.error("internal error on %s", item.url, exc_info=exc)
            error = InternalError(f"unexpected {type(exc).__name__}: {exc}")
            record = failure_record(item.url, error, meta=item.meta)
        else:
            record = response_record(
                item.url, response, store_body=store_body, meta=item.meta, bodies=bodies
            )
        finally:
            stats.in_flight -= 1
        if record.ok:
            stats.ok += 1
        else:
            stats.failed += 1
        await emit(record)

    async def worker() -> None:
        nonlocal backlog
        while (job := await ready.get()) is not None:
            item, host, target = job
            while not stopping.is_set():
                await fetch(item, target)
                queue = waiting.get(host)
                if not queue:
                    break
                item, target = queue.popleft()
                if not queue:
                    del waiting[host]
                backlog -= 1
                room.set()
            else:
                stats.abandoned += 1
            if active[host] == 1:
                del active[host]
            else:
                active[host] -= 1

    async def dispatch() -> None:
        nonlocal backlog
        async for item, target, host in admitted(items, emit, stats, seen=seen, done=done):
            taken = active.get(host, 0)
            if taken < per_host:
                active[host] = taken + 1
                await ready.put((item, host, target))
                continue
            queue = waiting.get(host)
            if queue is None:
                queue = waiting[host] = deque()
            queue.append((item, target))
            backlog += 1
            while backlog >= backlog_cap:
                room.clear()
                await room.wait()

    async with asyncio.TaskGroup() as tg:
        workers = [tg.create_task(worker()) for _ in range(limits.concurrency)]
        feeder = tg.create_task(dispatch())
        halt = tg.create_task(stopping.wait())
        await asyncio.wait((feeder, halt), return_when=asyncio.FIRST_COMPLETED)
        if not feeder.done():
            feeder.cancel()  # stop reading input; workers finish what they hold
            await asyncio.wait((feeder,))
        halt.cancel()
        # One stop sign per worker, behind every queued job. (If a task raised, the
        # group cancels the others instead.)
        for _ in workers:
            await ready.put(None)
    stats.abandoned += backlog
    return stats


class RecordStream:
    """Async iterator of records from :meth:`Client.fetch_many`.

    The run happens in a task owned by the client; records reach the consumer through
    a small bounded queue, so a slow consumer slows the run instead of growing memory.
    """

    def __init__(
        self,
        client: Client,
        items: Iterable[str | Item] | AsyncIterable[str | Item],
        *,
        store_body: bool,
        dedupe: bool,
    ) -> None:
        self._client = client
        self._items = items
        self._store_body = store_body
        self._dedupe = dedupe
        self._out: asyncio.Queue[Record | None] = asyncio.Queue(client.limits.concurrency)
        self._task: asyncio.Task[None] | None = None
        self._done = False
        self.stats: Stats | None = None

    def __aiter__(self) -> RecordStream:
        return self

    async def __anext__(self) -> Record:
        if self._done:
            raise StopAsyncIteration
        if self._task is not None and self._task.cancelled() and self._client.closed:
            self._done = True
            raise ClientStateError("the Client was closed before this stream finished")
        if self._task is not None and not self._out.empty():
            record = self._out.get_nowait()
            if record is not None:
                return record
            self._done = True
            await self._task
            raise StopAsyncIteration
        if self._task is None:
            self._client._check()
            self._task = asyncio.get_running_loop().create_task(self._run())
            self._client._own(self._task)
        getter = asyncio.ensure_future(self._out.get())
        await asyncio.wait((getter, self._task), return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            # The run ended (error or cancellation) without a record waiting.
            self._done = True
            await self._task  # re-raises the run's error, if any
            if not self._out.empty():
                record = self._out.get_nowait()
                if record is not None:
                    return record
            raise StopAsyncIteration
        record = getter.result()
        if record is None:
            self._done = True
            await self._task
            raise StopAsyncIteration
        return record

    async def _run(self) -> None:
        self.stats = await run(
            self._client,
            self._items,
            self._out.put,
            store_body=self._store_body,
            dedupe=self._dedupe,
        )
        await self._out.put(None)

    async def aclose(self) -> None:
        """Stop the run (cancelling requests in flight) and wait for it to end."""
        self._done = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> RecordStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
