"""Baseline: the same worker-pool fetcher as baseline_aiohttp.py, on httpx.AsyncClient.

One AsyncClient with Limits(max_connections=N), N worker tasks fed by a bounded
asyncio.Queue, a timeout on every request, one JSON line (url, status, body,
elapsed) per URL.

    python bench/baseline_httpx.py URLS.txt OUT.jsonl --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterable
from typing import TextIO

import httpx


async def fetch_all(
    lines: Iterable[str], out: TextIO, concurrency: int, request_timeout: float
) -> int:
    """Fetch the URL on each of ``lines``; write one JSON line per URL to ``out``."""
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=concurrency * 4)
    written = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal written
        while (url := await queue.get()) is not None:
            started = time.monotonic()
            try:
                resp = await client.get(url)
                line = {
                    "url": url,
                    "status": resp.status_code,
                    "body": resp.content.decode("utf-8", "replace"),
                    "elapsed": time.monotonic() - started,
                }
            except httpx.HTTPError as exc:
                line = {
                    "url": url,
                    "status": None,
                    "error": f"{type(exc).__name__}: {exc}",
                    "elapsed": time.monotonic() - started,
                }
            out.write(json.dumps(line) + "\n")
            written += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with (
        httpx.AsyncClient(limits=limits, timeout=request_timeout) as client,
        asyncio.TaskGroup() as tg,
    ):
        for _ in range(concurrency):
            tg.create_task(worker(client))
        for raw in lines:
            url = raw.strip()
            if url:
                await queue.put(url)
        for _ in range(concurrency):
            await queue.put(None)
    return written


def main() -> None:
    """Parse arguments, run, report a one-line summary on stderr."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("urls")
    parser.add_argument("output")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    started = time.monotonic()
    with (
        open(args.urls, encoding="utf-8") as lines,
        open(args.output, "w", encoding="utf-8") as out,
    ):
        n = asyncio.run(fetch_all(lines, out, args.concurrency, args.timeout))
    wall = time.monotonic() - started
    print(f"httpx baseline: {n} records in {wall:.1f} s ({n / wall:.0f}/s)", file=sys.stderr)


if __name__ == "__main__":
    main()
