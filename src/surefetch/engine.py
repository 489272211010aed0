"""The bulk engine: a feeder, a dispatcher and a fixed pool of workers under one
TaskGroup, around the per-host scheduler of :mod:`surefetch.polite`.

    source ──► feeder ──► scheduler ──► workers ──► client ──► emit(record)
               (dedupe,   (per-host      (one per unit of
                check)     queues: slots, global concurrency)
                           rate, pauses,
                           breakers)

Global concurrency holds because there are exactly ``limits.concurrency`` workers,
each with one request at a time. A URL leaves the scheduler only for a worker that is
free to send it at once, and only when its host has a free slot, a rate token and no
pause or open circuit, so per-host limits hold at the moment of sending. A worker that
finishes takes the next URL that may go, from any host; the dispatcher hands work to
idle workers when new work or a timer makes some eligible. So a busy, slow or dead
host never holds a worker that could serve another, and the memory held is bounded by
the backlog (``max_backlog`` URLs) plus the index of URLs seen, whatever the input's
size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any
from urllib.robotparser import RobotFileParser

from yarl import URL

from ._index import UrlIndex, fingerprint
from .bodies import BodyStore
from .client import check_url
from .errors import (
    ClientStateError,
    FetchError,
    HostUnavailableError,
    InternalError,
    InvalidURLError,
    RobotsDisallowedError,
    RunStopped,
)
from .polite import Politeness, Scheduler, Throttle, _Host
from .record import Record, failure_record, response_record
from .redact import shown_url
from .sources import InputError, Item, ItemBatches

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Admission", "RecordStream", "Stats", "admitted", "backlog_for", "batches", "run"]

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
    #: Hosts that pushed back (429/503), by ``name:port``: the rate each is paced at
    #: now and its 429 and 503 answers (kept up to date while the run goes).
    throttled: dict[str, Throttle] = field(default_factory=dict)
    #: Requests could start but every URL waiting is of a host that must wait (at its
    #: limit, paced, paused, down), for half a second at least: the engine then reads
    #: past its backlog, and a worker of ``--workers N`` asks for more (set at each
    #: turn of the dispatcher).
    starved: bool = False

    @property
    def records(self) -> int:
        return self.ok + self.failed


async def batches(
    items: Iterable[str | Item] | AsyncIterable[str | Item] | ItemBatches,
    bad_input: list[InputError] | None = None,
) -> AsyncIterator[list[Item]]:
    """The input as lists of items: as read, for :class:`~surefetch.sources.ItemBatches`
    (a list per chunk of the input file); one item per list for other async sources
    (so a slow producer is never waited on to fill a list); 256 per list otherwise.

    With ``bad_input``, an :class:`InputError` of the source ends the input instead of
    the run and is put there: what came before it is still fetched, then the caller
    raises it."""
    if isinstance(items, ItemBatches):
        try:
            async for batch in items:
                yield batch
        except InputError as exc:
            if bad_input is None:
                raise
            bad_input.append(exc)
    elif isinstance(items, AsyncIterable):
        async for one in items:
            yield [one if isinstance(one, Item) else Item(one)]
    else:
        rest = iter(items)
        while chunk := list(islice(rest, 256)):
            yield [one if isinstance(one, Item) else Item(one) for one in chunk]


class Admission:
    """Which input items are worth fetching.

    Calling it with an item returns the parsed URL and its host key (``name:port``), or
    None for an item to skip: a repeated URL, a URL in ``done``, or a URL that cannot be
    fetched, whose ``invalid_url`` record is then left in :attr:`refused` for the caller
    to emit. Counts what it skips in ``stats``.
    """

    __slots__ = ("_done", "_seen", "refused", "stats")

    def __init__(self, stats: Stats, *, seen: UrlIndex | None, done: UrlIndex | None) -> None:
        self.stats = stats
        self._seen = seen
        self._done = done if done is not None and len(done) else None
        self.refused: list[Record] = []

    def __call__(self, item: Item) -> tuple[URL, str] | None:
        stats = self.stats
        stats.read += 1
        url = item.url
        if self._seen is not None or self._done is not None:
            # Keyed by what the record will say (credentials masked), so resume matches.
            key = fingerprint(shown_url(url))
            if self._seen is not None and not self._seen.add_fingerprint(key):
                stats.duplicates += 1
                return None
            if self._done is not None and self._done.has_fingerprint(key):
                stats.already_done += 1
                return None
        try:
            target = check_url(url)
        except InvalidURLError as exc:
            self.refused.append(failure_record(url, exc, meta=item.meta))
            return None
        return target, f"{target.raw_host}:{target.port}"


async def admitted(
    items: Iterable[str | Item] | AsyncIterable[str | Item] | ItemBatches,
    stats: Stats,
    emit: Emit,
    seen: UrlIndex | None,
    done: UrlIndex | None,
    bad_input: list[InputError],
) -> AsyncIterator[list[tuple[Item, URL, str]]]:
    """The input as lists of the items worth fetching, each with its parsed URL and host
    key: what the coordinator of ``--workers N`` and of the Redis mode sends out. A URL
    that cannot be fetched gets its ``invalid_url`` record here (counted failed); see
    :class:`Admission` and :func:`batches`."""
    admit = Admission(stats, seen=seen, done=done)
    async for batch in batches(items, bad_input):
        out: list[tuple[Item, URL, str]] = []
        for item in batch:
            taken = admit(item)
            if taken is None:
                if admit.refused:
                    stats.failed += 1
                    await emit(admit.refused.pop())
                continue
            out.append((item, taken[0], taken[1]))
        if out:
            yield out


def backlog_for(concurrency: int) -> int:
    """URLs an engine of ``concurrency`` connections holds ready by default: enough
    that every host's slots stay busy while some of its URLs wait (slow answers,
    backoffs, a host paused)."""
    return max(1024, 16 * concurrency)


async def run(
    client: Client,
    items: Iterable[str | Item] | AsyncIterable[str | Item] | ItemBatches,
    emit: Emit,
    *,
    store_body: bool = True,
    dedupe: bool = True,
    seen: UrlIndex | None = None,
    done: UrlIndex | None = None,
    stop: asyncio.Event | None = None,
    bodies: BodyStore | None = None,
    stats: Stats | None = None,
    politeness: Politeness | None = None,
    robots: bool = False,
    max_backlog: int | None = None,
    scheduler: Scheduler[tuple[Item, URL]] | None = None,
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
    - ``politeness``: per-host rate, adaptive concurrency, retry budget and circuit
      breaker (:mod:`surefetch.polite`); the default adapts concurrency and breaks
      circuits, with no rate limit.
    - ``robots``: obey each host's robots.txt (and its Crawl-delay).
    - ``scheduler``: the per-host scheduler to use (one built from ``politeness`` by
      default); a worker of ``--workers N`` passes one it also hands hosts over with.

    If ``emit`` or the source raises, the run stops and the error propagates (wrapped
    in an ExceptionGroup by the task group); a single URL's failure never does. An
    :class:`~surefetch.sources.InputError` (a bad line) ends the input instead: the
    URLs read before it are fetched and emitted, then it is raised as it is.
    """
    limits = client.limits
    backlog = _Backlog(max_backlog or backlog_for(limits.concurrency))
    stats = stats if stats is not None else Stats()
    if dedupe and seen is None:
        seen = UrlIndex()
    stopping = stop if stop is not None else asyncio.Event()
    policy = politeness or Politeness()
    sched = scheduler or Scheduler(policy, policy.per_host or limits.per_host)
    stats.throttled = sched.throttled
    wake = asyncio.Event()
    bad_input: list[InputError] = []  # raised once what came before it is fetched
    given_up: list[tuple[str, tuple[Item, URL]]] = []
    refused: list[tuple[Item, URL]] = []  # disallowed by robots.txt

    def on_given_up(name: str, work: tuple[Item, URL]) -> None:
        given_up.append((name, work))
        wake.set()

    sched.on_given_up = on_given_up
    sched.on_change = wake.set
    # Work leaves the scheduler only for a worker that is free to send it at once (at
    # most ``idle`` jobs wait here), so per-host rates and slots hold at the moment of
    # sending, and every free worker gets work in one turn of the dispatcher.
    ready: asyncio.Queue[tuple[_Host[tuple[Item, URL]], Item, URL] | None] = asyncio.Queue()
    idle = limits.concurrency
    room = backlog.room
    feeding = True
    user_agent = client.headers.get("User-Agent", "*")

    async def _emit(record: Record) -> None:
        if record.ok:
            stats.ok += 1
        else:
            stats.failed += 1
        await emit(record)

    async def refuse(item: Item, error: FetchError) -> None:
        await _emit(failure_record(item.url, error, meta=item.meta))

    async def worker() -> None:
        nonlocal idle
        job = await ready.get()
        while job is not None:
            host, item, target = job
            if stopping.is_set():
                stats.abandoned += 1
            else:
                # Fetch and emit, inline: this is the once-per-response path.
                stats.in_flight += 1
                headers = item.headers
                if extra := host.headers:
                    headers = {**extra, **headers} if headers else extra
                record: Record | None
                try:
                    response = await client.send(
                        item.method or "GET",
                        target,
                        headers=headers,
                        data=item.data,
                        gate=sched,
                        gate_key=host.key,
                        stop=stopping,
                    )
                except FetchError as exc:
                    record = failure_record(item.url, exc, meta=item.meta)
                except RunStopped:  # its retry did not start: the next run fetches it
                    record = None
                    stats.abandoned += 1
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
                if record is not None:
                    if record.ok:
                        stats.ok += 1
                    else:
                        stats.failed += 1
                    await emit(record)
            sched.release(host)
            # Take the next work straight from the scheduler when there is some: no
            # round trip through the dispatcher in the common case.
            taken = None if stopping.is_set() else sched.take()
            if taken is not None:
                host, (item, target) = taken
                if sched.queued - sched.held <= backlog.low_water:
                    room.set()
                job = (host, item, target)
                if idle:
                    wake.set()  # a freed or grown slot may have work for idle workers too
                continue
            idle += 1
            wake.set()
            job = await ready.get()

    robots_rules: dict[str, RobotFileParser] = {}
    robots_asked: set[str] = set()
    robots_loading = 0

    async def load_robots(key: str, target: URL) -> None:
        nonlocal robots_loading
        rules, rate = await _robots(client, target, user_agent)
        robots_loading -= 1
        robots_rules[key] = rules
        refused.extend(
            sched.remove(key, lambda work: not rules.can_fetch(user_agent, str(work[1])))
        )
        sched.unblock(key, rate)
        wake.set()

    async def feed() -> None:
        nonlocal feeding, robots_loading
        admit = Admission(stats, seen=seen, done=done)
        async for batch in batches(items, bad_input):
            # The dispatcher is woken before every await of this loop and after each
            # batch, not for each URL: it cannot run in between anyway.
            for item in batch:
                admitted = admit(item)
                if admitted is None:
                    if admit.refused:
                        wake.set()
                        await _emit(admit.refused.pop())
                    continue
                target, key = admitted
                name = target.raw_host or ""
                if sched.is_given_up(key):
                    wake.set()
                    await refuse(item, _host_down(name, sched.policy))
                    continue
                if robots:
                    rules = robots_rules.get(key)
                    if rules is None and key not in robots_asked:
                        robots_asked.add(key)
                        robots_loading += 1
                        sched.block(key, name, "robots.txt")
                        tg.create_task(load_robots(key, target))
                    elif rules is not None and not rules.can_fetch(user_agent, str(target)):
                        wake.set()
                        await refuse(item, _disallowed(target))
                        continue
                sched.add(key, name, (item, target))
                if backlog.full(sched):
                    wake.set()
                    await backlog.wait(sched, stats)
            wake.set()
        feeding = False
        wake.set()

    async def dispatch() -> None:
        nonlocal idle
        while True:
            while idle and (taken := sched.take()) is not None:
                host, (item, target) = taken
                idle -= 1
                ready.put_nowait((host, item, target))
                room.set()
            starving = backlog.note_turn(stats, idle, sched.queued)
            while given_up:
                name, (item, _target) = given_up.pop()
                await refuse(item, _host_down(name, sched.policy))
            while refused:
                item, target = refused.pop()
                await refuse(item, _disallowed(target))
            room.set()
            if stopping.is_set() or (not feeding and sched.queued == 0 and not robots_loading):
                return
            wake.clear()
            timeout = sched.wake_in()
            if starving is not None:  # a turn then, to see if the run is starved
                timeout = starving if timeout is None else min(timeout, starving)
            if timeout is None:
                await wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await wake.wait()

    async with asyncio.TaskGroup() as tg:
        workers = [tg.create_task(worker()) for _ in range(limits.concurrency)]
        feeder = tg.create_task(feed())
        halt = tg.create_task(_on_stop(stopping, wake))
        await dispatch()
        if not feeder.done():
            feeder.cancel()  # asked to stop: read no more input
            await asyncio.wait((feeder,))
        halt.cancel()
        # One stop sign per worker, behind every queued job. (If a task raised, the
        # group cancels the others instead.)
        for _ in workers:
            ready.put_nowait(None)
    stats.abandoned += sched.queued
    if bad_input:
        raise bad_input[0]
    return stats


#: How many backlogs' worth of URLs the feeder reads ahead at most, past a host that
#: must wait (see ``_Backlog``): 16,384 URLs, about 13 MB, with the default backlog.
READ_AHEAD = 16
#: Seconds for which requests must have been free with every waiting URL unable to go
#: before the run counts as starved: not the first moments of a host's adaptive ramp.
_STARVED_AFTER = 0.5


class _Backlog:
    """How far the feeder reads the input ahead of the requests.

    It stops once ``cap`` URLs wait in the scheduler, and goes on once they are down to
    ``low_water`` (then refills in one go: one wake-up per many URLs, not one per URL).
    URLs that cannot go for a while do not hold it up, so that a host that waits cannot
    starve the others behind it in the input:

    - those of hosts whose circuit is open (:attr:`Scheduler.held`: a dead host);
    - while requests could start but every URL waiting is of a host that must wait
      (at its limit, paced, paused: a slow or paced host with more URLs than the
      backlog, in an input sorted by host), a quarter of the backlog more at a time,
      to find the URLs of other hosts.

    At most ``READ_AHEAD`` x ``cap`` URLs wait for hosts that are not down, and 64 x
    ``cap`` in all, so memory stays bounded.
    """

    __slots__ = ("ahead", "ahead_cap", "cap", "held_cap", "low_water", "room", "starving_since")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.ahead_cap = READ_AHEAD * cap
        self.held_cap = 64 * cap
        self.low_water = cap - max(1, cap // 4)
        #: Set when the backlog may have room (a request taken, a dispatcher's turn).
        self.room = asyncio.Event()
        #: URLs the feeder may still read past a full backlog (see :meth:`wait`).
        self.ahead = 0
        #: When the dispatcher's turns began to leave requests free with URLs waiting.
        self.starving_since: float | None = None

    def note_turn(self, stats: Stats, idle: int, queued: int) -> float | None:
        """After a turn of the dispatcher that left ``idle`` requests free and
        ``queued`` URLs waiting: :attr:`Stats.starved` once that has lasted
        ``_STARVED_AFTER`` s. Returns the seconds until it would (None: not starving,
        or starved already)."""
        if not (idle and queued):
            self.starving_since = None
            stats.starved = False
            return None
        now = time.monotonic()
        if self.starving_since is None:
            self.starving_since = now
        left = self.starving_since + _STARVED_AFTER - now
        stats.starved = left <= 0
        return left if left > 0 else None

    def full(self, sched: Scheduler[Any]) -> bool:
        """Whether the feeder is to wait (:meth:`wait`) before reading on."""
        queued = sched.queued
        if queued < self.cap:
            return False
        if queued >= self.held_cap:
            return True
        waiting = queued - sched.held
        if self.ahead and waiting < self.ahead_cap:
            self.ahead -= 1
            return False
        return waiting >= self.cap

    async def wait(self, sched: Scheduler[Any], stats: Stats) -> None:
        """Until the backlog has room, or until a turn of the dispatcher leaves the run
        starved (:attr:`Stats.starved`): then the feeder may read a quarter of the
        backlog more."""
        while sched.queued >= self.held_cap or sched.queued - sched.held > self.low_water:
            self.room.clear()
            await self.room.wait()  # the dispatcher sets it at the end of each turn
            queued = sched.queued
            if stats.starved and queued < self.held_cap and queued - sched.held < self.ahead_cap:
                self.ahead = max(1, self.cap // 4)
                return


async def _on_stop(stopping: asyncio.Event, wake: asyncio.Event) -> None:
    await stopping.wait()
    wake.set()


def _host_down(name: str, policy: Politeness) -> HostUnavailableError:
    return HostUnavailableError(
        f"{name} refused or dropped every connection for {policy.host_down_after:g} s;"
        " not attempted"
    )


def _disallowed(target: URL) -> RobotsDisallowedError:
    return RobotsDisallowedError(f"robots.txt of {target.raw_host} disallows {target.path}")


_DISALLOW_ALL = ["User-agent: *", "Disallow: /"]


class _Once:
    """A gate that allows no retry: robots.txt is asked for once per host (a failure
    disallows everything, so another try would only add load)."""

    def attempt_done(
        self,
        key: str,
        *,
        kind: str | None,
        status: int | None,
        latency: float,
        retry_after: float | None = None,
    ) -> None:
        pass

    def retry_allowed(self, key: str) -> float | None:
        return None


_ONCE = _Once()


async def _robots(
    client: Client, target: URL, user_agent: str
) -> tuple[RobotFileParser, float | None]:
    """The host's robots.txt rules, and the rate its Crawl-delay asks for.

    As RFC 9309 says: a 4xx (no robots.txt) allows everything; a 5xx or no answer
    disallows everything.
    """
    rules = RobotFileParser()
    where = target.with_path("/robots.txt").with_query(None).with_fragment(None)
    try:
        response = await client.send("GET", where, gate=_ONCE)
    except FetchError as exc:
        log.info("robots.txt of %s unreachable (%s): disallowing all", target.host, exc.kind)
        rules.parse(_DISALLOW_ALL)
        return rules, None
    if 400 <= response.status < 500:
        rules.parse([])
    elif response.status >= 500:
        rules.parse(_DISALLOW_ALL)
    else:
        rules.parse(response.text().splitlines())
    delay = rules.crawl_delay(user_agent)
    return rules, (1.0 / float(delay) if delay else None)


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
        politeness: Politeness | None = None,
        robots: bool = False,
    ) -> None:
        self._client = client
        self._politeness = politeness
        self._robots = robots
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
            politeness=self._politeness,
            robots=self._robots,
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
