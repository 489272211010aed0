"""Messages between the main process and its worker processes (``--workers N``).

Frames are a 4-byte big-endian length and a msgpack payload, over the workers'
stdin (main -> worker) and stdout (worker -> main).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import msgspec

from .polite import Politeness
from .record import Record

if TYPE_CHECKING:
    from .sources import Item

__all__ = [
    "Batch",
    "Config",
    "Done",
    "End",
    "Handback",
    "HostThrottle",
    "Own",
    "Records",
    "Seen",
    "Stop",
    "Throttled",
    "Throttles",
    "WireItem",
    "frame",
    "read_frame",
]


class WireItem(msgspec.Struct, array_like=True):
    url: str
    method: str | None = None
    headers: dict[str, str] | None = None
    data: bytes | None = None
    meta: dict[str, Any] | None = None


def wire_item(item: Item) -> WireItem:
    """``item`` as it travels to a worker."""
    headers = dict(item.headers) if item.headers else None
    return WireItem(item.url, item.method, headers, item.data, item.meta)


class Config(msgspec.Struct, tag=True):
    """First message to a worker: how to build its Client and run."""

    limits: dict[str, int]
    timeouts: dict[str, float]
    retry: dict[str, Any]
    headers: dict[str, str]
    user_agent: str
    store_body: bool
    bodies: str | None
    loop: str
    log_level: str
    log_format: str
    politeness: Politeness
    robots: bool
    #: Processes that may fetch a host without a rate (1: each host has one owner).
    share: int
    #: The fields of the Client's surefetch.DNS.
    dns: dict[str, Any]
    #: Network policy, TLS, proxies, cookies, netrc: Client.connection_settings().
    connection: dict[str, Any] = msgspec.field(default_factory=dict)


class Batch(msgspec.Struct, tag=True):
    """URLs to fetch."""

    items: list[WireItem]


class Own(msgspec.Struct, tag=True):
    """Host ``key`` has one owner from now on: this worker (``owner``) or another;
    ``pause``: seconds left of the Retry-After it sent the worker it pushed back on;
    ``too_many``: it said so with a 429 (the owner learns its rate)."""

    key: str
    owner: bool
    pause: float
    too_many: bool


class Seen(msgspec.Struct, tag=True):
    """To a host's new owner: the host allowed ``allowed`` requests to another worker
    in the last second (so that the owner learns the rate it allows in all)."""

    key: str
    allowed: float


class Stop(msgspec.Struct, tag=True):
    """Start no new request; finish those in flight, report, exit."""


class End(msgspec.Struct, tag=True):
    """No more URLs will come: fetch what you have, report, exit."""


class Records(msgspec.Struct, tag=True):
    """Finished records, in completion order."""

    records: list[Record]


class Throttled(msgspec.Struct, tag=True):
    """A shared host pushed back (a 429 or 503) or its circuit opened, here first: it
    needs one owner. ``pause``: seconds left of its Retry-After; ``too_many``: a 429
    (not only a 503 or connect failures)."""

    key: str
    pause: float
    too_many: bool


class Handback(msgspec.Struct, tag=True):
    """URLs of host ``key`` this worker was given but another owns: for the owner.
    The first, sent on :class:`Own`, says what the host allowed here in the last
    second (``allowed``, for :class:`Seen`)."""

    key: str
    items: list[WireItem]
    allowed: float | None = None


class HostThrottle(msgspec.Struct, array_like=True):
    """What this worker knows of a host that pushed back (see polite.Throttle)."""

    key: str
    rate: float | None
    too_many: int
    unavailable: int


class Throttles(msgspec.Struct, tag=True):
    """Hosts that pushed back whose figures changed (at most every half second)."""

    hosts: list[HostThrottle]


class Hungry(msgspec.Struct, tag=True):
    """The worker's requests are idle while every URL it holds waits for its host (a
    slow or paced host with its credit's worth): it may be sent more than its credit,
    so that URLs of other hosts reach it."""


class Done(msgspec.Struct, tag=True):
    """The worker's last message: how many URLs it was given but did not fetch."""

    abandoned: int


ToWorker = Config | Batch | Own | Seen | Stop | End
ToMain = Records | Throttled | Handback | Throttles | Hungry | Done

_encoder = msgspec.msgpack.Encoder()
to_worker = msgspec.msgpack.Decoder(ToWorker)
to_main = msgspec.msgpack.Decoder(ToMain)


def frame(message: msgspec.Struct) -> bytes:
    payload = _encoder.encode(message)
    return len(payload).to_bytes(4, "big") + payload


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next frame's payload, or None at a clean end of stream."""
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    return await reader.readexactly(int.from_bytes(head, "big"))
