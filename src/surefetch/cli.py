"""The command line: parses options into policy objects and calls the engine."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import click

from . import __version__
from .client import DEFAULT_USER_AGENT, Client
from .engine import Stats, run
from .policy import Limits, RetryPolicy, Timeouts
from .record import Record
from .sinks import JsonlSink
from .sources import Item, url_lines

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """``"10485760"``, ``"512k"``, ``"10MB"``, ``"1GiB"`` -> bytes (units are powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (try 10485760, 512k, 10M or 1G)")
    unit = (match.group(2) or "").lower()[:1]
    return int(match.group(1)) * _UNITS[unit]


def parse_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` -> ``("Name", "value")``."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c in name for c in " \t\r\n") or "\n" in value or "\r" in value:
        raise ValueError(f"bad header {text!r} (expected 'Name: value')")
    return name, value.strip()


class _Size(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Header(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    name = "header"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_header(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="surefetch")
def cli() -> None:
    """Fetch very many HTTP URLs reliably and fast, with a record of every failure."""


_POSITIVE = click.FloatRange(min=0, min_open=True)


@cli.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(allow_dash=True, dir_okay=False),
    help="Where records go, one JSON object per line ('-' for stdout).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Requests in flight at once, over all hosts.",
)
@click.option(
    "--per-host",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Requests in flight at once to one host.",
)
@click.option(
    "--timeout",
    type=_POSITIVE,
    default=30.0,
    show_default=True,
    help="Seconds one attempt may take in all (connect, head and body).",
)
@click.option(
    "--connect-timeout",
    type=_POSITIVE,
    default=10.0,
    show_default=True,
    help="Seconds to establish the connection (TCP and TLS).",
)
@click.option(
    "--read-timeout",
    type=_POSITIVE,
    default=20.0,
    show_default=True,
    help="Longest gap, in seconds, between two reads from the server.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Extra attempts after a transient failure.",
)
@click.option(
    "--max-body",
    type=_Size(),
    default="10M",
    show_default=True,
    help="Largest body accepted, after decompression (512k, 10M, 1G).",
)
@click.option(
    "--max-redirects",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Redirects to follow before giving up.",
)
@click.option(
    "-H",
    "--header",
    "headers",
    type=_Header(),
    multiple=True,
    help="Extra request header 'Name: value' (repeatable).",
)
@click.option(
    "--user-agent", default=DEFAULT_USER_AGENT, show_default=True, help="The User-Agent header."
)
@click.option("--no-body", is_flag=True, help="Leave bodies out of records (sha256 stays).")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it already exists.")
def fetch(
    input_path: str,
    output: str,
    concurrency: int,
    per_host: int,
    timeout: float,
    connect_timeout: float,
    read_timeout: float,
    retries: int,
    max_body: int,
    max_redirects: int,
    headers: tuple[tuple[str, str], ...],
    user_agent: str,
    no_body: bool,
    overwrite: bool,
) -> None:
    """Fetch every URL in INPUT (one per line, '-' for stdin) and write one record per
    distinct URL to OUTPUT."""
    if input_path != "-" and not os.path.isfile(input_path):
        raise click.UsageError(f"input file not found: {input_path}")
    if output != "-":
        if os.path.isdir(output):
            raise click.UsageError(f"output is a directory: {output}")
        if os.path.exists(output) and os.path.getsize(output) > 0 and not overwrite:
            raise click.UsageError(
                f"output {output} already exists; pass --overwrite to replace it"
            )
        parent = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(parent):
            raise click.UsageError(f"output folder does not exist: {parent}")
    if per_host > concurrency:
        per_host = concurrency
    client = Client(
        limits=Limits(
            concurrency=concurrency,
            per_host=per_host,
            max_body=max_body,
            max_redirects=max_redirects,
        ),
        timeouts=Timeouts(total=timeout, connect=connect_timeout, read=read_timeout),
        retry=RetryPolicy(retries=retries),
        headers=dict(headers),
        user_agent=user_agent,
    )
    try:
        sink = JsonlSink(output)
    except OSError as exc:
        raise click.UsageError(f"cannot write {output}: {exc.strerror}") from None
    _run_fetch(client, lambda: url_lines(input_path), sink, store_body=not no_body)


@cli.command()
@click.option(
    "-o",
    "--output",
    default="demo-results.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Where the demo's records go.",
)
@click.option(
    "--urls",
    "count",
    type=click.IntRange(min=10, max=100_000),
    default=3000,
    show_default=True,
    help="How many URLs to fetch.",
)
def demo(output: str, count: int) -> None:
    """Fetch a few thousand URLs from a built-in local server that misbehaves on purpose."""
    from .demo import demo_urls, serve_demo

    with serve_demo() as base:
        urls = demo_urls(base, count)
        click.echo(
            f"surefetch demo: a local server at {base} with healthy, slow, flaky, failing,"
            f" redirecting and oversized endpoints; fetching {len(urls)} URLs...",
            err=True,
        )
        client = Client(
            limits=Limits(concurrency=64, per_host=64, max_body=1024 * 1024),
            timeouts=Timeouts(total=5, connect=2, read=2),
            retry=RetryPolicy(retries=2, backoff=0.2, retry_after_max=2),
        )
        sink = JsonlSink(output)
        _run_fetch(client, lambda: _iterate(urls), sink, store_body=True)
    click.echo(
        f"\nRecords: {output} (one JSON object per URL). Try:\n"
        f"  jq -c 'select(.ok | not) | {{url, error}}' {output} | head\n"
        f"  jq -r '.error.kind // \"ok\"' {output} | sort | uniq -c\n"
        "  surefetch fetch urls.txt -o results.jsonl   # your own list, one URL per line",
        err=True,
    )


async def _iterate(urls: list[str]) -> AsyncIterator[Item]:
    for url in urls:
        yield Item(url)


def _run_fetch(
    client: Client,
    source: Callable[[], AsyncIterator[Item]],
    sink: JsonlSink,
    *,
    store_body: bool,
) -> None:
    kinds: Counter[str] = Counter()
    started = time.monotonic()
    stats: Stats | None = None

    async def emit(record: Record) -> None:
        if record.error is not None:
            kinds[record.error.kind] += 1
        await sink.write(record)

    async def main() -> Stats:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        loop.add_signal_handler(signal.SIGTERM, task.cancel, "SIGTERM")
        try:
            async with client:
                return await run(client, source(), emit, store_body=store_body)
        finally:
            await sink.close()

    exit_code = 0
    try:
        stats = asyncio.run(main())
    except KeyboardInterrupt:
        exit_code = EXIT_SIGINT
    except asyncio.CancelledError:
        exit_code = EXIT_SIGTERM
    except ExceptionGroup as group:
        leaf = _first_leaf(group)
        if not isinstance(leaf, OSError):
            raise
        _fail(f"stopped: {leaf}; the {sink.written} records before it are in {sink.path}", code=1)
    wall = time.monotonic() - started
    done = sink.written
    failed = sum(kinds.values())
    detail = ", ".join(f"{kind} {n}" for kind, n in kinds.most_common())
    line = (
        f"surefetch: {done} records ({done - failed} ok, {failed} failed"
        + (f": {detail}" if detail else "")
        + f") in {wall:.1f} s ({done / wall if wall else 0:.0f}/s)"
    )
    if stats is not None and stats.duplicates:
        line += f"; {stats.duplicates} duplicate lines skipped"
    if sink.path != "-":
        line += f"; written to {sink.path}"
    if exit_code:
        line = "interrupted: " + line
    click.echo(line, err=True)
    if exit_code:
        sys.exit(exit_code)


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _fail(message: str, *, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"surefetch: error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``surefetch`` command."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cli.main(args=argv, prog_name="surefetch", standalone_mode=False)
    except click.UsageError as exc:
        # One line, no traceback, exit 2.
        _fail(exc.format_message().replace("\n", " "))
    except click.ClickException as exc:
        _fail(exc.format_message().replace("\n", " "), code=exc.exit_code)
    except click.Abort:
        sys.exit(EXIT_SIGINT)


if __name__ == "__main__":
    main()
