"""Where records go. A sink has ``async write(record)`` and ``async close()``."""

from __future__ import annotations

from typing import Protocol

from ..record import Record
from .jsonl import JsonlSink

__all__ = ["JsonlSink", "Sink"]


class Sink(Protocol):
    """Receives every record once; ``close`` makes them all durable."""

    async def write(self, record: Record) -> None: ...

    async def close(self) -> None: ...
