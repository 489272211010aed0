"""A worker process of ``--workers N``: fetches what the main process sends it.

Run as ``python -m surefetch._worker``; it speaks the frames of ``_wire`` on its stdin
and stdout. It ignores SIGINT (the main process decides when to stop) and exits after
reporting ``Done``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from . import _loop, logs
from ._tune import tune_process
from ._wire import (
    Batch,
    Config,
    Done,
    End,
    Handback,
    HostThrottle,
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
    to_worker,
    wire_item,
)
from .bodies import BodyStore
from .client import Client, connection_options
from .engine import Stats, run
from .policy import Limits, RetryPolicy, Timeouts
from .polite import Scheduler
from .record import Record
from .resolve import DNS
from .sources import Item, ItemBatches

if TYPE_CHECKING:
    from yarl import URL

#: Records per message back to the main process, and the longest a record waits.
_BATCH = 128
_LINGER = 0.02
#: How often, at most, the figures of hosts that pushed back are sent.
_THROTTLES_EVERY = 0.5


def client_from(config: Config, cls: type[Client] = Client) -> Client:
    """The Client ``config`` describes (of class ``cls``, a Client's subclass)."""
    retry = dict(config.retry)
    for name in ("statuses", "kinds", "methods"):
        retry[name] = frozenset(retry[name])
    return cls(
        limits=Limits(**config.limits),
        timeouts=Timeouts(**config.timeouts),
        retry=RetryPolicy(**retry),
        headers=config.headers,
        user_agent=config.user_agent,
        dns=DNS(**config.dns),
        **connection_options(config.connection),
    )


async def _pipes() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0)
    )
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(1, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer


async def _main(config: Config, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    client = client_from(config)
    bodies = BodyStore(config.bodies) if config.bodies else None
    queue: asyncio.Queue[list[Item] | None] = asyncio.Queue()
    waiting = 0  # items in ``queue``
    stop = asyncio.Event()
    out: list[Record] = []
    policy = config.politeness
    sched: Scheduler[tuple[Item, URL]] = Scheduler(
        policy, policy.per_host or client.limits.per_host, share=config.share
    )
    # Hosts another worker owns now: their URLs go back to the main process, for it.
    away: dict[str, list[WireItem]] = {}

    def throttled(key: str, pause: float, too_many: bool) -> None:
        writer.write(frame(Throttled(key, pause, too_many)))  # once per host at most

    def give_back(key: str, work: tuple[Item, URL]) -> None:
        away.setdefault(key, []).append(wire_item(work[0]))

    sched.on_throttled = throttled
    sched.on_away = give_back

    async def control() -> None:
        nonlocal waiting
        while (payload := await read_frame(reader)) is not None:
            message = to_worker.decode(payload)
            if isinstance(message, Batch):
                waiting += len(message.items)
                queue.put_nowait(
                    [Item(w.url, w.method, w.headers, w.data, w.meta) for w in message.items]
                )
            elif isinstance(message, Own):
                if message.owner:
                    sched.own(message.key, message.pause, too_many=message.too_many)
                else:
                    queued, allowed = sched.disown(message.key)
                    for work in queued:
                        give_back(message.key, work)
                    items = away.pop(message.key, [])
                    writer.write(frame(Handback(message.key, items, allowed)))
            elif isinstance(message, Seen):
                sched.seen_elsewhere(message.key, message.allowed)
            elif isinstance(message, Stop):
                stop.set()
            elif isinstance(message, End):
                queue.put_nowait(None)
        stop.set()  # the main process is gone: finish up

    async def source() -> AsyncIterator[list[Item]]:
        nonlocal waiting
        while (batch := await queue.get()) is not None:
            waiting -= len(batch)
            yield batch

    async def send() -> None:
        if out:
            writer.write(frame(Records(out.copy())))
            out.clear()
        while away:
            key, items = away.popitem()
            writer.write(frame(Handback(key, items)))
        await writer.drain()

    def send_throttles() -> None:
        dirty, throttled = sched.throttle_dirty, sched.throttled
        if dirty:
            hosts = [
                HostThrottle(key, t.rate, t.too_many, t.unavailable)
                for key in dirty
                if (t := throttled.get(key)) is not None
            ]
            dirty.clear()
            writer.write(frame(Throttles(hosts)))

    async def emit(record: Record) -> None:
        out.append(record)
        if len(out) >= _BATCH:
            await send()

    def ask_for_more() -> None:
        """Starved with nothing more to read: every URL held waits for its host (see
        :class:`Hungry`); once a linger at most, so that main's extra credit grows in
        steps."""
        if stats.starved and not waiting:
            writer.write(frame(Hungry()))

    async def linger() -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + _THROTTLES_EVERY
        while True:
            await asyncio.sleep(_LINGER)
            if loop.time() >= due:
                due = loop.time() + _THROTTLES_EVERY
                send_throttles()
            ask_for_more()
            await send()

    stats = Stats()
    async with client, asyncio.TaskGroup() as tg:
        listener = tg.create_task(control())
        ticker = tg.create_task(linger())
        await run(
            client,
            ItemBatches(source()),
            emit,
            store_body=config.store_body and bodies is None,
            dedupe=False,
            stop=stop,
            bodies=bodies,
            politeness=policy,
            robots=config.robots,
            scheduler=sched,
            stats=stats,
        )
        ticker.cancel()
        send_throttles()
        await send()
        writer.write(frame(Done(stats.abandoned + waiting)))
        await writer.drain()
        listener.cancel()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    head = os.read(0, 4)
    if len(head) < 4:
        sys.exit(0)
    size = int.from_bytes(head, "big")
    payload = b""
    while len(payload) < size:
        chunk = os.read(0, size - len(payload))
        if not chunk:
            sys.exit(1)
        payload += chunk
    config = to_worker.decode(payload)
    assert isinstance(config, Config)
    logs.configure(config.log_level, config.log_format)

    async def start() -> None:
        reader, writer = await _pipes()
        await _main(config, reader, writer)

    tune_process()
    gc.freeze()  # start-up objects live as long as the process: keep them out of GC passes
    _loop.run(start(), config.loop)


if __name__ == "__main__":
    main()
