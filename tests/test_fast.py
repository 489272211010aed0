"""The lean transport's own behaviour (surefetch._fast): what the suites run over both
transports (tests that ask for the ``transport`` fixture) do not reach."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

import surefetch._fast
from surefetch import Client, FetchError, Limits, Timeouts, TooManyRedirectsError
from surefetch.tls import TLS

from .faults import TLSServer
from .helpers import SUREFETCH, records, write_lines

pytestmark = pytest.mark.timeout(30)


class Counting:
    """An aiohttp server that counts the TCP connections its requests came on."""

    def __init__(self) -> None:
        self.peers: set[object] = set()
        self.methods: list[str] = []
        self.port = 0
        self.runner: web.AppRunner | None = None

    @property
    def connections(self) -> int:
        return len(self.peers)

    async def start(self, redirect_to: str | None = None) -> None:
        async def page(request: web.Request) -> web.StreamResponse:
            assert request.transport is not None
            self.peers.add(request.transport.get_extra_info("peername"))
            self.methods.append(request.method)
            if redirect_to is not None and request.path.startswith("/away"):
                raise web.HTTPFound(redirect_to)
            if request.path.startswith("/hop"):
                raise web.HTTPFound("/away")
            return web.Response(text="x" * 100)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", page)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class RawServer:
    """A raw asyncio server running ``handler`` per connection; every connection is
    closed when it stops."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await self.handler(reader, writer)

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/"

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self.server.wait_closed()


@pytest.fixture
async def counting() -> AsyncIterator[Counting]:
    server = Counting()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


async def test_the_lean_transport_is_the_default_for_plain_http(counting: Counting) -> None:
    async with Client() as client:
        assert (client.transport, client.lean) == ("auto", True)
        for n in range(5):
            assert (await client.get(counting.url(f"/p/{n}"))).status == 200
        assert client._fast is not None
        assert sum(len(idle) for idle in client._fast.pool.idle.values()) == 1
    assert counting.connections == 1  # keep-alive: one connection for all five


async def test_head_reads_no_body_and_keeps_the_connection(counting: Counting) -> None:
    async with Client() as client:
        head = await client.request("HEAD", counting.url("/h"))
        get = await client.get(counting.url("/g"))
    assert (head.status, head.body, head.headers["Content-Length"]) == (200, b"", "100")
    assert get.body == b"x" * 100
    assert counting.methods == ["HEAD", "GET"]
    assert counting.connections == 1


async def test_idle_connections_close_after_the_keepalive_time(
    counting: Counting, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(surefetch._fast, "KEEPALIVE", 0.2)
    async with Client() as client:
        await client.get(counting.url("/a"))
        assert client._fast is not None
        pool = client._fast.pool
        assert pool.idle
        deadline = time.monotonic() + 3
        while pool.idle and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not pool.idle  # closed by the sweep, not kept until the client closes
        assert pool.idle_count == 0  # and no longer counted against idle_max
        await client.get(counting.url("/b"))
    assert counting.connections == 2


async def test_a_redirect_to_https_stays_on_the_lean_path_counting_every_hop(
    tmp_path: object,
) -> None:
    async with TLSServer() as tls:
        server = Counting()
        await server.start(redirect_to=tls.url("/secure"))
        try:
            trusted = TLS(cacert=tls.ca_file(str(tmp_path)))
            async with Client(ssl=trusted, limits=Limits(max_redirects=2)) as client:
                assert client._fast is not None
                pool = client._fast.pool
                opened: list[object] = []
                dial = pool._dial

                async def spy(url: URL, key: tuple[str, int, bool]) -> Any:
                    opened.append(key)
                    return await dial(url, key)

                pool._dial = spy  # type: ignore[method-assign]
                response = await client.get(server.url("/hop"))  # /hop -> /away -> https
                assert (response.status, response.body) == (200, b"secure")
                assert (response.redirects, str(response.url)) == (2, tls.url("/secure"))
                # Both connections were the lean pool's, the https one too.
                assert opened == [("127.0.0.1", server.port, False), ("127.0.0.1", tls.port, True)]
            async with Client(ssl=trusted, limits=Limits(max_redirects=1)) as client:
                with pytest.raises(TooManyRedirectsError) as info:
                    await client.get(server.url("/hop"))
            assert info.value.redirects == 1
            assert info.value.message == f"gave up after 1 redirects (next: {tls.url('/secure')})"
        finally:
            assert server.runner is not None
            await server.runner.cleanup()


async def test_a_header_with_a_line_break_goes_to_aiohttp_which_refuses_it(
    counting: Counting,
) -> None:
    async with Client(timeouts=Timeouts(total=5)) as client:
        lean = client._fast
        assert lean is not None
        url = counting.url("/x")
        assert lean.takes("GET", URL(url), None, {"X-Ok": "fine"})
        assert not lean.takes("GET", URL(url), None, {"X-Bad": "a\r\nInjected: yes"})
        with pytest.raises(FetchError):
            await client.get(url, headers={"X-Bad": "a\r\nInjected: yes"})
    assert counting.connections == 0  # nothing was sent


async def test_an_informational_response_before_the_answer_is_passed_over() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: yes\r\n\r\nok")
        await writer.drain()
        await reader.read()  # until the client closes

    async with RawServer(answer) as url, Client(timeouts=Timeouts(total=5)) as client:
        response = await client.get(url)
    assert (response.status, response.body, response.headers.get("X-Final")) == (200, b"ok", "yes")
    assert "Link" not in response.headers


async def test_bytes_after_the_response_end_the_connection_not_the_next_request() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK")
            await writer.drain()

    raw = RawServer(answer)
    async with raw as url, Client(timeouts=Timeouts(total=5)) as client:
        for _ in range(3):
            response = await client.get(url)
            assert (response.status, response.body, response.attempts) == (200, b"ok", 1)
    assert raw.connections == 3  # none reused: each had junk after its response


async def test_aiohttp_is_loaded_only_when_a_request_needs_it(
    counting: Counting, tmp_path: Path
) -> None:
    """Importing aiohttp costs each process a fifth of a second of a core: a run the
    lean transport takes whole loads it in none of its processes (the main one and two
    workers here), and the first request it does not take (a POST) loads it then."""
    for method, loads in (("GET", False), ("POST", True)):
        urls = write_lines(
            tmp_path / f"{method}.txt", [counting.url(f"/{method}/{i}") for i in range(20)]
        )
        out = tmp_path / f"{method}.jsonl"
        run = await asyncio.create_subprocess_exec(
            *SUREFETCH, "fetch", str(urls), "-o", str(out), "--workers", "2", "--method", method,
            env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(run.communicate(), 60)
        assert run.returncode == 0, err.decode()[-2000:]
        assert sorted({r["status"] for r in records(out)}) == [200] and len(records(out)) == 20
        imported = [
            line.rpartition("|")[2].strip()
            for line in err.decode().splitlines()
            if line.startswith("import time:")
        ]
        assert imported.count("surefetch.engine") == 3  # each process's imports are here
        assert ("aiohttp" in imported) is loads, method
    assert counting.methods.count("POST") == 20


def test_fast_refuses_what_it_cannot_do_in_one_line(tmp_path: object) -> None:
    with pytest.raises(ValueError, match=r"^the fast transport does not do cookies; use"):
        Client(transport="fast", cookies="per-host")
    with pytest.raises(ValueError, match=r"^transport must be one of auto, fast, aiohttp"):
        Client(transport="quick")
    assert Client(transport="auto", cookies="per-host").lean is False
    assert Client(transport="aiohttp").lean is False


def test_the_command_says_so_for_fast_with_a_proxy(tmp_path: object) -> None:
    import subprocess
    from pathlib import Path

    folder = Path(str(tmp_path))
    urls = write_lines(folder / "urls.txt", ["http://127.0.0.1:9/"])
    run = subprocess.run(
        [*SUREFETCH, "fetch", str(urls), "-o", str(folder / "out.jsonl"), "--transport", "fast",
         "--proxy", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert "the fast transport does not do proxies; use transport auto" in run.stderr
    assert "Traceback" not in run.stderr
