"""The error kinds, and the one function that maps aiohttp/OS/SSL exceptions to them.

Nothing else in surefetch inspects aiohttp's exception types: every failure passes
through :func:`classify` and comes out as exactly one :class:`FetchError` subclass,
whose ``kind`` is the string written into records.

The tree::

    SurefetchError
    ├── FetchError                      one URL failed; .kind is the record's error kind
    │   ├── InvalidURLError             invalid_url
    │   ├── ConnectError                (not raised itself)
    │   │   ├── DNSError                dns_error
    │   │   ├── ConnectRefusedError     connect_refused
    │   │   ├── ConnectFailedError      connect_error
    │   │   └── ConnectTimeoutError     connect_timeout
    │   ├── TLSError                    tls_error
    │   ├── ReadTimeoutError            read_timeout
    │   ├── TotalTimeoutError           total_timeout
    │   ├── ServerDisconnectedError     server_disconnected
    │   ├── PeerResetError       connection_reset
    │   ├── PayloadError                payload_error
    │   ├── ProtocolError               protocol_error
    │   ├── TooManyRedirectsError       too_many_redirects
    │   ├── RedirectBlockedError        redirect_blocked
    │   ├── BodyTooLargeError           body_too_large
    │   ├── HTTPStatusError             http_status
    │   ├── HostUnavailableError        host_unavailable
    │   ├── RobotsDisallowedError       robots_disallowed
    │   ├── BlockedAddressError         blocked_address
    │   ├── WorkerLostError             worker_lost
    │   └── InternalError               internal_error
    ├── RunStopped                      a stop came before a URL's retry (no record)
    └── ClientStateError                the Client was used wrongly (closed, other loop)
"""

from __future__ import annotations

import asyncio
import errno
import ssl
import sys
from typing import TYPE_CHECKING, ClassVar, Final

if TYPE_CHECKING:
    import aiohttp


__all__ = [
    "KINDS",
    "BlockedAddressError",
    "BodyTooLargeError",
    "ClientStateError",
    "ConnectError",
    "ConnectFailedError",
    "ConnectRefusedError",
    "ConnectTimeoutError",
    "DNSError",
    "FetchError",
    "HTTPStatusError",
    "HostUnavailableError",
    "InternalError",
    "InvalidURLError",
    "PayloadError",
    "PeerResetError",
    "ProtocolError",
    "ReadTimeoutError",
    "RedirectBlockedError",
    "RobotsDisallowedError",
    "RunStopped",
    "ServerDisconnectedError",
    "StaleConnection",
    "SurefetchError",
    "TLSError",
    "TooManyRedirectsError",
    "TotalTimeoutError",
    "WorkerLostError",
    "classify",
    "connect_failure",
    "cuts_body",
    "dns_failure",
    "is_parser_error",
    "is_reset",
    "said",
]


class SurefetchError(Exception):
    """Base class of every exception surefetch raises on purpose."""


class RunStopped(SurefetchError):
    """The run was asked to stop before a URL's next attempt (a retry): the URL gets
    no record, so that the next run fetches it again."""


class ClientStateError(SurefetchError, RuntimeError):
    """The Client was used when it cannot work: not entered, already closed, or
    awaited from an event loop other than the one it was opened in."""


class FetchError(SurefetchError):
    """One request failed. ``kind`` is the stable string written into records.

    Besides ``message``, it carries ``attempts`` (requests sent) and ``elapsed``
    (seconds). A failure decided on a response that arrived (``body_too_large``,
    ``too_many_redirects``, and ``http_status`` from ``Response.raise_for_status``)
    also carries what that response said: ``status``, ``final_url``, ``redirects``
    (followed to get there) and ``content_type`` (its Content-Type header). Otherwise
    they are ``None`` (``redirects`` 0), also for a body that breaks or stalls after
    its head (``payload_error``, ``connection_reset``, the timeouts).
    """

    kind: ClassVar[str] = ""
    #: Whether another attempt may succeed (the retry policy still decides).
    transient: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        #: Requests sent before giving up (0 when nothing was sent).
        self.attempts = 0
        #: Seconds spent on the URL, retries and waits included.
        self.elapsed = 0.0
        #: What is known of the last response, if one began to arrive.
        self.status: int | None = None
        self.final_url: str | None = None
        self.redirects = 0
        #: The Content-Type of that response, when its head arrived.
        self.content_type: str | None = None


class InvalidURLError(FetchError):
    """The URL cannot be fetched as given: unparseable, not http/https, no host,
    a bad port, or containing whitespace/control characters. Nothing was sent."""

    kind = "invalid_url"


class ConnectError(FetchError):
    """Base of the failures that happen before a connection is established."""

    transient = True


class DNSError(ConnectError):
    """The host name did not resolve (no such host, or the resolver failed)."""

    kind = "dns_error"


class ConnectRefusedError(ConnectError):
    """The host answered the TCP connect with a reset: nothing listens on that port."""

    kind = "connect_refused"


class ConnectFailedError(ConnectError):
    """The TCP connect failed for another reason (unreachable network or host, ...)."""

    kind = "connect_error"


class ConnectTimeoutError(ConnectError):
    """The TCP (and TLS) connect did not finish within the connect timeout."""

    kind = "connect_timeout"


class TLSError(FetchError):
    """The TLS handshake failed: untrusted or mismatched certificate, or a protocol
    mismatch. Never retried: it will fail the same way again."""

    kind = "tls_error"


class ReadTimeoutError(FetchError):
    """Connected, but the server sent nothing for longer than the read timeout."""

    kind = "read_timeout"
    transient = True


class TotalTimeoutError(FetchError):
    """The whole attempt (connect, head and body) took longer than the total timeout,
    e.g. a server that drips its response slowly."""

    kind = "total_timeout"
    transient = True


class ServerDisconnectedError(FetchError):
    """The server closed the connection before sending a complete response head."""

    kind = "server_disconnected"
    transient = True


class PeerResetError(FetchError):
    """The connection was reset (TCP RST) while the request or response was in flight."""

    kind = "connection_reset"
    transient = True


class PayloadError(FetchError):
    """The response head was fine but the body was not: truncated before
    Content-Length, broken chunked encoding, or undecodable content-encoding."""

    kind = "payload_error"


class ProtocolError(FetchError):
    """The response was not valid HTTP: malformed status line or headers, or a header
    line or header block larger than the parser accepts."""

    kind = "protocol_error"


class TooManyRedirectsError(FetchError):
    """More redirects were followed than ``max_redirects`` allows (often a loop)."""

    kind = "too_many_redirects"


class RedirectBlockedError(FetchError):
    """A redirect pointed to a URL that is not http(s) (ftp:, file:, javascript:, ...)
    or cannot be parsed; it was not followed."""

    kind = "redirect_blocked"


class BodyTooLargeError(FetchError):
    """The body (after decompression) is larger than ``max_body``; reading stopped at
    the limit, so the body never entered memory in full."""

    kind = "body_too_large"


class HTTPStatusError(FetchError):
    """The final response had a status outside 2xx (after any retries)."""

    kind = "http_status"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class HostUnavailableError(FetchError):
    """The host's circuit breaker gave up on it: every connect failed for longer than
    ``host_down_after``, so its remaining URLs are not attempted (``attempts`` 0)."""

    kind = "host_unavailable"


class RobotsDisallowedError(FetchError):
    """With ``--obey-robots``: the host's robots.txt disallows this URL for our
    User-Agent (or robots.txt could not be had: RFC 9309 says assume disallow).
    Nothing was sent for the URL itself."""

    kind = "robots_disallowed"


class BlockedAddressError(FetchError):
    """The network policy refused the address the URL (or a redirect) leads to: a
    ``deny`` rule, ``block_private``, or a cloud metadata address. The message names
    the address and the rule. Nothing was sent to that address; never retried."""

    kind = "blocked_address"


class WorkerLostError(FetchError):
    """Distributed mode: the URL was handed to workers as many times as the job allows
    (``--max-deliveries``) and each one stopped (died, or lost its lease) before it
    sent a record, so it is not handed out again. Often a URL that crashes or hangs
    whole workers; ``attempts`` 0 (what was sent before is not known here)."""

    kind = "worker_lost"


class InternalError(FetchError):
    """A bug in surefetch. Logged with its traceback; please report it."""

    kind = "internal_error"


class StaleConnection(Exception):
    """A request failed on a pooled connection before any answer came: the server had
    closed it, and never saw the request (either transport raises it)."""

    def __init__(self, error: FetchError) -> None:
        super().__init__(error.message)
        self.error = error


#: Every error kind string, in the order the README documents them.
KINDS: Final[tuple[str, ...]] = tuple(
    cls.kind
    for cls in (
        InvalidURLError,
        DNSError,
        ConnectRefusedError,
        ConnectFailedError,
        ConnectTimeoutError,
        TLSError,
        ReadTimeoutError,
        TotalTimeoutError,
        ServerDisconnectedError,
        PeerResetError,
        PayloadError,
        ProtocolError,
        TooManyRedirectsError,
        RedirectBlockedError,
        BodyTooLargeError,
        HTTPStatusError,
        HostUnavailableError,
        RobotsDisallowedError,
        BlockedAddressError,
        WorkerLostError,
        InternalError,
    )
)

_RESET_ERRNOS: Final = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})
_RESET_TYPES: Final = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

#: What a c-ares error code (ares.h, stable) means for a lookup, in plain words.
_ARES_REASONS: Final = {
    1: "the name has no address (NODATA)",  # ARES_ENODATA
    2: "the DNS server could not read the query (FORMERR)",  # ARES_EFORMERR
    3: "the DNS server failed (SERVFAIL)",  # ARES_ESERVFAIL
    4: "no such name (NXDOMAIN)",  # ARES_ENOTFOUND
    5: "the DNS server does not do this query (NOTIMP)",  # ARES_ENOTIMP
    6: "the DNS server refused the query (REFUSED)",  # ARES_EREFUSED
    8: "not a valid host name",  # ARES_EBADNAME
    10: "the DNS server's answer is malformed",  # ARES_EBADRESP
    11: "cannot reach the DNS server (connection refused)",  # ARES_ECONNREFUSED
    12: "no answer from the DNS server (timeout)",  # ARES_ETIMEOUT
    14: "cannot read the resolver configuration",  # ARES_EFILE
    15: "out of memory",  # ARES_ENOMEM
    16: "the lookup was cancelled: the resolver closed",  # ARES_EDESTRUCTION
    24: "the lookup was cancelled: the resolver closed",  # ARES_ECANCELLED
    26: "no DNS server is configured",  # ARES_ENOSERVER
}


def _one_line(text: str) -> str:
    """Parser messages span lines, with a ``^`` under the bad byte: one line, no pointer."""
    lines = (line.strip() for line in text.splitlines())
    return " ".join(line for line in lines if line.strip("^"))


#: aiohttp is imported only when a request needs it (the lean transport does not): no
#: aiohttp exception exists before, so the checks for them wait until it is loaded.
_AIOHTTP: Final = "aiohttp"


def _detail(exc: BaseException) -> str:
    """What ``exc`` says, on one line; "" when it says nothing (``ssl.SSLError()`` says
    "()")."""
    text = _aiohttp_message(exc) if _AIOHTTP in sys.modules else None
    if text is None:
        text = _one_line(str(exc))
    return text if any(c.isalnum() for c in text) else ""


def _aiohttp_message(exc: BaseException) -> str | None:
    """What an aiohttp parser or response error says, on one line (None for others)."""
    import aiohttp
    from aiohttp.http_exceptions import HttpProcessingError, TransferEncodingError

    if not isinstance(exc, HttpProcessingError | aiohttp.ClientResponseError):
        return None
    text = _one_line(exc.message)  # str() adds the status code (and the URL)
    if text and isinstance(exc, TransferEncodingError) and "chunk" not in text.lower():
        text = f"chunked encoding: {text}"  # the pure-Python parser's bare bytes
    return text


def said(summary: str, exc: BaseException | str) -> str:
    """``summary``, then what ``exc`` says, if it says anything (never a bare type)."""
    detail = exc if isinstance(exc, str) else _detail(exc)
    return f"{summary}: {detail}" if detail else summary


def _root(exc: BaseException) -> BaseException:
    """The innermost cause, where the real OS/SSL error usually sits."""
    seen = 0
    while seen < 10:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None:
            return exc
        exc = nxt
        seen += 1
    return exc


def _source(exc: aiohttp.ClientConnectorError) -> BaseException:
    """The OS or SSL error under a connector error: its innermost cause, or else the
    error it wraps (its own text only repeats host and port)."""
    root = _root(exc)
    return exc.os_error if root is exc else root


#: OpenSSL reasons, as the ``ssl`` module names them, in plain words.
_TLS_REASONS: Final = {
    "WRONG_VERSION_NUMBER": "the server did not answer in TLS; is this an HTTPS port?",
    "HTTP_REQUEST": "the server did not answer in TLS; is this an HTTPS port?",
    "PACKET_LENGTH_TOO_LONG": "the server did not answer in TLS; is this an HTTPS port?",
    "UNEXPECTED_EOF_WHILE_READING": (
        "the server closed the connection during the TLS handshake; is this an HTTPS port?"
    ),
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common with the server",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common with the server",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version in common with the server",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": (
        "the server refused the TLS handshake (no cipher in common, or it wants a"
        " client certificate)"
    ),
    "NO_SHARED_CIPHER": "no TLS cipher in common with the server",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server did not accept our client certificate",
}


def _tls_error(exc: BaseException) -> TLSError:
    """A TLS failure in plain words: what the handshake met, not OpenSSL's codes."""
    if isinstance(exc, ssl.SSLCertVerificationError) and getattr(exc, "verify_message", None):
        return TLSError(f"certificate not accepted: {exc.verify_message}")
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return TLSError(_TLS_REASONS["UNEXPECTED_EOF_WHILE_READING"])
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        if reason in _TLS_REASONS:
            return TLSError(_TLS_REASONS[reason])
        return TLSError(f"TLS handshake failed: {reason.lower().replace('_', ' ')}")
    return TLSError(said("TLS handshake failed", exc))


_OUT_OF_FILES: Final = (
    "too many open files: the open-files limit (ulimit -n) is reached; lower --concurrency"
    " or raise the limit"
)


def _out_of_files(exc: BaseException) -> bool:
    """Whether ``exc`` is this process (EMFILE) or the system (ENFILE) out of files."""
    return isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE)


def _over_tls(exc: aiohttp.ClientConnectorError) -> bool:
    """Whether the connection that failed was to be a TLS one."""
    key = getattr(exc, "_conn_key", None)  # aiohttp keeps it there, and has no accessor
    return bool(getattr(key, "is_ssl", False))


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes (or contexts), outermost first; at most 10."""
    links = [exc]
    while len(links) < 10:
        nxt = links[-1].__cause__ or links[-1].__context__
        if nxt is None:
            break
        links.append(nxt)
    return links


def _is_body_error(exc: BaseException) -> bool:
    """Whether a parser error is about the body (its length, chunks or encoding).

    The C parser raises a chunk error from the same call that parsed the head when
    both arrive in one read, so aiohttp reports it as a bad head; and it gives chunk
    errors only the generic BadHttpMessage type, telling them apart by the reason.
    """
    from aiohttp.http_exceptions import BadHttpMessage, PayloadEncodingError

    for link in _chain(exc):
        if isinstance(link, PayloadEncodingError):
            return True
        if isinstance(link, BadHttpMessage):
            reason = link.message.split(":\n", 1)[0]
            if "chunk" in reason.lower():
                return True
    return False


def _is_reset(exc: BaseException) -> bool:
    """Whether a body error was caused by a TCP reset. aiohttp keeps the connection's
    error only at the end of the message: "... . ConnectionResetError(104, ...)"."""
    if any(isinstance(link, _RESET_TYPES) for link in _chain(exc)):
        return True
    tail = str(exc).rsplit(". ", 1)[-1]
    return tail.startswith(tuple(f"{kind.__name__}(" for kind in _RESET_TYPES))


def is_reset(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the peer resetting (or aborting) the connection: by its type,
    or by its errno (aiohttp's ClientOSError carries the errno of the OS error)."""
    return isinstance(exc, _RESET_TYPES) or (
        isinstance(exc, OSError) and exc.errno in _RESET_ERRNOS
    )


def cuts_body(exc: BaseException) -> bool:
    """Whether a connection that ended with ``exc`` cut short a body that was to end with
    it: a fault of the network, the peer or TLS (a reset, a timeout, a bad record), not
    a close. (A TLS connection closed without a close_notify ends with no error.)"""
    return isinstance(exc, OSError)


def is_parser_error(exc: BaseException) -> bool:
    """Whether ``exc`` is aiohttp's HTTP parser rejecting what the server sent."""
    if _AIOHTTP not in sys.modules:
        return False
    from aiohttp.http_exceptions import HttpProcessingError

    return isinstance(exc, HttpProcessingError)


def dns_failure(host: str, exc: BaseException, source: BaseException | None = None) -> DNSError:
    """``host`` did not resolve, and why: c-ares's error code in words (aiohttp keeps
    only its text, in an ``OSError`` raised from it), else what the resolver said
    (``source``, else the innermost cause of ``exc``)."""
    failed = f"host name {host} did not resolve"
    # c-ares's errors, as the async resolver (surefetch.resolve) raises them: none can
    # exist before aiodns is loaded (the main process of --workers N never loads it).
    ares = sys.modules.get("aiodns.error")
    ares_errors: tuple[type[Exception], ...] = (ares.DNSError,) if ares is not None else ()
    for link in _chain(exc):
        if isinstance(link, ares_errors) and link.args and isinstance(link.args[0], int):
            reason = _ARES_REASONS.get(link.args[0])
            return DNSError(f"{failed}: {reason}" if reason else said(f"{failed} (c-ares)", link))
    return DNSError(said(failed, source or _root(exc)))


def connect_failure(
    host: str, port: int | None, exc: OSError, root: BaseException | None = None
) -> ConnectError:
    """A TCP connect to ``host``:``port`` that failed with ``exc`` (not over TLS);
    ``root``: the innermost cause, if not that of ``exc``."""
    if root is None:
        root = _root(exc)
    if exc.errno == errno.ECONNREFUSED or isinstance(root, ConnectionRefusedError):
        return ConnectRefusedError(f"connection refused by {host}:{port}")
    if isinstance(root, TimeoutError):
        return ConnectTimeoutError(f"connect to {host}:{port} timed out")
    failed = f"cannot connect to {host}:{port}"
    if _out_of_files(exc) or _out_of_files(root):
        return ConnectFailedError(f"{failed}: {_OUT_OF_FILES}")
    if exc.strerror:
        return ConnectFailedError(f"{failed}: {exc.strerror}")
    return ConnectFailedError(said(failed, root))


def classify(exc: BaseException) -> FetchError:
    """Map any exception raised while fetching one URL to exactly one error kind.

    The client raises the total and read timeouts itself (surefetch._deadlines); aiohttp
    raises its own subclass for the connect timeout. Its read-timeout subclass and a
    bare :class:`TimeoutError` are still mapped to their kinds, should aiohttp raise them.
    """
    if isinstance(exc, FetchError):
        return exc
    loaded = _AIOHTTP in sys.modules
    if loaded and (error := _from_aiohttp(exc)) is not None:
        return error
    if isinstance(exc, TimeoutError):
        return TotalTimeoutError("the attempt took longer than the total timeout")
    if isinstance(exc, ssl.SSLError):
        return _tls_error(_root(exc))
    if is_reset(exc):
        return PeerResetError(said("connection reset by the server", exc))
    if isinstance(exc, OSError):  # aiohttp's ClientOSError too
        if _out_of_files(exc):
            return ConnectFailedError(_OUT_OF_FILES)
        return ConnectFailedError(said("network error", exc))
    if loaded and _lost_connection(exc):
        return ServerDisconnectedError(said("connection lost", exc))
    if isinstance(exc, asyncio.CancelledError):  # pragma: no cover - callers re-raise it
        raise exc
    return InternalError(said(f"unexpected {type(exc).__name__}", exc))


def _lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` is aiohttp's connection error that no OS error is under."""
    import aiohttp

    return isinstance(exc, aiohttp.ClientConnectionError)


def _from_aiohttp(exc: BaseException) -> FetchError | None:
    """The kind of an aiohttp exception that says more than its base class (an OS error,
    a timeout, a TLS error) would; None for any other exception."""
    import aiohttp
    from aiohttp.http_exceptions import HttpProcessingError

    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeoutError(said("connect did not complete in time", exc))
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return ReadTimeoutError("no data from the server within the read timeout")
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return ReadTimeoutError(said("server timed out", exc))
    if isinstance(exc, aiohttp.TooManyRedirects):
        error: FetchError = TooManyRedirectsError(
            f"gave up after {len(exc.history) - 1} redirects"
            f" (next: {exc.history[-1].headers.get('Location', '?')})"
        )
        error.redirects = len(exc.history) - 1
        error.status = exc.history[-1].status
        error.final_url = str(exc.history[-1].url)
        error.content_type = exc.history[-1].headers.get("Content-Type")
        return error
    if isinstance(
        exc, aiohttp.NonHttpUrlRedirectClientError | aiohttp.InvalidUrlRedirectClientError
    ):
        return RedirectBlockedError(said("redirect to a URL that is not http(s)", exc))
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return InvalidURLError(said("not a fetchable URL", exc))
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _tls_error(exc.certificate_error)
    if isinstance(exc, aiohttp.ClientSSLError):
        return _tls_error(_source(exc))
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return TLSError(said("TLS handshake failed", exc))
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return dns_failure(exc.host, exc, _source(exc))
    if isinstance(exc, aiohttp.ClientConnectorError):
        root = _root(exc)
        if isinstance(root, ssl.SSLError):
            return _tls_error(root)
        if isinstance(root, ConnectionResetError) and _over_tls(exc):
            # TCP was up (a refused connect is ECONNREFUSED): the handshake was cut.
            how = "reset" if root.errno else "closed"
            return TLSError(
                f"the server {how} the connection during the TLS handshake with"
                f" {exc.host}:{exc.port}; is this an HTTPS port?"
            )
        failure = connect_failure(exc.host, exc.port, exc, root)
        if isinstance(failure, ConnectFailedError) and not exc.strerror:
            # What aiohttp wraps may say nothing; its innermost cause often does.
            failed = f"cannot connect to {exc.host}:{exc.port}"
            return ConnectFailedError(said(failed, _source(exc)))
        return failure
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ServerDisconnectedError("server closed the connection without a complete response")
    if isinstance(exc, aiohttp.ClientPayloadError):
        if _is_reset(exc):
            return PeerResetError(said("connection reset by the server mid-body", exc))
        return PayloadError(said("response body is broken", _root(exc)))
    if isinstance(exc, aiohttp.ClientResponseError | HttpProcessingError):
        # raise_for_status is never used, so this is the parser rejecting the response
        # (the pure-Python parser lets its own HttpProcessingError through unwrapped).
        telling = exc if _detail(exc) else _root(exc)
        if _is_body_error(exc):
            return PayloadError(said("response body is broken", telling))
        return ProtocolError(said("malformed response", telling))
    return None
