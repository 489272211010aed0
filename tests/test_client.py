"""The Client on its own: responses, lifecycle, closing, cancellation, sockets."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import warnings
from collections.abc import Iterator

import psutil
import pytest

from surefetch import (
    Client,
    ClientStateError,
    HTTPStatusError,
    Limits,
    Response,
    Timeouts,
    TooManyRedirectsError,
)

from .conftest import Server
from .helpers import wait_for_requests

pytestmark = pytest.mark.usefixtures("transport")


def client_sockets(port: int) -> list[object]:
    """This process's TCP connections *to* the test server (the client side)."""
    return [
        c
        for c in psutil.Process(os.getpid()).net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status != psutil.CONN_TIME_WAIT
    ]


@pytest.fixture
def no_unclosed_warnings() -> Iterator[None]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    unclosed = [str(w.message) for w in caught if "nclosed" in str(w.message)]
    assert unclosed == []


async def test_get_returns_a_complete_response(server: Server) -> None:
    async with Client() as client:
        response = await client.get(server.url("/ok?x=1"))
    assert isinstance(response, Response)
    assert response.status == 200
    assert response.ok
    assert response.body == b"ok /ok?x=1"
    assert response.text() == "ok /ok?x=1"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert str(response.url) == server.url("/ok?x=1")
    assert response.attempts == 1
    assert response.redirects == 0
    assert 0 < response.elapsed < 5


async def test_text_uses_the_response_charset(server: Server) -> None:
    async with Client() as client:
        response = await client.get(server.url("/latin1"))
    assert response.charset == "latin-1"
    assert response.text() == "café"


async def test_json_and_headers_sent(server: Server) -> None:
    async with Client(headers={"X-Team": "data"}, user_agent="probe/1") as client:
        response = await client.get(server.url("/headers"), headers={"X-Call": "1"})
    sent = response.json()
    assert sent["User-Agent"] == "probe/1"
    assert sent["X-Team"] == "data"
    assert sent["X-Call"] == "1"


async def test_redirects_are_followed_and_counted(server: Server) -> None:
    async with Client() as client:
        response = await client.get(server.url("/redirect/3"))
    assert response.status == 200
    assert response.redirects == 3
    assert str(response.url) == server.url("/redirect/0")


async def test_non_2xx_is_returned_and_raise_for_status_raises(server: Server) -> None:
    async with Client() as client:
        response = await client.get(server.url("/status/404"))
    assert response.status == 404
    assert not response.ok
    assert response.attempts == 1
    with pytest.raises(HTTPStatusError) as info:
        response.raise_for_status()
    assert info.value.kind == "http_status"
    assert info.value.status == 404
    assert info.value.final_url == server.url("/status/404")
    assert info.value.content_type == "text/plain; charset=utf-8"


async def test_too_many_redirects_tells_of_the_last_response(server: Server) -> None:
    async with Client(limits=Limits(max_redirects=1)) as client:
        with pytest.raises(TooManyRedirectsError) as info:
            await client.get(server.url("/redirect/3"))
    error = info.value
    assert (error.status, error.redirects) == (302, 1)
    assert error.final_url == server.url("/redirect/2")
    assert error.content_type == "text/plain; charset=utf-8"


async def test_gzip_body_is_decompressed(server: Server) -> None:
    async with Client() as client:
        response = await client.get(server.url("/gzip?size=5000"))
    assert response.body == b"a" * 5000


async def test_client_must_be_entered(server: Server) -> None:
    client = Client()
    with pytest.raises(ClientStateError, match="inside 'async with Client"):
        await client.get(server.url("/ok"))


async def test_closed_client_refuses_work(server: Server) -> None:
    async with Client() as client:
        await client.get(server.url("/ok"))
    assert client.closed
    with pytest.raises(ClientStateError, match="this Client is closed"):
        await client.get(server.url("/ok"))
    with pytest.raises(ClientStateError, match="this Client is closed"):
        client.fetch_many([server.url("/ok")])
    with pytest.raises(ClientStateError, match="opened only once"):
        await client.__aenter__()


async def test_client_from_another_event_loop_raises_instead_of_hanging(server: Server) -> None:
    outcome: list[BaseException | None] = []

    def elsewhere(client: Client) -> None:
        async def call() -> None:
            await client.get(server.url("/ok"))

        try:
            asyncio.run(call())
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    async with Client() as client:
        thread = threading.Thread(target=elsewhere, args=(client,))
        thread.start()
        await asyncio.to_thread(thread.join, 10)
    assert len(outcome) == 1
    assert isinstance(outcome[0], ClientStateError)
    assert "another event loop" in str(outcome[0])


async def test_close_waits_for_requests_in_flight(
    server: Server, no_unclosed_warnings: None
) -> None:
    client = Client()
    await client.__aenter__()
    call = asyncio.create_task(client.get(server.url("/sleep/0.3")))
    # Closed while the server holds the request; it answers 0.3 s after it came. (Timed
    # from a fixed 0.05 s after the call, the wait could look short after a stall.)
    await wait_for_requests(server.tracker, 1, 5)
    started = time.monotonic()
    await client.aclose()
    closed = time.monotonic()
    assert call.done()
    assert closed >= server.tracker.times[0] + 0.3
    response = await call
    assert response.status == 200
    assert response.body == b"slept"
    assert closed - started < 2
    assert client_sockets(server.port) == []


async def test_no_sockets_left_after_close(server: Server, no_unclosed_warnings: None) -> None:
    async with Client() as client:
        await asyncio.gather(*(client.get(server.url(f"/p/{i}")) for i in range(20)))
        assert client_sockets(server.port)  # keep-alive connections are pooled
    assert client_sockets(server.port) == []


async def test_no_sockets_left_after_cancellation_mid_request(
    server: Server, no_unclosed_warnings: None
) -> None:
    async def use_client() -> None:
        async with Client() as client:
            await asyncio.gather(*(client.get(server.url("/sleep/5")) for _ in range(5)))

    task = asyncio.create_task(use_client())
    deadline = time.monotonic() + 5
    while server.tracker.total_inflight < 5 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert server.tracker.total_inflight == 5
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1
    assert client_sockets(server.port) == []


async def test_connector_limits_hold_for_direct_calls(slow_server: Server) -> None:
    limits = Limits(concurrency=6, per_host=2)
    async with Client(limits=limits, timeouts=Timeouts(total=10)) as client:
        urls = [
            slow_server.url(f"/p/{i}", host)
            for host in ("127.0.0.1", "127.0.0.2")
            for i in range(10)
        ]
        responses = await asyncio.gather(*(client.get(u) for u in urls))
    assert all(r.status == 200 for r in responses)
    assert max(slow_server.tracker.peak.values()) == 2
    assert slow_server.tracker.total_peak <= 4
