"""Configuration: small immutable objects, validated when they are made.

The retry policy answers "retry? after how long?" as a function of the attempt number,
the outcome and the response headers, so it is tested without a network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from random import random as _uniform
from typing import Final

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRY_STATUSES",
    "Limits",
    "RetryPolicy",
    "Timeouts",
    "parse_retry_after",
]

#: Methods that may be sent twice without changing the result (RFC 9110, 9.2.2).
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: Statuses that often succeed on a later try.
RETRY_STATUSES: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Error kinds worth another attempt: the network or the server had a bad moment.
RETRY_KINDS: Final = frozenset(
    {
        "dns_error",
        "connect_refused",
        "connect_error",
        "connect_timeout",
        "read_timeout",
        "total_timeout",
        "server_disconnected",
        "connection_reset",
    }
)


def _positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None:
        if allow_none:
            return
        raise ValueError(f"{name} must be a number, got None")
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Limits:
    """How much work runs at once, and how large a response may be.

    - ``concurrency``: requests in flight at once, over all hosts.
    - ``per_host``: requests in flight at once to one host (name and port).
    - ``max_body``: largest body accepted, in bytes after decompression.
    - ``max_redirects``: redirects followed before ``too_many_redirects``.
    """

    concurrency: int = 64
    per_host: int = 8
    max_body: int = 10 * 1024 * 1024
    max_redirects: int = 10

    def __post_init__(self) -> None:
        _at_least("concurrency", self.concurrency, 1)
        _at_least("per_host", self.per_host, 1)
        _at_least("max_body", self.max_body, 0)
        _at_least("max_redirects", self.max_redirects, 0)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds each phase of one attempt may take.

    - ``total``: the whole attempt: connect, response head and body.
    - ``connect``: establishing TCP and TLS.
    - ``read``: the longest wait for the server once connected: for the response head,
      then between two pieces of the body.
    """

    total: float = 30.0
    connect: float = 10.0
    read: float = 20.0

    def __post_init__(self) -> None:
        _positive("total timeout", self.total)
        _positive("connect timeout", self.connect)
        _positive("read timeout", self.read)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    Returns None when the header is absent or unreadable; never negative.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a request again, and how long to wait first.

    - ``retries``: extra attempts after the first (0 turns retrying off).
    - ``backoff``: base delay in seconds; attempt *n* waits a random time in
      ``[0, min(backoff_max, backoff * 2**(n-1))]`` ("full jitter").
    - ``backoff_max``: cap of that delay.
    - ``retry_after_max``: cap of a server's ``Retry-After`` (on 429/503), which
      replaces the backoff when present.
    - ``statuses`` / ``kinds``: outcomes worth another try.
    - ``methods``: methods that may be retried at all (idempotent ones by default).
    """

    retries: int = 2
    backoff: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 120.0
    statuses: frozenset[int] = RETRY_STATUSES
    kinds: frozenset[str] = RETRY_KINDS
    methods: frozenset[str] = IDEMPOTENT_METHODS
    #: Source of jitter in [0, 1); replace it to make delays deterministic in tests.
    jitter: Callable[[], float] = field(default=_uniform, repr=False, compare=False)

    def __post_init__(self) -> None:
        _at_least("retries", self.retries, 0)
        _positive("backoff", self.backoff)
        _positive("backoff_max", self.backoff_max)
        _positive("retry_after_max", self.retry_after_max)

    def delay(
        self,
        attempts: int,
        *,
        method: str = "GET",
        kind: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to stop.

        ``attempts`` is how many were sent so far; ``kind`` is the error kind of the
        last one, or None when it got a response with ``status``.
        """
        if attempts > self.retries or method.upper() not in self.methods:
            return None
        if kind is not None:
            if kind not in self.kinds:
                return None
        elif status is None or status not in self.statuses:
            return None
        if status in (429, 503) and headers is not None:
            after = parse_retry_after(headers.get("Retry-After"))
            if after is not None:
                return min(after, self.retry_after_max)
        ceiling = min(self.backoff_max, self.backoff * 2.0 ** (attempts - 1))
        return ceiling * self.jitter()
