"""The total and read timeouts on shared timer handles (surefetch._deadlines): when a
deadline passes, what it is measured from, and that cancellations which are not ours
pass through untouched."""

from __future__ import annotations

import asyncio
import time

import pytest

from surefetch import (
    Client,
    ClientStateError,
    ConnectTimeoutError,
    ReadTimeoutError,
    RetryPolicy,
    Timeouts,
    TotalTimeoutError,
)

from .conftest import Server
from .faults import Blackhole, FaultServer
from .helpers import wait_for_requests

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("transport")]

NO_RETRY = RetryPolicy(retries=0)


def idle(client: Client) -> bool:
    """No attempt of ``client`` holds a deadline, and the task was left uncancelled."""
    task = asyncio.current_task()
    assert task is not None
    deadlines = client._deadlines
    assert deadlines is not None
    return len(deadlines) == 0 and task.cancelling() == 0


async def test_a_body_that_keeps_coming_outlives_the_read_timeout(
    fault_server: FaultServer,
) -> None:
    # A byte every 0.05 s for 1 s: no gap reaches read=0.5, though the body takes
    # twice as long as that. (The server runs in this loop: a stall of the process
    # longer than read less the interval, 0.45 s, would fire the read deadline.)
    timeouts = Timeouts(total=5, connect=5, read=0.5)
    async with Client(timeouts=timeouts, retry=NO_RETRY) as client:
        started = time.monotonic()
        response = await client.get(fault_server.url("/drip?interval=0.05&count=20"))
        took = time.monotonic() - started
        assert idle(client)
    assert (response.status, response.body, response.attempts) == (200, b"x" * 20, 1)
    assert took >= 0.95


async def test_a_stalled_attempt_among_many_quick_ones_times_out_on_time(
    server: Server, fault_server: FaultServer
) -> None:
    # 300 quick requests start and end while one hangs: its deadline, long behind
    # theirs in the queue, still fires when due.
    timeouts = Timeouts(total=0.6, connect=5, read=5)
    async with Client(timeouts=timeouts, retry=NO_RETRY) as client:

        async def hang() -> float:
            started = time.monotonic()
            with pytest.raises(TotalTimeoutError):
                await client.get(fault_server.url("/hang"))
            return time.monotonic() - started

        async def quick(n: int) -> int:
            return (await client.get(server.url(f"/p/{n}"))).status

        async with asyncio.TaskGroup() as tg:
            stalled = tg.create_task(hang())
            quick_ones = [tg.create_task(quick(n)) for n in range(300)]
        assert idle(client)
    assert 0.6 <= stalled.result() <= 1.2
    assert [task.result() for task in quick_ones] == [200] * 300
    assert len(server.tracker.times) == 300


async def test_read_timeout_for_the_head_on_a_reused_connection(server: Server) -> None:
    timeouts = Timeouts(total=5, connect=5, read=0.3)
    async with Client(timeouts=timeouts, retry=NO_RETRY) as client:
        assert (await client.get(server.url("/p/first"))).status == 200
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError) as info:
            await client.get(server.url("/sleep/3"))
        took = time.monotonic() - started
        assert idle(client)
        # The client is still fine afterwards.
        assert (await client.get(server.url("/p/after"))).status == 200
    assert 0.3 <= took <= 1.0
    assert info.value.attempts == 1


async def test_the_read_deadline_does_not_run_while_connecting(blackhole: Blackhole) -> None:
    # read (0.1 s) is shorter than connect (0.4 s): a connect that hangs must end as
    # a connect timeout, at the connect timeout.
    assert blackhole.check(), "connect() to the full accept queue did not hang here"
    timeouts = Timeouts(total=5, connect=0.4, read=0.1)
    async with Client(timeouts=timeouts, retry=NO_RETRY) as client:
        started = time.monotonic()
        with pytest.raises(ConnectTimeoutError):
            await client.get(blackhole.url())
        took = time.monotonic() - started
        assert idle(client)
    assert 0.4 <= took <= 1.5


async def test_a_cancellation_from_outside_is_not_turned_into_a_timeout(server: Server) -> None:
    async with Client(timeouts=Timeouts(total=0.5, connect=5, read=0.5)) as client:
        request = asyncio.create_task(client.get(server.url("/sleep/5")))
        # Cancelled as soon as the server holds it, long before its deadlines (after a
        # fixed 0.2 s, a stall of 0.3 s would have let the total deadline fire first).
        await wait_for_requests(server.tracker, 1, 5)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        # The deadlines of the cancelled attempt are gone: nothing fires later.
        assert idle(client)
        await asyncio.sleep(0.5)
        assert (await client.get(server.url("/p/after"))).status == 200


async def test_an_outer_timeout_shorter_than_ours_belongs_to_the_caller(server: Server) -> None:
    async with Client(timeouts=Timeouts(total=5, connect=5, read=5), retry=NO_RETRY) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError) as info:
            async with asyncio.timeout(0.3):
                await client.get(server.url("/sleep/3"))
        took = time.monotonic() - started
        assert idle(client)
    assert type(info.value) is TimeoutError  # asyncio's, not a FetchError
    assert 0.3 <= took <= 1.0


async def test_our_timeout_inside_a_longer_outer_timeout(server: Server) -> None:
    timeouts = Timeouts(total=0.3, connect=5, read=5)
    async with Client(timeouts=timeouts, retry=NO_RETRY) as client:
        started = time.monotonic()
        async with asyncio.timeout(5) as outer:
            with pytest.raises(TotalTimeoutError):
                await client.get(server.url("/sleep/3"))
        took = time.monotonic() - started
        assert not outer.expired()
        assert idle(client)
    assert 0.3 <= took <= 1.0


async def test_a_request_driven_outside_any_task_is_refused(server: Server) -> None:
    # The deadlines work by cancelling the attempt's task: a coroutine stepped by hand
    # from a loop callback has none, and gets a clear error instead of no timeouts.
    async with Client(retry=NO_RETRY) as client:
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[BaseException | None] = loop.create_future()

        def drive() -> None:
            request = client.get(server.url("/p/outside"))
            try:
                request.send(None)
            except BaseException as exc:
                outcome.set_result(exc)
            else:
                outcome.set_result(None)
            finally:
                request.close()

        loop.call_soon(drive)
        error = await outcome
        assert type(error) is ClientStateError
        assert str(error) == "requests must run in an asyncio task"
        assert idle(client)
        assert (await client.get(server.url("/p/after"))).status == 200
    assert server.tracker.hits["/p/outside"] == 0
    assert server.tracker.hits["/p/after"] == 1
