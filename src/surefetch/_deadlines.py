"""The total and read timeouts of every attempt, on two timer handles per client.

aiohttp's own timeouts arm a timer handle for each request (the total timeout) and
cancel and arm another on every read (``sock_read``); with uvloop each is a libuv
timer that is made, started, stopped and freed. Measured in one process against a
local server, the two cost about 10 µs of CPU per small response, some 8 % of all the
work of a fetch. Here they cost a few dictionary operations:

- every deadline of a kind lies the same number of seconds (``total``, or ``read``)
  after a moment that only moves forward (the attempt's start; the last time the
  server was heard from), so deadlines of one kind fall due in the order they were
  set. A dict in insertion order is then a queue sorted by deadline, and one timer
  handle, armed for the front, serves every attempt; moving a deadline (data came in)
  takes the attempt out and puts it at the back;
- an attempt that ends just leaves the dict. The timer is not re-armed: when it
  fires it finds the front not yet due and sets itself again for it. Under steady
  load that is about once per ``total`` (or ``read``) seconds, not once per request.

A deadline that passes cancels the attempt's task; the attempt turns the
cancellation into :class:`~surefetch.errors.TotalTimeoutError` or
:class:`~surefetch.errors.ReadTimeoutError`, exactly as :func:`asyncio.timeout` does
(``Task.uncancel``), so a cancellation that comes from elsewhere is never swallowed.

The read deadline starts when the attempt has a connection (:class:`Connector`, so
the connect timeout alone covers connecting), is set again for every chunk of the
body that arrives, and ends when the whole body is in.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any, Literal

import aiohttp

__all__ = ["Connector", "Deadlines", "Watch"]

Kind = Literal["total", "read"]


class Watch:
    """One attempt under watch: its task, and which deadline passed (if one did)."""

    __slots__ = ("cancelling", "deadlines", "fired", "task")

    def __init__(self, deadlines: Deadlines, task: asyncio.Task[Any]) -> None:
        self.deadlines = deadlines
        self.task = task
        #: The task's cancellation requests when the attempt began.
        self.cancelling = task.cancelling()
        self.fired: Kind | None = None

    def timed_out(self) -> Kind | None:
        """In the attempt's ``except CancelledError``: the deadline that caused the
        cancellation, or None for a cancellation from elsewhere (to re-raise)."""
        if self.fired is None or self.task.uncancel() > self.cancelling:
            return None
        return self.fired


#: The attempt running in this task, for :class:`Connector` to find.
current: ContextVar[Watch | None] = ContextVar("surefetch_attempt", default=None)


class _Queue:
    """Deadlines that all lie ``delay`` seconds after a moment that only moves forward,
    in the order they fall due, with one timer handle armed for the front."""

    __slots__ = ("_delay", "_due", "_kind", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, kind: Kind) -> None:
        self._loop = loop
        self._delay = delay
        self._kind = kind
        self._due: dict[Watch, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._due)

    def set(self, watch: Watch, now: float) -> None:
        """(Re)start ``watch``'s deadline: ``delay`` seconds from ``now``."""
        due = self._due
        due.pop(watch, None)  # to the back: the latest deadline of all
        when = due[watch] = now + self._delay
        if self._timer is None:
            self._timer = self._loop.call_at(when, self._expire)

    def discard(self, watch: Watch) -> None:
        self._due.pop(watch, None)

    def _expire(self) -> None:
        self._timer = None
        now = self._loop.time()
        due = self._due
        while due:
            watch = next(iter(due))
            when = due[watch]
            if when > now:
                self._timer = self._loop.call_at(when, self._expire)
                return
            del due[watch]
            if watch.fired is None:
                watch.fired = self._kind
                watch.task.cancel(f"surefetch: {self._kind} timeout")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due.clear()


class Deadlines:
    """The total and read deadlines of one client's attempts."""

    __slots__ = ("_loop", "_read", "_total")

    def __init__(self, loop: asyncio.AbstractEventLoop, *, total: float, read: float) -> None:
        self._loop = loop
        self._total = _Queue(loop, total, "total")
        self._read = _Queue(loop, read, "read")

    def __len__(self) -> int:
        """Attempts with a deadline running."""
        return len(self._total)

    def start(self) -> Watch:
        """Watch the attempt that the current task begins now (its total deadline)."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("an attempt must run in a task")
        watch = Watch(self, task)
        self._total.set(watch, self._loop.time())
        return watch

    def waiting(self, watch: Watch) -> None:
        """``watch`` now waits for the server (it got a connection, or a chunk of the
        body came): its read deadline starts again from now."""
        self._read.set(watch, self._loop.time())

    def not_waiting(self, watch: Watch) -> None:
        """``watch`` has all it waited for (the whole body): no read deadline."""
        self._read.discard(watch)

    def finish(self, watch: Watch) -> None:
        """The attempt has ended, whichever way."""
        self._total.discard(watch)
        self._read.discard(watch)

    def close(self) -> None:
        self._total.close()
        self._read.close()


class Connector(aiohttp.TCPConnector):
    """A TCPConnector that starts the read deadline of the attempt it serves once that
    attempt has its connection (new or reused); redirects start it again per hop."""

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[aiohttp.tracing.Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> aiohttp.connector.Connection:
        connection = await super().connect(req, traces, timeout)
        watch = current.get()
        if watch is not None:
            watch.deadlines.waiting(watch)
        return connection
