"""``--workers N``: the same run spread over N processes, each with its own event loop,
Client and engine, so that every core works.

The main process stays the only reader of the input and the only writer of the
output: it dedupes, skips done URLs and rejects invalid ones exactly as the engine
does, sends the rest to the workers in batches, and writes the records they send
back. So resume, exactly-once records and graceful stops work as with one process.

How the limits hold in total: each worker gets ``concurrency / N`` workers of its own.
Each host's politeness (slots, rate, learned rate, Retry-After pause, breaker) is
decided in one place, its owner, as soon as it matters:

- A host with a rate (``--rate``, a rule's, a Crawl-delay: robots.txt keeps every host
  in one worker) or a per-host limit under N is owned by one worker (by a hash of its
  name) from the start, with its full limits.
- Any other host is *shared* while ``per_host >= N``: every worker may fetch it, with
  ``per_host // N`` requests at a time each. A URL goes to its host's worker by hash
  (one DNS lookup and one connection pool per host) unless that worker is well ahead
  of the least busy one, which then takes it, so that one fast host uses every core.
  When it first pushes back (a 429 or 503) or its circuit opens, that worker says
  so (one message per host); the main process makes one worker its owner (the hash
  again) and tells all of them (:class:`~surefetch._wire.Own`). The others hand its queued URLs back
  (:class:`~surefetch._wire.Handback`), with the requests the host allowed them in
  the last second; both go to the owner, which learns the host's rate from the sum,
  and the others finish only what they have in flight.

So nothing is learned or paced per worker that the user meant per host. Every
message here is per batch or per host event, never per request. When hosts are
shared, the workers hear ``End`` once no URL is outstanding anywhere, as URLs may
still move to a new owner until then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, Iterable
from dataclasses import asdict, replace
from typing import Any

from . import logs
from ._index import UrlIndex, fingerprint
from ._spawn import WorkerProcess, start_workers
from ._wire import (
    Batch,
    Config,
    Done,
    End,
    Handback,
    Hungry,
    Own,
    Records,
    Seen,
    Stop,
    Throttled,
    Throttles,
    WireItem,
    frame,
    read_frame,
    to_main,
    wire_item,
)
from .client import Client
from .engine import READ_AHEAD, Emit, Stats, admitted, backlog_for
from .errors import SurefetchError
from .polite import Politeness, Throttle
from .sources import InputError, Item, ItemBatches

__all__ = ["WorkerError", "run_parallel"]

#: URLs per message to a worker, and the longest a URL waits to be sent.
_BATCH = 64
_LINGER = 0.02
#: URLs kept aside for workers that hold their credit, in credits (the engine's cap on
#: the URLs it keeps aside for hosts that are down, in backlogs).
_ASIDE = 64


class WorkerError(SurefetchError):
    """A worker process died before finishing its work."""


def _config(
    client: Client,
    workers: int,
    share: int,
    store_body: bool,
    bodies: str | None,
    loop: str,
    politeness: Politeness,
    robots: bool,
) -> Config:
    limits = client.limits
    concurrency = max(1, limits.concurrency // workers)
    retry = client.retry
    return Config(
        limits={
            "concurrency": concurrency,
            # The pool allows an owner the host's full limit; shared hosts get their
            # share from the scheduler.
            "per_host": min(limits.per_host, concurrency),
            "max_body": limits.max_body,
            "max_redirects": limits.max_redirects,
        },
        timeouts=asdict(client.timeouts),
        retry={
            "retries": retry.retries,
            "backoff": retry.backoff,
            "backoff_max": retry.backoff_max,
            "retry_after_max": retry.retry_after_max,
            "statuses": sorted(retry.statuses),
            "kinds": sorted(retry.kinds),
            "methods": sorted(retry.methods),
        },
        headers={k: v for k, v in client.headers.items() if k != "User-Agent"},
        user_agent=client.headers["User-Agent"],
        store_body=store_body,
        bodies=bodies,
        loop=loop,
        log_level=logs.settings()[0],
        log_format=logs.settings()[1],
        # Shared hosts get ``per_host // share`` of the whole run's per-host limit.
        politeness=replace(politeness, per_host=politeness.per_host or limits.per_host),
        robots=robots,
        share=share,
        dns=asdict(client.dns),
        connection=client.connection_settings(),
    )


async def run_parallel(
    client: Client,
    items: Iterable[str | Item] | AsyncIterable[str | Item] | ItemBatches,
    emit: Emit,
    *,
    workers: int,
    store_body: bool = True,
    seen: UrlIndex | None = None,
    done: UrlIndex | None = None,
    stop: asyncio.Event | None = None,
    bodies: str | None = None,
    stats: Stats | None = None,
    loop: str = "auto",
    politeness: Politeness | None = None,
    robots: bool = False,
) -> Stats:
    """Like :func:`surefetch.run`, over ``workers`` processes. ``client`` gives the
    settings (it is not opened here: each worker opens its own)."""
    stats = stats if stats is not None else Stats()
    seen = seen if seen is not None else UrlIndex()
    stopping = stop if stop is not None else asyncio.Event()
    policy = politeness or Politeness()
    per_host = policy.per_host or client.limits.per_host
    # Hosts are shared while the per-host limit can be shared out; with robots.txt each
    # host stays in one process (fetched once, its Crawl-delay kept), and a rate for
    # every host makes every host owned.
    share = workers if per_host >= workers and not robots and policy.rate is None else 1
    config = frame(_config(client, workers, share, store_body, bodies, loop, policy, robots))
    # Hosts that rules make owned from the start are found when first seen.
    check_rules = share > 1 and any(
        r.rate is not None or (r.per_host is not None and r.per_host < share) for r in policy.rules
    )
    checked: set[str] = set()
    #: The owner of each host that has one (with share 1: every host, by hash).
    owners: dict[str, int] = {}
    # What each worker last said of the hosts that pushed back.
    views: list[dict[str, Throttle]] = [{} for _ in range(workers)]
    # What a worker holds (sent, no record back yet): what one engine holds ready, so
    # that URLs of a host that waits (slow, paced, backing off) leave room for the
    # others' (at 4 x its connections + 128 the demo's host-sorted input took 36 s with
    # two workers against 20 s with one). The slack of a shared host's affinity stays
    # a few batches: more, and a small input of one host would all go to one worker.
    per_worker = max(1, client.limits.concurrency // workers)
    credit = backlog_for(per_worker)
    slack = max(_BATCH, per_worker // 2)
    outstanding = [0] * workers
    # Credit beyond ``credit`` for a worker that said it is starved (:class:`Hungry`):
    # a quarter credit more each time, up to what one engine reads ahead past hosts
    # that wait (``READ_AHEAD`` credits); none once it holds less than its credit again.
    extra = [0] * workers
    aside = _Aside(workers, _ASIDE * credit)
    batches_out: list[list[WireItem]] = [[] for _ in range(workers)]
    room = asyncio.Event()
    bad_input: list[InputError] = []  # raised once what came before it is fetched
    procs: list[WorkerProcess] = []
    ended = False  # End or Stop sent: no more hand-overs
    clean = False
    try:
        procs = await start_workers(workers)
        for proc in procs:
            proc.stdin.write(config)

        async def tell(k: int, message: bytes, *, exiting_ok: bool = False) -> None:
            stdin = procs[k].stdin
            try:
                stdin.write(message)
                await stdin.drain()
            except (ConnectionError, RuntimeError):  # its pipe is gone: it died
                if not exiting_ok:  # (or, after End, it may have finished meanwhile)
                    raise await died(k) from None

        async def died(k: int) -> WorkerError:
            code = await procs[k].wait()
            return WorkerError(f"worker process {k + 1} of {workers} died (exit status {code})")

        async def send(k: int) -> None:
            batch = batches_out[k]
            if batch:
                batches_out[k] = []
                await tell(k, frame(Batch(batch)))

        def owner(host: str) -> int:
            return fingerprint(host) % workers

        async def feed() -> None:
            async for batch in admitted(items, stats, emit, seen, done, bad_input):
                for item, target, host in batch:
                    if share == 1:
                        k = owner(host)
                    elif (k := owners.get(host, -1)) < 0:
                        if check_rules and host not in checked:
                            checked.add(host)
                            name = target.raw_host or ""
                            if policy.alone(host, name, per_host, share):
                                k = owners[host] = owner(host)
                        if k < 0:
                            k = _nearest(owner(host), outstanding, slack)
                    stats.in_flight += 1
                    if outstanding[k] >= credit + extra[k] or aside.holds(k):
                        aside.add(k, wire_item(item))
                        while aside.full():
                            room.clear()
                            await room.wait()
                        continue
                    outstanding[k] += 1
                    batches_out[k].append(wire_item(item))
                    if len(batches_out[k]) >= _BATCH:
                        await send(k)

        async def refill(k: int) -> None:
            """Worker ``k`` sent records back: what waits aside for it goes, up to its credit."""
            moved = aside.take(k, credit + extra[k] - outstanding[k])
            if moved:
                outstanding[k] += len(moved)
                batches_out[k].extend(moved)
                if len(batches_out[k]) >= _BATCH:
                    await send(k)

        async def linger() -> None:
            while True:
                await asyncio.sleep(_LINGER)
                for k in range(workers):
                    await send(k)

        async def hand_over(message: Throttled) -> None:
            """A shared host pushed back: make one worker its owner, tell them all."""
            key = message.key
            if ended or key in owners:
                return
            o = owners[key] = owner(key)
            for k in range(workers):
                await tell(k, frame(Own(key, k == o, message.pause, message.too_many)))

        async def handed_back(k: int, message: Handback) -> None:
            n = len(message.items)
            outstanding[k] -= n
            if ended:  # stopping: nobody fetches them now, the next run does
                room.set()
                stats.in_flight -= n
                stats.abandoned += n
                return
            # Its room may be all it has (nothing of it in flight: no record to come
            # that would make room): what waits aside for it goes now.
            await refill(k)
            room.set()
            o = owners[message.key]
            if message.allowed:
                await tell(o, frame(Seen(message.key, message.allowed)))
            if n:
                outstanding[o] += n
                batches_out[o].extend(message.items)
                await send(o)

        def throttles(k: int, message: Throttles) -> None:
            view = views[k]
            for host in message.hosts:
                view[host.key] = Throttle(host.rate, host.too_many, host.unavailable)
                rates = [r for v in views if (t := v.get(host.key)) and (r := t.rate)]
                stats.throttled[host.key] = Throttle(
                    sum(rates) if rates else None,
                    sum(t.too_many for v in views if (t := v.get(host.key))),
                    sum(t.unavailable for v in views if (t := v.get(host.key))),
                )

        async def collect(k: int) -> None:
            stdout = procs[k].stdout
            while (payload := await read_frame(stdout)) is not None:
                message = to_main.decode(payload)
                if isinstance(message, Records):
                    for record in message.records:
                        if record.ok:
                            stats.ok += 1
                        else:
                            stats.failed += 1
                        await emit(record)
                    outstanding[k] -= len(message.records)
                    stats.in_flight -= len(message.records)
                    if outstanding[k] < credit:
                        extra[k] = 0
                    await refill(k)
                    room.set()
                elif isinstance(message, Hungry):
                    extra[k] = min(extra[k] + max(1, credit // 4), (READ_AHEAD - 1) * credit)
                    await refill(k)
                    room.set()
                elif isinstance(message, Throttled):
                    await hand_over(message)
                elif isinstance(message, Handback):
                    await handed_back(k, message)
                elif isinstance(message, Throttles):
                    throttles(k, message)
                elif isinstance(message, Done):
                    stats.abandoned += message.abandoned
                    stats.in_flight -= outstanding[k]
                    outstanding[k] = 0
                    return
            raise await died(k)

        async with asyncio.TaskGroup() as tg:
            collectors = [tg.create_task(collect(k)) for k in range(workers)]
            ticker = tg.create_task(linger())
            feeder = tg.create_task(feed())
            halt = tg.create_task(stopping.wait())
            await asyncio.wait((feeder, halt), return_when=asyncio.FIRST_COMPLETED)
            finishing = feeder.done()  # else: asked to stop
            if not finishing:
                feeder.cancel()
                await asyncio.wait((feeder,))
            else:
                # All the input is read; URLs may still wait aside for their worker,
                # and move to a host's new owner until none is outstanding. A stop
                # asked for meanwhile still reaches the workers, so that they start
                # nothing new.
                for k in range(workers):
                    await send(k)
                while (aside.count or (share > 1 and any(outstanding))) and not halt.done():
                    room.clear()
                    waiter = asyncio.ensure_future(room.wait())
                    await asyncio.wait(
                        {halt, waiter, *collectors}, return_when=asyncio.FIRST_COMPLETED
                    )
                    waiter.cancel()
                    if any(c.done() for c in collectors):
                        break  # one died: its error ends the run
                finishing = not halt.done()
            ticker.cancel()
            ended = True
            left = aside.clear()  # none, unless asked to stop (or a worker died)
            stats.abandoned += left
            stats.in_flight -= left
            for k in range(workers):
                if finishing:
                    await send(k)
                else:
                    stats.abandoned += len(batches_out[k])
                    stats.in_flight -= len(batches_out[k])
                    outstanding[k] -= len(batches_out[k])
                    batches_out[k] = []
                await tell(k, frame(End() if finishing else Stop()), exiting_ok=True)
            if finishing:
                # The workers finish what they hold; a stop asked for meanwhile still
                # reaches them (they then start nothing new).
                waiting: set[asyncio.Task[Any]] = {halt, *collectors}
                while not halt.done() and not all(c.done() for c in collectors):
                    _, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if halt.done():
                    for k in range(workers):
                        if not collectors[k].done():
                            await tell(k, frame(Stop()), exiting_ok=True)
            halt.cancel()
            await asyncio.wait(collectors)
        clean = True
    finally:
        await _reap(procs, kill=not clean)
    if bad_input:
        raise bad_input[0]
    return stats


class _Aside:
    """URLs for workers that hold their credit's worth, kept here in order and sent as
    those workers' records come back: the input goes on being read for the others.
    ``cap`` over all workers at most (then reading waits)."""

    def __init__(self, workers: int, cap: int) -> None:
        self.queues: list[deque[WireItem]] = [deque() for _ in range(workers)]
        self.count = 0
        self.cap = cap

    def holds(self, k: int) -> bool:
        return bool(self.queues[k])

    def full(self) -> bool:
        return self.count >= self.cap

    def add(self, k: int, item: WireItem) -> None:
        self.queues[k].append(item)
        self.count += 1

    def take(self, k: int, most: int) -> list[WireItem]:
        queue = self.queues[k]
        taken = [queue.popleft() for _ in range(min(most, len(queue)))]
        self.count -= len(taken)
        return taken

    def clear(self) -> int:
        """Drop what waits; returns how many."""
        n, self.count = self.count, 0
        for queue in self.queues:
            queue.clear()
        return n


def _nearest(home: int, outstanding: list[int], slack: int) -> int:
    """The worker a URL of a shared host goes to: the host's own (``home``, by hash),
    so that its name is resolved and its connections are opened in one process, unless
    that worker has more than ``slack`` URLs outstanding beyond the least busy one,
    which then takes it (so one busy host still keeps every worker busy)."""
    least = min(range(len(outstanding)), key=outstanding.__getitem__)
    return least if outstanding[home] - outstanding[least] > slack else home


async def _reap(procs: list[WorkerProcess], *, kill: bool) -> None:
    """Make sure no worker outlives the run. After a clean end the workers are exiting
    on their own; after an error or a cancellation they are killed at once (what they
    held in flight is fetched by the next run)."""
    for proc in procs:
        proc.stdin.close()
        if proc.returncode is None and kill:
            proc.kill()
    for proc in procs:
        with contextlib.suppress(TimeoutError):
            await asyncio.shield(asyncio.wait_for(proc.wait(), 10))
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
