"""The Client: one pool of connections for its whole life (the lean transport's, and
one aiohttp session, loaded only when a request needs it); a request in, a response or
a typed error out. Knows nothing of files, queues or the command line."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import functools
import json as _json
import logging
import ssl as _ssl
import time
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, cast

from multidict import CIMultiDictProxy
from yarl import URL

from . import __version__
from ._deadlines import Deadlines
from ._tune import idle_connections
from .errors import (
    BodyTooLargeError,
    ClientStateError,
    FetchError,
    HTTPStatusError,
    InternalError,
    InvalidURLError,
    ReadTimeoutError,
    RunStopped,
    StaleConnection,
    TotalTimeoutError,
    classify,
    said,
)
from .network import NetworkPolicy
from .policy import Limits, RetryPolicy, Timeouts, parse_retry_after
from .proxy import Proxies, basic_auth
from .redact import not_utf8
from .resolve import DNS, Resolver
from .tls import TLS

if TYPE_CHECKING:
    import aiohttp
    from aiohttp.client_proto import ResponseHandler

    from ._connector import Connector
    from ._fast import FastTransport
    from .engine import RecordStream
    from .polite import Politeness
    from .sources import Item

__all__ = [
    "DEFAULT_USER_AGENT",
    "TRANSPORTS",
    "AttemptEvent",
    "Client",
    "Response",
    "check_url",
]

log = logging.getLogger("surefetch.client")

DEFAULT_USER_AGENT: Final = f"surefetch/{__version__} (+aiohttp)"

#: How requests go out (``Client(transport=...)``, ``--transport``):
#:
#: - ``auto``: GET and HEAD (http and https) through the lean transport
#:   (surefetch._fast, httptools), everything else through aiohttp; all through
#:   aiohttp when a proxy or cookies are set, or httptools is missing;
#: - ``fast``: the same, but a proxy, cookies or a missing httptools is an error;
#: - ``aiohttp``: every request through aiohttp.
TRANSPORTS: Final = ("auto", "fast", "aiohttp")
#: Cookie handling (see surefetch.cookies): none kept, or each host's for that host.
COOKIE_MODES: Final = ("off", "per-host")
#: The transport of a Client made without one (the tests run their suite over each).
DEFAULT_TRANSPORT = "auto"


@functools.cache
def _warn_if_slow_parser() -> None:
    """aiohttp without its C extensions parses responses about twice as slowly: say so
    loudly, once (AIOHTTP_NO_EXTENSIONS set, or a platform without wheels), when the
    first session is made."""
    from aiohttp import http_parser

    if http_parser.HttpResponseParser is http_parser.HttpResponseParserPy:
        log.warning(
            "aiohttp is using its pure-Python HTTP parser (no C extensions): surefetch"
            " will be much slower; unset AIOHTTP_NO_EXTENSIONS or install a binary wheel"
        )


def _has_control(url: str) -> bool:
    # isprintable() is False for every control character (C0, DEL, C1, ...), in C.
    return not url.isprintable() or " " in url


def check_url(url: str | URL) -> URL:
    """Parse ``url`` and check that it can be fetched; raise :class:`InvalidURLError`.

    Accepts absolute http/https URLs with a host and a valid port; rejects whitespace
    and control characters anywhere in them.
    """
    if isinstance(url, URL):
        parsed = url
    else:
        if not url:
            raise InvalidURLError("empty URL")
        if (where := not_utf8(url)) is not None:
            raise InvalidURLError(f"URL is not valid UTF-8 ({where})")
        if _has_control(url):
            raise InvalidURLError("URL contains whitespace or control characters")
        try:
            parsed = URL(url)
        except (ValueError, TypeError) as exc:
            raise InvalidURLError(f"cannot parse URL: {exc}") from None
    scheme = parsed.scheme
    if scheme not in ("http", "https"):
        if not scheme:
            raise InvalidURLError("URL has no scheme (expected http:// or https://)")
        raise InvalidURLError(f"scheme {scheme!r} is not http or https")
    try:
        host = parsed.raw_host
        port = parsed.port
    except ValueError as exc:
        raise InvalidURLError(f"bad host or port: {exc}") from None
    if not host:
        raise InvalidURLError("URL has no host")
    if port is not None and not 0 < port < 65536:
        raise InvalidURLError(f"port {port} is out of range")
    return parsed


class Response:
    """A complete response: the body is read in full (up to ``max_body``)."""

    __slots__ = (
        "attempts",
        "body",
        "charset",
        "elapsed",
        "headers",
        "method",
        "redirects",
        "status",
        "url",
    )

    def __init__(
        self,
        *,
        method: str,
        status: int,
        headers: CIMultiDictProxy[str],
        url: URL,
        body: bytes,
        charset: str | None,
        redirects: int,
        attempts: int,
        elapsed: float,
    ) -> None:
        self.method = method
        #: HTTP status code of the final response.
        self.status = status
        #: Headers of the final response (case-insensitive).
        self.headers = headers
        #: URL of the final response, after redirects.
        self.url = url
        #: The body, decompressed.
        self.body = body
        #: The charset named in Content-Type, if any.
        self.charset = charset
        #: Redirects followed to get here.
        self.redirects = redirects
        #: Requests sent for this response, retries included.
        self.attempts = attempts
        #: Seconds from the first attempt's start to the end of the body.
        self.elapsed = elapsed

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    def text(self, encoding: str | None = None, errors: str = "replace") -> str:
        """The body as text, by ``encoding``, else the response charset, else UTF-8."""
        return self.body.decode(encoding or self.encoding, errors)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return _json.loads(self.body)

    def raise_for_status(self) -> Response:
        """Raise :class:`HTTPStatusError` unless the status is 2xx; return self."""
        if not self.ok:
            error = HTTPStatusError(f"HTTP {self.status} from {self.url}", self.status)
            error.final_url = str(self.url)
            error.redirects = self.redirects
            error.content_type = self.content_type
            raise error
        return self

    @property
    def encoding(self) -> str:
        """The codec for the body: the Content-Type charset if Python knows it, else UTF-8."""
        charset = self.charset
        if not charset:
            return "utf-8"
        codec = _CODECS.get(charset)
        if codec is None:
            try:
                codec = codecs.lookup(charset).name
            except LookupError:
                codec = "utf-8"
            if len(_CODECS) < 256:  # charsets come from servers: keep the cache small
                _CODECS[charset] = codec
        return codec

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url} {len(self.body)} bytes>"


def charset_of(content_type: str) -> str | None:
    """The ``charset`` parameter of a Content-Type value, if any."""
    if ";" not in content_type:
        return None
    known = _CHARSETS.get(content_type, _UNKNOWN)
    if known is not _UNKNOWN:
        return known  # type: ignore[return-value]
    charset = None
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').strip("'") or None
            break
    if len(_CHARSETS) < 256:  # values come from servers: keep the cache small
        _CHARSETS[content_type] = charset
    return charset


#: Content-Type value -> its charset (a run sees a handful of distinct values).
_CHARSETS: dict[str, str | None] = {}
_UNKNOWN: Final = object()


def lean_transport_missing() -> str | None:
    """Why the lean transport cannot run here (None: it can)."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "without httptools: pip install 'surefetch[fast]'"
    return None


#: Charset name (as servers send it) -> Python codec name.
_CODECS: dict[str, str] = {}


class AttemptGate(Protocol):
    """Per-host bookkeeping that hears of every attempt (see :mod:`surefetch.polite`)."""

    def attempt_done(
        self,
        key: str,
        *,
        kind: str | None,
        status: int | None,
        latency: float,
        retry_after: float | None = None,
    ) -> None: ...

    def retry_allowed(self, key: str) -> float | None: ...


@dataclass(frozen=True, slots=True)
class AttemptEvent:
    """One step of one request, for ``Client(on_event=...)``.

    - ``start``: attempt number ``attempt`` is about to be sent.
    - ``finish``: it ended, with ``status`` (a response) or ``kind`` (an error kind),
      after ``elapsed`` seconds.
    - ``retry``: another attempt follows after ``delay`` seconds, because of
      ``kind`` or ``status``.
    """

    type: Literal["start", "finish", "retry"]
    url: str
    method: str
    attempt: int
    status: int | None = None
    kind: str | None = None
    elapsed: float | None = None
    delay: float | None = None


class Client:
    """An HTTP client that owns its connections for its whole life: the lean
    transport's pool, and one aiohttp session and connector (made with the client
    without the lean transport, else when the first request it does not take comes).

    Use it as ``async with Client() as client:``. Every request runs under the
    timeouts, limits and retry policy given here. :meth:`get` and :meth:`request`
    return a :class:`Response` (any status) or raise a :class:`FetchError` subclass;
    :meth:`fetch_many` yields one record per URL and never raises for a single URL.

    Closing waits for the requests in flight, then closes every connection.
    """

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        ssl: _ssl.SSLContext | bool | TLS = True,
        on_event: Callable[[AttemptEvent], None] | None = None,
        dns: DNS | None = None,
        network: NetworkPolicy | None = None,
        proxy: Proxies | None = None,
        cookies: Literal["off", "per-host"] = "off",
        netrc: bool | str = False,
        transport: str | None = None,
    ) -> None:
        self.limits = limits or Limits()
        #: Which addresses may be connected (:class:`~surefetch.NetworkPolicy`; by
        #: default all but the cloud metadata addresses).
        self.network = network if network is not None else NetworkPolicy()
        #: How host names are resolved (:class:`~surefetch.DNS`: c-ares, cached, bounded).
        self.dns = dns or DNS()
        self._resolver: Resolver | None = None
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self._headers = {"User-Agent": user_agent, **(headers or {})}
        # The caller's headers go to the URL's origin only (see _Hop).
        self._scoped = tuple(n for n in headers or () if n.lower() not in _UNSCOPED)
        #: The TLS settings, when given as :class:`~surefetch.TLS` (else None).
        self.tls = ssl if isinstance(ssl, TLS) else None
        self._ssl: _ssl.SSLContext | bool = (
            ssl if not isinstance(ssl, TLS) else True if ssl.default else ssl.context()
        )
        #: Proxies (:class:`~surefetch.Proxies`), if any.
        self.proxy = proxy if proxy is not None and proxy.any else None
        self._hop_proxies = self.proxy if self.proxy is not None and not self.proxy.socks else None
        if self.proxy is not None and self.proxy.socks is not None:
            if self.network.filters:
                raise ValueError(
                    "a network policy (deny rules, block_private) cannot be enforced through"
                    " a SOCKS proxy: it connects to the addresses, not us"
                )
            from ._connector import socks_available

            if (why := socks_available()) is not None:
                raise ValueError(why)
        if cookies not in COOKIE_MODES:
            raise ValueError(f"cookies must be 'off' or 'per-host', got {cookies!r}")
        #: Cookie handling: "off" (none kept) or "per-host" (see surefetch.cookies).
        self.cookies = cookies
        #: The netrc file read for credentials (``netrc=True``: $NETRC or ~/.netrc).
        self.netrc: str | None = None
        self._netrc: dict[str, str] | None = None
        if netrc:
            self.netrc, self._netrc = _read_netrc(None if netrc is True else netrc)
        #: The transport asked for (:data:`TRANSPORTS`), and whether the lean one is used.
        self.transport = transport or DEFAULT_TRANSPORT
        self.lean = self._lean_transport(self.transport)
        self._fast: FastTransport | None = None
        self._tls_made: _ssl.SSLContext | None = None
        #: Called with every :class:`AttemptEvent` (e.g. to export metrics).
        self.on_event = on_event
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: Deadlines | None = None
        self._connector: Connector | None = None
        self._closing = False
        self._inflight = 0
        self._idle = asyncio.Event()
        self._streams: set[asyncio.Task[None]] = set()

    def _lean_transport(self, transport: str) -> bool:
        """Whether requests it takes go through the lean transport; ``ValueError`` for
        ``fast`` with what it cannot do."""
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        if transport == "aiohttp":
            return False
        why = None
        if self.proxy is not None:
            why = "proxies"
        elif self.cookies != "off":
            why = "cookies"
        elif (missing := lean_transport_missing()) is not None:
            why = missing
        if why is not None and transport == "fast":
            raise ValueError(f"the fast transport does not do {why}; use transport auto")
        return why is None

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Client:
        if self._loop is not None or self._closing:
            raise ClientStateError("a Client can be opened only once; make a new one")
        self._loop = asyncio.get_running_loop()
        timeouts = self.timeouts
        # The total and read timeouts are kept here, on two timer handles for all
        # requests (see surefetch._deadlines); aiohttp keeps the connect timeout.
        self._deadlines = Deadlines(self._loop, total=timeouts.total, read=timeouts.read)
        self._resolver = Resolver(self.dns)
        if self.lean:
            # aiohttp (a fifth of a second of a core to import) waits for a request
            # that the lean transport does not take.
            self._fast = self._open_fast(self._loop, self._deadlines, self._resolver)
        else:
            self._open_session()
        self._idle.set()
        return self

    def _open_session(self) -> aiohttp.ClientSession:
        """The aiohttp session and its connector, made once, when the first request
        that needs them comes (at once without the lean transport)."""
        import aiohttp

        from ._connector import Connector, ResponseProtocol
        from .cookies import cookie_jar

        _warn_if_slow_parser()
        assert self._loop is not None and self._deadlines is not None
        timeouts, limits = self.timeouts, self.limits
        self._connector = connector = Connector(
            self._deadlines,
            idle_hosts=max(1, idle_connections(limits.concurrency) // limits.per_host),
            network=self.network,
            limit=limits.concurrency,
            limit_per_host=limits.per_host,
            # The resolver's cache (TTLs, bounded, single flight) is the one DNS cache.
            resolver=self._resolver,
            use_dns_cache=False,
            ssl=self._ssl,
            socks=self.proxy.socks if self.proxy is not None else None,
        )
        # aiohttp loses two body errors (see ResponseProtocol): its connections use ours.
        factory = functools.partial(ResponseProtocol, loop=self._loop)
        connector._factory = cast("functools.partial[ResponseHandler]", factory)
        self._session = session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect),
            auto_decompress=True,
            raise_for_status=False,
            trust_env=False,
            cookie_jar=cookie_jar(self.cookies),
        )
        # aiohttp silently resends an idempotent request once when the connection
        # drops or resets before the response; the retry policy is the only retry
        # here, so that ``attempts`` counts every request sent. (There is no public
        # switch; aiohttp's own test client turns it off the same way.)
        session._retry_connection = False
        return session

    def _open_fast(
        self, loop: asyncio.AbstractEventLoop, deadlines: Deadlines, resolver: Resolver
    ) -> FastTransport:
        from ._fast import FastTransport, Pool

        limits = self.limits
        pool = Pool(
            loop,
            deadlines,
            resolver,
            self.network,
            limit=limits.concurrency,
            limit_per_host=limits.per_host,
            idle_max=idle_connections(limits.concurrency),
            connect_timeout=self.timeouts.connect,
            tls=self._tls_context,
        )
        return FastTransport(
            pool,
            headers=self._headers,
            scoped=self._scoped,
            unscoped=_UNSCOPED,
            max_body=limits.max_body,
            max_redirects=limits.max_redirects,
        )

    def _tls_context(self) -> _ssl.SSLContext:
        """The lean transport's TLS context, made when its first https URL comes: the
        one given, or one as aiohttp makes it (verifying; or not, for ``ssl=False``)."""
        context = self._tls_made
        if context is None:
            if isinstance(self._ssl, _ssl.SSLContext):
                context = self._ssl
            else:
                context = _ssl.create_default_context()
                if not self._ssl:
                    context.check_hostname = False
                    context.verify_mode = _ssl.CERT_NONE
            self._tls_made = context
        return context

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop taking requests, wait for those in flight, close every connection.

        Record streams from :meth:`fetch_many` that are still running are cancelled.
        Safe to call more than once.
        """
        self._closing = True
        try:
            for task in list(self._streams):
                task.cancel()
            while self._streams:
                await asyncio.wait(list(self._streams))
            await self._idle.wait()
        finally:
            if self._fast is not None:
                await self._fast.close()
            # Read now: a request in flight until then may have made it.
            session, self._session = self._session, None
            if session is not None:
                await session.close()
            if self._resolver is not None:
                await self._resolver.close()
            if self._deadlines is not None:
                self._deadlines.close()

    @property
    def closed(self) -> bool:
        return self._closing

    def connection_settings(self) -> dict[str, Any]:
        """The network policy, TLS, proxy, cookie and netrc settings as plain data, for
        another process (``--workers N``); :func:`connection_options` turns them back
        into keyword arguments of :class:`Client`."""
        if self.tls is None and self._ssl is not True:
            raise ValueError("only TLS settings (ssl=TLS(...)) can go to other processes")
        proxy = self.proxy
        return {
            "network": {
                "rules": list(self.network.rules),
                "block_private": self.network.block_private,
            },
            "tls": None if self.tls is None else dataclasses.asdict(self.tls),
            "proxy": None
            if proxy is None
            else {
                "http": proxy.http,
                "https": proxy.https,
                "no_proxy": list(proxy.no_proxy),
                "hosts": [list(pair) for pair in proxy.hosts],
            },
            "cookies": self.cookies,
            "netrc": self.netrc,
            "transport": self.transport,
        }

    @property
    def headers(self) -> dict[str, str]:
        """The headers sent with every request (User-Agent included)."""
        return dict(self._headers)

    def _check(self) -> None:
        if self._closing:
            raise ClientStateError("this Client is closed")
        if self._loop is None:
            raise ClientStateError("use the Client inside 'async with Client() as client:'")
        if asyncio.get_running_loop() is not self._loop:
            raise ClientStateError(
                "this Client belongs to another event loop; make one Client per loop"
            )

    # -- requests ----------------------------------------------------------------

    async def get(self, url: str | URL, *, headers: Mapping[str, str] | None = None) -> Response:
        """GET ``url``, with retries. Returns the response whatever its status;
        raises a :class:`FetchError` subclass when no response could be had."""
        return await self.request("GET", url, headers=headers)

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | str | None = None,
        json: Any = None,
        gate: AttemptGate | None = None,
    ) -> Response:
        """Send one request, retrying as the retry policy allows.

        The raised :class:`FetchError` carries ``attempts`` (requests sent) and
        ``elapsed`` (seconds) as attributes, like :class:`Response` does. ``gate``
        (used by the engine's per-host politeness) hears of every attempt and may
        veto or delay a retry.
        """
        self._check()
        started = time.monotonic()
        try:
            target = check_url(url)
        except InvalidURLError as exc:
            _annotate(exc, 0, started)
            raise
        if json is not None:
            data = _json.dumps(json).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        return await self.send(method, target, headers=headers, data=data, gate=gate)

    async def send(
        self,
        method: str,
        target: URL,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | str | None = None,
        gate: AttemptGate | None = None,
        gate_key: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> Response:
        """:meth:`request` for a URL that :func:`check_url` already accepted (the
        engine checks every URL once, when it reads it). ``gate_key`` is the host key
        the gate knows the URL's host by (``host:port``), if the caller has it.

        Once ``stop`` is set no retry starts (also not one waiting out its delay):
        :class:`RunStopped` is raised instead, and the URL is left for the next run."""
        self._check()
        method = method.upper()
        started = time.monotonic()
        if self._netrc is not None and target.raw_user is None:
            login = self._netrc.get(target.raw_host or "")
            if login is not None and not self._has_authorization(headers):
                headers = {**(headers or {}), "Authorization": login}
        if target.raw_user is not None and self._has_authorization(headers):
            error = InvalidURLError(
                "the URL carries credentials and an Authorization header is set too;"
                " use one of them"
            )
            _annotate(error, 0, started)
            raise error
        self._inflight += 1
        self._idle.clear()
        url = target
        try:
            retry = self.retry
            on_event = self.on_event
            key = gate_key
            if key is None:
                key = f"{url.raw_host}:{url.port}" if gate is not None else ""
            attempts = 0
            kind: str | None
            status: int | None
            while True:
                attempts += 1
                if on_event is not None:
                    on_event(AttemptEvent("start", str(url), method, attempts))
                began = time.monotonic()
                try:
                    response = await self._attempt(method, url, headers, data)
                except FetchError as exc:
                    kind, status, answer, headers_in = exc.kind, exc.status, None, None
                    failure: FetchError | None = exc
                else:
                    kind, status, answer, headers_in = (
                        None,
                        response.status,
                        response,
                        response.headers,
                    )
                    failure = None
                ended = time.monotonic()
                took = ended - began
                if on_event is not None:
                    on_event(AttemptEvent("finish", str(url), method, attempts, status, kind, took))
                if gate is not None:
                    after = None
                    if headers_in is not None and status in (429, 503):
                        after = parse_retry_after(headers_in.get("Retry-After"))
                    gate.attempt_done(
                        key, kind=kind, status=status, latency=took, retry_after=after
                    )
                if failure is not None:
                    delay = retry.delay(attempts, method=method, kind=kind)
                elif status in retry.statuses:
                    delay = retry.delay(attempts, method=method, status=status, headers=headers_in)
                else:  # the common case: a response not worth another try
                    delay = None
                if delay is not None and stop is not None and stop.is_set():
                    raise RunStopped(f"stopped before attempt {attempts + 1}")
                if delay is not None and gate is not None and not self._closing:
                    wait = gate.retry_allowed(key)  # the host's budget, rate and pauses
                    delay = None if wait is None else max(delay, wait)
                if delay is None or self._closing:
                    if failure is not None:
                        _annotate(failure, attempts, started)
                        raise failure
                    assert answer is not None
                    answer.attempts = attempts
                    answer.elapsed = ended - started
                    return answer
                if on_event is not None:
                    on_event(
                        AttemptEvent("retry", str(url), method, attempts, status, kind, None, delay)
                    )
                if log.isEnabledFor(logging.INFO):
                    log.info(
                        "retrying %s after %s in %.2f s",
                        url,
                        kind or f"HTTP {status}",
                        delay,
                        extra={
                            "url": str(url),
                            "attempt": attempts,
                            "kind": kind,
                            "status": status,
                            "delay": round(delay, 3),
                        },
                    )
                if stop is None:
                    await asyncio.sleep(delay)
                elif await _stopped_within(stop, delay):
                    raise RunStopped(f"stopped before attempt {attempts + 1}")
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    def _has_authorization(self, headers: Mapping[str, str] | None) -> bool:
        names = [*self._headers, *(headers or ())]
        return any(name.lower() == "authorization" for name in names)

    async def _attempt(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str] | None,
        data: bytes | str | None,
    ) -> Response:
        """One attempt: a request and its response, however many connections it takes."""
        task = asyncio.current_task()
        if task is None:  # a coroutine driven by hand, not by the event loop
            raise ClientStateError("requests must run in an asyncio task")
        cancelling = task.cancelling()
        resent = 0
        while True:
            try:
                return await self._exchange(method, url, headers, data, task, cancelling)
            except StaleConnection as stale:
                # The server had closed that pooled connection: it never saw the
                # request. Send it again at once on another (at most once per
                # connection the host's pool can hold); this is not an attempt.
                if resent >= self.limits.per_host or method not in self.retry.methods:
                    raise stale.error from stale.error.__cause__
                resent += 1

    async def _exchange(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str] | None,
        data: bytes | str | None,
        task: asyncio.Task[Any],
        cancelling: int,
    ) -> Response:
        """One request and its whole response, under the total and read deadlines,
        through the lean transport when it takes the request, else through aiohttp."""
        deadlines = self._deadlines
        assert deadlines is not None  # set with the session
        deadlines.start(task)
        try:
            fast = self._fast
            if fast is not None and fast.takes(method, url, data, headers):
                return await self._fast_exchange(fast, method, url, headers, task)
            session = self._session or self._open_session()
            return await self._aiohttp_exchange(session, method, url, headers, data, task)
        except asyncio.CancelledError:
            timed_out = deadlines.timed_out(task, cancelling)
            if timed_out is None:
                raise
            if timed_out == "total":
                raise TotalTimeoutError("the attempt took longer than the total timeout") from None
            raise ReadTimeoutError("no data from the server within the read timeout") from None
        finally:
            deadlines.finish(task)

    async def _fast_exchange(
        self,
        fast: FastTransport,
        method: str,
        url: URL,
        headers: Mapping[str, str] | None,
        task: asyncio.Task[Any],
    ) -> Response:
        try:
            status, headers_in, final, body, redirects = await fast.exchange(
                method, url, headers, task
            )
        except (FetchError, StaleConnection):
            raise
        except Exception as exc:  # a bug: the lean transport raises nothing else
            log.error("internal error fetching %s", url, exc_info=exc)
            raise InternalError(said(f"unexpected {type(exc).__name__}", exc)) from exc
        content_type = headers_in.get("Content-Type")
        return Response(
            method=method,
            status=status,
            headers=headers_in,
            url=final,
            body=body,
            charset=charset_of(content_type) if content_type else None,
            redirects=redirects,
            attempts=1,
            elapsed=0.0,
        )

    async def _aiohttp_exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        headers: Mapping[str, str] | None,
        data: bytes | str | None,
        task: asyncio.Task[Any],
    ) -> Response:
        """The attempt through aiohttp."""
        limits = self.limits
        deadlines = self._deadlines
        assert deadlines is not None and self._connector is not None  # set with the session
        hop = None
        if self._scoped or headers or self._hop_proxies is not None:
            hop = (_Hop(url, self._scoped, headers, self._hop_proxies),)
        answered = False
        try:
            async with (
                session.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    allow_redirects=True,
                    # aiohttp raises when it *receives* redirect number max_redirects.
                    max_redirects=limits.max_redirects + 1,
                    middlewares=hop,
                ) as resp,
            ):
                answered = True
                declared = resp.content_length
                try:
                    if declared is not None and declared > limits.max_body:
                        raise BodyTooLargeError(
                            f"Content-Length {declared} exceeds max_body {limits.max_body}"
                        )
                    if resp.content.is_eof():  # the whole body came with the head
                        body = await resp.read()
                        if len(body) > limits.max_body:
                            raise BodyTooLargeError(
                                f"body exceeds max_body {limits.max_body} bytes"
                                " (after decompression)"
                            )
                    else:
                        body = await _read_body(resp, limits.max_body, deadlines, task)
                    deadlines.not_waiting(task)  # the body is in: nothing more to wait for
                except BodyTooLargeError as exc:
                    resp.close()
                    exc.status = resp.status
                    exc.final_url = str(resp.url)
                    exc.redirects = len(resp.history)
                    exc.content_type = resp.headers.get("Content-Type")
                    raise
                return Response(
                    method=method,
                    status=resp.status,
                    headers=resp.headers,
                    url=resp.url,
                    body=body,
                    charset=resp.charset,
                    redirects=len(resp.history),
                    attempts=1,
                    elapsed=0.0,
                )
        except (FetchError, asyncio.CancelledError):
            raise
        except Exception as exc:
            error = classify(exc)
            if isinstance(error, InternalError):
                log.error("internal error fetching %s", url, exc_info=exc)
            elif not answered and error.kind in _STALE_KINDS and task in self._connector.reused:
                raise StaleConnection(error) from exc
            raise error from exc
        finally:
            self._connector.reused.discard(task)

    # -- bulk --------------------------------------------------------------------

    def fetch_many(
        self,
        urls: Iterable[str | Item] | AsyncIterable[str | Item],
        *,
        store_body: bool = True,
        dedupe: bool = True,
        politeness: Politeness | None = None,
        robots: bool = False,
    ) -> RecordStream:
        """Fetch every URL, yielding one :class:`~surefetch.Record` per distinct URL as
        each completes (not in input order). Never raises for a single URL.

        ``politeness`` sets per-host rates, adaptive concurrency, retry budgets and
        circuit breakers (:class:`~surefetch.Politeness`); ``robots`` obeys robots.txt.

        Use as ``async for record in client.fetch_many(urls):``. Breaking out early
        is fine: the remaining work is cancelled when the stream is closed or
        garbage-collected, and at the latest when the client closes.
        """
        from .engine import RecordStream

        self._check()
        return RecordStream(
            self, urls, store_body=store_body, dedupe=dedupe, politeness=politeness, robots=robots
        )

    def _own(self, task: asyncio.Task[None]) -> None:
        """Adopt a background task so that closing the client ends it."""
        self._streams.add(task)
        task.add_done_callback(self._streams.discard)


#: Headers that are no credentials: they follow redirects to other origins.
_UNSCOPED: Final = frozenset({"user-agent", "content-type", "accept", "accept-language"})


class _Hop:
    """An attempt's hops (the request, then each redirect), as aiohttp's client
    middleware, which it calls once per hop.

    Once the chain leaves the URL's origin (scheme, host, port), the headers the
    caller gave (the client's and the request's) are dropped for the rest of it:
    aiohttp itself drops only Authorization, Cookie and Proxy-Authorization. URL
    credentials aiohttp already sends to their origin only. It also picks each hop's
    proxy, so that NO_PROXY and per-host proxies hold after a redirect too."""

    __slots__ = ("given", "left", "names", "origin", "proxies")

    def __init__(
        self,
        url: URL,
        names: tuple[str, ...],
        given: Mapping[str, str] | None,
        proxies: Proxies | None,
    ) -> None:
        self.origin = (url.scheme, url.raw_host, url.port)
        self.names = names
        self.given = given
        self.proxies = proxies
        self.left = False

    async def __call__(
        self,
        req: aiohttp.ClientRequest,
        handler: Callable[[aiohttp.ClientRequest], Any],
    ) -> aiohttp.ClientResponse:
        url = req.url
        if not self.left and (url.scheme, url.raw_host, url.port) != self.origin:
            self.left = True
        if self.left:
            headers = req.headers
            for name in self.names:
                headers.popall(name, None)
            for name in self.given or ():
                if name.lower() not in _UNSCOPED:
                    headers.popall(name, None)
        if (proxies := self.proxies) is not None:
            choice = proxies.choose(url)
            if choice is None:
                req.update_proxy(None, None, None)
            else:
                # To the proxy only: on the CONNECT of a tunnel, else on the request
                # (which the proxy reads and forwards). No header meant for the origin
                # is on the CONNECT.
                login = choice.authorization
                tunnel = None
                if login is not None and url.scheme == "https":
                    tunnel = {"Proxy-Authorization": login}
                elif login is not None:
                    req.headers["Proxy-Authorization"] = login
                req.update_proxy(choice.url, None, tunnel)
        return cast("aiohttp.ClientResponse", await handler(req))


def connection_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """:meth:`Client.connection_settings` -> keyword arguments of :class:`Client`."""
    if not settings:
        return {}
    proxy = settings["proxy"]
    return {
        "network": NetworkPolicy(
            rules=tuple(settings["network"]["rules"]),
            block_private=settings["network"]["block_private"],
        ),
        "ssl": TLS(**settings["tls"]) if settings["tls"] else True,
        "proxy": None
        if proxy is None
        else Proxies(
            http=proxy["http"],
            https=proxy["https"],
            no_proxy=tuple(proxy["no_proxy"]),
            hosts=tuple((pattern, url) for pattern, url in proxy["hosts"]),
        ),
        "cookies": settings["cookies"],
        "netrc": settings["netrc"] or False,
        "transport": settings.get("transport"),
    }


def _read_netrc(path: str | None) -> tuple[str, dict[str, str]]:
    """The netrc file (``path``, else $NETRC, else ~/.netrc) -> its name and the
    ``Authorization`` value for each machine it names. The ``default`` entry is never
    used: it would hand its credentials to every host. ``ValueError`` if unreadable."""
    import netrc as _netrc
    import os

    where = path or os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        parsed = _netrc.netrc(where)
    except FileNotFoundError:
        raise ValueError(f"netrc file not found: {where}") from None
    except (OSError, _netrc.NetrcParseError) as exc:
        raise ValueError(f"cannot read netrc file {where}: {exc}") from None
    logins = {}
    for machine, (login, _account, password) in parsed.hosts.items():
        if machine == "default":
            continue
        logins[machine.lower()] = basic_auth(login or "", password or "")
    return where, logins


async def _read_body(
    resp: aiohttp.ClientResponse, limit: int, deadlines: Deadlines, task: asyncio.Task[Any]
) -> bytes:
    """Read the (decompressed) body as it arrives, stopping as soon as it passes
    ``limit`` bytes; every chunk starts the read deadline again."""
    chunks: list[bytes] = []
    size = 0
    stream = resp.content
    while chunk := await stream.readany():
        deadlines.waiting(task)
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"body exceeds max_body {limit} bytes (after decompression)")
        chunks.append(chunk)
    if (error := stream.exception()) is not None:  # the end was a failure: see ResponseProtocol
        raise error
    return b"".join(chunks)


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile; whether it was."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()


#: What a request meets on a pooled connection that the server had closed.
_STALE_KINDS: Final = frozenset({"server_disconnected", "connection_reset"})


def _annotate(exc: FetchError, attempts: int, started: float) -> None:
    exc.attempts = attempts
    exc.elapsed = time.monotonic() - started
