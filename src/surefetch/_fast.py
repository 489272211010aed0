"""The lean transport: HTTP/1.1 keep-alive GET and HEAD, over TCP or TLS, parsed by
httptools.

aiohttp's client spends about 100 µs of CPU and some 115 Python calls on a small GET
(its session, request and response objects, stream readers, middlewares, timers).
This transport does the common case of a bulk fetch in a few calls per request: a
request head written in one piece, an ``asyncio.Protocol`` that feeds what arrives
to httptools (llhttp, the parser family aiohttp itself uses), and one future per
response. It keeps every guarantee of the aiohttp path:

- connections pooled per host, at most ``limit`` in use and ``limit_per_host`` per
  host; idle ones closed after ``keepalive`` seconds, and at most ``idle_max`` kept
  over all hosts (the oldest host's closed first);
- every address checked against the network policy before its socket exists;
  names resolved by surefetch's resolver (c-ares, cached, one query per name);
- TLS by the client's context (certificates, client certificates, minimum version),
  its handshake under the connect timeout, its failures worded by
  :func:`~surefetch.errors.classify` as for aiohttp;
- the connect timeout; the read and total deadlines of :mod:`surefetch._deadlines`
  (the read deadline starts when the attempt has its connection and again with
  every piece that arrives);
- the body cap before and after decompression (gzip, deflate: what it offers),
  checked as the body arrives, so a decompression bomb never enters memory;
- redirects followed as aiohttp follows them, the caller's headers dropped once
  the chain leaves the URL's origin;
- the same error kinds: every failure is raised as the :class:`FetchError` that the
  aiohttp path gives for it, and a request that meets a pooled connection the server
  had closed raises :class:`StaleConnection`.

What it does not take (the client sends those through aiohttp): methods other than
GET and HEAD, request bodies, URL credentials, a header with a line break, and every
request when a proxy or cookies are set.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._deadlines import Deadlines, Task
from .errors import (
    BlockedAddressError,
    BodyTooLargeError,
    ConnectTimeoutError,
    FetchError,
    InvalidURLError,
    PayloadError,
    PeerResetError,
    ProtocolError,
    RedirectBlockedError,
    ServerDisconnectedError,
    StaleConnection,
    TLSError,
    TooManyRedirectsError,
    classify,
    connect_failure,
    dns_failure,
    is_reset,
    said,
)
from .network import NetworkPolicy
from .resolve import Resolver

__all__ = ["ACCEPT_ENCODING", "FastTransport", "Pool"]

#: What the body may be encoded in: what aiohttp offers without Brotli or zstd.
ACCEPT_ENCODING: Final = "gzip, deflate"
#: aiohttp's limits on a response head (ClientSession's defaults).
MAX_FIELD: Final = 8190
MAX_HEADERS: Final = 128
#: Idle connections live this long (aiohttp's keepalive_timeout); read per pool.
KEEPALIVE = 15.0
#: Seconds a closing pool waits at most for its sockets to be closed.
_CLOSE_WAIT = 1.0

_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})

#: A pool of connections: host, port, and whether they are TLS.
Key = tuple[str, int, bool]


class _HeadEnd(Exception):
    """Raised from the parser's callback at the end of a HEAD response's head: llhttp
    would otherwise wait for the body its Content-Length announces."""


class _Decoder:
    """A gzip or deflate body, inflated with a bound on each piece's output."""

    __slots__ = ("encoding", "fed", "inflate")

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.inflate: Any = None
        self.fed = False

    def feed(self, data: bytes, room: int) -> bytes:
        """``data`` inflated, at most ``room + 1`` bytes (more means too large)."""
        if self.inflate is None:
            if not data:
                return b""
            # RFC 1950: a zlib stream's first byte says deflate (8); servers that send
            # raw deflate under "deflate" are common, and aiohttp takes them too.
            if self.encoding == "gzip":
                wbits = 16 + zlib.MAX_WBITS
            elif data[0] & 0xF == 8:
                wbits = zlib.MAX_WBITS
            else:
                wbits = -zlib.MAX_WBITS  # a raw deflate stream, without the zlib header
            self.inflate = zlib.decompressobj(wbits)
        self.fed = True
        try:
            return self.inflate.decompress(data, room + 1)  # type: ignore[no-any-return]
        except zlib.error as exc:
            raise self.broken(exc) from exc

    def end(self) -> bytes:
        if self.inflate is None:
            return b""
        try:
            rest: bytes = self.inflate.flush()
        except zlib.error as exc:
            raise self.broken(exc) from exc
        if self.fed and self.encoding == "deflate" and not self.inflate.eof:
            raise PayloadError(
                f"response body is broken: cannot decode content-encoding {self.encoding}:"
                " the compressed stream ends early"
            )
        return rest

    def broken(self, exc: Exception) -> PayloadError:
        return PayloadError(
            said(f"response body is broken: cannot decode content-encoding {self.encoding}", exc)
        )


class _Connection(asyncio.Protocol):
    """One keep-alive connection, and the exchange on it (one at a time)."""

    __slots__ = (
        "_deadlines",
        "_pool",
        "body",
        "closed",
        "decoder",
        "delimited",
        "done",
        "got",
        "head",
        "headers",
        "idle_since",
        "is_head",
        "keep_alive",
        "key",
        "limit",
        "parser",
        "raw",
        "reused",
        "size",
        "status",
        "task",
        "transport",
        "waiter",
    )

    def __init__(self, pool: Pool, key: Key) -> None:
        self._pool = pool
        self._deadlines = pool.deadlines
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.waiter: asyncio.Future[None] | None = None
        self.task: Task | None = None
        self.raw: list[bytes] = []  # the head's names and values, in turn
        self.headers: CIMultiDictProxy[str] | None = None
        self.body: list[bytes] = []
        self.status = 0
        self.size = 0
        self.limit = 0
        self.head = False
        self.is_head = False
        self.done = False
        self.got = False
        self.delimited = False  # the body ends with the connection
        self.keep_alive = False
        self.decoder: _Decoder | None = None

    # -- the exchange ----------------------------------------------------------

    def send(self, head: bytes, is_head: bool, limit: int, task: Task) -> asyncio.Future[None]:
        """Write a request; the future ends when its whole response is in."""
        assert self.transport is not None
        self.waiter = waiter = self._pool.loop.create_future()
        self.task = task
        self.is_head = is_head
        self.limit = limit
        self.raw = []
        self.headers = None
        self.body = []
        self.size = 0
        self.head = self.done = self.got = self.delimited = self.keep_alive = False
        self.decoder = None
        self.transport.write(head)
        return waiter

    def _fail(self, error: BaseException) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.keep_alive = False
        if self.transport is not None:
            self.transport.abort()

    def _complete(self) -> None:
        self.done = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._pool.open.add(self)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.done:  # nothing asked: a broken server
            self.keep_alive = False
            if self.transport is not None:
                self.transport.abort()
            return
        self.got = True
        if self.task is not None:
            self._deadlines.waiting(self.task)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("malformed response: the server switched protocols"))
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadEnd):
                self.parser = httptools.HttpResponseParser(self)  # llhttp is stuck now
                self._complete()
            elif cause is not None:  # ours: a FetchError, or a bug (an internal_error)
                self._fail(cause)
            else:
                self._fail(self._parse_error(exc, data))

    def _parse_error(self, exc: Exception, data: bytes) -> FetchError:
        """What llhttp refused, in words, with the bytes it was reading."""
        reason = str(exc).rstrip(".") or type(exc).__name__
        piece = data[:48]
        where = f" (in {piece!r}{'...' if len(data) > 48 else ''})"
        if self.head:
            return PayloadError(f"response body is broken: {reason}{where}")
        if self.parser.get_status_code() == 0:
            return ProtocolError(f"malformed response: bad status line: {reason}{where}")
        return ProtocolError(f"malformed response: bad header: {reason}{where}")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.keep_alive = False
        self._pool.lost(self)
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        reset = is_reset(exc)
        error: FetchError
        if not self.head:
            if reset:
                assert exc is not None
                error = PeerResetError(said("connection reset by the server", exc))
            else:
                error = ServerDisconnectedError(
                    "server closed the connection without a complete response"
                )
            error.__cause__ = exc
            if self.reused and not self.got:
                waiter.set_exception(StaleConnection(error))
                return
        elif self.delimited and exc is None:
            try:
                self._end_body()
            except FetchError as failure:
                waiter.set_exception(failure)
                return
            self._complete()
            return
        elif reset or (self.delimited and isinstance(exc, OSError)):
            error = PeerResetError(said("connection reset by the server mid-body", exc or ""))
        else:
            assert self.headers is not None
            declared = self.headers.get("Content-Length")
            came = f"{declared} bytes declared" if declared else "before the last chunk"
            error = PayloadError(
                "response body is broken: not completed: the connection closed after"
                f" {self.size} bytes ({came})"
            )
        error.__cause__ = exc
        waiter.set_exception(error)

    # -- httptools callbacks ---------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        raw = self.raw
        raw.append(name)
        raw.append(value)
        if len(name) + len(value) > MAX_FIELD:
            raise ProtocolError(
                f"malformed response: a header line is longer than {MAX_FIELD} bytes"
            )
        if len(raw) > 2 * MAX_HEADERS:
            raise ProtocolError(f"malformed response: too many headers (over {MAX_HEADERS})")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 1xx: another head follows (101 is an upgrade: refused)
            self.raw = []
            return
        if self.done:
            raise ProtocolError("malformed response: data after the response")
        self.status = status
        self.head = True
        # Names and values, decoded at once (llhttp lets no NUL through in either).
        fields = b"\0".join(self.raw).decode("utf-8", "surrogateescape").split("\0")
        pairs = zip(fields[::2], fields[1::2], strict=True) if self.raw else ()
        headers = self.headers = CIMultiDictProxy(CIMultiDict(pairs))
        declared = headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            error = BodyTooLargeError(f"Content-Length {declared} exceeds max_body {self.limit}")
            raise error
        if self.is_head:
            self.keep_alive = self.parser.should_keep_alive()
            raise _HeadEnd
        encoding = headers.get("Content-Encoding")
        if encoding is not None:
            encoding = encoding.lower()
            if encoding in ("gzip", "deflate"):
                self.decoder = _Decoder(encoding)
            elif encoding in ("br", "zstd"):
                raise PayloadError(
                    f"response body is broken: cannot decode content-encoding {encoding}"
                    " (it was not offered)"
                )
        framing = headers.get("Transfer-Encoding")
        chunked = framing is not None and framing.lower().rstrip().endswith("chunked")
        # No length and not chunked: the body is what comes until the server closes.
        self.delimited = declared is None and not chunked and status not in (204, 304)

    def on_body(self, data: bytes) -> None:
        decoder = self.decoder
        if decoder is not None:
            data = decoder.feed(data, self.limit - self.size)
        self.size += len(data)
        if self.size > self.limit:
            raise self._too_large()
        self.body.append(data)

    def on_message_complete(self) -> None:
        if not self.head:  # the end of a 1xx
            return
        self.keep_alive = self.parser.should_keep_alive()
        self._end_body()
        self._complete()

    def _end_body(self) -> None:
        if self.decoder is not None:
            rest = self.decoder.end()
            if rest:
                self.size += len(rest)
                if self.size > self.limit:
                    raise self._too_large()
                self.body.append(rest)

    def _too_large(self) -> BodyTooLargeError:
        return BodyTooLargeError(f"body exceeds max_body {self.limit} bytes (after decompression)")


class Pool:
    """The transport's connections, per host: in use, idle, and waited for."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        deadlines: Deadlines,
        resolver: Resolver,
        network: NetworkPolicy,
        *,
        limit: int,
        limit_per_host: int,
        idle_max: int,
        connect_timeout: float,
        tls: Callable[[], ssl.SSLContext] | None = None,
        keepalive: float | None = None,
    ) -> None:
        self.loop = loop
        self.deadlines = deadlines
        self.resolver = resolver
        self.network = network
        self.limit = limit
        self.limit_per_host = limit_per_host
        #: The most idle connections kept, over all hosts.
        self.idle_max = idle_max
        self.connect_timeout = connect_timeout
        #: The TLS context for https connections, made on first use (None: no https).
        self.tls = tls
        self.keepalive = KEEPALIVE if keepalive is None else keepalive
        self.in_use = 0
        self.busy: dict[Key, int] = {}
        #: Idle connections per host, the host that released one last at the end.
        self.idle: dict[Key, list[_Connection]] = {}
        self.idle_count = 0
        self.waiters: deque[tuple[Key, asyncio.Future[None]]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        #: Every connection made and not yet lost; set once the pool closed, all are.
        self.open: set[_Connection] = set()
        self._all_lost = asyncio.Event()

    def _fits(self, key: Key) -> bool:
        return self.in_use < self.limit and self.busy.get(key, 0) < self.limit_per_host

    def _take(self, key: Key) -> None:
        self.in_use += 1
        self.busy[key] = self.busy.get(key, 0) + 1

    def _give(self, key: Key) -> None:
        self.in_use -= 1
        left = self.busy[key] - 1
        if left:
            self.busy[key] = left
        else:
            del self.busy[key]
        if self.waiters:
            self._wake()

    def _wake(self) -> None:
        for key, waiter in list(self.waiters):
            if not waiter.done() and self._fits(key):
                waiter.set_result(None)

    async def acquire(self, url: URL, key: Key) -> _Connection:
        """A connection to ``key`` (pooled if one is idle), counted as in use."""
        while not self._fits(key):
            waiter = self.loop.create_future()
            entry = (key, waiter)
            self.waiters.append(entry)
            try:
                await waiter
            finally:
                self.waiters.remove(entry)
        idle = self.idle.get(key)
        while idle:
            connection = idle.pop()
            self.idle_count -= 1
            if not idle:
                del self.idle[key]
            if not connection.closed:
                if self.loop.time() - connection.idle_since < self.keepalive:
                    self._take(key)
                    connection.reused = True
                    return connection
                connection.transport.close()  # type: ignore[union-attr]
            idle = self.idle.get(key)
        self._take(key)
        try:
            return await self._dial(url, key)
        except BaseException:
            self._give(key)
            raise

    def release(self, connection: _Connection) -> None:
        """The exchange on ``connection`` ended: keep it for the next, or close it."""
        key = connection.key
        self._give(key)
        if not connection.keep_alive or connection.closed or self._closed:
            if connection.transport is not None and not connection.closed:
                connection.transport.close()
            return
        connection.waiter = None
        connection.task = None
        connection.idle_since = self.loop.time()
        idle = self.idle.pop(key, None)  # popped and put back: the newest host goes last
        if idle is None:
            idle = []
        idle.append(connection)
        self.idle[key] = idle
        self.idle_count += 1
        if self.idle_count > self.idle_max:
            self._evict()
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.keepalive, self._sweep)

    def _evict(self) -> None:
        """Close idle connections, the oldest of the host that released one longest ago
        first, until at most ``idle_max`` are left."""
        hosts = self.idle
        while self.idle_count > self.idle_max:
            oldest = next(iter(hosts))
            pooled = hosts[oldest]
            stale = pooled.pop(0)
            if not pooled:
                del hosts[oldest]
            self.idle_count -= 1
            stale.transport.close()  # type: ignore[union-attr]

    def discard(self, connection: _Connection) -> None:
        """The exchange failed or was cancelled: the connection cannot be reused."""
        connection.keep_alive = False
        if connection.transport is not None and not connection.closed:
            connection.transport.abort()
        self._give(connection.key)

    def lost(self, connection: _Connection) -> None:
        """``connection`` closed: it is no longer idle."""
        self.open.discard(connection)
        if self._closed and not self.open:
            self._all_lost.set()
        idle = self.idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)
            self.idle_count -= 1
            if not idle:
                del self.idle[connection.key]

    def _sweep(self) -> None:
        self._sweeper = None
        expired = self.loop.time() - self.keepalive
        for key in list(self.idle):
            for connection in [c for c in self.idle.get(key, ()) if c.idle_since <= expired]:
                connection.transport.close()  # type: ignore[union-attr]
                self.lost(connection)
        if self.idle and not self._closed:
            self._sweeper = self.loop.call_later(self.keepalive, self._sweep)

    async def close(self) -> None:
        """Close every connection (those in use are aborted) and wait until their
        sockets are (the event loop closes one after the call that asks it to)."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        idle = {connection for pooled in self.idle.values() for connection in pooled}
        self.idle.clear()
        self.idle_count = 0
        for connection in list(self.open):
            transport = connection.transport
            assert transport is not None  # set before the connection was counted
            if connection in idle:
                transport.close()
            else:
                transport.abort()
        if self.open:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_WAIT):
                    await self._all_lost.wait()

    # -- new connections -------------------------------------------------------

    async def _dial(self, url: URL, key: Key) -> _Connection:
        host, port, _ = key
        network = self.network
        if (why := network.blocked_name(host)) is not None:
            raise BlockedAddressError(f"blocked {host}: {why}")
        answers = _literal(host, port)
        if answers is None:
            try:
                answers = await self.resolver.resolve(host, port, family=socket.AF_UNSPEC)
            except OSError as exc:
                raise dns_failure(host, exc) from exc
        blocked: dict[str, str] = {}
        failure: OSError | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                for answer in answers:
                    address = answer["host"]
                    why = network.blocked(host, address)
                    if why is not None:
                        blocked[address] = why
                        continue
                    try:
                        sock = await self._socket(answer)
                    except OSError as exc:
                        failure = exc
                        continue
                    return await self._open(sock, key)
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                f"connect did not complete in time: Connection timeout to host {url}"
            ) from exc
        if failure is None:  # every address was refused by the policy
            address, why = next(iter(blocked.items()))
            shown = f"[{address}]" if ":" in address else address
            where = f"{shown}:{port}"
            if host.strip("[]") != address:
                where += f" ({host})"
            raise BlockedAddressError(f"blocked {where}: {why}")
        raise connect_failure(host, port, failure) from failure

    async def _socket(self, answer: Mapping[str, Any]) -> socket.socket:
        """A TCP connection to one address of the host (an ``OSError`` if refused...)."""
        family = answer["family"] or (socket.AF_INET6 if ":" in answer["host"] else socket.AF_INET)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if family == socket.AF_INET6:
                target: tuple[Any, ...] = (answer["host"], answer["port"], 0, 0)
            else:
                target = (answer["host"], answer["port"])
            await self.loop.sock_connect(sock, target)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _open(self, sock: socket.socket, key: Key) -> _Connection:
        """The connection over a connected socket: its TLS handshake first, for https."""
        host, port, secure = key
        connection = _Connection(self, key)
        try:
            if not secure:
                await self.loop.create_connection(lambda: connection, sock=sock)
                return connection
            assert self.tls is not None
            await self.loop.create_connection(
                lambda: connection, sock=sock, ssl=self.tls(), server_hostname=host
            )
        except ssl.SSLError as exc:
            sock.close()
            raise classify(exc) from exc
        except OSError as exc:  # TCP was up: the handshake was cut
            sock.close()
            how = "reset" if isinstance(exc, ConnectionResetError) and exc.errno else "closed"
            raise TLSError(
                f"the server {how} the connection during the TLS handshake with"
                f" {host}:{port}; is this an HTTPS port?"
            ) from exc
        except BaseException:
            sock.close()
            raise
        return connection


class FastTransport:
    """GET and HEAD over plain HTTP/1.1, with redirects; see the module's docstring."""

    def __init__(
        self,
        pool: Pool,
        *,
        headers: Mapping[str, str],
        scoped: tuple[str, ...],
        unscoped: frozenset[str],
        max_body: int,
        max_redirects: int,
    ) -> None:
        self.pool = pool
        self.max_body = max_body
        self.max_redirects = max_redirects
        self._unscoped = unscoped
        #: The headers of every request, by lower-case name (aiohttp's defaults first).
        self._headers: dict[str, tuple[str, str]] = {
            "accept": ("Accept", "*/*"),
            "accept-encoding": ("Accept-Encoding", ACCEPT_ENCODING),
        }
        for name, value in headers.items():
            self._headers[name.lower()] = (name, value)
        self._scoped = frozenset(name.lower() for name in scoped)
        self._lines = _lines(self._headers.values())
        self._host_given = "host" in self._headers
        #: A header with a line break in it: aiohttp refuses it, with its own error.
        self._unsafe = not _safe(headers)

    def takes(self, method: str, url: URL, data: object, headers: Mapping[str, str] | None) -> bool:
        """Whether a request is one for this transport."""
        return (
            (method == "GET" or method == "HEAD")
            and data is None
            and url.raw_user is None
            and not self._unsafe
            and (headers is None or _safe(headers))
        )

    def _head(self, method: str, url: URL, extra: Mapping[str, str] | None, left: bool) -> bytes:
        """The request's head as bytes."""
        target = url.raw_path_qs or "/"
        if extra is None and not left and not self._host_given:
            return (
                f"{method} {target} HTTP/1.1\r\nHost: {url.host_port_subcomponent}\r\n"
            ).encode() + self._lines
        headers = dict(self._headers)
        if left:
            for name in self._scoped:
                headers.pop(name, None)
        for name, value in (extra or {}).items():
            lower = name.lower()
            if left and lower not in self._unscoped:
                continue
            headers[lower] = (name, value)
        host = headers.pop("host", ("Host", url.host_port_subcomponent or ""))
        return f"{method} {target} HTTP/1.1\r\n".encode() + _lines((host, *headers.values()))

    async def exchange(
        self, method: str, url: URL, extra: Mapping[str, str] | None, task: Task
    ) -> tuple[int, CIMultiDictProxy[str], URL, bytes, int]:
        """One attempt: status, headers, final URL, body and redirects followed.

        Raises a :class:`FetchError`, or :class:`StaleConnection`."""
        origin = (url.scheme, url.raw_host, url.port)
        redirects = 0
        left = False
        pool = self.pool
        while True:
            head = self._head(method, url, extra, left)
            secure = url.scheme == "https"
            key = (url.raw_host or "", url.port or (443 if secure else 80), secure)
            connection = await pool.acquire(url, key)
            try:
                pool.deadlines.waiting(task)
                await connection.send(head, method == "HEAD", self.max_body, task)
            except BaseException as exc:
                pool.discard(connection)
                if isinstance(exc, BodyTooLargeError) and connection.headers is not None:
                    exc.status = connection.status
                    exc.final_url = str(url)
                    exc.redirects = redirects
                    exc.content_type = connection.headers.get("Content-Type")
                raise
            status = connection.status
            headers = connection.headers
            assert headers is not None
            if status in _REDIRECTS:  # counted as aiohttp counts, with or without a target
                redirects += 1
                location = headers.get("Location") or headers.get("URI")
                if redirects > self.max_redirects:
                    pool.release(connection)
                    next_hop = headers.get("Location", "?")  # as classify() tells aiohttp's
                    raise _too_many(redirects - 1, status, url, headers, next_hop)
                if location is not None:
                    pool.release(connection)
                    url = _follow(url, location)
                    left = left or (url.scheme, url.raw_host, url.port) != origin
                    continue
            body = connection.body
            pool.release(connection)
            return (
                status,
                headers,
                url,
                body[0] if len(body) == 1 else b"".join(body),
                redirects,
            )

    async def close(self) -> None:
        await self.pool.close()


def _literal(host: str, port: int) -> list[Any] | None:
    """An IP address as the resolver would answer it (None: a name to look up). The
    legacy numeric IPv4 forms (``2130706434``, ``127.1``, ``0177.0.0.1``) are refused as
    aiohttp refuses them: a policy that reads the host would not know them."""
    if ":" in host:
        family = socket.AF_INET6
    elif host.replace(".", "").isdigit():
        family = socket.AF_INET
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise InvalidURLError(
                f"not a fetchable URL: {host} - is not a canonical IPv4 address"
            ) from None
    else:
        return None
    return [{"hostname": host, "host": host, "port": port, "family": family}]


def _safe(headers: Mapping[str, str]) -> bool:
    """No line break in any name or value (it would end the header early)."""
    return not any("\r" in text or "\n" in text for pair in headers.items() for text in pair)


def _lines(headers: Any) -> bytes:
    return (
        "".join(f"{name}: {value}\r\n" for name, value in headers).encode(
            "utf-8", "surrogateescape"
        )
        + b"\r\n"
    )


def _too_many(
    followed: int, status: int, url: URL, headers: CIMultiDictProxy[str], location: str
) -> TooManyRedirectsError:
    error = TooManyRedirectsError(f"gave up after {followed} redirects (next: {location})")
    error.redirects = followed
    error.status = status
    error.final_url = str(url)
    error.content_type = headers.get("Content-Type")
    return error


def _follow(url: URL, location: str) -> URL:
    """Where a redirect leads, as aiohttp resolves it, or :class:`RedirectBlockedError`."""
    blocked = "redirect to a URL that is not http(s)"
    try:
        target = URL(location)
    except ValueError:
        raise RedirectBlockedError(
            f"{blocked}: {location} - Server attempted redirecting to a location that"
            " does not look like a URL"
        ) from None
    scheme = target.scheme
    if scheme not in ("http", "https", ""):
        raise RedirectBlockedError(f"{blocked}: {location}")
    if not scheme or (scheme == url.scheme and not target.raw_host):
        target = url.join(target)
    try:
        target.origin()
        target.port  # noqa: B018 (raises for a bad port)
    except ValueError:
        raise RedirectBlockedError(f"{blocked}: {target} - Invalid redirect URL origin") from None
    if not target.raw_host:
        raise RedirectBlockedError(f"{blocked}: {target} - Invalid redirect URL origin")
    return target
