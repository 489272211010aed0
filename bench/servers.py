"""Local HTTP servers for the benchmarks: nginx if it can be had, else aiohttp.

Both serve the same ~1 KB text body for any path (``/p/123`` and so on) on
127.0.0.1 at a free port, run in their own process group, and are stopped by
:meth:`LocalServer.stop` (or leaving the ``with`` block) with no process left behind.

Run ``python bench/servers.py`` to start one by hand (Ctrl-C stops it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

__all__ = ["BODY", "LocalServer", "find_nginx", "free_port", "install_nginx", "start_server"]

#: The body every path returns: 16 lines of 63 ASCII characters and a newline.
BODY: bytes = b"".join(f"{i:02d}".encode() + b"x" * 61 + b"\n" for i in range(16))
assert len(BODY) == 1024

_NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
_NGINX_CONF = """\
user {user};
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
worker_rlimit_nofile 65536;
events {{
    worker_connections 8192;
    multi_accept on;
}}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {tmp}/client_body;
    default_type "text/plain; charset=utf-8";
    types {{ }}
    etag off;
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {tmp}/www;
        location / {{
            try_files /body.txt =404;
        }}
    }}
}}
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_nginx() -> str | None:
    """The path of the nginx binary, or None."""
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in _NGINX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def install_nginx(log: Path) -> str | None:
    """Install Debian's nginx with apt-get (as root); return its path or None.

    The package's own service is kept from starting (a temporary ``policy-rc.d``
    when none exists), so the install leaves no server running.
    """
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = False
    try:
        if not policy.exists():
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
            made_policy = True
        with log.open("ab") as out:

            def apt(*args: str) -> bool:
                done = subprocess.run(
                    ["apt-get", *args], stdout=out, stderr=out, env=env, timeout=900
                )
                return done.returncode == 0

            if apt("update"):
                _ = apt("install", "-y", "--no-install-recommends", "nginx-light") or apt(
                    "install", "-y", "--no-install-recommends", "nginx"
                )
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)
    return find_nginx()


class LocalServer:
    """A server process on 127.0.0.1: ``kind`` is ``"nginx"`` or ``"aiohttp"``."""

    def __init__(self, kind: str, port: int, proc: subprocess.Popen[bytes], tmp: Path) -> None:
        self.kind = kind
        self.port = port
        self.proc = proc
        self.tmp = tmp
        self.base = f"http://127.0.0.1:{port}"

    def url(self, i: int) -> str:
        """The URL of page ``i``."""
        return f"{self.base}/p/{i}"

    def describe(self) -> str:
        """A short human description, e.g. ``nginx 1.22.1 on 127.0.0.1:40123``."""
        return f"{self.kind} on 127.0.0.1:{self.port} (pid {self.proc.pid})"

    def stop(self) -> None:
        """Stop the server and everything in its process group; wait for it."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # nginx workers are in the same group; make sure none outlives the master.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _wait_ready(server: LocalServer, expect: str, timeout: float = 15.0) -> None:
    """Poll until ``server`` answers a GET with our body and its Server header."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.kind} exited with code {server.proc.returncode}")
        try:
            with urllib.request.urlopen(server.url(0), timeout=2) as resp:
                body = resp.read()
                header = resp.headers.get("Server", "")
            # Check it is *our* server, not someone else's that took the port.
            if body == BODY and expect in header.lower():
                return
            raise RuntimeError(f"unexpected server on port {server.port}: {header!r}")
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise RuntimeError(f"{server.kind} did not answer within {timeout} s: {last}")


def _start_nginx(nginx: str) -> LocalServer:
    tmp = Path(tempfile.mkdtemp(prefix="surefetch-bench-nginx-"))
    server: LocalServer | None = None
    try:
        (tmp / "www").mkdir()
        (tmp / "www" / "body.txt").write_bytes(BODY)
        port = free_port()
        user = "root root" if os.geteuid() == 0 else "nobody nogroup"
        conf = tmp / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(tmp=tmp, port=port, user=user))
        log = (tmp / "stderr.log").open("wb")
        with log:
            proc = subprocess.Popen(
                [nginx, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        server = LocalServer("nginx", port, proc, tmp)
        _wait_ready(server, "nginx")
        return server
    except BaseException:
        if server is not None:
            server.stop()
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def _start_aiohttp() -> LocalServer:
    tmp = Path(tempfile.mkdtemp(prefix="surefetch-bench-aiohttp-"))
    port = free_port()
    log = (tmp / "stderr.log").open("wb")
    with log:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-aiohttp", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    server = LocalServer("aiohttp", port, proc, tmp)
    try:
        _wait_ready(server, "aiohttp")
    except BaseException:
        server.stop()
        raise
    return server


def start_server(
    *, prefer: str = "nginx", install: bool = True, log: Path | None = None
) -> LocalServer:
    """Start nginx (installing it with apt-get if missing and ``install``), falling
    back to an aiohttp server in its own process; print which one is used."""
    if prefer == "nginx":
        nginx = find_nginx()
        if nginx is None and install:
            print("nginx not found: installing it with apt-get ...", flush=True)
            nginx = install_nginx(log or Path(tempfile.gettempdir()) / "surefetch-bench-apt.log")
        if nginx is not None:
            try:
                server = _start_nginx(nginx)
            except (OSError, RuntimeError) as exc:
                print(f"nginx failed to start ({exc}); falling back to aiohttp", flush=True)
            else:
                print(f"server: {server.describe()}", flush=True)
                return server
        else:
            print("nginx unavailable; falling back to an aiohttp server", flush=True)
    server = _start_aiohttp()
    print(f"server: {server.describe()}", flush=True)
    return server


@contextlib.contextmanager
def running_server(**kwargs: object) -> Iterator[LocalServer]:
    """``with running_server() as server:`` — started, then stopped whatever happens."""
    server = start_server(**kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


def _serve_aiohttp(port: int) -> None:
    """The fallback server: aiohttp's low-level server, one prebuilt response."""
    import asyncio

    from aiohttp import web

    async def handler(request: web.BaseRequest) -> web.Response:
        return web.Response(body=BODY, content_type="text/plain", charset="utf-8")

    async def main() -> None:
        server = web.Server(handler, access_log=None)
        runner = web.ServerRunner(server, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    try:
        import uvloop

        runner: asyncio.Runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(main())


def main() -> None:
    """Start a server by hand and keep it until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve-aiohttp", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--aiohttp", action="store_true", help="use aiohttp, not nginx")
    args = parser.parse_args()
    if args.serve_aiohttp:
        _serve_aiohttp(args.serve_aiohttp)
        return
    with running_server(prefer="aiohttp" if args.aiohttp else "nginx") as server:
        print(f"serving {server.base}/p/<n>; Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while server.proc.poll() is None:
                time.sleep(0.5)


if __name__ == "__main__":
    main()
