"""Where URLs come from: one URL per line, from a file or a pipe, streamed."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Item", "read_lines", "url_lines"]

_CHUNK = 1 << 16


@dataclass(slots=True)
class Item:
    """One unit of work: a URL, and how to request it."""

    url: str
    method: str = "GET"
    headers: Mapping[str, str] | None = None
    data: bytes | None = None
    #: Carried into the record unchanged (e.g. the user's own IDs).
    meta: dict[str, Any] | None = None


async def read_lines(path: str) -> AsyncIterator[str]:
    """Yield the lines of ``path`` (``-`` is stdin) without their line endings.

    Regular files are read directly; pipes, terminals and sockets are read through
    the event loop so that a slow producer never blocks other work.
    """
    fd = os.dup(sys.stdin.fileno()) if path == "-" else os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb", buffering=0) as f:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            async for line in _split(_file_chunks(f.fileno())):
                yield line
        else:
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader(limit=_CHUNK, loop=loop)
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop), f
            )
            try:
                async for line in _split(_stream_chunks(reader)):
                    yield line
            finally:
                transport.close()


async def _file_chunks(fd: int) -> AsyncIterator[bytes]:
    while chunk := os.read(fd, _CHUNK):
        yield chunk


async def _stream_chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await reader.read(_CHUNK):
        yield chunk


async def _split(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    tail = b""
    async for chunk in chunks:
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        for raw in lines:
            yield raw.decode("utf-8", "surrogateescape")
    if tail:
        yield tail.decode("utf-8", "surrogateescape")


async def url_lines(path: str) -> AsyncIterator[Item]:
    """Yield an :class:`Item` per URL line: surrounding white space is stripped,
    blank lines and lines starting with ``#`` are skipped."""
    async for line in read_lines(path):
        url = line.strip()
        if url and not url.startswith("#"):
            yield Item(url)
