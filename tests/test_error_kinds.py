"""Every error kind, provoked for real against local servers and checked exactly.

Each test asserts the exception class raised by ``Client.get`` (the exact class, not
a subclass), the record's ``error.kind`` from ``Client.fetch_many``, ``attempts``
(against the requests or connections the server saw, where there is a server) and a
bound on the time taken. Retrying tests use a tiny backoff to stay fast.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import gc
import itertools
import logging
import os
import re
import socket
import ssl
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import psutil
import pytest
from aiohttp import http_exceptions, http_parser
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from surefetch import (
    KINDS,
    BlockedAddressError,
    BodyTooLargeError,
    Client,
    ConnectFailedError,
    ConnectRefusedError,
    ConnectTimeoutError,
    DNSError,
    FetchError,
    HTTPStatusError,
    InternalError,
    InvalidURLError,
    Limits,
    NetworkPolicy,
    PayloadError,
    PeerResetError,
    Politeness,
    ProtocolError,
    ReadTimeoutError,
    Record,
    RedirectBlockedError,
    RetryPolicy,
    ServerDisconnectedError,
    Timeouts,
    TLSError,
    TooManyRedirectsError,
    TotalTimeoutError,
    WorkerLostError,
)
from surefetch.errors import classify

from .faults import Blackhole, FaultServer, TLSServer, _reset, gzip_bomb, sized_body

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("transport")]

#: Whether aiohttp parses with its C extension (the default) or in pure Python
#: (AIOHTTP_NO_EXTENSIONS=1, PyPy): they fail differently on a broken chunk.
C_PARSER = http_parser.HttpResponseParser is not http_parser.HttpResponseParserPy

MiB = 1024 * 1024
#: Timeouts for tests that should never wait: a hang shows as a failure, not a stall.
QUICK = Timeouts(total=10, connect=5, read=5)


def retries(n: int, **kwargs: Any) -> RetryPolicy:
    """A retry policy with ``n`` retries and (almost) no waiting between them."""
    return RetryPolicy(retries=n, backoff=0.01, backoff_max=0.01, **kwargs)


# -- guards ----------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_unclosed() -> Iterator[None]:
    """Fail the test on any ResourceWarning ("Unclosed client session", unclosed
    transport, ...) or any asyncio/aiohttp error log (unclosed objects, exceptions
    never retrieved, tasks destroyed while pending), garbage collection included."""
    handler = _Collect()
    loggers = [logging.getLogger(name) for name in ("asyncio", "aiohttp")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
            gc.collect()
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    bad = [
        str(w.message)
        for w in caught
        if issubclass(w.category, ResourceWarning) or "nclosed" in str(w.message)
    ]
    bad += [r.getMessage() for r in handler.records if r.levelno >= logging.WARNING]
    assert bad == []


# -- helpers ---------------------------------------------------------------------


@dataclass
class Outcome:
    error: FetchError  #: what ``get`` raised
    elapsed: float  #: wall time of ``get``
    record: Record  #: the record ``fetch_many`` made for the same URL
    record_elapsed: float  #: wall time of ``fetch_many``


async def fails_as(
    url: str,
    cls: type[FetchError],
    *,
    attempts: int,
    server: FaultServer | None = None,
    within: tuple[float, float] = (0.0, 2.0),
    **client_kwargs: Any,
) -> Outcome:
    """Fetch ``url`` with ``get`` and again with ``fetch_many``; check that both fail
    as exactly ``cls`` after ``attempts`` requests, in ``within`` seconds each; if
    ``server`` is given, that it saw ``attempts`` requests to the URL's path each time.
    """
    client_kwargs.setdefault("timeouts", QUICK)
    path = URL(url).path if server is not None else ""
    async with Client(**client_kwargs) as client:
        started = time.monotonic()
        with pytest.raises(FetchError) as info:
            await client.get(url)
        elapsed = time.monotonic() - started
        error = info.value
        assert type(error) is cls, f"{type(error).__name__}: {error}"
        assert error.kind == cls.kind
        assert error.attempts == attempts
        assert within[0] <= elapsed <= within[1], elapsed
        assert error.elapsed <= elapsed
        if server is not None:
            assert server.hits[path] == attempts

        started = time.monotonic()
        records = [record async for record in client.fetch_many([url])]
        record_elapsed = time.monotonic() - started
    assert len(records) == 1
    record = records[0]
    assert record.url == url
    assert record.ok is False
    assert record.error is not None
    assert record.error.kind == cls.kind, record.error
    assert record.attempts == attempts
    assert within[0] <= record_elapsed <= within[1], record_elapsed
    assert record.elapsed_ms / 1000 <= record_elapsed
    if server is not None:
        assert server.hits[path] == 2 * attempts
    return Outcome(error, elapsed, record, record_elapsed)


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def rss() -> int:
    return int(psutil.Process(os.getpid()).memory_info().rss)


# -- the list itself -------------------------------------------------------------


def test_every_kind_has_a_test_here() -> None:
    names = [name for name in globals() if name.startswith("test_")]
    missing = [kind for kind in KINDS if not any(n.startswith(f"test_{kind}") for n in names)]
    assert missing == []
    assert len(KINDS) == 21


# -- invalid_url -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "",
        "127.0.0.1/no-scheme",
        "ftp://127.0.0.1/file",
        "http://",
        "http://127.0.0.1:99999/",
        "http://127.0.0.1/has space",
        "http://127.0.0.1/\x00",
    ],
)
async def test_invalid_url_is_rejected_before_anything_is_sent(
    fault_server: FaultServer, url: str
) -> None:
    await fails_as(url, InvalidURLError, attempts=0, within=(0.0, 0.5), retry=retries(3))
    assert fault_server.connections == 0


# -- connect phase -----------------------------------------------------------------


async def test_dns_error_for_a_name_under_the_reserved_invalid_tld(transport: str) -> None:
    # .invalid never resolves (RFC 2606); the resolver answers locally, without network.
    outcome = await fails_as(
        "http://nothing.invalid/", DNSError, attempts=2, within=(0.0, 2.0), retry=retries(1)
    )
    caused_by(outcome, transport, aiohttp.ClientConnectorDNSError, OSError)


async def test_connect_refused_on_a_port_nobody_listens_on(transport: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    outcome = await fails_as(
        url, ConnectRefusedError, attempts=2, within=(0.0, 1.0), retry=retries(1)
    )
    cause = caused_by(outcome, transport, aiohttp.ClientConnectorError, ConnectionRefusedError)
    assert cause.errno == errno.ECONNREFUSED


async def test_blocked_address_is_not_retried_and_names_the_address_and_the_rule(
    fault_server: FaultServer,
) -> None:
    # Served on 127.0.0.1; the policy refuses it, so the server never sees a connection.
    url = fault_server.url("/ok")
    policy = NetworkPolicy(rules=("deny 127.0.0.0/30",))
    outcome = await fails_as(url, BlockedAddressError, attempts=1, network=policy, retry=retries(3))
    assert outcome.error.message == (f"blocked 127.0.0.1:{URL(url).port}: --deny 127.0.0.0/30")
    assert fault_server.connections == 0


async def test_connect_error_for_the_loopback_broadcast_address(transport: str) -> None:
    # 127.255.255.255 is the broadcast address of lo's 127/8: connect() fails at once
    # with ENETUNREACH, an OSError that is not a refusal.
    url = f"http://127.255.255.255:{free_port()}/"
    outcome = await fails_as(url, ConnectFailedError, attempts=2, retry=retries(1))
    cause = caused_by(outcome, transport, aiohttp.ClientConnectorError, OSError)
    assert type(cause) in (aiohttp.ClientConnectorError, OSError)
    assert cause.errno == errno.ENETUNREACH
    assert outcome.error.message.endswith(": Network is unreachable")


async def test_connect_timeout_when_the_accept_queue_is_full(
    blackhole: Blackhole, transport: str
) -> None:
    assert blackhole.check(), "connect() to the full accept queue did not hang here"
    outcome = await fails_as(
        blackhole.url(),
        ConnectTimeoutError,
        attempts=2,
        within=(0.55, 2.5),
        retry=retries(1),
        timeouts=Timeouts(total=10, connect=0.3, read=5),
    )
    caused_by(outcome, transport, aiohttp.ConnectionTimeoutError, TimeoutError)
    assert outcome.error.message.startswith("connect did not complete in time: ")


def caused_by(
    outcome: Outcome, transport: str, by_aiohttp: type[BaseException], lean: type | None
) -> Any:
    """The error's cause, checked: what aiohttp raised, or (the lean transport) the OS
    or zlib error under it (``lean`` None: it has none, e.g. a clean close)."""
    cause = outcome.error.__cause__
    if transport == "aiohttp":
        assert isinstance(cause, by_aiohttp), cause
    elif lean is None:
        assert cause is None, cause
    else:
        assert isinstance(cause, lean), cause
    return cause


def test_connect_timeout_classifier() -> None:
    error = classify(aiohttp.ConnectionTimeoutError("Connection timeout to host x"))
    assert type(error) is ConnectTimeoutError
    # aiohttp raises its own subclasses for connect and read timeouts; a bare
    # TimeoutError comes from its whole-request (total) timer.
    assert type(classify(aiohttp.SocketTimeoutError("read"))) is ReadTimeoutError
    assert type(classify(TimeoutError())) is TotalTimeoutError


def test_connect_timeout_from_a_connector_error_caused_by_a_timeout() -> None:
    # A connect the kernel gives up on (SYNs unanswered) fails with TimeoutError
    # (ETIMEDOUT), which aiohttp's connector wraps as it wraps every connect OSError:
    # ``raise client_error(req.connection_key, exc) from exc``. (The end-to-end
    # connect_timeout above is aiohttp's own timer: ConnectionTimeoutError.)
    key = ConnectionKey("10.0.0.1", 80, False, True, None, None, None)
    try:
        try:
            raise TimeoutError(errno.ETIMEDOUT, "Connection timed out")
        except OSError as exc:
            raise aiohttp.ClientConnectorError(key, exc) from exc
    except aiohttp.ClientConnectorError as wrapped:
        assert wrapped.errno == errno.ETIMEDOUT
        error = classify(wrapped)
    assert type(error) is ConnectTimeoutError
    assert error.message == "connect to 10.0.0.1:80 timed out"


# -- TLS ---------------------------------------------------------------------------


async def test_tls_error_for_an_untrusted_certificate_is_not_retried(
    tls_server: TLSServer, transport: str
) -> None:
    outcome = await fails_as(tls_server.url(), TLSError, attempts=1, retry=retries(3))
    caused_by(
        outcome, transport, aiohttp.ClientConnectorCertificateError, ssl.SSLCertVerificationError
    )
    assert (
        outcome.error.message == "certificate not accepted: unable to get local issuer certificate"
    )
    # One handshake per call, none of which got a request through.
    await tls_server.idle()
    assert tls_server.connections == 2
    assert len(tls_server.handshake_errors) == 2
    assert tls_server.requests == 0


async def test_tls_error_for_a_certificate_of_another_host() -> None:
    # The certificate names 127.0.0.1; the server is reached as 127.0.0.2.
    async with TLSServer(host="127.0.0.2", cert_for="127.0.0.1") as server:
        outcome = await fails_as(
            server.url(), TLSError, attempts=1, retry=retries(3), ssl=server.client_context()
        )
        assert outcome.error.message == (
            "certificate not accepted: IP address mismatch, certificate is not valid"
            " for '127.0.0.2'."
        )
        assert server.connections == 2
        assert server.requests == 0


async def test_tls_error_for_https_to_a_plain_http_port(fault_server: FaultServer) -> None:
    url = f"https://127.0.0.1:{fault_server.port}/ok"
    outcome = await fails_as(url, TLSError, attempts=1, retry=retries(3))
    assert outcome.error.message == "the server did not answer in TLS; is this an HTTPS port?"
    assert fault_server.connections == 2


async def test_tls_error_for_an_expired_certificate() -> None:
    async with TLSServer(expired=True) as server:
        outcome = await fails_as(
            server.url(), TLSError, attempts=1, retry=retries(3), ssl=server.client_context()
        )
    assert outcome.error.message == "certificate not accepted: certificate has expired"


async def test_tls_error_for_no_common_tls_version() -> None:
    """A server that speaks TLS 1.2 at most, to a client that wants 1.3. (A blocking
    ssl socket in a thread: it sends its alert before closing, as real servers do and
    asyncio's start_tls does not.)"""
    server = TLSServer(tls_max=ssl.TLSVersion.TLSv1_2)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(2):  # get, then fetch_many
            conn, _ = listener.accept()
            with contextlib.suppress(OSError):
                server._context.wrap_socket(conn, server_side=True).close()
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    context = server.client_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        url = f"https://127.0.0.1:{port}/"
        outcome = await fails_as(url, TLSError, attempts=1, retry=retries(3), ssl=context)
    finally:
        thread.join(5)
        listener.close()
    assert outcome.error.message == "no TLS version in common with the server"


@pytest.mark.parametrize("how", ["closed", "reset"])
async def test_tls_error_for_a_server_that_cuts_the_handshake(how: str) -> None:
    """The server reads the ClientHello and closes (or resets) the connection: the TCP
    connect worked, so this is TLS, not a connect error, and not retried."""
    hellos = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal hellos
        await reader.read(5)
        hellos += 1
        if how == "reset":
            _reset(writer)
        else:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        outcome = await fails_as(
            f"https://127.0.0.1:{port}/", TLSError, attempts=1, retry=retries(3)
        )
    finally:
        server.close()
        await server.wait_closed()
    assert outcome.error.message == (
        f"the server {how} the connection during the TLS handshake with 127.0.0.1:{port};"
        " is this an HTTPS port?"
    )
    assert hellos == 2  # one handshake for get, one for fetch_many: no retries


async def test_tls_with_the_ca_trusted_fetches(tls_server: TLSServer) -> None:
    async with Client(ssl=tls_server.client_context(), timeouts=QUICK) as client:
        response = await client.get(tls_server.url("/secure"))
        records = [record async for record in client.fetch_many([tls_server.url("/again")])]
    assert response.status == 200
    assert response.body == b"secure"
    assert response.attempts == 1
    assert records[0].ok is True
    assert records[0].error is None
    assert tls_server.requests == 2


# -- timeouts ----------------------------------------------------------------------


async def test_read_timeout_when_the_server_never_answers(fault_server: FaultServer) -> None:
    await fails_as(
        fault_server.url("/hang"),
        ReadTimeoutError,
        attempts=2,
        server=fault_server,
        within=(0.6, 2.0),
        retry=retries(1),
        timeouts=Timeouts(total=10, connect=5, read=0.3),
    )


async def test_read_timeout_when_the_body_stalls(fault_server: FaultServer) -> None:
    # One byte every second: the gap exceeds read=0.3 right after the first byte.
    await fails_as(
        fault_server.url("/drip?interval=1&count=10"),
        ReadTimeoutError,
        attempts=1,
        server=fault_server,
        within=(0.3, 2.0),
        retry=retries(0),
        timeouts=Timeouts(total=10, connect=5, read=0.3),
    )


async def test_total_timeout_when_the_server_drips(fault_server: FaultServer) -> None:
    # A byte every 50 ms keeps the read timeout from ever firing; total=0.5 ends it.
    await fails_as(
        fault_server.url("/drip?interval=0.05&count=600"),
        TotalTimeoutError,
        attempts=2,
        server=fault_server,
        within=(1.0, 2.5),
        retry=retries(1),
        timeouts=Timeouts(total=0.5, connect=5, read=5),
    )


async def test_total_timeout_before_the_response_head(fault_server: FaultServer) -> None:
    await fails_as(
        fault_server.url("/hang"),
        TotalTimeoutError,
        attempts=1,
        server=fault_server,
        within=(0.3, 2.0),
        retry=retries(0),
        timeouts=Timeouts(total=0.3, connect=5, read=5),
    )


# -- the connection breaks ---------------------------------------------------------


async def test_server_disconnected_when_closed_without_an_answer(
    fault_server: FaultServer, transport: str
) -> None:
    outcome = await fails_as(
        fault_server.url("/drop"),
        ServerDisconnectedError,
        attempts=3,
        server=fault_server,
        retry=retries(2),
    )
    caused_by(outcome, transport, aiohttp.ServerDisconnectedError, None)


async def test_connection_reset_before_the_response(
    fault_server: FaultServer, transport: str
) -> None:
    outcome = await fails_as(
        fault_server.url("/reset"),
        PeerResetError,
        attempts=2,
        server=fault_server,
        retry=retries(1),
    )
    cause = caused_by(outcome, transport, aiohttp.ClientOSError, ConnectionResetError)
    assert cause.errno == errno.ECONNRESET


@pytest.mark.parametrize("mode", ["length", "chunked"])
async def test_connection_reset_mid_body(
    fault_server: FaultServer, mode: str, transport: str
) -> None:
    # aiohttp reports this as ClientPayloadError("Response payload is not completed
    # ... ConnectionResetError(104, ...)"): a reset, so transient, not a broken body.
    outcome = await fails_as(
        fault_server.url(f"/reset-mid-body?mode={mode}"),
        PeerResetError,
        attempts=2,
        server=fault_server,
        retry=retries(1),
    )
    caused_by(outcome, transport, aiohttp.ClientPayloadError, ConnectionResetError)
    assert "mid-body" in outcome.error.message


async def test_connection_reset_mid_body_delimited_by_eof(
    fault_server: FaultServer, transport: str
) -> None:
    # aiohttp ends a body delimited by the connection's end at a reset just as at a
    # clean close, returning the truncated body as complete; surefetch's protocol
    # (_connector.ResponseProtocol) turns it into the error a body with a length gets.
    outcome = await fails_as(
        fault_server.url("/reset-mid-body?mode=eof"),
        PeerResetError,
        attempts=2,
        server=fault_server,
        retry=retries(1),
    )
    cause = caused_by(outcome, transport, aiohttp.ClientPayloadError, ConnectionResetError)
    if transport == "aiohttp":
        assert isinstance(cause.__cause__, ConnectionResetError)
    assert "mid-body" in outcome.error.message
    assert outcome.record.sha256 is None


async def test_body_delimited_by_eof_ended_by_a_clean_close_is_complete(
    fault_server: FaultServer,
) -> None:
    # The other side of the test above: a FIN is how such a body ends, so the
    # workaround must leave it alone (a truncation by FIN cannot be told apart).
    async with Client(timeouts=QUICK, retry=retries(2)) as client:
        response = await client.get(fault_server.url("/truncate?mode=eof"))
    assert (response.status, response.attempts) == (200, 1)
    assert response.body == b"x" * 1000


# -- bad responses -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["length", "chunked"])
async def test_payload_error_for_a_truncated_body(fault_server: FaultServer, mode: str) -> None:
    # A clean close (FIN) before the declared end: not a reset, and not retried.
    outcome = await fails_as(
        fault_server.url(f"/truncate?mode={mode}"),
        PayloadError,
        attempts=1,
        server=fault_server,
        retry=retries(2),
    )
    assert outcome.record.status is None
    assert "not completed" in outcome.error.message or "Not enough data" in str(
        outcome.error.__cause__
    )


async def test_payload_error_for_broken_chunked_encoding(fault_server: FaultServer) -> None:
    # Head and broken chunk arrive in one read, so aiohttp raises its head error
    # (ClientResponseError from a BadHttpMessage "Invalid character in chunk size").
    outcome = await fails_as(
        fault_server.url("/bad-chunked"),
        PayloadError,
        attempts=1,
        server=fault_server,
        retry=retries(2),
    )
    assert "chunk" in outcome.error.message or not C_PARSER


async def test_payload_error_for_a_broken_chunk_after_the_head(
    fault_server: FaultServer,
) -> None:
    # The head and a good chunk come first, the broken chunk 0.1 s later. aiohttp's C
    # parser tells only the connection, so the body waited for a timeout (and was
    # retried as one); it must fail at once, long before the read timeout, unretried.
    outcome = await fails_as(
        fault_server.url("/bad-chunked?split=1"),
        PayloadError,
        attempts=1,
        server=fault_server,
        within=(0.0, 1.0),
        retry=retries(2),
        timeouts=Timeouts(total=5, connect=5, read=2),
    )
    # C parser: "Invalid character in chunk size: b'zz-not-hex'"; pure Python:
    # "chunked encoding: zz-not-hex".
    assert "chunk" in outcome.error.message
    assert "zz-not-hex" in outcome.error.message


async def test_payload_error_for_gzip_that_is_not_gzip(
    fault_server: FaultServer, transport: str
) -> None:
    outcome = await fails_as(
        fault_server.url("/not-gzip"),
        PayloadError,
        attempts=1,
        server=fault_server,
        retry=retries(2),
    )
    caused_by(outcome, transport, aiohttp.ClientPayloadError, zlib.error)
    assert "decompressing" in outcome.error.message


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/garbage", "status line"),
        ("/bad-header", "header"),
        ("/big-header", "8190 bytes"),
        ("/many-headers", "too many headers"),
    ],
)
async def test_protocol_error_for_a_malformed_response_head(
    fault_server: FaultServer, path: str, words: str
) -> None:
    outcome = await fails_as(
        fault_server.url(path),
        ProtocolError,
        attempts=1,
        server=fault_server,
        retry=retries(2),
    )
    assert words in outcome.error.message.lower()


# -- redirects ---------------------------------------------------------------------


async def test_too_many_redirects_in_a_loop(fault_server: FaultServer) -> None:
    outcome = await fails_as(
        fault_server.url("/loop/a"),
        TooManyRedirectsError,
        attempts=1,
        retry=retries(2),
        limits=Limits(max_redirects=3),
    )
    # Three redirects followed; the fourth response, a redirect too, ends it.
    assert fault_server.hits["/loop/a"] == 2 * 4
    assert outcome.error.redirects == 3
    assert outcome.record.redirects == 3
    assert outcome.record.status == 302


async def test_too_many_redirects_not_reached_at_the_limit(fault_server: FaultServer) -> None:
    target = quote("/redirect?to=/ok", safe="")
    url = fault_server.url(f"/redirect?to={target}")
    async with Client(timeouts=QUICK, limits=Limits(max_redirects=2)) as client:
        response = await client.get(url)
    assert response.status == 200
    assert response.redirects == 2


@pytest.mark.parametrize(
    "target",
    ["ftp://127.0.0.1/file", "javascript:alert(1)", "file:///etc/passwd", "http://[::1"],
)
async def test_redirect_blocked_for_a_target_that_is_not_http(
    fault_server: FaultServer, target: str
) -> None:
    await fails_as(
        fault_server.url(f"/redirect?to={quote(target, safe='')}"),
        RedirectBlockedError,
        attempts=1,
        server=fault_server,
        retry=retries(2),
    )
    assert set(fault_server.hits) == {"/redirect"}


# -- sizes -------------------------------------------------------------------------


async def test_body_too_large_by_content_length(fault_server: FaultServer) -> None:
    outcome = await fails_as(
        fault_server.url("/huge?mode=length"),
        BodyTooLargeError,
        attempts=1,
        server=fault_server,
        within=(0.0, 1.0),
        retry=retries(2),
        limits=Limits(max_body=MiB),
    )
    assert "Content-Length 1073741824" in outcome.error.message
    assert outcome.record.status == 200
    assert outcome.error.content_type == "application/octet-stream"
    # The client hung up at once, so the server stopped long before 1 GiB.
    await fault_server.idle()
    assert fault_server.sent["/huge"] < 64 * MiB


@pytest.mark.parametrize("mode", ["eof", "chunked"])
async def test_body_too_large_streamed_without_length(fault_server: FaultServer, mode: str) -> None:
    outcome = await fails_as(
        fault_server.url(f"/huge?mode={mode}"),
        BodyTooLargeError,
        attempts=1,
        server=fault_server,
        within=(0.0, 2.0),
        retry=retries(2),
        limits=Limits(max_body=MiB),
    )
    assert outcome.record.status == 200
    assert outcome.error.content_type == "application/octet-stream"
    await fault_server.idle()
    assert MiB < fault_server.sent["/huge"] < 64 * MiB


#: The body limit of the boundary tests: small, so that one byte shows.
LIMIT = 1000

#: (framing, pieces): pieces 0 sends the body with its head (the Client finds it
#: complete at once and reads it with resp.read()); more streams it after the head
#: (read by _read_body, counting as it goes). A body ending at EOF is always streamed.
FRAMINGS = [("length", 0), ("chunked", 0), ("length", 4), ("chunked", 4), ("eof", 4)]


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The limit _read_body was called with, once per body the Client streamed; a
    body that came with its head does not appear (nothing of aiohttp is replaced)."""
    import surefetch.client

    calls: list[int] = []
    read_body = surefetch.client._read_body

    async def spy(resp: aiohttp.ClientResponse, limit: int, *args: Any) -> bytes:
        calls.append(limit)
        return await read_body(resp, limit, *args)

    monkeypatch.setattr(surefetch.client, "_read_body", spy)
    return calls


@pytest.mark.parametrize("excess", [-1, 0, 1], ids=["under", "at", "over"])
@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(
    ("mode", "pieces"),
    FRAMINGS,
    ids=[f"{m}-{'streamed' if p else 'with-head'}" for m, p in FRAMINGS],
)
async def test_body_too_large_one_byte_over_the_limit_and_not_before(
    fault_server: FaultServer,
    streamed: list[int],
    mode: str,
    pieces: int,
    gzip: bool,
    excess: int,
    transport: str,
) -> None:
    """max_body=1000 takes a body of 999 and of 1000 bytes and refuses one of 1001,
    on both read paths, with and without Content-Length, counting decompressed bytes
    (the gzip bodies are far smaller than the limit on the wire)."""
    size = LIMIT + excess
    url = fault_server.url(f"/body?size={size}&mode={mode}&gzip={int(gzip)}&pieces={pieces}")
    limits = Limits(max_body=LIMIT)
    by_header = mode == "length" and not gzip  # a Content-Length over the limit
    reads = 0 if pieces == 0 or (excess > 0 and by_header) else 2
    if excess <= 0:
        async with Client(timeouts=QUICK, retry=retries(2), limits=limits) as client:
            response = await client.get(url)
            records = [r async for r in client.fetch_many([url])]
        assert (response.status, response.attempts) == (200, 1)
        assert response.body == sized_body(size)
        (record,) = records
        assert (record.ok, record.bytes, record.error) == (True, size, None)
    else:
        outcome = await fails_as(
            url, BodyTooLargeError, attempts=1, server=fault_server, retry=retries(2), limits=limits
        )
        assert outcome.record.status == 200
        assert outcome.error.content_type == "text/plain; charset=utf-8"
        if by_header:
            assert outcome.error.message == f"Content-Length {size} exceeds max_body {LIMIT}"
        else:
            assert outcome.error.message == (
                f"body exceeds max_body {LIMIT} bytes (after decompression)"
            )
    if transport == "aiohttp":  # the read path the test is about was taken
        assert streamed == [LIMIT] * reads
    if excess <= 0:  # and the server kept its part: head and body in one write, or not
        assert fault_server.writes["/body"] == 2 * (pieces + 1 if pieces else 1)


async def test_body_too_large_for_a_gzip_bomb_in_bounded_memory(
    fault_server: FaultServer,
) -> None:
    bomb = gzip_bomb()  # built before measuring (once per process)
    assert len(bomb) < MiB
    before = rss()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        # A thread, not a task: it keeps sampling while the event loop is busy
        # decompressing, which is when the memory would be taken.
        while not done.wait(0.002):
            peak.append(rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        outcome = await fails_as(
            fault_server.url("/bomb"),
            BodyTooLargeError,
            attempts=1,
            server=fault_server,
            within=(0.0, 2.0),
            retry=retries(2),
            limits=Limits(max_body=10 * MiB),
        )
    finally:
        done.set()
        sampler.join()
    growth = max(*peak, rss()) - before
    assert "after decompression" in outcome.error.message
    assert outcome.error.content_type == "text/plain"
    assert len(peak) > 3  # the sampler did run during the fetches
    assert growth < 50 * MiB, f"RSS grew by {growth / MiB:.1f} MiB"


# -- statuses ----------------------------------------------------------------------


async def test_http_status_404_is_a_response_and_not_retried(fault_server: FaultServer) -> None:
    url = fault_server.url("/status/404")
    async with Client(timeouts=QUICK, retry=retries(3)) as client:
        response = await client.get(url)
        assert fault_server.hits["/status/404"] == 1
        records = [record async for record in client.fetch_many([url])]
    assert response.status == 404
    assert response.attempts == 1
    assert response.body == b"status 404"
    with pytest.raises(HTTPStatusError) as info:
        response.raise_for_status()
    assert type(info.value) is HTTPStatusError
    assert info.value.kind == "http_status"
    assert info.value.status == 404
    (record,) = records
    assert record.ok is False
    assert record.status == 404
    assert record.error is not None
    assert record.error.kind == "http_status"
    assert record.attempts == 1
    assert fault_server.hits["/status/404"] == 2


async def test_http_status_503_is_retried_then_recorded(fault_server: FaultServer) -> None:
    url = fault_server.url("/status/503")
    async with Client(timeouts=QUICK, retry=retries(2)) as client:
        started = time.monotonic()
        response = await client.get(url)
        elapsed = time.monotonic() - started
        assert fault_server.hits["/status/503"] == 3
        records = [record async for record in client.fetch_many([url])]
    assert response.status == 503
    assert response.attempts == 3
    assert elapsed < 1.0
    with pytest.raises(HTTPStatusError):
        response.raise_for_status()
    (record,) = records
    assert (record.ok, record.status, record.attempts) == (False, 503, 3)
    assert record.error is not None
    assert record.error.kind == "http_status"
    assert fault_server.hits["/status/503"] == 6


# -- internal errors ---------------------------------------------------------------


@pytest.mark.aiohttp_only
async def test_internal_error_from_a_bug_is_recorded_and_logged(
    fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import surefetch.client

    async def buggy_read(*args: object) -> bytes:
        raise RuntimeError("a bug in surefetch")

    # The body ends with the connection (no Content-Length), so it cannot be complete
    # when the head arrives, and the Client reads it with _read_body.
    monkeypatch.setattr(surefetch.client, "_read_body", buggy_read)
    caplog.set_level(logging.ERROR, logger="surefetch.client")
    outcome = await fails_as(
        fault_server.url("/ok?mode=eof"),
        InternalError,
        attempts=1,
        server=fault_server,
        retry=retries(2),
    )
    assert "RuntimeError: a bug in surefetch" in outcome.error.message
    logged = [r for r in caplog.records if r.name == "surefetch.client"]
    assert len(logged) == 2  # one per call
    for record in logged:
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None
        assert record.exc_info[0] is RuntimeError
        assert "a bug in surefetch" in caplog.text


async def test_internal_error_from_a_bug_in_the_lean_transport(
    fault_server: FaultServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    transport: str,
) -> None:
    import surefetch._fast

    def buggy_body(self: object, data: bytes) -> None:
        raise RuntimeError("a bug in surefetch")

    monkeypatch.setattr(surefetch._fast._Connection, "on_body", buggy_body)
    caplog.set_level(logging.ERROR, logger="surefetch.client")
    url = fault_server.url("/ok?mode=eof")
    if transport == "aiohttp":  # the control: the lean transport's bug is not met
        async with Client(timeouts=QUICK) as client:
            assert (await client.get(url)).status == 200
        return
    outcome = await fails_as(url, InternalError, attempts=1, server=fault_server, retry=retries(2))
    assert outcome.error.message == "unexpected RuntimeError: a bug in surefetch"
    logged = [r for r in caplog.records if r.name == "surefetch.client"]
    assert len(logged) == 2  # one per call
    assert all(r.exc_info is not None and r.exc_info[0] is RuntimeError for r in logged)


# -- retries -----------------------------------------------------------------------


async def test_retry_after_dropped_connections_then_success(fault_server: FaultServer) -> None:
    async with Client(timeouts=QUICK, retry=retries(2)) as client:
        response = await client.get(fault_server.url("/flaky-drop/get?n=2"))
        records = [r async for r in client.fetch_many([fault_server.url("/flaky-drop/many?n=2")])]
    assert (response.status, response.attempts, response.body) == (200, 3, b"recovered")
    assert fault_server.hits["/flaky-drop/get"] == 3
    (record,) = records
    assert (record.ok, record.attempts, record.error) == (True, 3, None)
    assert fault_server.hits["/flaky-drop/many"] == 3


async def test_retry_gives_up_when_failures_outlast_retries(fault_server: FaultServer) -> None:
    async with Client(timeouts=QUICK, retry=retries(2)) as client:
        with pytest.raises(ServerDisconnectedError) as info:
            await client.get(fault_server.url("/flaky-drop/long?n=5"))
    assert info.value.attempts == 3
    assert fault_server.hits["/flaky-drop/long"] == 3


async def test_retry_after_503s_then_success(fault_server: FaultServer) -> None:
    async with Client(timeouts=QUICK, retry=retries(2)) as client:
        response = await client.get(fault_server.url("/flaky-status/get?n=2&code=503"))
        url = fault_server.url("/flaky-status/many?n=2&code=503")
        records = [r async for r in client.fetch_many([url])]
    assert (response.status, response.attempts) == (200, 3)
    assert fault_server.hits["/flaky-status/get"] == 3
    (record,) = records
    assert (record.ok, record.status, record.attempts) == (True, 200, 3)


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


@pytest.mark.parametrize("code", [429, 503])
async def test_retry_after_header_is_honoured(fault_server: FaultServer, code: int) -> None:
    async with Client(timeouts=QUICK, retry=retries(2)) as client:
        response = await client.get(fault_server.url(f"/flaky-status/ra?n=1&code={code}&after=1"))
    assert (response.status, response.attempts) == (200, 2)
    (gap,) = gaps(fault_server.times["/flaky-status/ra"])
    assert 0.95 <= gap < 2.0, gap


async def test_retry_after_header_is_capped(fault_server: FaultServer) -> None:
    policy = retries(2, retry_after_max=0.2)
    async with Client(timeouts=QUICK, retry=policy) as client:
        response = await client.get(fault_server.url("/flaky-status/cap?n=2&code=503&after=30"))
    assert (response.status, response.attempts) == (200, 3)
    for gap in gaps(fault_server.times["/flaky-status/cap"]):
        assert 0.18 <= gap < 0.8, gap


# -- host_unavailable ---------------------------------------------------------------


async def test_host_unavailable_when_a_host_stays_down(unused_port: int) -> None:
    """The circuit opens after a few refused connects; once the host has been down
    for host_down_after, its other URLs get host_unavailable without being tried."""
    urls = [f"http://127.0.0.1:{unused_port}/item/{i}" for i in range(40)]
    policy = Politeness(breaker_after=3, cooldown=0.1, host_down_after=0.5)
    started = time.monotonic()
    async with Client(retry=retries(0), timeouts=QUICK) as client:
        records = [r async for r in client.fetch_many(urls, politeness=policy)]
    elapsed = time.monotonic() - started
    assert len(records) == 40
    kinds = [r.error.kind for r in records if r.error is not None]
    assert set(kinds) == {"connect_refused", "host_unavailable"}
    tried = [r for r in records if r.error is not None and r.error.kind == "connect_refused"]
    given_up = [r for r in records if r.error is not None and r.error.kind == "host_unavailable"]
    assert all(r.attempts == 1 for r in tried) and all(r.attempts == 0 for r in given_up)
    assert len(tried) < 15  # a few probes, not one connect per URL
    assert "not attempted" in given_up[0].error.message  # type: ignore[union-attr]
    assert 0.4 < elapsed < 3


# -- worker_lost --------------------------------------------------------------------


def test_worker_lost_is_the_final_record_of_a_url_handed_out_too_often() -> None:
    """Distributed mode (tests/test_distributed.py runs it for real): the record a URL
    gets instead of a 4th hand-out, with the input's meta, not retried."""
    from surefetch._redis_worker import lost_record
    from surefetch.sources import Item

    record = lost_record(Item("http://u:secret@127.0.0.1:9/x", meta={"row": 7}), 4)
    assert record.error is not None and record.error.kind == "worker_lost"
    assert "3 times" in record.error.message
    assert (record.ok, record.attempts, record.meta) == (False, 0, {"row": 7})
    assert "secret" not in record.url
    assert not WorkerLostError.transient


# -- robots_disallowed --------------------------------------------------------------


async def test_robots_disallowed_urls_are_never_sent(
    robots_server: tuple[str, dict[str, int]],
) -> None:
    base, hits = robots_server
    urls = [f"{base}/public/{i}" for i in range(2)] + [f"{base}/private/{i}" for i in range(3)]
    started = time.monotonic()
    async with Client(timeouts=QUICK) as client:
        records = [r async for r in client.fetch_many(urls, robots=True)]
    elapsed = time.monotonic() - started
    by_url = {r.url: r for r in records}
    assert by_url[f"{base}/public/0"].ok and by_url[f"{base}/public/1"].ok
    for i in range(3):
        private = by_url[f"{base}/private/{i}"]
        assert private.error is not None and private.error.kind == "robots_disallowed"
        assert private.attempts == 0 and private.status is None
    assert hits == {"/robots.txt": 1, "/public/0": 1, "/public/1": 1}
    # Crawl-delay: 1 spaces the two public requests a second apart.
    assert 0.9 <= elapsed < 3


# -- messages ----------------------------------------------------------------------

#: Names that would make a message say nothing: exception classes of Python and aiohttp.
CLASS_NAMES = frozenset(
    name
    for module in (builtins, aiohttp, http_exceptions, ssl)
    for name, value in vars(module).items()
    if isinstance(value, type) and issubclass(value, BaseException)
)


def assert_specific(message: str) -> None:
    """A message that says what happened: one line of words, no empty detail
    (``"cannot connect to host:port: "``) and not a bare class name, as a whole or as
    the detail after its last colon."""
    assert message, "empty message"
    assert message == message.strip(), repr(message)
    assert "\n" not in message and "\r" not in message, repr(message)
    assert not message.endswith(":"), repr(message)
    assert len(re.findall(r"[A-Za-z]{2,}", message)) >= 2, repr(message)
    assert message not in CLASS_NAMES, repr(message)
    detail = message.rsplit(": ", 1)[-1]
    assert re.search(r"[A-Za-z0-9]", detail), repr(message)  # not "()"
    assert detail.strip("()[] ") not in CLASS_NAMES, repr(message)
    assert "[None]" not in message, repr(message)  # str() of an error without strerror


#: (path, kind) for every behaviour of the fault server that makes a fetch fail;
#: /ok and /body (given sizes under max_body) answer normally.
FAULTS = [
    ("/status/503", "http_status"),
    ("/drop", "server_disconnected"),
    ("/reset", "connection_reset"),
    ("/reset-mid-body?mode=length", "connection_reset"),
    ("/reset-mid-body?mode=chunked", "connection_reset"),
    ("/reset-mid-body?mode=eof", "connection_reset"),
    ("/truncate?mode=length", "payload_error"),
    ("/truncate?mode=chunked", "payload_error"),
    ("/bad-chunked", "payload_error"),
    ("/bad-chunked?split=1", "payload_error"),
    ("/garbage", "protocol_error"),
    ("/bad-header", "protocol_error"),
    ("/big-header", "protocol_error"),
    ("/many-headers", "protocol_error"),
    ("/hang", "read_timeout"),
    ("/drip?interval=1&count=10", "read_timeout"),
    ("/drip?interval=0.05&count=600", "total_timeout"),
    ("/loop/m", "too_many_redirects"),
    (f"/redirect?to={quote('ftp://127.0.0.1/file', safe='')}", "redirect_blocked"),
    ("/huge?mode=length", "body_too_large"),
    ("/huge?mode=chunked", "body_too_large"),
    ("/body?size=300000&mode=eof&pieces=2", "body_too_large"),
    ("/bomb", "body_too_large"),
    ("/not-gzip", "payload_error"),
    ("/flaky-drop/m?n=5", "server_disconnected"),
    ("/flaky-status/m?n=5&code=429", "http_status"),
]


def test_every_fault_of_the_fault_server_is_in_the_message_table() -> None:
    routes = {path.lstrip("/").split("?")[0].split("/")[0] for path, _ in FAULTS}
    assert routes == set(FaultServer()._routes) - {"ok"}


@pytest.mark.parametrize(("path", "kind"), FAULTS, ids=[path for path, _ in FAULTS])
async def test_every_fault_has_a_specific_message(
    fault_server: FaultServer, path: str, kind: str
) -> None:
    gzip_bomb()  # built before the fetch (once per process), not while it waits
    url = fault_server.url(path)
    timeouts = Timeouts(total=0.6, connect=1, read=0.3)
    limits = Limits(max_body=200_000, max_redirects=2)  # over /huge, /body, /bomb only
    async with Client(timeouts=timeouts, limits=limits, retry=retries(0)) as client:
        try:
            response = await client.get(url)
            response.raise_for_status()
        except FetchError as exc:
            error = exc
        else:
            pytest.fail(f"{path} answered {response.status} {response.body[:50]!r}")
        (record,) = [r async for r in client.fetch_many([url])]
    assert error.kind == kind, error
    assert_specific(error.message)
    assert record.error is not None
    assert record.error.kind == kind
    assert_specific(record.error.message)


async def test_connect_failures_have_specific_messages(
    blackhole: Blackhole, tls_server: TLSServer
) -> None:
    failures = [
        (f"http://127.0.0.1:{free_port()}/", "connect_refused"),
        (f"http://127.255.255.255:{free_port()}/", "connect_error"),
        ("http://nothing.invalid/", "dns_error"),
        (blackhole.url(), "connect_timeout"),
        (tls_server.url(), "tls_error"),
        ("ftp://127.0.0.1/", "invalid_url"),
    ]
    timeouts = Timeouts(total=5, connect=0.3, read=1)
    async with Client(timeouts=timeouts, retry=retries(0)) as client:
        for url, kind in failures:
            with pytest.raises(FetchError) as info:
                await client.get(url)
            assert info.value.kind == kind, info.value
            assert_specific(info.value.message)
            (record,) = [r async for r in client.fetch_many([url])]
            assert record.error is not None
            assert record.error.kind == kind
            assert_specific(record.error.message)


KEY = ConnectionKey("127.0.0.1", 8080, False, True, None, None, None)


def _caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


def _request_info() -> aiohttp.RequestInfo:
    url = URL("http://127.0.0.1:8080/")
    return aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict()), url)


#: Exceptions as aiohttp, the OS or the ssl module may raise them, saying as little
#: as they can: classify must still say what happened.
TERSE: list[tuple[str, Callable[[], BaseException]]] = [
    ("connector", lambda: aiohttp.ClientConnectorError(KEY, OSError())),
    ("connector-caused", lambda: _caused(aiohttp.ClientConnectorError(KEY, OSError()), OSError())),
    ("connector-dns", lambda: aiohttp.ClientConnectorDNSError(KEY, OSError())),
    ("connector-ssl", lambda: aiohttp.ClientConnectorSSLError(KEY, ssl.SSLError())),
    (
        "connector-cert",
        lambda: aiohttp.ClientConnectorCertificateError(KEY, ssl.SSLCertVerificationError()),
    ),
    ("connect-timeout", lambda: aiohttp.ConnectionTimeoutError()),
    ("server-timeout", lambda: aiohttp.ServerTimeoutError()),
    ("socket-timeout", lambda: aiohttp.SocketTimeoutError()),
    ("timeout", lambda: TimeoutError()),
    ("disconnected", lambda: aiohttp.ServerDisconnectedError()),
    ("payload", lambda: aiohttp.ClientPayloadError()),
    ("payload-reset", lambda: _caused(aiohttp.ClientPayloadError(), ConnectionResetError())),
    (
        "payload-parser",
        lambda: _caused(aiohttp.ClientPayloadError(), http_exceptions.BadHttpMessage("")),
    ),
    ("response", lambda: aiohttp.ClientResponseError(_request_info(), (), message="")),
    ("processing", lambda: http_exceptions.HttpProcessingError()),
    ("transfer-encoding", lambda: http_exceptions.TransferEncodingError("")),
    ("content-length", lambda: http_exceptions.ContentLengthError("")),
    ("reset", lambda: ConnectionResetError()),
    ("broken-pipe", lambda: BrokenPipeError()),
    ("client-os", lambda: aiohttp.ClientOSError()),
    ("os", lambda: OSError()),
    ("connection", lambda: aiohttp.ClientConnectionError()),
    ("invalid-url", lambda: aiohttp.InvalidURL("")),
    ("redirect", lambda: aiohttp.NonHttpUrlRedirectClientError("")),
    ("ssl", lambda: ssl.SSLError()),
    ("bug", lambda: RuntimeError()),
    ("bug-key", lambda: KeyError()),
]


@pytest.mark.parametrize("make", [make for _, make in TERSE], ids=[name for name, _ in TERSE])
def test_classify_says_what_happened_when_the_exception_says_nothing(
    make: Callable[[], BaseException],
) -> None:
    assert_specific(classify(make()).message)
