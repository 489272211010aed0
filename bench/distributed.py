"""The distributed mode's benchmark (issue 16): Redis against ``--workers N``, on the
same cores, and Redis memory against the size of the input.

Throughput: nginx on 127.0.0.1 (as in bench/run.py), N distinct ~1 KB pages, bodies
stored, concurrency 64 in total. Two contenders, in interleaved rounds:

- ``surefetch fetch --workers 2`` (one machine: a main process and two workers);
- ``surefetch fetch --redis`` (the coordinator) with two ``surefetch worker``
  processes, through a ``redis-server`` of its own on a free loopback port
  (``--save "" --appendonly no``; a fresh job each round).

Every output is checked (N lines, N distinct URLs, all 200 with the body). Besides
URLs/s it reports the CPU of the surefetch processes and of Redis, and the commands
Redis ran per URL (``INFO commandstats``): measured, not counted on paper, so they
are what the capacity model in the README is built from (URLs/s one Redis core
carries = URLs / Redis CPU seconds).

Memory: one run each of two input sizes (10,000 and, by default, 1,000,000 URLs)
through a fresh ``redis-server``; its ``used_memory_peak``, and the median of
``used_memory`` sampled every 0.25 s, show whether Redis holds the window in flight or
the input (the peak also holds the moment's largest replies and records in passing).

    python bench/distributed.py                          # what `make bench` runs
    python bench/distributed.py --urls 20000 --rounds 2 --memory-urls 10000,100000

Results: bench/results/distributed.json (and a time-stamped copy).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import harness
from harness import BenchError
from servers import LocalServer, running_server

RESULTS = harness.BENCH / "results"
CONCURRENCY = 64
RUN_TIMEOUT = 900.0


@dataclass
class Run:
    """One measured run."""

    wall_s: float
    urls_per_s: float
    cpu_s: float
    redis_cpu_s: float = 0.0
    redis_commands: int = 0
    redis_peak_mb: float = 0.0
    #: The median of ``used_memory`` sampled every 0.25 s while the job ran: what Redis
    #: holds steadily (the peak adds the moment's replies and records in passing).
    redis_steady_mb: float = 0.0


class RedisServer:
    """A ``redis-server`` on a free 127.0.0.1 port, without persistence."""

    def __init__(self, binary: str, work: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        folder = work / f"redis-{self.port}"
        folder.mkdir()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        harness.LIVE.add(self.proc)
        deadline = time.monotonic() + 10
        while self.cli("PING") != "PONG":
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise BenchError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip()

    def info(self, section: str) -> dict[str, str]:
        lines = self.cli("INFO", section).splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line)

    def commands(self) -> int:
        """Commands run so far (INFO commandstats, INFO itself left out)."""
        total = 0
        for key, value in self.info("commandstats").items():
            if key.startswith("cmdstat_") and key != "cmdstat_info":
                total += int(value.split("calls=", 1)[1].split(",", 1)[0])
        return total

    def stop(self) -> None:
        harness.kill(self.proc)


@contextlib.contextmanager
def redis_server(binary: str, work: Path) -> Iterator[RedisServer]:
    server = RedisServer(binary, work)
    try:
        yield server
    finally:
        server.stop()


def find_redis(log: Path) -> str:
    """redis-server, installed with apt-get when missing (as bench/servers.py does nginx)."""
    found = shutil.which("redis-server")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("redis-server not found: installing it with apt-get ...", flush=True)
        with log.open("ab") as out:
            subprocess.run(["apt-get", "update"], stdout=out, stderr=out, check=False)
            subprocess.run(
                ["apt-get", "install", "-y", "redis-server", "redis-tools"],
                stdout=out,
                stderr=out,
                check=False,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        found = shutil.which("redis-server")
    if found is None:
        raise BenchError("redis-server is needed (apt-get install redis-server)")
    return found


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wait(procs: Sequence[subprocess.Popen[bytes]], what: str, log: Path) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    for proc in procs:
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise BenchError(f"{what} still running after {RUN_TIMEOUT:.0f} s") from None
        if code != 0:
            tail = log.read_text(errors="replace")[-2000:]
            raise BenchError(f"{what} exited with {code}:\n{tail}")


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    harness.LIVE.add(proc)
    return proc


def fetch_options(urls: Path, out: Path) -> list[str]:
    return [
        harness._venv_script("surefetch"), "fetch", str(urls), "-o", str(out), "-q",
        "--concurrency", str(CONCURRENCY), "--per-host", str(CONCURRENCY),
    ]  # fmt: skip


def run_local(urls: Path, n: int, work: Path, server: LocalServer) -> Run:
    """``surefetch fetch --workers 2``."""
    out, log = work / "local.jsonl", work / "local.log"
    out.unlink(missing_ok=True)
    harness.wait_quiet(server)
    cpu0, t0 = _children_cpu(), time.monotonic()
    proc = _spawn([*fetch_options(urls, out), "--workers", "2"], log)
    _wait([proc], "surefetch fetch --workers 2", log)
    wall = time.monotonic() - t0
    run = Run(wall, n / wall, _children_cpu() - cpu0)
    harness.verify(out, server, n)
    out.unlink()
    return run


def run_redis(
    urls: Path, n: int, work: Path, server: LocalServer, redis: RedisServer, job: str
) -> Run:
    """``surefetch fetch --redis`` and two ``surefetch worker``s."""
    out, log = work / f"{job}.jsonl", work / f"{job}.log"
    out.unlink(missing_ok=True)
    harness.wait_quiet(server)
    redis_cpu0, commands0 = harness.tree_cpu_s(redis.proc.pid), redis.commands()
    cpu0 = _children_cpu()
    worker = [harness._venv_script("surefetch"), "worker", "--redis", redis.url, "--job", job, "-q"]
    procs = [_spawn(worker, log) for _ in range(2)]
    # Workers are services that wait for jobs: the clock starts with the coordinator,
    # once both are there (and share each host's lanes). Their start-up CPU counts.
    _wait_present(redis, job, 2)
    t0 = time.monotonic()
    coordinator = _spawn([*fetch_options(urls, out), "--redis", redis.url, "--job", job], log)
    samples: list[int] = []
    done = threading.Event()
    sampler = threading.Thread(target=_sample_memory, args=(redis, samples, done), daemon=True)
    sampler.start()
    try:
        _wait([coordinator], "the coordinator", log)
    finally:
        done.set()
        sampler.join()
    wall = time.monotonic() - t0
    _wait(procs, "a worker", log)  # they see the job done and exit
    run = Run(
        wall,
        n / wall,
        _children_cpu() - cpu0,
        harness.tree_cpu_s(redis.proc.pid) - redis_cpu0,
        redis.commands() - commands0 - 1,  # less the INFO above
        int(redis.info("memory")["used_memory_peak"]) / 2**20,
        statistics.median(samples) / 2**20 if samples else 0.0,
    )
    harness.verify(out, server, n)
    out.unlink()
    return run


def _wait_present(redis: RedisServer, job: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while int(redis.cli("ZCARD", f"surefetch:{{{job}}}:workers") or 0) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"fewer than {count} workers came within 60 s")
        time.sleep(0.05)


def _sample_memory(redis: RedisServer, samples: list[int], done: threading.Event) -> None:
    while not done.wait(0.25):
        with contextlib.suppress(KeyError, ValueError, subprocess.SubprocessError):
            samples.append(int(redis.info("memory")["used_memory"]))


def median_run(runs: list[Run]) -> Run:
    fields = Run.__dataclass_fields__
    return Run(**{f: statistics.median(getattr(r, f) for r in runs) for f in fields})


def run_section(urls_n: int, rounds: int, sizes: Sequence[int]) -> dict[str, object]:
    """Run the benchmark; print its table; return (and save) its results."""
    work = Path(tempfile.mkdtemp(prefix="surefetch-bench-distributed-"))
    started = time.monotonic()
    try:
        binary = find_redis(work / "apt.log")
        local: list[Run] = []
        through: list[Run] = []
        memory: dict[int, Run] = {}
        with running_server(log=work / "apt.log") as server:
            urls = work / "urls.txt"
            harness.write_urls(urls, server, urls_n)
            print(f"\n== distributed: {urls_n:,} URLs, concurrency {CONCURRENCY}, "
                  f"{rounds} interleaved rounds ==", flush=True)  # fmt: skip
            with redis_server(binary, work) as redis:
                for r in range(rounds):
                    order = ("local", "redis") if r % 2 == 0 else ("redis", "local")
                    for which in order:
                        if which == "local":
                            run = run_local(urls, urls_n, work, server)
                            local.append(run)
                        else:
                            run = run_redis(urls, urls_n, work, server, redis, f"bench{r}")
                            through.append(run)
                        _say(r, which, run, urls_n)
            for size in sizes:
                path = work / f"memory-{size}.txt"
                harness.write_urls(path, server, size)
                with redis_server(binary, work) as redis:
                    run = run_redis(path, size, work, server, redis, f"memory{size}")
                memory[size] = run
                print(
                    f"  memory: {size:>9,} URLs  Redis peak {run.redis_peak_mb:6.1f} MB,"
                    f" steady {run.redis_steady_mb:.1f} MB"
                    f"  ({run.urls_per_s:,.0f} URLs/s)",
                    flush=True,
                )
                path.unlink()
        lines = _table(median_run(local), median_run(through), memory, urls_n, rounds)
        lines.append(f"(section took {time.monotonic() - started:.0f} s)")
        print("\n".join(lines))
        result: dict[str, object] = {
            "urls": urls_n,
            "rounds": rounds,
            "local": [asdict(r) for r in local],
            "redis": [asdict(r) for r in through],
            "memory": {str(k): asdict(v) for k, v in memory.items()},
            "ratio": median_run(through).urls_per_s / median_run(local).urls_per_s,
            "markdown": "\n".join(lines),
        }
        RESULTS.mkdir(exist_ok=True)
        text = json.dumps(result, indent=2)
        (RESULTS / "distributed.json").write_text(text)
        (RESULTS / f"distributed-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(text)
        return result
    finally:
        harness.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def _say(r: int, which: str, run: Run, n: int) -> None:
    label = "fetch --workers 2" if which == "local" else "fetch --redis + 2 workers"
    extra = ""
    if which == "redis":
        extra = f", Redis CPU {run.redis_cpu_s:.1f} s, {run.redis_commands / n:.2f} commands/URL"
    print(
        f"  round {r + 1} {label:<28} {run.wall_s:6.2f} s {run.urls_per_s:8,.0f} URLs/s"
        f"  CPU {run.cpu_s:.1f} s{extra}",
        flush=True,
    )


def _table(a: Run, b: Run, memory: dict[int, Run], n: int, rounds: int) -> list[str]:
    ratio = b.urls_per_s / a.urls_per_s
    redis_rate = n / b.redis_cpu_s if b.redis_cpu_s else float("inf")
    lines = [
        "",
        f"Distributed (nginx, {n:,} URLs of ~1 KB, bodies stored, concurrency"
        f" {CONCURRENCY}, median of {rounds}):",
        "",
        "| contender | wall s | URLs/s | vs --workers 2 | CPU s (surefetch) | Redis CPU s"
        " | Redis commands / URL |",
        "|---|--:|--:|--:|--:|--:|--:|",
        f"| `fetch --workers 2` | {a.wall_s:.2f} | {a.urls_per_s:,.0f} | 1.00x |"
        f" {a.cpu_s:.1f} | | |",
        f"| `fetch --redis` + 2 `worker`s | {b.wall_s:.2f} | {b.urls_per_s:,.0f} |"
        f" {ratio:.2f}x | {b.cpu_s:.1f} | {b.redis_cpu_s:.2f} |"
        f" {b.redis_commands / n:.2f} |",
        "",
        f"one Redis core carries about {redis_rate:,.0f} URLs/s of this path"
        f" ({b.redis_cpu_s / n * 1e6:.0f} µs of Redis CPU per URL)",
        f"target Redis vs --workers 2: {ratio:.2f}x (want >= 0.80x):"
        f" {'met' if ratio >= 0.8 else 'NOT met'}",
    ]
    if len(memory) >= 2:
        small, large = min(memory), max(memory)
        growth = memory[large].redis_peak_mb / memory[small].redis_peak_mb
        steady = memory[large].redis_steady_mb / max(memory[small].redis_steady_mb, 1e-9)
        lines.append(
            f"Redis peak memory: {memory[small].redis_peak_mb:.1f} MB for {small:,} URLs,"
            f" {memory[large].redis_peak_mb:.1f} MB for {large:,}: {growth:.2f}x"
            f" (want <= 1.20x): {'met' if growth <= 1.2 else 'NOT met'}; steady (the"
            f" median of used_memory): {memory[small].redis_steady_mb:.1f} MB and"
            f" {memory[large].redis_steady_mb:.1f} MB, {steady:.2f}x"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", type=int, default=50_000, help="URLs per throughput run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (median)")
    parser.add_argument(
        "--memory-urls", default="10000,1000000", help="input sizes of the memory runs"
    )
    args = parser.parse_args(argv)
    try:
        run_section(args.urls, args.rounds, [int(x) for x in args.memory_urls.split(",") if x])
    except BenchError as exc:
        print(f"distributed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
