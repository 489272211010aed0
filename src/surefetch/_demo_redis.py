"""``make demo-distributed``: the Redis mode on loopback, start to end.

Starts a redis-server on a free 127.0.0.1 port (no persistence, in a temporary
folder), the demo server of ``surefetch demo`` on a few ports (a few hosts), two
``surefetch worker`` processes and the coordinator (``surefetch fetch --redis``);
shows what each did, then stops everything it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from .demo import demo_urls, serve_demo

_SUREFETCH = [sys.executable, "-m", "surefetch"]
_HOSTS = 8
_WORKERS = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("demo-distributed needs redis-server (Debian: apt-get install redis-server)")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError):
            if _ask(port, "PING") == b"+PONG":
                return proc, f"redis://127.0.0.1:{port}/0"
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit("redis-server did not start")
        time.sleep(0.05)


def _ask(port: int, command: str) -> bytes:
    """The first line of Redis's answer to an inline ``command`` (no reply parser
    needed for a PING or a count)."""
    with socket.create_connection(("127.0.0.1", port), 1) as sock:
        sock.sendall(command.encode() + b"\r\n")
        return sock.recv(64).split(b"\r\n", 1)[0]


def _wait_for_workers(url: str, workers: list[subprocess.Popen[bytes]], folder: Path) -> None:
    """Wait until every worker says it is there, so that the job's hosts are shared
    out among all of them from its start (the coordinator sizes the shares by the
    workers present when it starts)."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    deadline = time.monotonic() + 30
    while int(_ask(port, "ZCARD surefetch:{demo}:workers")[1:]) < len(workers):
        for k, worker in enumerate(workers):
            if worker.poll() is not None:
                last = (folder / f"worker{k}.log").read_text().strip().splitlines()[-1:]
                sys.exit(f"worker {k + 1} ended: {last[0] if last else '(no output)'}")
        if time.monotonic() > deadline:
            sys.exit(f"the {len(workers)} workers did not start in 30 s")
        time.sleep(0.05)


def _start_workers(
    url: str, folder: Path, stack: contextlib.ExitStack
) -> list[subprocess.Popen[bytes]]:
    workers = []
    for k in range(_WORKERS):
        log = stack.enter_context((folder / f"worker{k}.log").open("wb"))
        command = [*_SUREFETCH, "worker", "--redis", url, "--job", "demo"]
        workers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    return workers


def _coordinate(url: str, listing: Path, output: Path) -> int:
    command = [*_SUREFETCH, "fetch", str(listing), "-o", str(output), "--redis", url]
    command += ["--job", "demo", "--timeout", "3", "--retries", "1"]
    print("  $ surefetch " + " ".join(command[3:]), flush=True)
    return subprocess.call(command, env={**os.environ, "COLUMNS": "100"})


def _outcomes(output: Path) -> Counter[str]:
    records = map(json.loads, output.read_text().splitlines())
    return Counter(r["error"]["kind"] if r["error"] else "ok" for r in records)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="surefetch-demo-redis-"))
    output = Path("demo-distributed.jsonl")
    output.unlink(missing_ok=True)  # replaced, as `surefetch demo` replaces its own
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis, url = _start_redis(folder)
        procs.append(redis)
        print(f"redis-server on {url} (no persistence, in {folder})")
        with contextlib.ExitStack() as stack:
            bases = [stack.enter_context(serve_demo()) for _ in range(_HOSTS)]
            urls = [u for k, base in enumerate(bases) for u in demo_urls(base, 750, seed=k)]
            listing = folder / "urls.txt"
            listing.write_text("\n".join(urls) + "\n")
            print(f"demo servers: {', '.join(bases)}; {len(urls)} input lines")
            workers = _start_workers(url, folder, stack)
            procs += workers
            _wait_for_workers(url, workers, folder)
            print(f"{_WORKERS} workers started; the coordinator:")
            code = _coordinate(url, listing, output)
            for k, worker in enumerate(workers):
                worker.wait(30)
                last = (folder / f"worker{k}.log").read_text().strip().splitlines()[-1:]
                print(f"worker {k + 1}: {last[0] if last else '(no output)'}")
        kinds = _outcomes(output)
        print(f"{output}: {sum(kinds.values())} records: {dict(kinds.most_common())}")
        if code:
            sys.exit(code)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
