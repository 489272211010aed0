"""Where URLs come from, streamed from a file or a pipe: one URL per line, CSV with a
header, or JSON lines objects. Every other CSV column / JSON field is carried into the
record as ``meta``."""

from __future__ import annotations

import asyncio
import csv
import os
import stat
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from .errors import SurefetchError
from .redact import not_utf8

__all__ = [
    "INPUT_FORMATS",
    "InputError",
    "Item",
    "ItemBatches",
    "input_format",
    "item_batches",
    "items",
    "read_line_batches",
    "read_lines",
]

INPUT_FORMATS = ("lines", "csv", "jsonl")


class InputError(SurefetchError):
    """The input cannot be read as the format it is said to be in."""


#: Bytes read at a time: the lines of one chunk are handed to the engine together.
_CHUNK = 1 << 14


@dataclass(slots=True)
class Item:
    """One unit of work: a URL, and how to request it."""

    url: str
    #: None means the run's default (GET unless told otherwise).
    method: str | None = None
    headers: Mapping[str, str] | None = None
    data: bytes | None = None
    #: Carried into the record unchanged (e.g. the user's own IDs).
    meta: dict[str, Any] | None = None


class ItemBatches:
    """An async iterable of lists of :class:`Item`, as read from an input: the engine
    takes a whole list per step instead of one item per step (cheaper per URL)."""

    __slots__ = ("_batches",)

    def __init__(self, batches: AsyncIterator[list[Item]]) -> None:
        self._batches = batches

    def __aiter__(self) -> AsyncIterator[list[Item]]:
        return self._batches


async def read_lines(path: str) -> AsyncIterator[str]:
    """Yield the lines of ``path`` (``-`` is stdin) without their line endings."""
    async for lines in read_line_batches(path):
        for line in lines:
            yield line


async def read_line_batches(path: str) -> AsyncIterator[list[str]]:
    """Yield the lines of ``path`` (``-`` is stdin), without their line endings, a list
    per chunk read (16 KiB).

    Regular files are read directly; pipes, terminals and sockets are read through
    the event loop so that a slow producer never blocks other work, and every line
    is passed on as soon as it is complete.
    """
    fd = os.dup(sys.stdin.fileno()) if path == "-" else os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb", buffering=0) as f:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            async for lines in _split(_file_chunks(f.fileno())):
                yield lines
        else:
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader(limit=_CHUNK, loop=loop)
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop), f
            )
            try:
                async for lines in _split(_stream_chunks(reader)):
                    yield lines
            finally:
                transport.close()


async def _file_chunks(fd: int) -> AsyncIterator[bytes]:
    while chunk := os.read(fd, _CHUNK):
        yield chunk


async def _stream_chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while chunk := await reader.read(_CHUNK):
        yield chunk


async def _split(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[str]]:
    tail = b""
    async for chunk in chunks:
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        if lines:
            yield [raw.decode("utf-8", "surrogateescape") for raw in lines]
    if tail:
        yield [tail.decode("utf-8", "surrogateescape")]


def input_format(path: str, given: str | None = None) -> str:
    """The input format: as given, else by extension (.csv, .jsonl/.ndjson), else lines."""
    if given:
        return given
    lowered = path.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "lines"


async def items(
    path: str,
    *,
    fmt: str | None = None,
    url_column: str = "url",
    method: str = "GET",
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[Item]:
    """Yield an :class:`Item` per URL in ``path`` (``-`` is stdin).

    ``method``, ``data`` and ``headers`` apply to every item; in JSON lines input a
    row's own ``method``, ``headers`` and ``body`` take precedence. Raises
    :class:`InputError` (naming the line) for input that is not in the format.
    """
    batches = item_batches(
        path, fmt=fmt, url_column=url_column, method=method, data=data, headers=headers
    )
    async for batch in batches:
        for item in batch:
            yield item


def item_batches(
    path: str,
    *,
    fmt: str | None = None,
    url_column: str = "url",
    method: str = "GET",
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> ItemBatches:
    """:func:`items`, a list per chunk of input: what the engine reads fastest.

    When the input turns out bad, the items before the bad line come first, then
    :class:`InputError`.
    """
    kind = input_format(path, fmt)
    source = _lines if kind == "lines" else _csv if kind == "csv" else _jsonl

    async def batches() -> AsyncIterator[list[Item]]:
        async for batch in source(path, url_column):
            for item in batch:
                if item.method is None:
                    item.method = method
                if item.data is None:
                    item.data = data
                if headers:
                    item.headers = {**headers, **item.headers} if item.headers else headers
            yield batch

    return ItemBatches(batches())


#: The longest URL read (as the longest CSV field): a record must fit in what the
#: resume scan reads of a line (1 MiB), and no server takes more.
MAX_URL: Final = 131072


def _too_long(path: str, number: int, url: str) -> InputError:
    return InputError(
        f"{path} line {number}: a URL of {len(url):,} characters (at most {MAX_URL:,} are read)"
    )


async def _lines(path: str, url_column: str) -> AsyncIterator[list[Item]]:
    """One URL per line; surrounding white space is stripped, blank lines and lines
    starting with ``#`` are skipped."""
    number = 0
    async for lines in read_line_batches(path):
        batch: list[Item] = []
        for line in lines:
            number += 1
            url = line.strip()
            if url and not url.startswith("#"):
                if len(url) > MAX_URL:
                    if batch:
                        yield batch  # the good lines before the bad one are still fetched
                    raise _too_long(path, number, url)
                batch.append(Item(url))
        if batch:
            yield batch


async def _csv(path: str, url_column: str) -> AsyncIterator[list[Item]]:
    header: list[str] | None = None
    column = 0
    pending: list[str] = []  # the lines of a record whose quoted field goes on
    quotes = 0
    start = 0
    number = 0
    async for lines in read_line_batches(path):
        batch: list[Item] = []
        try:
            for line in lines:
                number += 1
                if not pending:
                    start = number
                pending.append(line)
                quotes += line.count('"')
                if quotes % 2:  # inside a quoted field that goes on to the next line
                    continue
                text = "\n".join(pending)
                pending, quotes = [], 0
                if not text.strip():
                    continue
                if (where := not_utf8(text)) is not None:
                    raise InputError(f"{path} line {start} is not valid UTF-8 ({where})")
                try:
                    row = next(csv.reader([text]))
                except csv.Error as exc:  # e.g. "line contains NUL"
                    raise InputError(f"{path} line {start}: not CSV ({exc})") from None
                if header is None:
                    header = [name.strip() for name in row]
                    if url_column not in header:
                        raise InputError(
                            f"{path} line {start}: no {url_column!r} column in the CSV header"
                            f" (columns: {', '.join(map(_one_line, header))}); use --url-column"
                        )
                    column = header.index(url_column)
                    continue
                if len(row) != len(header):
                    raise InputError(
                        f"{path} line {start}: {len(row)} fields where the header has {len(header)}"
                    )
                meta = {
                    name: value
                    for i, (name, value) in enumerate(zip(header, row, strict=True))
                    if i != column
                }
                batch.append(Item(row[column].strip(), meta=meta or None))
        except InputError:
            if batch:
                yield batch  # the good rows before the bad one are still fetched
            raise
        if batch:
            yield batch
    if pending:
        raise InputError(f"{path} line {start}: a quoted CSV field is never closed")
    if header is None:
        raise InputError(f"{path}: the CSV input is empty (a header line is needed)")


def _one_line(text: str) -> str:
    """``text`` with its line breaks written as ``\n`` (an error message is one line)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


_ROW = msgspec.json.Decoder(dict[str, Any])
_RESERVED = ("url", "method", "headers", "body")


async def _jsonl(path: str, url_column: str) -> AsyncIterator[list[Item]]:
    number = 0
    async for lines in read_line_batches(path):
        batch: list[Item] = []
        try:
            for line in lines:
                number += 1
                if line.strip():
                    batch.append(_jsonl_item(path, number, line, url_column))
        except InputError:
            if batch:
                yield batch  # the good rows before the bad one are still fetched
            raise
        if batch:
            yield batch


def _broken_header(headers: Mapping[str, str]) -> str | None:
    """The name of a header that would end the request's head early, if any."""
    for name, value in headers.items():
        if any(c in text for text in (name, value) for c in "\r\n\0"):
            return name
    return None


def _jsonl_item(path: str, number: int, line: str, url_column: str) -> Item:
    if (where := not_utf8(line)) is not None:
        raise InputError(f"{path} line {number} is not valid UTF-8 ({where})")
    try:
        row = _ROW.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise InputError(f"{path} line {number}: not a JSON object") from None
    url = row.get(url_column)
    if not isinstance(url, str):
        raise InputError(f"{path} line {number}: no {url_column!r} string field")
    if len(url) > MAX_URL:
        raise _too_long(path, number, url)
    method = row.get("method")
    headers = row.get("headers")
    body = row.get("body")
    if method is not None and not isinstance(method, str):
        raise InputError(f"{path} line {number}: 'method' must be a string")
    if headers is not None and not (
        isinstance(headers, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        raise InputError(f"{path} line {number}: 'headers' must map names to strings")
    if headers and (bad := _broken_header(headers)) is not None:
        raise InputError(f"{path} line {number}: header {bad!r} has a line break or NUL in it")
    if body is not None and not isinstance(body, str):
        raise InputError(f"{path} line {number}: 'body' must be a string")
    meta = {k: v for k, v in row.items() if k != url_column and k not in _RESERVED}
    return Item(
        url.strip(),
        method=method.upper() if method else None,
        headers=headers,
        data=body.encode() if body is not None else None,
        meta=meta or None,
    )
