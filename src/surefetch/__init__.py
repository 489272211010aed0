"""surefetch: fetch very many HTTP URLs reliably and fast, with a record of every failure.

The public surface::

    async with surefetch.Client(limits=..., timeouts=..., retry=...) as client:
        response = await client.get(url)          # Response, or raises a FetchError
        async for record in client.fetch_many(urls):
            ...                                   # one Record per distinct URL
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import DEFAULT_USER_AGENT, AttemptEvent, Client, Response, check_url
    from .engine import RecordStream, Stats, run
    from .errors import (
        KINDS,
        BlockedAddressError,
        BodyTooLargeError,
        ClientStateError,
        ConnectError,
        ConnectFailedError,
        ConnectRefusedError,
        ConnectTimeoutError,
        DNSError,
        FetchError,
        HostUnavailableError,
        HTTPStatusError,
        InternalError,
        InvalidURLError,
        PayloadError,
        PeerResetError,
        ProtocolError,
        ReadTimeoutError,
        RedirectBlockedError,
        RobotsDisallowedError,
        ServerDisconnectedError,
        SurefetchError,
        TLSError,
        TooManyRedirectsError,
        TotalTimeoutError,
        WorkerLostError,
    )
    from .job import FetchJob, Job
    from .network import NetworkPolicy
    from .policy import Limits, RetryPolicy, Timeouts
    from .polite import HostRule, Politeness
    from .proxy import Proxies
    from .record import ErrorInfo, Record
    from .resolve import DNS, Resolver
    from .sources import Item
    from .tls import TLS

# Names load on first use, so that `import surefetch` (and the command's start-up, when
# a Ctrl-C may come) stays cheap.
_WHERE = {
    "AttemptEvent": "client",
    "BlockedAddressError": "errors",
    "BodyTooLargeError": "errors",
    "Client": "client",
    "ClientStateError": "errors",
    "ConnectError": "errors",
    "ConnectFailedError": "errors",
    "ConnectRefusedError": "errors",
    "ConnectTimeoutError": "errors",
    "DEFAULT_USER_AGENT": "client",
    "DNS": "resolve",
    "DNSError": "errors",
    "ErrorInfo": "record",
    "FetchError": "errors",
    "FetchJob": "job",
    "HTTPStatusError": "errors",
    "HostUnavailableError": "errors",
    "InternalError": "errors",
    "InvalidURLError": "errors",
    "HostRule": "polite",
    "Politeness": "polite",
    "Item": "sources",
    "Job": "job",
    "KINDS": "errors",
    "Limits": "policy",
    "NetworkPolicy": "network",
    "PayloadError": "errors",
    "PeerResetError": "errors",
    "ProtocolError": "errors",
    "Proxies": "proxy",
    "ReadTimeoutError": "errors",
    "Record": "record",
    "RecordStream": "engine",
    "RedirectBlockedError": "errors",
    "Resolver": "resolve",
    "Response": "client",
    "RetryPolicy": "policy",
    "RobotsDisallowedError": "errors",
    "ServerDisconnectedError": "errors",
    "Stats": "engine",
    "SurefetchError": "errors",
    "TLS": "tls",
    "TLSError": "errors",
    "Timeouts": "policy",
    "TooManyRedirectsError": "errors",
    "TotalTimeoutError": "errors",
    "WorkerLostError": "errors",
    "check_url": "client",
    "run": "engine",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'surefetch' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_USER_AGENT",
    "DNS",
    "KINDS",
    "TLS",
    "AttemptEvent",
    "BlockedAddressError",
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
    "HostRule",
    "HostUnavailableError",
    "InternalError",
    "InvalidURLError",
    "Item",
    "Job",
    "Limits",
    "NetworkPolicy",
    "PayloadError",
    "PeerResetError",
    "Politeness",
    "ProtocolError",
    "Proxies",
    "ReadTimeoutError",
    "Record",
    "RecordStream",
    "RedirectBlockedError",
    "Resolver",
    "Response",
    "RetryPolicy",
    "RobotsDisallowedError",
    "ServerDisconnectedError",
    "Stats",
    "SurefetchError",
    "TLSError",
    "Timeouts",
    "TooManyRedirectsError",
    "TotalTimeoutError",
    "WorkerLostError",
    "__version__",
    "check_url",
    "run",
]
