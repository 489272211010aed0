"""The bulk engine: limits at every moment, one record per distinct URL, streaming."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from surefetch import (
    Client,
    ClientStateError,
    Item,
    Limits,
    Politeness,
    Record,
    RetryPolicy,
    Timeouts,
    run,
)
from surefetch.engine import Stats
from surefetch.polite import HostRule
from surefetch.record import decode, encode
from surefetch.sources import ItemBatches

from .conftest import HOSTS, Server


async def collect(client: Client, urls: list[str] | list[Item], **kw: object) -> list[Record]:
    return [r async for r in client.fetch_many(urls, **kw)]  # type: ignore[arg-type]


async def test_one_record_per_distinct_url(server: Server) -> None:
    urls = [server.url(f"/p/{i}") for i in range(300)]
    given = urls + urls[:100] + urls[:10]  # duplicates are fetched once
    async with Client() as client:
        records = await collect(client, given)
    assert sorted(r.url for r in records) == sorted(urls)
    assert all(r.ok and r.status == 200 and r.attempts == 1 for r in records)
    assert all(server.tracker.hits[f"/p/{i}"] == 1 for i in range(300))
    by_url = {r.url: r for r in records}
    assert by_url[urls[7]].body == "ok /p/7"


async def test_dedupe_can_be_turned_off(server: Server) -> None:
    url = server.url("/p/same")
    async with Client() as client:
        records = await collect(client, [url, url, url], dedupe=False)
    assert len(records) == 3
    assert server.tracker.hits["/p/same"] == 3


@pytest.mark.parametrize("sorted_by_host", [False, True])
async def test_global_and_per_host_limits_hold_and_are_used(
    slow_server: Server, sorted_by_host: bool
) -> None:
    """Three hosts, 50 ms per response: at most 4 per host and 10 in all at any
    moment, and both limits are reached, even when the input is sorted by host (a
    full host must not block workers that could serve another)."""
    if sorted_by_host:
        urls = [slow_server.url(f"/p/{h}-{i}", h) for h in HOSTS for i in range(60)]
    else:
        urls = [slow_server.url(f"/p/{h}-{i}", h) for i in range(60) for h in HOSTS]
    limits = Limits(concurrency=10, per_host=4)
    started = time.monotonic()
    async with Client(limits=limits) as client:
        records = await collect(client, urls)
    elapsed = time.monotonic() - started
    assert len(records) == 180 and all(r.ok for r in records)
    assert set(slow_server.tracker.peak) == {f"{h}:{slow_server.port}" for h in HOSTS}
    assert max(slow_server.tracker.peak.values()) == 4
    assert slow_server.tracker.total_peak == 10
    # 180 requests of 50 ms, 10 at a time: about 0.9 s; serial per host would be 2.7 s.
    assert elapsed < 2.5


async def test_single_host_input_stays_within_per_host(slow_server: Server) -> None:
    urls = [slow_server.url(f"/p/{i}") for i in range(80)]
    async with Client(limits=Limits(concurrency=64, per_host=5)) as client:
        records = await collect(client, urls)
    assert len(records) == 80
    assert slow_server.tracker.total_peak == 5


class _Counted:
    """An input that counts how much of it the run has read."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.read = 0

    def __iter__(self) -> Iterator[str]:
        for url in self.urls:
            self.read += 1
            yield url


@pytest.mark.parametrize("wait", ["paced", "slow"])
async def test_a_host_that_waits_does_not_hold_up_the_hosts_after_it(
    slow_server: Server, wait: str
) -> None:
    """Sorted by host: 1,500 URLs of a host that must wait (5 requests/s; or one at a
    time, 50 ms each), more than the backlog (1,024), then 200 of another host. The
    feeder reads past the first host's URLs while requests could start and none of
    them may, so the second host's are all done within seconds (they used to wait
    until 732 of the first host's had gone: some 2.5 minutes paced, 37 s slow)."""
    first, second = HOSTS[1], HOSTS[0]
    rule = HostRule(first, rate=5.0) if wait == "paced" else HostRule(first, per_host=1)
    urls = [slow_server.url(f"/p/a{i}", first) for i in range(1500)]
    urls += [slow_server.url(f"/p/b{i}", second) for i in range(200)]
    started = time.monotonic()
    second_done = 0
    async with Client(limits=Limits(concurrency=16, per_host=8)) as client:
        async with asyncio.timeout(30):
            async for record in client.fetch_many(urls, politeness=Politeness(rules=(rule,))):
                assert record.ok, record
                second_done += "/p/b" in record.url
                if second_done == 200:
                    break
    took = time.monotonic() - started
    first_sent = sum(n for path, n in slow_server.tracker.hits.items() if path.startswith("/p/a"))
    print(f"{wait}: the second host's 200 URLs done after {took:.2f} s; first host {first_sent}")
    assert took < 6, took
    assert first_sent < (40 if wait == "paced" else 150), first_sent


async def test_reading_ahead_past_a_waiting_host_stops_at_16_backlogs(server: Server) -> None:
    """A host paced at 2 requests/s with 5,000 URLs, backlog 16: the feeder reads ahead
    (its requests are idle) but never holds more than 16 x 16 URLs waiting."""
    urls = _Counted([server.url(f"/p/{i}") for i in range(5000)])
    stop = asyncio.Event()
    got: list[Record] = []

    async def emit(record: Record) -> None:
        got.append(record)

    async with (
        Client(limits=Limits(concurrency=8, per_host=8)) as client,
        asyncio.TaskGroup() as tg,
    ):
        tg.create_task(_set_after(stop, 1.5))
        stats = await run(
            client, urls, emit, stop=stop, max_backlog=16, politeness=Politeness(rate=2.0)
        )
    assert 1 <= len(got) <= 5 and all(r.ok for r in got)
    # Taken from the input: the cap's worth waiting, and those sent (in lists of 256).
    assert 16 * 16 <= stats.read <= 16 * 16 + 8, stats.read
    assert urls.read <= stats.read + 256
    assert stats.abandoned == stats.read - len(got)


async def test_no_reading_ahead_while_every_request_is_busy(slow_server: Server) -> None:
    """One host, 50 ms an answer, as many per host as in all (no adaptive ramp): every
    request stays busy, so the feeder keeps to its backlog of 16 (in lists of 256)."""
    urls = _Counted([slow_server.url(f"/p/{i}") for i in range(5000)])
    most_ahead = 0

    async def emit(record: Record) -> None:
        nonlocal most_ahead
        most_ahead = max(most_ahead, urls.read - len(done))
        done.append(record)

    done: list[Record] = []
    stop = asyncio.Event()
    async with (
        Client(limits=Limits(concurrency=8, per_host=8)) as client,
        asyncio.TaskGroup() as tg,
    ):
        tg.create_task(_set_after(stop, 1.0))
        await run(
            client, urls, emit, stop=stop, max_backlog=16, politeness=Politeness(adaptive=False)
        )
    assert len(done) > 50
    # Waiting (16) and in flight (8), with a list of 256 read at once.
    assert most_ahead <= 16 + 8 + 256, most_ahead


async def _set_after(event: asyncio.Event, seconds: float) -> None:
    await asyncio.sleep(seconds)
    event.set()


async def test_invalid_urls_get_records_without_sending(server: Server) -> None:
    bad = [
        "ftp://example.com/x",
        "not a url",
        "http://",
        "http://exa mple.com/",
        "http://127.0.0.1:99999/",
        "http://127.0.0.1/\x01",
        "/relative/path",
        "mailto:someone@example.com",
    ]
    async with Client() as client:
        records = await collect(client, [*bad, server.url("/ok")])
    by_url = {r.url: r for r in records}
    assert set(by_url) == {*bad, server.url("/ok")}
    for url in bad:
        record = by_url[url]
        assert record.error is not None and record.error.kind == "invalid_url", url
        assert record.attempts == 0 and record.status is None and not record.ok
    assert by_url[server.url("/ok")].ok
    assert sum(server.tracker.hits.values()) == 1


async def test_items_carry_method_headers_body_and_meta(server: Server) -> None:
    items = [
        Item(server.url("/headers"), headers={"X-Row": "7"}, meta={"id": 7}),
        Item(server.url("/status/201"), method="POST", data=b"payload", meta={"id": 8}),
    ]
    async with Client() as client:
        records = await collect(client, items)
    by_id = {r.meta["id"]: r for r in records}  # type: ignore[index]
    assert '"X-Row": "7"' in by_id[7].body  # type: ignore[operator]
    assert by_id[8].status == 201 and by_id[8].ok


async def test_records_stream_while_the_run_goes(slow_server: Server) -> None:
    """The first record arrives long before the last URL is fetched: within the first
    rounds of 4 of 25. Counted in requests the server saw, not timed (a stall of the
    machine could make it later than a bound in seconds)."""
    urls = [slow_server.url(f"/p/{i}") for i in range(100)]
    async with Client(limits=Limits(concurrency=4, per_host=4)) as client:
        stream = client.fetch_many(urls)
        first = await anext(stream)
        sent_by_then = sum(slow_server.tracker.hits.values())
        rest = [r async for r in stream]
    assert first.ok and len(rest) == 99
    assert sent_by_then <= 12, sent_by_then  # 2 here; records held back 16 at a time: 18


async def test_breaking_out_early_stops_the_run(slow_server: Server) -> None:
    urls = [slow_server.url(f"/p/{i}") for i in range(1000)]
    started = time.monotonic()
    client = Client(limits=Limits(concurrency=4, per_host=4))
    async with client, client.fetch_many(urls) as stream:
        await anext(stream)
    assert time.monotonic() - started < 2
    assert sum(slow_server.tracker.hits.values()) < 50


async def test_abandoned_stream_is_cancelled_when_the_client_closes(slow_server: Server) -> None:
    urls = [slow_server.url(f"/p/{i}") for i in range(1000)]
    started = time.monotonic()
    async with Client(limits=Limits(concurrency=4, per_host=4)) as client:
        stream = client.fetch_many(urls)
        await anext(stream)
    assert time.monotonic() - started < 2
    with pytest.raises(ClientStateError, match="closed before this stream finished"):
        await anext(stream)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_async_source_and_run_with_a_custom_emit(server: Server) -> None:
    async def source() -> object:
        for i in range(50):
            await asyncio.sleep(0)
            yield server.url(f"/p/{i}")
        yield server.url("/p/0")

    seen: list[Record] = []

    async def emit(record: Record) -> None:
        seen.append(record)

    async with Client() as client:
        stats = await run(client, source(), emit)  # type: ignore[arg-type]
    assert stats == Stats(read=51, duplicates=1, ok=50, failed=0)
    assert len(seen) == 50


async def test_failing_emit_stops_the_run_and_closes_cleanly(server: Server) -> None:
    class Full(OSError):
        pass

    count = 0

    async def emit(record: Record) -> None:
        nonlocal count
        count += 1
        if count == 20:
            raise Full(28, "No space left on device")

    urls = [server.url(f"/p/{i}") for i in range(500)]
    async with Client() as client:
        with pytest.raises(ExceptionGroup) as info:
            await run(client, urls, emit)
    assert info.group_contains(Full)
    assert count < 100


async def test_retries_happen_inside_the_run(server: Server) -> None:
    urls = [server.url(f"/flaky/k{i}?n=2") for i in range(5)]
    retry = RetryPolicy(retries=3, backoff=0.01)
    async with Client(retry=retry, timeouts=Timeouts(total=5)) as client:
        records = await collect(client, urls)
    assert all(r.ok and r.attempts == 3 for r in records)


async def test_records_round_trip_through_json_lines(server: Server) -> None:
    urls = [server.url("/p/1"), server.url("/binary"), server.url("/status/404"), "ftp://x/"]
    async with Client() as client:
        records = await collect(client, [Item(u, meta={"n": i}) for i, u in enumerate(urls)])
    for record in records:
        line = encode(record)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert decode(line) == record


async def test_stats_count_each_record_once_for_every_kind_of_source(server: Server) -> None:
    """Lists, async iterators and the batches read from a file all give the same stats,
    and a refused URL counts as one failure (not one at refusal and one at emit)."""
    urls = [server.url("/p/1"), "not a url", server.url("/p/1"), server.url("/status/500")]

    async def one_by_one() -> AsyncIterator[str]:
        for url in urls:
            yield url

    async def in_batches() -> AsyncIterator[list[Item]]:
        yield [Item(url) for url in urls[:2]]
        yield [Item(url) for url in urls[2:]]

    sources: list[object] = [urls, one_by_one(), ItemBatches(in_batches())]
    for source in sources:
        emitted: list[Record] = []

        async def emit(record: Record) -> None:
            emitted.append(record)  # noqa: B023 (called before the next loop turn)

        async with Client(retry=RetryPolicy(retries=0)) as client:
            stats = await run(client, source, emit)  # type: ignore[arg-type]
        assert stats == Stats(read=4, duplicates=1, ok=1, failed=2), source
        assert sorted(r.status or 0 for r in emitted) == [0, 200, 500]
