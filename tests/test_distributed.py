"""Distributed mode: a coordinator (`fetch --redis`) and worker processes (`surefetch
worker`) through a real redis-server on 127.0.0.1, started here on a free port without
persistence. Workers and the coordinator are killed and restarted, and Redis itself is
restarted mid-run: every URL still gets exactly one record."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from tests.conftest import HOSTS, start_app
from tests.helpers import SUREFETCH, records, surefetch, write_lines

REDIS_SERVER = shutil.which("redis-server")

if REDIS_SERVER is None and not os.environ.get("CI"):
    pytest.skip(
        "redis-server is not installed (apt-get install redis-server; CI installs it)",
        allow_module_level=True,
    )
redis = pytest.importorskip(
    "redis.asyncio", reason="redis-py is not installed (pip install 'surefetch[redis]')"
)

from surefetch import Client, Limits, Stats  # noqa: E402 - after the skips
from surefetch._redis_worker import _READ, _RECLAIM, _RELEASE, RATE_GATE  # noqa: E402
from surefetch.distributed import (  # noqa: E402
    _ADMIT,
    Distributed,
    Done,
    Results,
    _Coordinator,
    _Pending,
    admission_blob,
    lanes_of,
    wire_item,
)
from surefetch.parallel import _config  # noqa: E402
from surefetch.polite import Politeness  # noqa: E402
from surefetch.record import Record  # noqa: E402
from surefetch.sinks.base import BATCH_RECORDS  # noqa: E402
from surefetch.sources import Item  # noqa: E402

#: Short leases, so that dead workers' URLs are reclaimed within seconds.
LEASE = "1.5"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None, "CI must install redis-server (.ci/run does)"
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
                "--daemonize",
                "no",
                "--logfile",
                str(self.folder / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert self.proc.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(free_port(), folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Site:
    """One app served on several ports, each at 127.0.0.1-3: many hosts to the client."""

    ports: list[int]
    hits: Counter[str]
    times: list[float]
    #: Cleared: /s/N requests wait until it is set again.
    go: asyncio.Event

    def url(self, path: str, k: int = 0) -> str:
        port = self.ports[k % len(self.ports)]
        return f"http://{HOSTS[k // len(self.ports) % len(HOSTS)]}:{port}{path}"

    def urls(self, count: int, path: str = "/p/") -> list[str]:
        return [self.url(f"{path}{i}", i) for i in range(count)]


def site_app(
    hits: Counter[str],
    times: list[float],
    rate: float | None = None,
    go: asyncio.Event | None = None,
) -> web.Application:
    """/p/N answers ok (after 5 ms), /s/N after 20 ms (and while ``go`` is clear, not
    before it is set); /gone/N is a 404; /hang never answers; with ``rate``, more than
    that many requests in the last second get 429."""
    recent: list[float] = []

    async def page(request: web.Request) -> web.Response:
        now = time.monotonic()
        hits[request.path] += 1
        times.append(now)
        if rate is not None:
            recent.append(now)
            while recent and now - recent[0] > 1.0:
                recent.pop(0)
            if len(recent) > rate:
                hits["429"] += 1
                return web.Response(status=429, text="slow down")
        slow = request.path.startswith("/s/")
        if slow and go is not None:
            await go.wait()
        await asyncio.sleep(0.02 if slow else 0.005)
        return web.Response(text=f"ok {request.path}")

    async def hang(request: web.Request) -> web.Response:
        hits[request.path] += 1
        await asyncio.sleep(3600)
        return web.Response(text="never")

    async def gone(request: web.Request) -> web.Response:
        hits[request.path] += 1
        return web.Response(status=404, text="gone")

    app = web.Application()
    app.router.add_get("/gone/{n}", gone)
    app.router.add_get("/p/{n}", page)
    app.router.add_get("/s/{n}", page)
    app.router.add_get("/hang", hang)
    return app


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    hits: Counter[str] = Counter()
    times: list[float] = []
    go = asyncio.Event()
    go.set()
    started = [await start_app(site_app(hits, times, go=go), HOSTS) for _ in range(4)]
    yield Site([port for _, port in started], hits, times, go)
    for runner, _ in started:
        await runner.cleanup()


class Procs:
    """Background `surefetch` processes of a test, all killed at its end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, *args: str, name: str) -> asyncio.subprocess.Process:
        with (self.folder / f"{name}.log").open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *SUREFETCH, *args, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL
            )
        self.procs.append(proc)
        return proc

    async def worker(self, redis: RedisServer, name: str) -> asyncio.subprocess.Process:
        return await self.start("worker", "--redis", redis.url, "--job", "t", name=name)

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text()

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
        for proc in self.procs:
            await asyncio.wait_for(proc.wait(), 10)


@pytest.fixture
async def procs(tmp_path: Path) -> AsyncIterator[Procs]:
    group = Procs(tmp_path)
    try:
        yield group
    finally:
        await group.close()


def coordinator_args(
    redis: RedisServer, urls: Path, out: Path, *extra: str, quiet: bool = True
) -> list[str]:
    return [
        "fetch",
        str(urls),
        "-o",
        str(out),
        "--redis",
        redis.url,
        "--job",
        "t",
        "--lease",
        LEASE,
        *(["-q"] if quiet else []),
        *extra,
    ]


async def wait_exit(proc: asyncio.subprocess.Process, timeout: float = 60) -> int:
    return await asyncio.wait_for(proc.wait(), timeout)


def one_each(out: Path, count: int) -> list[dict[str, object]]:
    got = records(out)
    urls = Counter(r["url"] for r in got)
    twice = [u for u, n in urls.items() if n > 1]
    assert not twice, f"{len(twice)} URLs have more than one record, e.g. {twice[:3]}"
    assert len(urls) == count, f"{len(urls)} of {count} URLs have a record"
    return got


async def wait_present(server: RedisServer, count: int, timeout: float = 20) -> None:
    """Wait until ``count`` workers say they are there (so that the job's partitions
    are shared out among all of them from its start)."""
    client = redis.Redis.from_url(server.url)
    try:
        deadline = time.monotonic() + timeout
        while await client.zcard("surefetch:{t}:workers") < count:
            assert time.monotonic() < deadline, f"fewer than {count} workers in {timeout} s"
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


#: Lua: the Works (URLs) in a partition stream entry's payload (a list of them).
_WORKS = "local function works(payload) return #cmsgpack.unpack(payload) end\n"

# The Works of the entries in the streams KEYS pending for a consumer whose name holds
# ARGV[1] (read, not acknowledged).
_PENDING_WORKS = (
    _WORKS
    + """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    for _, e in ipairs(redis.call('XPENDING', key, 'w', '-', '+', 100000)) do
      if string.find(e[2], ARGV[1], 1, true) then
        local got = redis.call('XRANGE', key, e[1], e[1])[1]
        if got then n = n + works(got[2][2]) end
      end
    end
  end
end
return n
"""
)

_QUEUES = [f"surefetch:{{t}}:q:{p}" for p in range(16)]


async def wait_pending(
    server: RedisServer, pid: int | None, count: int, *, at_most: bool = False
) -> None:
    """Wait (20 s at most) until worker process ``pid`` has ``count`` URLs pending (in
    entries read, not acknowledged) over all the job's partitions (``at_most``: no
    more than ``count``)."""
    client = redis.Redis.from_url(server.url)
    try:
        deadline = time.monotonic() + 20
        while True:
            held = int(await client.eval(_PENDING_WORKS, len(_QUEUES), *_QUEUES, f"-{pid}-"))
            if held <= count if at_most else held >= count:
                return
            assert time.monotonic() < deadline, f"{held} URLs pending, not {count}, in 20 s"
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def wait_records(out: Path, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while lines_in(out) < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} records in {timeout} s"
        await asyncio.sleep(0.05)


def fetched_by(log: str) -> int:
    """The records a worker says it sent, from its last line."""
    line = log.strip().splitlines()[-1]
    assert line.startswith("surefetch worker: "), log
    return int(line.split()[2])


# -- end to end ---------------------------------------------------------------------


async def test_two_workers_fetch_every_url_once(
    tmp_path: Path, redis_server: RedisServer, site: Site, procs: Procs
) -> None:
    count = 3000
    urls = write_lines(tmp_path / "urls.txt", site.urls(count))
    out = tmp_path / "out.jsonl"
    workers = [await procs.worker(redis_server, f"w{k}") for k in range(2)]
    await wait_present(redis_server, 2)
    args = coordinator_args(redis_server, urls, out, "--status-every", "60", quiet=False)
    code, _, err = await surefetch(*args, timeout=60)
    assert code == 0, err
    assert "from 2 workers (" in err, err  # the summary says who did what
    got = one_each(out, count)
    assert all(r["status"] == 200 for r in got)
    for k, proc in enumerate(workers):  # the job is done: they exit on their own
        assert await wait_exit(proc, 15) == 0, procs.log(f"w{k}")
        assert "Traceback" not in procs.log(f"w{k}")
        assert fetched_by(procs.log(f"w{k}")) > count // 10  # both took part
    assert sum(site.hits.values()) == count  # and none was fetched twice


#: The URLs in the streams KEYS: waiting, held by workers, and not yet deleted.
_ENTRIES = (
    _WORKS
    + """
local n = 0
for _, key in ipairs(KEYS) do
  for _, e in ipairs(redis.call('XRANGE', key, '-', '+')) do n = n + works(e[2][2]) end
end
return n
"""
)

# URLs admitted to the streams KEYS and not yet handed to a worker (after the group's
# last-delivered id): what waits in Redis, whatever has been acknowledged.
_WAITING = (
    _WORKS
    + """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    for _, group in ipairs(redis.call('XINFO', 'GROUPS', key)) do
      for i = 1, #group, 2 do
        if group[i] == 'last-delivered-id' then
          for _, e in ipairs(redis.call('XRANGE', key, '(' .. group[i + 1], '+')) do
            n = n + works(e[2][2])
          end
        end
      end
    end
  end
end
return n
"""
)


async def test_the_window_holds_what_the_workers_need_not_the_input(
    tmp_path: Path, redis_server: RedisServer, site: Site, procs: Procs
) -> None:
    """With the default --window of 10,000 and 8,000 URLs, Redis does not take the whole
    input at once: one worker of 8 connections (it holds 1,024 URLs at most, what one
    engine holds ready) leaves at most its credit and a reserve of 512 waiting in the
    streams; and some do wait. The entries whose records are durable are deleted, so
    besides those the streams hold only the entries of records not durable yet (a batch
    filling, one committing)."""
    count = 8000
    urls = write_lines(tmp_path / "urls.txt", site.urls(count))
    out = tmp_path / "out.jsonl"
    await procs.worker(redis_server, "w0")
    await wait_present(redis_server, 1)
    client = redis.Redis.from_url(redis_server.url)
    queues = _QUEUES
    waiting: list[int] = []
    entries: list[int] = []

    async def sample() -> None:
        while True:
            waiting.append(int(await client.eval(_WAITING, len(queues), *queues)))
            entries.append(int(await client.eval(_ENTRIES, len(queues), *queues)))
            await asyncio.sleep(0.01)

    try:
        args = coordinator_args(redis_server, urls, out, "--concurrency", "8")
        async with asyncio.TaskGroup() as tg:
            sampler = tg.create_task(sample())
            code, _, err = await surefetch(*args, timeout=60)
            sampler.cancel()
    finally:
        await client.aclose()
    assert code == 0, err
    one_each(out, count)
    assert 100 < max(waiting) <= 1024 + 512, max(waiting)
    assert max(entries) <= 1024 + 512 + 2 * BATCH_RECORDS < count, max(entries)


async def test_sqlite_output_and_retry_failed_through_redis(
    tmp_path: Path, redis_server: RedisServer, site: Site, procs: Procs
) -> None:
    urls = write_lines(
        tmp_path / "urls.txt", [*site.urls(300), *(site.url(f"/gone/{i}") for i in range(5))]
    )
    out = tmp_path / "out.sqlite"
    for run, extra in enumerate(((), ("--retry-failed", "http_status"))):
        # Started after the first run is done, the second worker waits for the next.
        await procs.worker(redis_server, f"w{run}")
        args = coordinator_args(redis_server, urls, out, *extra)
        code, _, err = await surefetch(*args, timeout=60)
        assert code == 0, err
    with sqlite3.connect(out) as db:
        rows = db.execute("SELECT url, status FROM records").fetchall()
    assert len(rows) == len({url for url, _ in rows}) == 305
    assert sorted(status for _, status in rows)[-5:] == [404] * 5
    assert all(site.hits[f"/gone/{i}"] == 2 for i in range(5)), site.hits  # fetched again
    assert all(site.hits[f"/p/{i}"] == 1 for i in range(300))  # not again


async def test_one_coordinator_per_job(
    tmp_path: Path, redis_server: RedisServer, site: Site, procs: Procs
) -> None:
    """A second coordinator of a running job is one line and exit 2 (after waiting
    out a claim that a killed one might have left); the first finishes undisturbed."""
    count = 800
    urls = write_lines(tmp_path / "urls.txt", site.urls(count, "/s/"))
    out = tmp_path / "out.jsonl"
    args = coordinator_args(redis_server, urls, out, "--concurrency", "2")
    await procs.worker(redis_server, "w0")
    first = await procs.start(*args, name="c1")  # about 8 s: 100 URLs/s
    await wait_records(out, 50)
    code, _, err = await surefetch(*coordinator_args(redis_server, urls, tmp_path / "o2.jsonl"))
    assert code == 2, err
    assert err.strip() == (
        f"surefetch: error: job 't' has another coordinator running (at {redis_server.url});"
        " one at a time"
    ), err
    assert first.returncode is None  # it was refused while the first ran
    assert await wait_exit(first, 60) == 0, procs.log("c1")
    one_each(out, count)


# -- faults -------------------------------------------------------------------------


async def test_killed_workers_and_coordinator_lose_nothing(
    tmp_path: Path, redis_server: RedisServer, site: Site, procs: Procs
) -> None:
    """40,000 URLs, 3 workers: at random moments a worker is SIGKILLed (and another
    started), twice, and the coordinator once (and run again): exactly one record per
    URL, all ok."""
    count = 40_000
    seed = random.randrange(10**6)
    moments = sorted(random.Random(seed).sample(range(2_000, 30_000, 100), 3))
    urls = write_lines(tmp_path / "urls.txt", site.urls(count))
    out = tmp_path / "out.jsonl"
    args = coordinator_args(redis_server, urls, out, "--concurrency", "8")
    workers = {f"w{k}": await procs.worker(redis_server, f"w{k}") for k in range(3)}
    await wait_present(redis_server, 3)
    coordinator = await procs.start(*args, name="c1")
    for kill, at in enumerate(moments[:2]):
        await wait_records(out, at, timeout=60)
        victim = workers.pop(random.Random(seed + kill).choice(sorted(workers)))
        victim.kill()
        await wait_exit(victim, 10)
        workers[f"w{3 + kill}"] = await procs.worker(redis_server, f"w{3 + kill}")
    await wait_records(out, moments[2], timeout=60)
    coordinator.kill()
    await wait_exit(coordinator, 10)
    assert lines_in(out) < count, f"seed {seed}: it was killed mid-run"
    code, _, err = await surefetch(*args, timeout=120)
    assert code == 0, f"seed {seed}: {err}"
    got = one_each(out, count)
    assert all(r["status"] == 200 for r in got), f"seed {seed}"
    for name, proc in workers.items():
        assert await wait_exit(proc, 15) == 0, f"seed {seed}: {procs.log(name)}"
        assert "Traceback" not in procs.log(name), f"seed {seed}"


async def test_stopped_workers_and_coordinator_give_back_what_they_did_not_start(
    tmp_path: Path, redis_server: RedisServer, site: Site, procs: Procs
) -> None:
    """SIGTERM on a worker: it finishes what is in flight and hands back the rest (no
    delivery counted, so nothing waits for --lease); SIGINT on the coordinator: it
    stops, and a second run finishes the job."""
    count = 2000
    urls = write_lines(tmp_path / "urls.txt", site.urls(count, "/s/"))
    out = tmp_path / "out.jsonl"
    args = coordinator_args(redis_server, urls, out, "--concurrency", "6", "--lease", "30")
    workers = [await procs.worker(redis_server, f"w{k}") for k in range(2)]
    await wait_present(redis_server, 2)
    coordinator = await procs.start(*args, name="c1")
    await wait_records(out, 500)
    # The server holds what is in flight (6 a worker at most) while w0 reads its credit
    # full (44 entries) and what it sent becomes durable (acknowledged): at the SIGTERM
    # it holds entries it has not started, however slow this machine is.
    site.go.clear()
    await asyncio.sleep(0.5)
    await wait_pending(redis_server, workers[0].pid, 30)
    workers[0].send_signal(signal.SIGTERM)
    await asyncio.sleep(0.2)
    site.go.set()
    assert await wait_exit(workers[0], 15) == 143, procs.log("w0")
    handed_back = int(procs.log("w0").split(" handed back")[0].rsplit(" ", 1)[1])
    assert handed_back >= 30 - 6 - 6, procs.log("w0")  # some may start, or wait to be acked
    # The entries it read are acknowledged once their URLs' records are durable or the
    # coordinator heard they moved: none stays to be reclaimed after the 30 s lease.
    await wait_pending(redis_server, workers[0].pid, 0, at_most=True)
    await wait_records(out, 850)  # the other one carries on, with w0's partitions
    coordinator.send_signal(signal.SIGINT)
    assert await wait_exit(coordinator, 20) == 130, procs.log("c1")
    assert "interrupted" in procs.log("c1")
    assert lines_in(out) < count
    code, _, err = await surefetch(*args, timeout=60)
    assert code == 0, err
    got = one_each(out, count)
    assert all(r["status"] == 200 for r in got)
    assert await wait_exit(workers[1], 15) == 0, procs.log("w1")


async def test_a_worker_frozen_past_its_lease_repeats_nothing(
    tmp_path: Path, redis_server: RedisServer, site: Site, procs: Procs
) -> None:
    """SIGSTOP a worker for twice the lease: the other takes its partitions and
    reclaims its URLs; SIGCONT: it comes back to find them gone. One record each. The
    coordinator's status lines show the workers alive and gone, and its summary the
    URLs reclaimed, as many as the worker that reclaimed them says."""
    count = 2000
    urls = write_lines(tmp_path / "urls.txt", site.urls(count, "/s/"))
    out = tmp_path / "out.jsonl"
    args = coordinator_args(
        redis_server, urls, out, "--concurrency", "6", "--status-every", "0.25", quiet=False
    )
    workers = [await procs.worker(redis_server, f"w{k}") for k in range(2)]
    await wait_present(redis_server, 2)
    coordinator = await procs.start(*args, name="c")
    await wait_records(out, 500)
    workers[0].send_signal(signal.SIGSTOP)
    await asyncio.sleep(2 * float(LEASE) + 0.5)
    workers[0].send_signal(signal.SIGCONT)
    assert await wait_exit(coordinator, 60) == 0, procs.log("c")
    got = one_each(out, count)
    assert all(r["status"] == 200 for r in got)
    for k, proc in enumerate(workers):
        assert await wait_exit(proc, 15) == 0, procs.log(f"w{k}")
    said = procs.log("w1").split(" URLs reclaimed from workers gone")[0].rsplit(" ", 1)[1]
    assert int(said) > 0, procs.log("w1")
    names = [f"-{proc.pid}-" for proc in workers]
    lines = procs.log("c").splitlines()
    both = [line for line in lines if "; workers 2 alive: " in line]
    assert both and all(name in both[0] for name in names), lines
    assert any("; workers 1 alive: " in line and ", 1 gone" in line for line in lines), lines
    summary = next(line for line in lines if line.startswith("surefetch: 2000 records"))
    assert f"; {said} URLs reclaimed from workers gone" in summary, summary


async def test_redis_restarted_without_its_data_loses_nothing(
    tmp_path: Path, redis_server: RedisServer, site: Site, procs: Procs
) -> None:
    count = 2000
    urls = write_lines(tmp_path / "urls.txt", site.urls(count, "/s/"))
    out = tmp_path / "out.jsonl"
    args = coordinator_args(redis_server, urls, out, "--concurrency", "8")
    workers = [await procs.worker(redis_server, f"w{k}") for k in range(2)]
    await wait_present(redis_server, 2)
    coordinator = await procs.start(*args, name="c")
    await wait_records(out, 600)
    redis_server.stop()  # SIGKILL: no persistence, so all of the job's keys are gone
    await asyncio.sleep(0.5)
    redis_server.start()
    assert await wait_exit(coordinator, 60) == 0, procs.log("c")
    got = one_each(out, count)
    assert all(r["status"] == 200 for r in got)
    assert "admitting the outstanding URLs again" in procs.log("c")
    for k, proc in enumerate(workers):
        assert await wait_exit(proc, 15) == 0, procs.log(f"w{k}")


async def test_a_url_that_kills_every_worker_ends_as_worker_lost(
    tmp_path: Path, redis_server: RedisServer, site: Site, procs: Procs
) -> None:
    """/hang holds each worker until it is SIGKILLed: with --max-deliveries 2, the
    third hand-out is a worker_lost record instead; the other URLs are fetched."""
    ok = site.urls(20)
    urls = write_lines(tmp_path / "urls.txt", [*ok, site.url("/hang")])
    out = tmp_path / "out.jsonl"
    args = coordinator_args(
        redis_server,
        urls,
        out,
        "--max-deliveries",
        "2",
        "--timeout",
        "120",
        "--read-timeout",
        "120",
    )
    coordinator = await procs.start(*args, name="c")
    for k in range(2):
        worker = await procs.worker(redis_server, f"w{k}")
        deadline = time.monotonic() + 20
        while site.hits["/hang"] < k + 1:
            assert time.monotonic() < deadline, procs.log(f"w{k}")
            await asyncio.sleep(0.05)
        await wait_records(out, 20)  # the others are done: only /hang is held
        await asyncio.sleep(0.3)
        worker.kill()
        await wait_exit(worker)
    last = await procs.worker(redis_server, "w2")
    assert await wait_exit(coordinator, 30) == 0, procs.log("c")
    got = {r["url"]: r for r in one_each(out, 21)}
    lost = got[site.url("/hang")]
    assert lost["error"]["kind"] == "worker_lost", lost
    assert "2 times" in lost["error"]["message"]
    assert all(got[u]["status"] == 200 for u in ok)
    assert site.hits["/hang"] == 2
    assert await wait_exit(last, 15) == 0
    assert "1 worker_lost" in procs.log("w2")


# -- politeness ---------------------------------------------------------------------


async def test_a_host_rate_holds_over_three_workers(
    tmp_path: Path, redis_server: RedisServer, procs: Procs
) -> None:
    """One host that answers 429 to more than 300 requests a second; --rate 300/s;
    3 workers, 6,000 URLs: under 2 % 429s, and at least 85 % of the rate used."""
    rate = 300
    hits: Counter[str] = Counter()
    times: list[float] = []
    runner, port = await start_app(site_app(hits, times, rate=rate))
    try:
        count = 6000
        urls = write_lines(
            tmp_path / "urls.txt", [f"http://127.0.0.1:{port}/p/{i}" for i in range(count)]
        )
        out = tmp_path / "out.jsonl"
        for k in range(3):
            await procs.worker(redis_server, f"w{k}")
        await wait_present(redis_server, 3)
        args = coordinator_args(redis_server, urls, out, "--rate", f"{rate}/s")
        code, _, err = await surefetch(*args, timeout=60)
    finally:
        await runner.cleanup()
    assert code == 0, err
    got = one_each(out, count)
    assert all(r["status"] == 200 for r in got)
    sent = len(times)
    assert hits["429"] < 0.02 * sent, (hits["429"], sent)
    used = (sent - 1) / (times[-1] - times[0])
    gap = max(b - a for a, b in itertools.pairwise(times))
    assert used >= 0.85 * rate, f"{used:.1f}/s used; the longest pause {gap:.3f} s"
    # Each request also passed the host's rate gate in Redis (a script call each).
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert (await client.info("commandstats"))["cmdstat_evalsha"]["calls"] >= count
    finally:
        await client.aclose()


async def test_a_shared_host_is_spread_over_workers_until_it_pushes_back(
    tmp_path: Path, redis_server: RedisServer, procs: Procs
) -> None:
    """One host without a rate, 2 workers: both fetch it (its URLs spread over two
    lanes) until it answers a 429; then it has one owner, and the other worker moves
    what it held of it there: after the next heartbeats every request comes from one
    worker. One record per URL; only the one 429."""
    count = 1200
    arrivals: list[tuple[float, int]] = []  # (time, the client's port)
    pushed_back: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        arrivals.append((time.monotonic(), peer[1] if peer else 0))
        if len(arrivals) == 200:
            pushed_back.append(time.monotonic())
            return web.Response(status=429)
        await asyncio.sleep(0.02)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{n}", handle)
    runner, port = await start_app(app)
    ports: dict[int, int] = {}  # the client's port -> which worker

    async def whose_ports(pids: list[int]) -> None:
        while True:
            for k, pid in enumerate(pids):
                with contextlib.suppress(psutil.Error):
                    for conn in psutil.Process(pid).net_connections("tcp"):
                        if conn.raddr and conn.raddr.port == port:
                            ports[conn.laddr.port] = k
            await asyncio.sleep(0.01)

    try:
        urls = write_lines(
            tmp_path / "urls.txt", [f"http://127.0.0.1:{port}/{i}" for i in range(count)]
        )
        out = tmp_path / "out.jsonl"
        workers = [await procs.worker(redis_server, f"w{k}") for k in range(2)]
        await wait_present(redis_server, 2)
        args = coordinator_args(
            redis_server, urls, out, "--concurrency", "8", "--per-host", "8", "--no-adaptive",
            "--retries", "0",
        )  # fmt: skip
        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(whose_ports([w.pid for w in workers]))
            code, _, err = await surefetch(*args, timeout=60)
            watcher.cancel()
    finally:
        await runner.cleanup()
    assert code == 0, err
    statuses = Counter(r["status"] for r in one_each(out, count))
    assert statuses == {200: count - 1, 429: 1}, statuses
    assert len(pushed_back) == 1
    before = {ports.get(p) for t, p in arrivals if t < pushed_back[0]}
    after = {ports.get(p) for t, p in arrivals if t > pushed_back[0] + 2.0}
    assert before == {0, 1}, before  # shared
    assert len(after) == 1 and None not in after, after  # one owner
    assert len([t for t, _ in arrivals if t > pushed_back[0] + 2.0]) > 100


async def test_a_shared_hosts_urls_take_its_lanes_in_turn_whatever_the_input_order(
    redis_server: RedisServer,
) -> None:
    """An input that goes round 12 hosts in order, 2 lanes a host: each host's URLs
    alternate between its two lanes. (Chosen by the URL's number, every URL of a host
    went to one lane, as 12 is even: half the workers could wait for the other half.)"""
    async with Client(limits=Limits(concurrency=12, per_host=8)) as client:
        config = _config(client, 1, 2, False, None, "asyncio", Politeness(), False)
    client_redis = redis.Redis.from_url(redis_server.url)
    try:
        settings = Distributed(redis_server.url, job="t")
        coordinator = _Coordinator(client_redis, settings, config, _no_emit, Stats(), int)
        coordinator.share = 2
        hosts = [f"h{k}.test:80" for k in range(12)]
        taken: dict[str, Counter[int]] = {host: Counter() for host in hosts}
        for n in range(1200):
            host = hosts[n % len(hosts)]
            taken[host][coordinator.partition_for(host, host.split(":")[0])] += 1
    finally:
        await client_redis.aclose()
    for host, lanes in taken.items():
        assert set(lanes) == set(lanes_of(host, settings.partitions, 2)), (host, lanes)
        assert sorted(lanes.values()) == [50, 50], (host, lanes)


async def _no_emit(record: object) -> None:
    raise AssertionError(f"nothing is emitted here: {record}")


def _record(url: str) -> Record:
    return Record(
        url=url, final_url=url, ok=True, status=200, error=None, attempts=1, redirects=0,
        elapsed_ms=1.0, bytes=0, content_type=None, fetched_at="2026-12-02T00:00:00Z",
    )  # fmt: skip


async def test_an_entry_is_acknowledged_once_each_of_its_urls_has_a_record_or_moved(
    redis_server: RedisServer,
) -> None:
    """An entry of 3 URLs: one recorded, one moved (handed back unstarted), a second
    record of the first (from a worker that was only slow): nothing to acknowledge yet,
    one record written. The third's record completes it: acknowledged once the 2
    records written are durable, and they count towards the window until then. The
    moved URL's record comes in its new entry, which is acknowledged on its own."""
    async with Client() as client:
        config = _config(client, 1, 1, False, None, "asyncio", Politeness(), False)
    written: list[Record] = []

    async def emit(record: Record) -> None:
        written.append(record)

    client_redis = redis.Redis.from_url(redis_server.url)
    try:
        settings = Distributed(redis_server.url, job="t")
        coordinator = _Coordinator(client_redis, settings, config, emit, Stats(), int)
    finally:
        await client_redis.aclose()
    coordinator.epoch = "e1"
    urls = [f"http://h.test/{n}" for n in range(3)]
    for n, url in enumerate(urls):
        coordinator.outstanding[n] = _Pending(0, wire_item(Item(url)), "h.test:80", "h.test")

    async def take(*done: Done, epoch: str = "e1") -> None:
        await coordinator._take(Results(epoch, "vm-1-ab12-1", list(done)))

    await take(Done(0, "5-1", 0, 3, _record(urls[0])), Done(0, "5-1", 1, 3, None))
    await take(Done(0, "5-1", 0, 3, _record(urls[0])))
    await take(Done(0, "5-1", 2, 3, _record(urls[2])), epoch="e0")  # another epoch's
    assert [r.url for r in written] == [urls[0]]
    assert (list(coordinator.to_ack), coordinator.unacked) == ([], 1)
    assert sorted(coordinator.outstanding) == [1, 2]
    await take(Done(0, "5-1", 2, 3, _record(urls[2])))
    assert list(coordinator.to_ack) == [(2, 0, "5-1", 2)]
    assert coordinator.unacked == 2
    await take(Done(7, "6-1", 1, 1, _record(urls[1])))
    assert list(coordinator.to_ack) == [(2, 0, "5-1", 2), (3, 7, "6-1", 1)]
    assert [r.url for r in written] == [urls[0], urls[2], urls[1]]
    assert (coordinator.outstanding, coordinator.unacked, coordinator.entries) == ({}, 3, {})


async def test_a_session_of_an_epoch_gone_reads_nothing_of_the_new_one(
    redis_server: RedisServer,
) -> None:
    """A worker's session still in the epoch before (the job's run before, or before
    Redis was lost) takes no entry of the new epoch, new or reclaimed: it is told the
    epoch is over (-2) and the entries stay for the new sessions. (It once read a new
    run's URLs in the moment before its heartbeat saw the new epoch: the coordinator
    ignored its records, and another worker fetched them again a lease later.)"""
    client = redis.Redis.from_url(redis_server.url)
    meta, queue = "surefetch:{t}:meta", "surefetch:{t}:q:0"
    entry = b"\x91\xc0"  # a msgpack array of one (the read script counts the URLs)
    try:
        read, reclaim = client.register_script(_READ), client.register_script(_RECLAIM)
        await client.hset(meta, "epoch", "new")
        await client.xgroup_create(queue, "w", id="0", mkstream=True)
        first = (await client.xadd(queue, {"w": entry})).decode()
        assert await read(keys=[meta, queue], args=["w", "old-session", 8, "old", 0]) == [-2]
        assert await client.xpending(queue, "w") == {
            "pending": 0, "min": None, "max": None, "consumers": [],
        }  # fmt: skip
        got = await read(keys=[meta, queue], args=["w", "new-session", 8, "new", 0])
        assert got == [1, first.encode(), entry]
        assert await reclaim(keys=[meta, queue], args=["w", "old-session", 0, 8, "old"]) == [-2]
        pending = await client.xpending_range(queue, "w", "-", "+", 8)
        assert [p["consumer"] for p in pending] == [b"new-session"]
        got = await reclaim(keys=[meta, queue], args=["w", "other", 0, 8, "new"])
        assert got == [first.encode(), entry, 2]
    finally:
        await client.aclose()


async def test_a_read_takes_from_the_partition_held_least(redis_server: RedisServer) -> None:
    """The read script takes each entry from the partition whose URLs the worker holds
    the fewest of (counting what it just read, by each entry's msgpack header), so a
    slow host's URLs held cannot take up the credit the others need."""
    client = redis.Redis.from_url(redis_server.url)
    meta, queues = "surefetch:{t}:meta", ["surefetch:{t}:q:0", "surefetch:{t}:q:1"]
    three = b"\x93\xc0\xc0\xc0"  # an entry of 3 URLs
    try:
        read = client.register_script(_READ)
        await client.hset(meta, "epoch", "e")
        for queue in queues:
            await client.xgroup_create(queue, "w", id="0", mkstream=True)
            for _ in range(3):
                await client.xadd(queue, {"w": three})
        # Held: 5 of partition 0, none of 1: two entries of 1 (3, then 6 held), then 0.
        got = await read(keys=[meta, *queues], args=["w", "c", 3, "e", 5, 0])
        assert got[0::3] == [2, 2, 1]
    finally:
        await client.aclose()


async def test_a_partition_is_released_only_once_nothing_of_it_is_pending(
    redis_server: RedisServer,
) -> None:
    """A worker gives up a partition only once no entry it read from it is pending (an
    entry whose records were sent waits for the coordinator's acknowledgement; a new
    owner would reclaim it once idle for a lease and fetch its URLs again); leaving,
    it gives it up at once; and never one it does not own."""
    client = redis.Redis.from_url(redis_server.url)
    owners, queue = "surefetch:{t}:owners", "surefetch:{t}:q:3"
    try:
        release = client.register_script(_RELEASE)
        await client.xgroup_create(queue, "w", id="0", mkstream=True)
        entry = await client.xadd(queue, {"w": b"\x91\xc0"})
        await client.xreadgroup("w", "w1", {queue: ">"})  # pending for w1
        await client.hset(owners, "3", "w1 99999999999999")

        async def give_up(worker: str, how: str = "") -> int:
            return int(await release(keys=[owners, queue], args=[worker, 3, how, "w"]))

        assert await give_up("w2") == 0  # not its own
        assert await give_up("w1") == 0  # an entry of it still pending
        assert await client.hget(owners, "3") == b"w1 99999999999999"
        await client.xack(queue, "w", entry)
        assert await give_up("w1") == 1
        assert await client.hget(owners, "3") is None
        await client.hset(owners, "3", "w1 99999999999999")
        await client.xadd(queue, {"w": b"\x91\xc0"})
        await client.xreadgroup("w", "w1", {queue: ">"})
        assert await give_up("w1", "leaving") == 1  # leaving: at once
        assert await client.hget(owners, "3") is None
    finally:
        await client.aclose()


async def test_the_rate_gate_holds_a_rate_over_many_clients(redis_server: RedisServer) -> None:
    """The GCRA script alone: 4 clients that ask as fast as they can for 1.5 s get
    50 requests a second between them (plus the one early request it allows)."""
    client = redis.Redis.from_url(redis_server.url)
    gate = client.register_script(RATE_GATE)
    allowed: list[float] = []

    async def ask() -> None:
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            wait = float(await gate(keys=["surefetch:{t}:rate:h:80"], args=[20.0, 20.0]))
            if wait <= 0:
                allowed.append(time.monotonic())  # when the answer came
            else:
                await asyncio.sleep(wait / 1000)

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(4):
                tg.create_task(ask())
    finally:
        await client.aclose()
    assert 72 <= len(allowed) <= 78, len(allowed)  # 1.5 s at 50/s, + 1 early
    allowed.sort()
    # No burst: after the early one, the k-th allowed request comes no sooner than k
    # intervals of 20 ms after the first, less the gate's tolerance (20 ms) and 20 ms
    # for when this loop happened to read that first answer (two answers may be read
    # in one turn of it, so the gap between two says nothing on its own).
    first = allowed[1]
    early = [k for k, t in enumerate(allowed[1:]) if t - first < k * 0.020 - 0.040]
    assert not early, f"a burst: requests {early[:5]} came early"


async def test_one_admission_argument_carries_entries_of_any_size_to_any_partition(
    redis_server: RedisServer,
) -> None:
    """The admission script unpacks its one argument: each payload (empty, binary,
    larger than 64 kB) lands whole in its partition's stream, in order, for partitions
    past what one byte counts."""
    client = redis.Redis.from_url(redis_server.url)
    keys = [f"surefetch:{{t}}:q:{p}" for p in range(300)]
    entries = [(299, b""), (0, bytes(range(256)) * 400), (257, b"\x00a"), (0, b"last")]
    try:
        admit = client.register_script(_ADMIT)
        assert await admit(keys=keys, args=[admission_blob(entries)]) == len(entries)
        got = {p: await client.xrange(keys[p]) for p in (0, 257, 299)}
    finally:
        await client.aclose()
    payloads = {p: [fields[b"w"] for _, fields in got[p]] for p in got}
    assert payloads == {0: [entries[1][1], b"last"], 257: [b"\x00a"], 299: [b""]}


async def test_acknowledging_removes_exactly_the_entries_acknowledged(
    redis_server: RedisServer,
) -> None:
    """The coordinator's acknowledgement trims a partition's stream below what is still
    pending and deletes the rest one by one: the entries acknowledged go, whatever order
    their records came in; a straggler still pending, and entries not yet delivered,
    stay whole (ids cross a digit, 5-9 < 5-10, and a millisecond)."""
    ids = [f"5-{k}" for k in range(1, 25)] + [f"6-{k}" for k in range(1, 17)]
    delivered, waiting = ids[:30], ids[30:]
    stragglers = {ids[3], ids[20]}
    async with Client() as client:
        config = _config(client, 1, 1, False, None, "asyncio", Politeness(), False)
    client_redis = redis.Redis.from_url(redis_server.url)
    try:
        coordinator = _Coordinator(
            client_redis, Distributed(redis_server.url, job="t"), config, _no_emit, Stats(),
            lambda: 10**9,
        )  # fmt: skip
        key = coordinator.keys.queue(0)
        await client_redis.xgroup_create(key, "w", id="0", mkstream=True)
        for entry in ids:
            await client_redis.xadd(key, {"w": f"payload {entry}"}, id=entry)
        await client_redis.xreadgroup("w", "c", {key: ">"}, count=len(delivered))

        async def ack_and_look(entries: list[str]) -> tuple[list[str], list[str]]:
            coordinator.to_ack.extend((0, 0, entry, 0) for entry in entries)
            await coordinator.ack()
            left = await client_redis.xrange(key)
            for entry_id, fields in left:  # what stays is whole
                assert fields == {b"w": b"payload " + entry_id}
            pending = await client_redis.xpending_range(key, "w", "-", "+", 100)
            return [e.decode() for e, _ in left], [p["message_id"].decode() for p in pending]

        first = [e for e in delivered if e not in stragglers]
        first = first[1::2] + first[::2]  # records come in any order
        left, pending = await ack_and_look(first)
        assert left == sorted(stragglers, key=ids.index) + waiting
        assert set(pending) == stragglers
        left, pending = await ack_and_look(sorted(stragglers))
        assert (left, pending) == (waiting, [])
    finally:
        await client_redis.aclose()


# -- bad input ----------------------------------------------------------------------


async def test_an_unreachable_redis_is_one_line_and_exit_2(tmp_path: Path) -> None:
    urls = write_lines(tmp_path / "urls.txt", ["http://127.0.0.1:9/x"])
    dead = f"redis://127.0.0.1:{free_port()}/0"
    for args in (
        ["fetch", str(urls), "-o", str(tmp_path / "o.jsonl"), "--redis", dead],
        ["worker", "--redis", dead],
    ):
        code, _, err = await surefetch(*args, timeout=30)
        assert code == 2, err
        assert err.strip().count("\n") == 0 and "Traceback" not in err, err
        assert err.startswith("surefetch: error: cannot reach Redis at"), err


async def test_a_bad_redis_url_is_one_usage_line(tmp_path: Path) -> None:
    urls = write_lines(tmp_path / "urls.txt", ["http://127.0.0.1:9/x"])
    for args in (
        ["fetch", str(urls), "-o", str(tmp_path / "o.jsonl"), "--redis", "http://x"],
        ["worker", "--redis", "redis://127.0.0.1:notaport/0"],
        ["worker", "--redis", "redis://127.0.0.1:6379/0", "--job", "a{b}"],
    ):
        code, _, err = await surefetch(*args, timeout=30)
        assert code == 2, err
        assert err.strip().count("\n") == 0 and "Traceback" not in err, err
