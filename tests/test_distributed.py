"""Distributed mode: a coordinator (`fetch --redis`) and worker processes (`surefetch
worker`) through a real redis-server on 127.0.0.1, started here on a free port without
persistence. Workers and the coordinator are killed and restarted, and Redis itself is
restarted mid-run: every URL still gets exactly one record."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

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
pytest.importorskip("redis", reason="redis-py is not installed (pip install 'surefetch[redis]')")

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

    def url(self, path: str, k: int = 0) -> str:
        port = self.ports[k % len(self.ports)]
        return f"http://{HOSTS[k // len(self.ports) % len(HOSTS)]}:{port}{path}"

    def urls(self, count: int) -> list[str]:
        return [self.url(f"/p/{i}", i) for i in range(count)]


def site_app(hits: Counter[str], times: list[float], rate: float | None = None) -> web.Application:
    """/p/N answers ok (after 5 ms); /hang never answers; with ``rate``, more than
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
        await asyncio.sleep(0.005)
        return web.Response(text=f"ok {request.path}")

    async def hang(request: web.Request) -> web.Response:
        hits[request.path] += 1
        await asyncio.sleep(3600)
        return web.Response(text="never")

    app = web.Application()
    app.router.add_get("/p/{n}", page)
    app.router.add_get("/hang", hang)
    return app


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    hits: Counter[str] = Counter()
    times: list[float] = []
    started = [await start_app(site_app(hits, times), HOSTS) for _ in range(4)]
    yield Site([port for _, port in started], hits, times)
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


def coordinator_args(redis: RedisServer, urls: Path, out: Path, *extra: str) -> list[str]:
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
        "-q",
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
    code, _, err = await surefetch(*coordinator_args(redis_server, urls, out), timeout=60)
    assert code == 0, err
    got = one_each(out, count)
    assert all(r["status"] == 200 for r in got)
    for k, proc in enumerate(workers):  # the job is done: they exit on their own
        assert await wait_exit(proc, 15) == 0, procs.log(f"w{k}")
        assert "Traceback" not in procs.log(f"w{k}")
        assert fetched_by(procs.log(f"w{k}")) > count // 10  # both took part
    assert sum(site.hits.values()) == count  # and none was fetched twice
