"""Fixtures: real servers on 127.0.0.1, started and stopped by each test."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

pytest_plugins = ["tests.faults"]

#: The transports a module that asks for the ``transport`` fixture runs its tests over.
TRANSPORTS = ["aiohttp", "auto"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test over each transport: every request through aiohttp, and ``auto``
    (GET/HEAD through the lean transport): Clients made without one, and
    the command (``SUREFETCH_TRANSPORT``) in processes the test starts."""
    import surefetch.client

    monkeypatch.setattr(surefetch.client, "DEFAULT_TRANSPORT", request.param)
    monkeypatch.setenv("SUREFETCH_TRANSPORT", request.param)
    return str(request.param)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``aiohttp_only`` run over the aiohttp transport only."""
    items[:] = [
        item
        for item in items
        if not (
            item.get_closest_marker("aiohttp_only")
            and getattr(getattr(item, "callspec", None), "params", {}).get("transport") == "auto"
        )
    ]


@dataclass
class Tracker:
    """What a test server saw: requests per path and concurrency per host."""

    hits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    inflight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    peak: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    total_inflight: int = 0
    total_peak: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    #: When each request arrived (time.monotonic()).
    times: list[float] = field(default_factory=list)

    def busiest_second(self) -> int:
        """The most requests that arrived within any one second."""
        times = sorted(self.times)
        best = start = 0
        for end, t in enumerate(times):
            while t - times[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best


def make_app(tracker: Tracker, delay: float = 0.0) -> web.Application:
    """A well-behaved app; ``delay`` seconds of latency on /ok and /p/*."""

    @web.middleware
    async def track(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        host = request.host
        tracker.hits[request.path_qs] += 1
        tracker.times.append(time.monotonic())
        tracker.inflight[host] += 1
        tracker.total_inflight += 1
        tracker.peak[host] = max(tracker.peak[host], tracker.inflight[host])
        tracker.total_peak = max(tracker.total_peak, tracker.total_inflight)
        try:
            return await handler(request)
        finally:
            tracker.inflight[host] -= 1
            tracker.total_inflight -= 1

    async def ok(request: web.Request) -> web.Response:
        if delay:
            await asyncio.sleep(delay)
        return web.Response(text=f"ok {request.path_qs}")

    async def sleep(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.match_info["seconds"]))
        return web.Response(text="slept")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status")

    async def echo_headers(request: web.Request) -> web.Response:
        tracker.headers.append(dict(request.headers))
        return web.json_response(dict(request.headers))

    async def redirect(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n <= 0:
            return web.Response(text="landed")
        raise web.HTTPFound(f"/redirect/{n - 1}")

    async def flaky(request: web.Request) -> web.Response:
        """Fails ``n`` times with ``code`` (optionally with Retry-After), then 200."""
        key = request.match_info["key"]
        failures = int(request.query.get("n", "2"))
        code = int(request.query.get("code", "503"))
        seen = tracker.hits[request.path_qs]
        if seen <= failures:
            headers = {}
            if "after" in request.query:
                headers["Retry-After"] = request.query["after"]
            return web.Response(status=code, text=f"fail {seen}", headers=headers)
        return web.Response(text=f"recovered {key}")

    async def gzipped(request: web.Request) -> web.Response:
        size = int(request.query.get("size", "1000"))
        body = gzip.compress(b"a" * size)
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"}
        )

    async def latin1(request: web.Request) -> web.Response:
        return web.Response(
            body="café".encode("latin-1"), headers={"Content-Type": "text/plain; charset=latin-1"}
        )

    async def binary(request: web.Request) -> web.Response:
        return web.Response(body=bytes(range(256)), content_type="application/octet-stream")

    app = web.Application(middlewares=[track])
    app.router.add_get("/ok", ok)
    app.router.add_get("/p/{tail:.*}", ok)
    app.router.add_get("/sleep/{seconds}", sleep)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/headers", echo_headers)
    app.router.add_get("/redirect/{n}", redirect)
    app.router.add_get("/flaky/{key}", flaky)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/latin1", latin1)
    app.router.add_get("/binary", binary)
    return app


@dataclass
class Server:
    base: str
    port: int
    tracker: Tracker

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


async def start_app(
    app: web.Application, hosts: tuple[str, ...] = HOSTS[:1]
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on one port at each loopback address in ``hosts``."""
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, handler_cancellation=True, shutdown_timeout=1
    )
    await runner.setup()
    site = web.TCPSite(runner, hosts[0], 0)
    await site.start()
    port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    for host in hosts[1:]:
        await web.TCPSite(runner, host, port).start()
    return runner, port


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """A well-behaved aiohttp.web server on 127.0.0.1."""
    tracker = Tracker()
    runner, port = await start_app(make_app(tracker))
    yield Server(f"http://127.0.0.1:{port}", port, tracker)
    await runner.cleanup()


@pytest.fixture
async def slow_server() -> AsyncIterator[Server]:
    """Like ``server``, but /ok and /p/* take 50 ms, so concurrency is visible; served
    on one port at 127.0.0.1, 127.0.0.2 and 127.0.0.3: three hosts to the client."""
    tracker = Tracker()
    runner, port = await start_app(make_app(tracker, delay=0.05), HOSTS)
    yield Server(f"http://127.0.0.1:{port}", port, tracker)
    await runner.cleanup()


@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[int]:
    """A fast minimal HTTP server in its own process (tests/fastserver.py); its port."""
    port_file = tmp_path / "fastserver.port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fastserver", str(port_file)],
        cwd=Path(__file__).parent.parent,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert proc.poll() is None, "fast server died"
            assert time.monotonic() < deadline, "fast server did not start"
            time.sleep(0.02)
        yield int(port_file.read_text())
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def unused_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connects are refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def robots_server() -> AsyncIterator[tuple[str, dict[str, int]]]:
    """A server whose robots.txt disallows /private and asks for a 1 s Crawl-delay;
    yields its base URL and the hits per path."""
    hits: dict[str, int] = defaultdict(int)

    async def robots(request: web.Request) -> web.Response:
        hits[request.path] += 1
        return web.Response(text="User-agent: *\nDisallow: /private\nCrawl-delay: 1\n")

    async def page(request: web.Request) -> web.Response:
        hits[request.path] += 1
        return web.Response(text="page")

    app = web.Application()
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/{tail:.*}", page)
    runner, port = await start_app(app)
    yield f"http://127.0.0.1:{port}", hits
    await runner.cleanup()
