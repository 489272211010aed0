"""The surefetch benchmark: throughput against baselines, memory at scale, profile.

Starts a local server on 127.0.0.1 (nginx, installed with apt-get if missing; else
aiohttp in its own process), then:

- throughput: each contender fetches the same N distinct URLs at concurrency 64 and
  stores every body as JSON lines; runs are interleaved (a, b, c, a, b, c) and the
  median is reported, with ratios against the hand-written aiohttp loop;
- memory: surefetch's peak RSS for 10,000 and for 1,000,000 distinct URLs;
- internet: thousands of host names behind a slow DNS server, a server that answers
  50 ms late, in a private network namespace when run as root (bench/internet.py);
- politeness: hosts that allow 50, 300 and 1,000 req/s, on the first run, with one
  worker and two; and one host without a limit (bench/politeness.py);
- distributed: ``fetch --redis`` with two ``surefetch worker``s against ``fetch
  --workers 2`` on the same cores, and Redis's peak memory for 10,000 and 1,000,000
  input URLs (bench/distributed.py);
- profile (only when asked): see bench/profile_engine.py.

Every contender runs as its own subprocess, under bench/measure_child.py, which
reports that process's own wall time, peak RSS (``ru_maxrss``) and CPU time.
Every output is checked: N lines, N distinct URLs, every one status 200 with the
expected body, or the benchmark fails.

    python bench/run.py                       # all but profile (what `make bench` runs)
    python bench/run.py --internet --internet-rounds 3
    python bench/run.py --politeness --politeness-scenarios one-w1,one-w2
    python bench/run.py --distributed --urls 20000 --distributed-memory-urls 10000,100000
    python bench/run.py --throughput --urls 20000
    python bench/run.py --memory --memory-urls 10000,200000
    python bench/run.py --profile

Results go to bench/results/latest.json (and a time-stamped copy).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import distributed
import harness
import internet
import politeness
from harness import (
    BenchError,
    Contender,
    Sample,
    bench_script,
    markdown_table,
    measure,
    on_terminal,
    stop_all,
    supported,
    surefetch_cli,
    write_urls,
)
from servers import LocalServer, find_nginx, start_server

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
BASELINE_KEY = "aiohttp"
#: The prefix of the internet section's options (--internet-rounds and so on).
INTERNET = "internet-"
POLITENESS = "politeness-"


#: The rows of the throughput table, in run order: add one line per new variant.
#: Rows whose ``requires`` options the installed CLI lacks are skipped with a note.
CONTENDERS: list[Contender] = [
    Contender(
        "surefetch-w1",
        "surefetch --workers 1",
        surefetch_cli("--workers", "1"),
        requires=("--workers",),
    ),
    Contender(
        "surefetch-w2",
        "surefetch --workers 2",
        surefetch_cli("--workers", "2"),
        requires=("--workers",),
    ),
    # The CLI as it comes: its defaults for workers and event loop (as of --help).
    Contender("surefetch", "surefetch (default options)", surefetch_cli()),
    # The reference: the hand loop as a careful, speed-minded user writes it, on uvloop.
    Contender(
        BASELINE_KEY,
        "aiohttp loop + uvloop (baseline)",
        bench_script("baseline_aiohttp.py", "--loop", "uvloop"),
    ),
    Contender(
        "aiohttp-asyncio",
        "aiohttp loop, asyncio event loop",
        bench_script("baseline_aiohttp.py"),
    ),
    Contender(
        "surefetch-w1-nobody",
        "surefetch --workers 1 --no-body",
        surefetch_cli("--workers", "1", "--no-body"),
        requires=("--workers", "--no-body"),
    ),
    # The same with every request through aiohttp (the transport before the lean one).
    Contender(
        "surefetch-w1-aiohttp",
        "surefetch --workers 1 --transport aiohttp",
        surefetch_cli("--workers", "1", "--transport", "aiohttp"),
        requires=("--workers", "--transport"),
    ),
    Contender("httpx", "httpx.AsyncClient loop", bench_script("baseline_httpx.py")),
    # Opt-in (--contenders ...): fixed per-host concurrency (no AIMD ramp/cuts).
    Contender(
        "surefetch-w1-fixed",
        "surefetch --workers 1 --no-adaptive",
        surefetch_cli("--workers", "1", "--no-adaptive"),
        requires=("--workers", "--no-adaptive"),
    ),
    Contender(
        "surefetch-w2-fixed",
        "surefetch --workers 2 --no-adaptive",
        surefetch_cli("--workers", "2", "--no-adaptive"),
        requires=("--workers", "--no-adaptive"),
    ),
    # Opt-in (--contenders ...): what the live display costs (issue: < 2 %).
    Contender(
        "surefetch-w1-quiet",
        "surefetch --workers 1 --quiet",
        surefetch_cli("--workers", "1", "--quiet"),
        requires=("--workers", "--quiet"),
    ),
    Contender(
        "surefetch-w1-tty",
        "surefetch --workers 1, live progress on a terminal",
        on_terminal(surefetch_cli("--workers", "1")),
        requires=("--workers",),
    ),
    # Opt-in (--contenders ...): surefetch on the asyncio event loop.
    Contender(
        "surefetch-w1-asyncio",
        "surefetch --workers 1 --loop asyncio",
        surefetch_cli("--workers", "1", "--loop", "asyncio"),
        requires=("--workers", "--loop"),
    ),
]
DEFAULT_CONTENDERS = (
    "surefetch-w1",
    "surefetch-w1-nobody",
    "surefetch-w1-aiohttp",
    "surefetch-w2",
    BASELINE_KEY,
    "aiohttp-asyncio",
    "httpx",
)
DEFAULT_MEMORY = ("surefetch-w1", "surefetch-w2")


@dataclass
class Row:
    """The medians of one contender's runs, and its ratios to the baseline."""

    key: str
    label: str
    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0
    rps: float = 0.0
    peak_rss_mb: float = 0.0
    largest_rss_mb: float = 0.0
    cpu_us_per_req: float = 0.0
    other_cpu_pct: float = 0.0
    rps_vs_baseline: float | None = None
    rss_vs_baseline: float | None = None

    def summarize(self, n: int) -> None:
        """Fill the medians from the samples."""
        self.wall_s = statistics.median(s.wall_s for s in self.samples)
        self.rps = n / self.wall_s
        self.peak_rss_mb = statistics.median(s.peak_rss_mb for s in self.samples)
        self.largest_rss_mb = statistics.median(s.largest_rss_mb for s in self.samples)
        self.cpu_us_per_req = statistics.median(s.cpu_s for s in self.samples) / n * 1e6
        self.other_cpu_pct = max(s.other_cpu_pct for s in self.samples)


def _ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}x"


def throughput(server: LocalServer, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Run every selected contender ``args.repeat`` times, interleaved; print the table."""
    n = args.urls
    chosen = _runnable(args.contenders)
    urls = work / f"urls-{n}.txt"
    write_urls(urls, server, n)
    rows = {c.key: Row(c.key, c.label) for c in chosen}
    total = args.repeat * len(chosen)
    step = 0
    print(
        f"\n== throughput: {n:,} distinct URLs, concurrency {args.concurrency}, "
        f"{args.repeat} interleaved rounds ==",
        flush=True,
    )
    for round_no in range(1, args.repeat + 1):
        for contender in chosen:
            step += 1
            sample = measure(contender, urls, n, work, args.concurrency, server)
            rows[contender.key].samples.append(sample)
            print(
                f"  [{step}/{total}] round {round_no} {contender.label:<44} "
                f"{sample.wall_s:7.2f} s {n / sample.wall_s:8.0f} req/s "
                f"{sample.peak_rss_mb:7.1f} MB  ok  (other CPU {sample.other_cpu_pct:.0f}%)",
                flush=True,
            )
    base = rows.get(BASELINE_KEY)
    for row in rows.values():
        row.summarize(n)
    if base is not None:
        for row in rows.values():
            row.rps_vs_baseline = row.rps / base.rps
            row.rss_vs_baseline = row.peak_rss_mb / base.peak_rss_mb
    headers = [
        "contender",
        "wall s",
        "req/s",
        "vs aiohttp",
        "peak RSS MB",
        "RSS vs aiohttp",
        "largest process MB",
        "CPU µs/req",
        "other CPU % (max)",
    ]
    table = markdown_table(
        headers,
        [
            [
                r.label,
                f"{r.wall_s:.2f}",
                f"{r.rps:,.0f}",
                _ratio(r.rps_vs_baseline),
                f"{r.peak_rss_mb:.1f}",
                _ratio(r.rss_vs_baseline),
                f"{r.largest_rss_mb:.1f}",
                f"{r.cpu_us_per_req:.0f}",
                f"{r.other_cpu_pct:.0f}",
            ]
            for r in rows.values()
        ],
    )
    print(
        f"\nThroughput ({server.kind}, {n:,} URLs of ~1 KB, concurrency {args.concurrency}, "
        f"median of {args.repeat}; peak RSS is summed over a run's processes, CPU is all "
        f"processes' user + system):\n\n{table}\n",
        flush=True,
    )
    return {
        "urls": n,
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "baseline": BASELINE_KEY,
        "rows": [asdict(r) for r in rows.values()],
        "markdown": table,
    }


def memory(server: LocalServer, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Peak RSS of each memory contender at each size in ``args.memory_urls``."""
    chosen = _runnable(args.memory_contenders)
    sizes = args.memory_urls
    print(
        f"\n== memory: {', '.join(c.label for c in chosen)} at "
        f"{', '.join(f'{n:,}' for n in sizes)} URLs ==",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    rows: list[list[str]] = []
    for contender in chosen:
        first: float | None = None
        for n in sizes:
            urls = work / f"urls-{n}.txt"
            if not urls.exists():
                write_urls(urls, server, n)
            sample = measure(contender, urls, n, work, args.concurrency, server)
            print(
                f"  {contender.label:<28} {n:>10,} URLs {sample.wall_s:8.2f} s "
                f"{n / sample.wall_s:8.0f} req/s {sample.peak_rss_mb:7.1f} MB  ok  "
                f"(other CPU {sample.other_cpu_pct:.0f}%)",
                flush=True,
            )
            first = first or sample.peak_rss_mb
            results.append(
                {"key": contender.key, "urls": n, **asdict(sample), "rps": n / sample.wall_s}
            )
            rows.append(
                [
                    contender.label,
                    f"{n:,}",
                    f"{sample.wall_s:.1f}",
                    f"{n / sample.wall_s:,.0f}",
                    f"{sample.peak_rss_mb:.1f}",
                    f"{sample.largest_rss_mb:.1f}",
                    f"{sample.peak_rss_mb / first:.2f}x",
                ]
            )
    for n in sizes:
        (work / f"urls-{n}.txt").unlink(missing_ok=True)
    headers = [
        "contender",
        "URLs",
        "wall s",
        "req/s",
        "peak RSS MB",
        "largest process MB",
        f"RSS vs {sizes[0]:,}",
    ]
    table = markdown_table(headers, rows)
    print(
        f"\nMemory ({server.kind}, concurrency {args.concurrency}, one run each; peak RSS is "
        f"summed over a run's processes):\n\n{table}\n",
        flush=True,
    )
    return {"runs": results, "markdown": table}


def _runnable(keys: Sequence[str]) -> list[Contender]:
    """The contenders named in ``keys`` that the installed CLI can run, in table order."""
    chosen = [c for c in CONTENDERS if c.key in keys]
    for c in chosen:
        if not supported(c):
            print(f"  skipping {c.label!r}: this surefetch lacks {', '.join(c.requires)}")
    return [c for c in chosen if supported(c)]


# -- main ---------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected sizes like 10000,1000000, got {text!r}")
    return sizes


def _keys(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    known = {c.key for c in CONTENDERS}
    unknown = [k for k in keys if k not in known]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"unknown contender(s) {unknown}; known: {sorted(known)}")
    return keys


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; with no section chosen, throughput and memory both run."""
    parser = argparse.ArgumentParser(
        description="surefetch benchmark",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    section = parser.add_argument_group(
        "sections (none given: --throughput --memory --internet --politeness --distributed)"
    )
    section.add_argument("--throughput", action="store_true", help="contenders table")
    section.add_argument("--memory", action="store_true", help="surefetch peak RSS at two sizes")
    section.add_argument(
        "--internet", action="store_true", help="many hosts, slow DNS, slow server (internet.py)"
    )
    section.add_argument(
        "--politeness", action="store_true", help="rate-limited hosts, first runs (politeness.py)"
    )
    section.add_argument(
        "--distributed",
        action="store_true",
        help="Redis with 2 workers vs --workers 2, Redis memory (distributed.py)",
    )
    section.add_argument("--profile", action="store_true", help="profile + uvloop experiment")
    parser.add_argument("--urls", type=int, default=50_000, help="URLs per throughput run")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2, help="interleaved rounds (median)")
    parser.add_argument(
        "--contenders",
        type=_keys,
        default=list(DEFAULT_CONTENDERS),
        help=f"comma-separated keys (default {','.join(DEFAULT_CONTENDERS)}; "
        f"also: {','.join(c.key for c in CONTENDERS if c.key not in DEFAULT_CONTENDERS)})",
    )
    parser.add_argument(
        "--memory-urls", type=_sizes, default=[10_000, 1_000_000], help="e.g. 10000,1000000"
    )
    parser.add_argument(
        "--memory-contenders",
        type=_keys,
        default=list(DEFAULT_MEMORY),
        help=f"comma-separated keys (default {','.join(DEFAULT_MEMORY)})",
    )
    parser.add_argument(
        "--distributed-memory-urls",
        type=_sizes,
        default=[10_000, 1_000_000],
        help="input sizes of the Redis memory runs",
    )
    parser.add_argument("--profile-urls", type=int, default=20_000)
    parser.add_argument("--uvloop-urls", type=int, default=50_000)
    parser.add_argument(
        "--server", choices=("nginx", "aiohttp"), default="nginx", help="preferred server"
    )
    parser.add_argument("--no-install", action="store_true", help="do not apt-get install nginx")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=harness.QUIET_WAIT,
        help="seconds to wait, at most, before each run for other processes to go idle",
    )
    internet.add_arguments(
        parser.add_argument_group("internet section (see bench/internet.py --help)"),
        prefix=INTERNET,
    )
    politeness.add_arguments(
        parser.add_argument_group("politeness section (see bench/politeness.py --help)"),
        prefix=POLITENESS,
    )
    args = parser.parse_args(argv)
    chosen = (args.throughput, args.memory, args.profile, args.internet, args.politeness)
    if not (any(chosen) or args.distributed):
        args.throughput = args.memory = args.internet = args.politeness = True
        args.distributed = True
    if args.urls < 1 or args.repeat < 1 or args.concurrency < 1:
        parser.error("--urls, --repeat and --concurrency must be positive")
    return args


def _meta(server: LocalServer | None) -> dict[str, Any]:
    from importlib import metadata

    versions: dict[str, str] = {}
    for name in ("surefetch", "aiohttp", "msgspec", "httpx", "httpcore", "uvloop", "pyinstrument"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    if server is not None and server.kind == "nginx":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            nginx = find_nginx() or "nginx"
            done = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
            versions["nginx"] = done.stderr.strip().rpartition("/")[2]
    spec = importlib.util.find_spec("surefetch")
    source = str(Path(spec.origin).parent) if spec and spec.origin else "?"
    git = ["git", "-C", str(BENCH.parent)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True)
    uname = platform.uname()
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "server": server.kind if server is not None else None,
        "python": platform.python_version(),
        "machine": f"{uname.machine}, {os.cpu_count()} cores, {uname.system} {uname.release}",
        "versions": versions,
        "surefetch_source": source,
        "git_head": head.stdout.strip(),
        "src_modified": bool(dirty.stdout.strip()),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections; always stop every server and subprocess."""
    args = parse_args(argv)
    harness.QUIET_WAIT = args.quiet_wait
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.monotonic()
    report: dict[str, Any] = {}
    server: LocalServer | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="surefetch-bench-") as tmp:
            work = Path(tmp)
            if args.throughput or args.memory or args.profile:
                server = start_server(
                    prefer=args.server, install=not args.no_install, log=work / "apt.log"
                )
            report["meta"] = _meta(server)
            load = os.getloadavg()[0]
            if load > 0.5:
                print(
                    f"note: load average {load:.2f} before starting: other processes compete "
                    f"for the {os.cpu_count()} cores, so the numbers may be noisy",
                    flush=True,
                )
            if args.throughput and server is not None:
                report["throughput"] = throughput(server, args, work)
            if args.memory and server is not None:
                report["memory"] = memory(server, args, work)
            if args.internet:
                (work / "internet").mkdir()
                report["internet"] = internet.run_section(
                    internet.section_args(args, INTERNET), work / "internet"
                )
            if args.politeness:
                (work / "politeness").mkdir()
                report["politeness"] = politeness.run_section(
                    politeness.section_args(args, POLITENESS), work / "politeness"
                )
            if args.distributed:
                report["distributed"] = distributed.run_section(
                    args.urls, args.repeat, args.distributed_memory_urls
                )
            if args.profile and server is not None:
                import profile_engine

                report["profile"] = profile_engine.run_all(
                    server, args.profile_urls, work, uvloop_urls=args.uvloop_urls
                )
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stop_all()
        if server is not None:
            server.stop()
    report["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    report["meta"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / "latest.json").write_text(text, encoding="utf-8")
    (RESULTS / f"run-{stamp}.json").write_text(text, encoding="utf-8")
    print(
        f"results: {RESULTS / 'latest.json'} ; total {report['meta']['duration_s']:.0f} s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
