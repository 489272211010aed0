"""Connections at scale: a request that meets a pooled connection the server had already
closed is sent again at once on another, and is not an attempt (a request that fails
on a fresh connection is one); idle connections are bounded; a low open-files limit
lowers the concurrency instead of failing URLs."""

from __future__ import annotations

import asyncio
import collections
import errno
import random
import resource
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import pytest
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey

import surefetch._tune
from surefetch import Client, Limits, RetryPolicy
from surefetch._tune import IDLE_CONNECTIONS, SPARE_FILES, idle_connections
from surefetch.errors import ConnectFailedError, ServerDisconnectedError, classify

from .conftest import HOSTS, Server
from .faults import _reset, _Server
from .helpers import SUREFETCH, records, write_lines

pytestmark = pytest.mark.usefixtures("transport")

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class KeepAliveServer(_Server):
    """Answers the first request of each connection and keeps the connection open; the
    next request on it is read and then dropped unanswered (``close``: FIN, ``reset``:
    RST), as when a server closes an idle connection just as the client sends on it.
    ``fresh``: every connection is dropped at its first request."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        #: Requests read, and those answered.
        self.requests = 0
        self.answered = 0

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode != "fresh":
            await self._read_head(reader)
            self.requests += 1
            writer.write(OK)
            await writer.drain()
            self.answered += 1
        await self._read_head(reader)
        self.requests += 1
        if self.mode == "reset":
            _reset(writer)
        else:
            await self._close(writer)


@pytest.fixture(params=["close", "reset"])
async def stale_server(request: pytest.FixtureRequest) -> AsyncIterator[KeepAliveServer]:
    server = KeepAliveServer(request.param)
    await server.start()
    yield server
    await server.aclose()


def one_at_a_time(retries: int) -> Client:
    return Client(limits=Limits(concurrency=1, per_host=1), retry=RetryPolicy(retries=retries))


async def test_a_stale_pooled_connection_is_not_an_attempt(stale_server: KeepAliveServer) -> None:
    urls = [f"http://127.0.0.1:{stale_server.port}/{n}" for n in range(10)]
    async with one_at_a_time(0) as client:
        records = [r async for r in client.fetch_many(urls)]
    assert [(r.ok, r.attempts) for r in records] == [(True, 1)] * 10
    # Every URL after the first met a dropped pooled connection, then a fresh one.
    assert stale_server.answered == 10 and stale_server.requests == 19
    assert stale_server.connections == 10


async def test_a_failure_on_a_fresh_connection_is_an_attempt() -> None:
    server = KeepAliveServer("fresh")
    await server.start()
    url = f"http://127.0.0.1:{server.port}/x"
    try:
        async with one_at_a_time(0) as client:
            with pytest.raises(ServerDisconnectedError) as caught:
                await client.get(url)
        assert caught.value.attempts == 1 and server.requests == 1
        async with one_at_a_time(2) as client:
            with pytest.raises(ServerDisconnectedError) as caught:
                await client.get(url)
        assert caught.value.attempts == 3 and server.requests == 4
    finally:
        await server.aclose()


async def test_post_on_a_stale_connection_is_not_sent_again() -> None:
    """A POST may have taken effect: the one that met the dropped connection fails as an
    attempt (retries are off for POST), it is never sent twice behind the user's back."""
    server = KeepAliveServer("close")
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with one_at_a_time(0) as client:
            first = await client.request("POST", f"{base}/a", data=b"1")
            with pytest.raises(ServerDisconnectedError) as caught:
                await client.request("POST", f"{base}/b", data=b"2")
        assert first.status == 200 and caught.value.attempts == 1
        assert server.requests == 2
    finally:
        await server.aclose()


async def _many_ports(runner: web.AppRunner, count: int) -> list[int]:
    """``count`` listening ports of one app: as many hosts to the client's pool."""
    ports = []
    for _ in range(count):
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    return ports


@dataclass
class ThirtyHosts:
    """What a run over 30 hosts left: the connections the server saw, the ones still
    open to it at the run's end, and the lean pool's idle count and idle connections
    ((0, 0) through aiohttp)."""

    peers: set[object]
    held: int
    counted: tuple[int, int]


async def fetch_thirty_hosts() -> ThirtyHosts:
    """30 hosts (ports) x 4 URLs, shuffled, at concurrency 8 and 2 per host: every
    URL ends ok."""
    peers: set[object] = set()

    async def page(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        await asyncio.sleep(0.01)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{n}", page)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        ports = await _many_ports(runner, 30)
        urls = [f"http://127.0.0.1:{port}/{n}" for port in ports for n in range(4)]
        random.Random(7).shuffle(urls)
        async with Client(limits=Limits(concurrency=8, per_host=2)) as client:
            got = [r async for r in client.fetch_many(urls)]
            run = ThirtyHosts(peers, _held(ports), _counted(client))
    finally:
        await runner.cleanup()
    assert len(got) == 120 and all(r.ok for r in got)
    return run


def _counted(client: Client) -> tuple[int, int]:
    """The lean pool's count of its idle connections (what it evicts by), and how many
    it holds; (0, 0) through aiohttp."""
    pool = client._fast.pool if client._fast is not None else None
    return (pool.idle_count, sum(map(len, pool.idle.values()))) if pool else (0, 0)


def _held(ports: list[int]) -> int:
    return sum(
        1
        for c in psutil.Process().net_connections("tcp")
        if c.raddr and c.raddr.port in ports and c.status == psutil.CONN_ESTABLISHED
    )


async def test_idle_connections_are_kept_for_many_hosts() -> None:
    """Concurrency 8, 2 per host, 30 hosts in a shuffled order: a host's next URL finds
    its connection idle in the pool, however many other hosts came in between (idle
    connections are not closed for only ``8 // 2`` hosts' sake)."""
    run = await fetch_thirty_hosts()
    assert len(run.peers) <= 2 * 30, len(run.peers)  # at most per_host new ones per host
    assert run.held >= 30, run.held
    assert run.counted[0] == run.counted[1], run.counted


async def test_idle_connections_are_bounded_in_total(monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for 8 idle connections (IDLE_CONNECTIONS, never below the
    concurrency), 30 hosts leave at most 8 open: the oldest hosts' go first, so the
    sockets held do not grow with the hosts seen."""
    monkeypatch.setattr(surefetch._tune, "IDLE_CONNECTIONS", 1)
    run = await fetch_thirty_hosts()
    assert run.held <= 8, run.held
    assert run.counted[0] == run.counted[1] <= 8, run.counted
    assert len(run.peers) > 2 * 30  # and so hosts whose connections went dial again


def test_idle_connections_fit_the_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        assert idle_connections(100) == 1024 - SPARE_FILES - 100
        assert idle_connections(600) == 600  # never fewer than the requests in flight
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20_000), hard))
        assert idle_connections(100) == min(IDLE_CONNECTIONS, min(hard, 20_000) - 164)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_out_of_open_files_is_a_retried_connect_error_that_says_so() -> None:
    key = ConnectionKey("127.0.0.1", 8080, False, True, None, None, None)
    for exc in (
        aiohttp.ClientConnectorError(key, OSError(errno.EMFILE, "Too many open files")),
        OSError(errno.ENFILE, "Too many open files in system"),
    ):
        error = classify(exc)
        assert type(error) is ConnectFailedError and error.transient
        assert "too many open files: the open-files limit (ulimit -n) is reached" in error.message


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_run_under_a_low_open_files_limit_gets_every_record(
    slow_server: Server, tmp_path: Path, workers: str
) -> None:
    """ulimit -n 256 and --concurrency 1000: the concurrency is lowered to what the
    limit holds, with one warning, and every URL gets its record."""
    urls = [slow_server.url(f"/p/{i}", host) for i in range(700) for host in HOSTS]
    src = write_lines(tmp_path / "in.txt", urls)
    out = tmp_path / "out.jsonl"

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    proc = await asyncio.create_subprocess_exec(
        *SUREFETCH,
        "fetch",
        str(src),
        "-o",
        str(out),
        "--concurrency",
        "1000",
        "--per-host",
        "1000",
        "--workers",
        workers,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=low_limit,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    text = err.decode()
    assert proc.returncode == 0, text
    most = int(workers) * (256 - 64) // 2
    assert (
        "surefetch: warning: the open-files limit is 256 per process: --concurrency lowered"
        f" from 1000 to {most} (raise the limit with ulimit -n)" in text
    )
    got = records(out)
    assert len(got) == 2100 and all(r["ok"] for r in got), collections.Counter(
        r["error"]["kind"] for r in got if r["error"]
    )
