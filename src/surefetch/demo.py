"""A local server with healthy and misbehaving endpoints, for `surefetch demo`.

It runs in a thread with its own event loop, bound to 127.0.0.1 only, so the demo
needs no network beyond loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import random
import threading
from collections.abc import Iterator

from aiohttp import web

__all__ = ["demo_urls", "serve_demo"]

_BIG = b"x" * (3 * 1024 * 1024)
_BOMB = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)


def _app() -> web.Application:
    hits: dict[str, int] = {}

    async def page(request: web.Request) -> web.Response:
        n = request.match_info["n"]
        return web.Response(
            text=f"<html><body><h1>Page {n}</h1></body></html>", content_type="text/html"
        )

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(random.uniform(0.2, 1.0))
        return web.json_response({"slow": request.match_info["n"]})

    async def flaky(request: web.Request) -> web.Response:
        key = request.path
        hits[key] = hits.get(key, 0) + 1
        if hits[key] == 1:
            return web.Response(status=503, text="try again")
        return web.Response(text="second time lucky")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="no")

    async def redirect(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPFound(f"/page/{n}")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.path)

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=_BIG, content_type="application/octet-stream")

    async def bomb(request: web.Request) -> web.Response:
        return web.Response(body=_BOMB, headers={"Content-Encoding": "gzip"})

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="too late")

    async def binary(request: web.Request) -> web.Response:
        return web.Response(body=bytes(range(256)) * 4, content_type="image/x-demo")

    app = web.Application()
    app.router.add_get("/page/{n}", page)
    app.router.add_get("/slow/{n}", slow)
    app.router.add_get("/flaky/{n}", flaky)
    app.router.add_get("/status/{code}/{n}", status)
    app.router.add_get("/redirect/{n}", redirect)
    app.router.add_get("/loop/{n}", loop)
    app.router.add_get("/big/{n}", big)
    app.router.add_get("/bomb/{n}", bomb)
    app.router.add_get("/hang/{n}", hang)
    app.router.add_get("/binary/{n}", binary)
    return app


@contextlib.contextmanager
def serve_demo() -> Iterator[str]:
    """Run the demo server in a background thread; yield its base URL."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()
    base: list[str] = []

    async def main() -> None:
        runner = web.AppRunner(
            _app(),
            access_log=None,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=1,
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base.append(f"http://127.0.0.1:{port}")
        started.set()
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield base[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def demo_urls(base: str, count: int = 3000, seed: int = 7) -> list[str]:
    """A shuffled mix: mostly healthy pages, with every kind of trouble sprinkled in."""
    rng = random.Random(seed)
    mix = [
        ("page", 0.80),
        ("slow", 0.05),
        ("flaky", 0.03),
        ("status/404", 0.03),
        ("status/500", 0.02),
        ("redirect", 0.03),
        ("binary", 0.02),
        ("big", 0.005),
        ("bomb", 0.005),
        ("loop", 0.005),
        ("hang", 0.002),
    ]
    names = [name for name, _ in mix]
    weights = [weight for _, weight in mix]
    urls = [f"{base}/{rng.choices(names, weights)[0]}/{i}" for i in range(count)]
    urls += ["ftp://files.example/not-http", f"{base}/page/0"]  # invalid, duplicate
    return urls
