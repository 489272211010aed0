"""surefetch: fetch very many HTTP URLs reliably and fast, with a record of every failure.

The public surface::

    async with surefetch.Client(limits=..., timeouts=..., retry=...) as client:
        response = await client.get(url)          # Response, or raises a FetchError
        async for record in client.fetch_many(urls):
            ...                                   # one Record per distinct URL
"""

from __future__ import annotations

__version__ = "0.1.0"

from .client import DEFAULT_USER_AGENT, AttemptEvent, Client, Response, check_url
from .engine import RecordStream, Stats, run
from .errors import (
    KINDS,
    BodyTooLargeError,
    ClientStateError,
    ConnectError,
    ConnectFailedError,
    ConnectRefusedError,
    ConnectTimeoutError,
    DNSError,
    FetchError,
    HTTPStatusError,
    InternalError,
    InvalidURLError,
    PayloadError,
    PeerResetError,
    ProtocolError,
    ReadTimeoutError,
    RedirectBlockedError,
    ServerDisconnectedError,
    SurefetchError,
    TLSError,
    TooManyRedirectsError,
    TotalTimeoutError,
)
from .job import FetchJob, Job
from .policy import Limits, RetryPolicy, Timeouts
from .record import ErrorInfo, Record
from .sources import Item

__all__ = [
    "DEFAULT_USER_AGENT",
    "KINDS",
    "AttemptEvent",
    "BodyTooLargeError",
    "Client",
    "ClientStateError",
    "ConnectError",
    "ConnectFailedError",
    "ConnectRefusedError",
    "ConnectTimeoutError",
    "DNSError",
    "ErrorInfo",
    "FetchError",
    "FetchJob",
    "HTTPStatusError",
    "InternalError",
    "InvalidURLError",
    "Item",
    "Job",
    "Limits",
    "PayloadError",
    "PeerResetError",
    "ProtocolError",
    "ReadTimeoutError",
    "Record",
    "RecordStream",
    "RedirectBlockedError",
    "Response",
    "RetryPolicy",
    "ServerDisconnectedError",
    "Stats",
    "SurefetchError",
    "TLSError",
    "Timeouts",
    "TooManyRedirectsError",
    "TotalTimeoutError",
    "__version__",
    "check_url",
    "run",
]
