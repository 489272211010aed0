"""Where surefetch's time goes per request, and what uvloop would change.

Four parts, all against the local server (nginx) on 127.0.0.1:

1. pyinstrument: ``surefetch fetch --workers 1`` run in this process (through
   ``surefetch.cli.main``, so engine, client and sink are wired as for users) on N
   URLs; self time per function and per module, inclusive time of surefetch's steps.
2. py-spy (only if the ``py-spy`` command is installed): the real CLI as a
   subprocess, sampled from outside (no tracing overhead), with ``--workers 1`` and
   with ``--workers 2`` (main process and worker processes apart).
3. micro-benchmarks: the cost per call of each per-request step of surefetch.
4. uvloop: the CLI with ``--loop asyncio`` and ``--loop uvloop`` (one process each),
   interleaved.

    python bench/profile_engine.py [--urls 20000] [--uvloop-urls 50000]
    python bench/run.py --profile            # the same, from the harness

Reports go to bench/results/profile-*.txt / .html; a summary is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
import timeit
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from harness import (
    BenchError,
    Contender,
    cli_has,
    markdown_table,
    measure,
    run_group,
    stop_all,
    surefetch_cli,
    verify,
    write_urls,
)
from servers import BODY, LocalServer, running_server

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
CONCURRENCY = 64
TOP = 25


# -- the engine, in process --------------------------------------------------------


def one_process_args() -> list[str]:
    """CLI options for a single-process run, where the CLI has ``--workers``."""
    return ["--workers", "1"] if cli_has("--workers") else []


def run_engine(urls: Path, out: Path) -> float:
    """One in-process run of ``surefetch fetch`` (its public entry point, so the engine,
    client and sink are wired exactly as for users); its wall time in seconds."""
    from surefetch.cli import main as surefetch_main

    out.unlink(missing_ok=True)
    argv = [*surefetch_cli(*one_process_args())(urls, out, CONCURRENCY)[1:]]
    started = time.perf_counter()
    try:
        surefetch_main(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise BenchError(f"surefetch fetch (in process) exited with {exc.code}") from None
    return time.perf_counter() - started


# -- profile trees -----------------------------------------------------------------

_SITE = re.compile(r"(?:site-packages|dist-packages)/([^/]+)")
_STDLIB = re.compile(r"python3\.\d+/([^/]+?)(?:\.py)?(?:/|$)")


def module_group(path: str | None) -> str:
    """A short group name for a source path: ``aiohttp``, ``asyncio``, ``surefetch.record``.

    Takes full paths (pyinstrument) and package-relative ones (py-spy).
    """
    if not path:
        return "?"
    if path.startswith("<"):
        return path  # <built-in>, <frozen importlib._bootstrap>, <string>
    parts = Path(path).parts
    if "surefetch" in parts[:-1]:
        i = len(parts) - 1 - parts[::-1].index("surefetch")
        return ".".join(["surefetch", *parts[i + 1 :]]).removesuffix(".py")
    if m := _SITE.search(path):
        return m.group(1).removesuffix(".py")
    if m := _STDLIB.search(path):
        return m.group(1)
    if not Path(path).is_absolute() and len(parts) > 1:
        return parts[0]
    return Path(path).stem


def short_file(path: str | None) -> str:
    """``aiohttp/client_reqrep.py`` from a full path."""
    if not path:
        return "?"
    parts = Path(path).parts
    return "/".join(parts[-2:])


#: Where a sample's time goes, by the module of its innermost Python frame.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("event loop + socket I/O (asyncio, selectors)", ("asyncio", "selectors", "socket", "ssl")),
    (
        "HTTP client (aiohttp, yarl, multidict)",
        ("aiohttp", "yarl", "multidict", "propcache", "aiohappyeyeballs", "frozenlist", "attr"),
    ),
    ("surefetch.client (request, retries, URL check)", ("surefetch.client", "surefetch.policy")),
    (
        "surefetch scheduling (engine, polite, parallel, sources, URL index)",
        (
            "surefetch.engine",
            "surefetch.polite",
            "surefetch.parallel",
            "surefetch._wire",
            "surefetch._worker",
            "surefetch.sources",
            "surefetch._index",
            "numpy",
        ),
    ),
    (
        "surefetch record + sink (record, JSON, write)",
        ("surefetch.record", "surefetch.sinks", "msgspec", "hashlib", "base64", "datetime"),
    ),
    ("surefetch, the rest (job, stats, CLI, ...)", ("surefetch", "click", "rich")),
]
STARTUP = "startup: imports"
OTHER = "other (stdlib, threads)"


def category(stack: list[tuple[str, str | None]]) -> str:
    """The :data:`CATEGORIES` name of one sampled stack (outermost first)."""
    if any(func in ("_find_and_load", "_call_with_frames_removed") for func, _ in stack):
        return STARTUP
    for _, path in reversed(stack):
        group = module_group(path)
        if group.startswith("<"):
            continue  # a C function: its time belongs to its Python caller
        for name, prefixes in CATEGORIES:
            if any(group == p or group.startswith(p + ".") for p in prefixes):
                return name
        return OTHER
    return OTHER


def top(weights: dict[str, float], n: int | None = None) -> list[tuple[str, float]]:
    """The ``n`` heaviest entries of ``weights`` (all if None), heaviest first."""
    return sorted(weights.items(), key=lambda kv: kv[1], reverse=True)[:n]


class Profile:
    """Self and inclusive time per function; self time per module group and category."""

    def __init__(self) -> None:
        self.total = 0.0
        self.self_fn: defaultdict[str, float] = defaultdict(float)
        self.incl_fn: defaultdict[str, float] = defaultdict(float)
        self.self_group: defaultdict[str, float] = defaultdict(float)
        self.categories: defaultdict[str, float] = defaultdict(float)

    def add_stack(self, stack: list[tuple[str, str | None]], weight: float) -> None:
        """Add one sampled stack (outermost first) of ``weight`` seconds or samples."""
        if not stack:
            return
        self.total += weight
        func, path = stack[-1]
        self.self_fn[f"{func} ({short_file(path)})"] += weight
        self.self_group[module_group(path)] += weight
        self.categories[category(stack)] += weight
        for key in {f"{f} ({short_file(p)})" for f, p in stack}:
            self.incl_fn[key] += weight

    def pct(self, value: float) -> float:
        """``value`` as a percentage of the total."""
        return 100.0 * value / self.total if self.total else 0.0


def from_pyinstrument(root: Any) -> Profile:
    """Walk a pyinstrument frame tree into a :class:`Profile` (weights in seconds)."""
    prof = Profile()
    # Iterative walk: (frame, stack of (function, file) from the root).
    todo: list[tuple[Any, list[tuple[str, str | None]]]] = [(root, [])]
    while todo:
        frame, above = todo.pop()
        if frame.is_synthetic:
            # [self]/[await] leaves: their time belongs to the parent frame.
            prof.add_stack(above, frame.time)
            continue
        stack = [*above, (frame.function, frame.file_path)]
        children = frame.children
        own = frame.time - sum(c.time for c in children if not c.is_synthetic)
        synthetic = sum(c.time for c in children if c.is_synthetic)
        if own - synthetic > 0:
            prof.add_stack(stack, own - synthetic)
        todo.extend((child, stack) for child in children)
    return prof


_PYSPY_FRAME = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")


def from_pyspy(raw: Path) -> dict[str, Profile]:
    """Parse py-spy's ``--format raw`` (collapsed stacks) into one :class:`Profile` per
    kind of process: ``main``, and ``worker`` for surefetch's worker processes (with
    ``--subprocesses``, each stack starts with ``process PID:"command"`` frames)."""
    profiles: dict[str, Profile] = {}
    for line in raw.read_text(errors="replace").splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not stack_text or not count.isdigit():
            continue
        kind = "main"
        stack: list[tuple[str, str | None]] = []
        for part in stack_text.split(";"):
            part = part.strip()
            if part.startswith("process "):
                kind = "worker" if "surefetch._worker" in part else "main"
                continue
            m = _PYSPY_FRAME.match(part)
            stack.append((m.group(1), m.group(2)) if m else (part, None))
        profiles.setdefault(kind, Profile()).add_stack(stack, int(count))
    return profiles


def profile_tables(prof: Profile, n: int, per_unit: float, unit: str) -> dict[str, str]:
    """Markdown tables: top functions by self time, modules, and surefetch steps."""
    us = per_unit * 1e6 / n  # microseconds of wall time per request per unit of weight

    def row(name: str, value: float) -> list[str]:
        return [name, f"{prof.pct(value):.1f}%", f"{value * us:.1f}"]

    headers = ["", "% of samples", f"µs/request ({unit})"]
    functions = markdown_table(
        ["function (self time)", *headers[1:]],
        [row(k, v) for k, v in top(prof.self_fn, TOP)],
    )
    groups = markdown_table(
        ["module (self time)", *headers[1:]],
        [row(k, v) for k, v in top(prof.self_group, 15)],
    )
    cats = markdown_table(
        ["where the time goes", *headers[1:]],
        [row(k, v) for k, v in top(prof.categories)],
    )
    steps = [
        (k, v)
        for k, v in top(prof.incl_fn)
        if k.split(" (")[1].startswith("surefetch/") or "/surefetch/" in k
    ]
    ours = markdown_table(
        ["surefetch function (inclusive)", *headers[1:]],
        [row(k, v) for k, v in steps[:TOP]],
    )
    return {
        "categories": cats,
        "top_self": functions,
        "modules": groups,
        "surefetch_inclusive": ours,
    }


def pyinstrument_part(server: LocalServer, n: int, work: Path) -> dict[str, Any]:
    """Run the engine in process, plain then under pyinstrument; tables and overhead."""
    from pyinstrument import Profiler

    urls = work / f"profile-urls-{n}.txt"
    out = work / "profile-out.jsonl"
    write_urls(urls, server, n)
    plain = run_engine(urls, out)
    verify(out, server, n)
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    try:
        profiled = run_engine(urls, out)
    finally:
        profiler.stop()
    verify(out, server, n)
    out.unlink(missing_ok=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "profile-pyinstrument.txt").write_text(
        profiler.output_text(unicode=True, color=False, show_all=False), encoding="utf-8"
    )
    (RESULTS / "profile-pyinstrument.html").write_text(profiler.output_html(), encoding="utf-8")
    session = profiler.last_session
    assert session is not None
    prof = from_pyinstrument(session.root_frame())
    # Scale: profiled seconds -> the unprofiled run's microseconds per request.
    scale = plain / prof.total if prof.total else 0.0
    tables = profile_tables(prof, n, scale, "scaled to unprofiled wall")
    return {
        "urls": n,
        "wall_plain_s": plain,
        "wall_profiled_s": profiled,
        "rps_plain": n / plain,
        "rps_profiled": n / profiled,
        "sampled_s": prof.total,
        **tables,
    }


def pyspy_part(
    server: LocalServer, n: int, work: Path, workers: int | None
) -> dict[str, Any] | None:
    """Sample the real CLI with py-spy (if installed), with ``--workers N`` when given;
    tables per kind of process, or None."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        print("py-spy not installed: skipping the out-of-process profile", flush=True)
        return None
    extra = ["--workers", str(workers)] if workers and cli_has("--workers") else []
    tag = f"w{workers}" if extra else "default"
    urls = work / f"pyspy-urls-{n}.txt"
    out = work / "pyspy-out.jsonl"
    raw = work / f"pyspy-{tag}.raw"
    if not urls.exists():
        write_urls(urls, server, n)
    out.unlink(missing_ok=True)
    rate = 1000
    argv = [pyspy, "record", "--format", "raw", "--rate", str(rate), "--nonblocking"]
    argv += ["--subprocesses", "-o", str(raw), "--"]
    argv += surefetch_cli(*extra)(urls, out, CONCURRENCY)
    log = work / "pyspy.log"
    started = time.perf_counter()
    code = run_group(argv, log=log, timeout=max(600, n / 100))
    wall = time.perf_counter() - started
    if code != 0 or not raw.exists():
        print(f"py-spy failed ({code}): {log.read_text(errors='replace')[-500:]}", flush=True)
        return None
    verify(out, server, n)
    out.unlink(missing_ok=True)
    RESULTS.mkdir(exist_ok=True)
    shutil.copy(raw, RESULTS / f"profile-pyspy-{tag}.raw")
    result: dict[str, Any] = {"urls": n, "wall_s": wall, "rate_hz": rate, "args": extra}
    for kind, prof in from_pyspy(raw).items():
        # One sample = 1/rate s of one process's CPU (idle samples are left out).
        tables = profile_tables(prof, n, 1.0 / rate, "CPU")
        result[kind] = {"samples": prof.total, "cpu_s": prof.total / rate, **tables}
    return result


# -- micro-benchmarks ----------------------------------------------------------------


def _per_call(fn: Callable[[], object], budget: float = 0.2) -> float:
    """Microseconds per call of ``fn`` (best of 5 rounds of about ``budget`` s)."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * budget / 0.2))
    return min(timer.repeat(5, number)) / number * 1e6


def micro_part() -> dict[str, Any]:
    """Cost per call of each per-request step surefetch takes, plus references."""
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    from surefetch._index import UrlIndex, fingerprint
    from surefetch.client import Response, check_url
    from surefetch.record import _now, encode, response_record
    from surefetch.sources import Item

    url = "http://127.0.0.1:40000/p/123456"
    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "text/plain; charset=utf-8"}))
    response = Response(
        method="GET",
        status=200,
        headers=headers,
        url=URL(url),
        body=BODY,
        charset="utf-8",
        redirects=0,
        attempts=1,
        elapsed=0.0123,
    )
    record = response_record(url, response)
    baseline_line = {"url": url, "status": 200, "body": BODY.decode(), "elapsed": 0.0123}

    def index_add(count: int) -> float:
        index = UrlIndex()
        keys = [f"http://127.0.0.1:40000/p/{i}" for i in range(count)]
        started = time.perf_counter()
        for key in keys:
            index.add(key)
        return (time.perf_counter() - started) / count * 1e6

    async def bare_await() -> None:
        await asyncio.sleep(0)

    async def timeout_await() -> None:
        async with asyncio.timeout(30):
            await asyncio.sleep(0)

    def loop_per_call(make: Callable[[], Any], count: int = 20000) -> float:
        async def body() -> float:
            started = time.perf_counter()
            for _ in range(count):
                await make()
            return (time.perf_counter() - started) / count * 1e6

        return asyncio.run(body())

    rows: list[tuple[str, float, str]] = [
        ("fingerprint(url) (blake2b-64)", _per_call(lambda: fingerprint(url)), "URL index"),
        ("UrlIndex.add, 20k new URLs (amortized)", index_add(20_000), "URL index"),
        ("UrlIndex.add, 1M new URLs (amortized)", index_add(1_000_000), "URL index"),
        ("check_url(str) (yarl parse + checks)", _per_call(lambda: check_url(url)), "dispatch"),
        ("Item(url)", _per_call(lambda: Item(url)), "dispatch"),
        (
            "asyncio.timeout(30) around an await (net)",
            loop_per_call(timeout_await) - loop_per_call(bare_await),
            "client",
        ),
        ("record._now() (datetime isoformat)", _per_call(_now), "record"),
        ("sha256(1 KB).hexdigest()", _per_call(lambda: hashlib.sha256(BODY).hexdigest()), "record"),
        ("Response.encoding (codecs.lookup)", _per_call(lambda: response.encoding), "record"),
        ("body.decode(encoding)", _per_call(lambda: BODY.decode(response.encoding)), "record"),
        (
            "response_record(...) in all",
            _per_call(lambda: response_record(url, response)),
            "record",
        ),
        ("record.encode(record) (msgspec)", _per_call(lambda: encode(record)), "sink"),
        (
            "base64.b64encode(1 KB) (binary bodies only)",
            _per_call(lambda: base64.b64encode(BODY).decode("ascii")),
            "record",
        ),
        ("ref: json.dumps(baseline line)", _per_call(lambda: json.dumps(baseline_line)), "ref"),
    ]
    table = markdown_table(
        ["step", "µs/call", "where"], [[name, f"{cost:.2f}", where] for name, cost, where in rows]
    )
    return {"rows": [{"step": n, "us": c, "where": w} for n, c, w in rows], "markdown": table}


# -- uvloop ---------------------------------------------------------------------------


def uvloop_part(server: LocalServer, n: int, rounds: int, work: Path) -> dict[str, Any] | None:
    """One process with ``--loop asyncio`` and ``--loop uvloop``, interleaved; the gain."""
    if not cli_has("--loop"):
        print("this surefetch has no --loop option: skipping the uvloop comparison", flush=True)
        return None
    one = one_process_args()
    contenders = [
        Contender("asyncio", "surefetch --loop asyncio", surefetch_cli(*one, "--loop", "asyncio")),
        Contender("uvloop", "surefetch --loop uvloop", surefetch_cli(*one, "--loop", "uvloop")),
    ]
    urls = work / f"uvloop-urls-{n}.txt"
    write_urls(urls, server, n)
    walls: dict[str, list[float]] = {c.key: [] for c in contenders}
    cpus: dict[str, list[float]] = {c.key: [] for c in contenders}
    for round_no in range(1, rounds + 1):
        for c in contenders:
            sample = measure(c, urls, n, work, CONCURRENCY, server)
            walls[c.key].append(sample.wall_s)
            cpus[c.key].append(sample.cpu_s)
            print(
                f"  uvloop round {round_no} {c.label:<28} {sample.wall_s:6.2f} s "
                f"{n / sample.wall_s:7.0f} req/s  (other CPU {sample.other_cpu_pct:.0f}%)",
                flush=True,
            )
    med = {k: statistics.median(v) for k, v in walls.items()}
    gain = med["asyncio"] / med["uvloop"]
    table = markdown_table(
        ["variant (" + " ".join(one) + ")", "wall s (median)", "req/s", "CPU µs/req", "speed-up"],
        [
            [
                c.label,
                f"{med[c.key]:.2f}",
                f"{n / med[c.key]:,.0f}",
                f"{statistics.median(cpus[c.key]) / n * 1e6:.0f}",
                f"{med['asyncio'] / med[c.key]:.2f}x",
            ]
            for c in contenders
        ],
    )
    return {"urls": n, "rounds": rounds, "walls": walls, "speedup": gain, "markdown": table}


# -- all ------------------------------------------------------------------------------


def _print_tables(title: str, tables: Iterable[str]) -> None:
    print(f"\n{title}\n", flush=True)
    for table in tables:
        print(table + "\n", flush=True)


def run_all(
    server: LocalServer, n: int, work: Path, uvloop_urls: int = 50_000, rounds: int = 3
) -> dict[str, Any]:
    """Every part; prints the summary and returns it for results JSON."""
    print(f"\n== profile: surefetch in process on {n:,} URLs ==", flush=True)
    result: dict[str, Any] = {}
    pyi = result["pyinstrument"] = pyinstrument_part(server, n, work)
    _print_tables(
        f"pyinstrument (in process): {pyi['rps_plain']:,.0f} req/s unprofiled, "
        f"{pyi['rps_profiled']:,.0f} req/s profiled",
        [pyi["categories"], pyi["modules"], pyi["top_self"], pyi["surefetch_inclusive"]],
    )
    for workers in (1, 2):
        spy = result[f"pyspy_w{workers}"] = pyspy_part(server, n, work, workers)
        for kind in ("main", "worker"):
            if spy is not None and kind in spy:
                part = spy[kind]
                _print_tables(
                    f"py-spy {' '.join(spy['args'])}: {kind} process(es), "
                    f"{part['cpu_s']:.2f} s CPU in {spy['wall_s']:.1f} s",
                    [part["categories"], part["modules"], part["top_self"]],
                )
    try:
        micro = result["micro"] = micro_part()
    except (ImportError, AttributeError, TypeError) as exc:
        # They use some of surefetch's private helpers, which may move.
        print(f"micro-benchmarks skipped: {type(exc).__name__}: {exc}", flush=True)
    else:
        _print_tables("Micro-benchmarks (per call)", [micro["markdown"]])
    print(f"== uvloop: CLI on {uvloop_urls:,} URLs, {rounds} interleaved rounds ==", flush=True)
    uv = result["uvloop"] = uvloop_part(server, uvloop_urls, rounds, work)
    if uv is not None:
        _print_tables(f"uvloop speed-up: {uv['speedup']:.2f}x", [uv["markdown"]])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "profile.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def main() -> int:
    """Standalone: start a server, run every part, stop it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--urls", type=int, default=20_000)
    parser.add_argument("--uvloop-urls", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="surefetch-profile-") as tmp,
            running_server() as server,
        ):
            run_all(server, args.urls, Path(tmp), args.uvloop_urls, args.rounds)
    except BenchError as exc:
        print(f"\nPROFILE FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
