"""A/B: surefetch from two commits, side by side, on the throughput scenario of
bench/run.py (nginx on 127.0.0.1, distinct ~1 KB pages, one concurrency level).

Each side is a ``git archive`` of its commit's ``src/`` in a temporary folder, run as
``surefetch fetch`` with ``PYTHONPATH`` pointing there (the worker processes of
``--workers N`` inherit it), so that both use this venv's packages and differ only
in surefetch's own code. Runs alternate (A B B A ...) after a wait for a quiet
machine, every output is checked as in run.py, and the medians are reported with
the ratio B / A. Each run is paired with one of a one-URL input, whose CPU is the
start-up's: taken out, what is left is the CPU a request costs. Figures of a machine
whose other processes were busy meanwhile are flagged (the "other CPU" column).

    python bench/ab.py 3341c4d HEAD                    # 4 rounds of 50,000 URLs
    python bench/ab.py 3341c4d HEAD --rounds 6 -- --workers 1 --no-body -q

Results: bench/results/ab-<time>.json. Not part of ``make bench``: it answers "did
this change move the figures", which the full benchmark answers only across runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import harness
from harness import BenchError, Contender, Sample
from servers import running_server

ROOT = harness.BENCH.parent
RESULTS = harness.BENCH / "results"


def export(rev: str, into: Path) -> tuple[str, Path]:
    """``src/`` of ``rev`` in ``into``; returns the full commit id and the folder."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if commit.returncode != 0:
        raise BenchError(f"not a commit here: {rev!r}")
    full = commit.stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.Popen(
        ["git", "-C", str(ROOT), "archive", full, "src"], stdout=subprocess.PIPE
    )
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise BenchError(f"git archive of {rev} failed")
    return full, into / "src"


def side(key: str, label: str, src: Path, extra: Sequence[str]) -> Contender:
    """``surefetch fetch`` imported from ``src``, with the given options."""
    env = shutil.which("env") or "/usr/bin/env"
    inner = harness.surefetch_cli(*extra)

    def argv(urls: Path, out: Path, concurrency: int) -> list[str]:
        return [env, f"PYTHONPATH={src}", *inner(urls, out, concurrency)]

    return Contender(key, label, argv)


def summary(samples: list[Sample], starts: list[Sample], n: int) -> dict[str, float]:
    wall = statistics.median(s.wall_s for s in samples)
    cpu = statistics.median(s.cpu_s for s in samples)
    start_cpu = statistics.median(s.cpu_s for s in starts)
    return {
        "wall_s": wall,
        "req_per_s": n / wall,
        "cpu_us_per_req": cpu / n * 1e6,
        "start_cpu_s": start_cpu,
        "start_wall_s": statistics.median(s.wall_s for s in starts),
        # What a request costs once the process runs: start-up (one URL) taken out.
        "net_cpu_us_per_req": (cpu - start_cpu) / (n - 1) * 1e6,
        "peak_rss_mb": statistics.median(s.peak_rss_mb for s in samples),
        "other_cpu_pct_max": max(s.other_cpu_pct for s in samples),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="the commit to compare against (A)")
    parser.add_argument("b", nargs="?", default="HEAD", help="the commit to measure (B)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--urls", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "extra",
        nargs="*",
        help="surefetch fetch options for both sides, after -- (default: --workers 1 -q)",
    )
    args = parser.parse_args(argv)
    extra = args.extra or ["--workers", "1", "-q"]
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (a median of one run is not quoted)")
    work = Path(tempfile.mkdtemp(prefix="surefetch-ab-"))
    try:
        commits = {}
        contenders = []
        for key, rev in (("a", args.a), ("b", args.b)):
            full, src = export(rev, work / key)
            commits[key] = full
            contenders.append(side(key, f"{key.upper()} {rev} ({full[:9]})", src, extra))
        urls, one = work / "urls.txt", work / "one.txt"
        samples: dict[str, list[Sample]] = {c.key: [] for c in contenders}
        starts: dict[str, list[Sample]] = {c.key: [] for c in contenders}
        with running_server(log=work / "apt.log") as server:
            harness.write_urls(urls, server, args.urls)
            harness.write_urls(one, server, 1)
            for r in range(args.rounds):
                for contender in contenders if r % 2 == 0 else contenders[::-1]:
                    start = harness.measure(contender, one, 1, work, args.concurrency, server)
                    starts[contender.key].append(start)
                    s = harness.measure(contender, urls, args.urls, work, args.concurrency, server)
                    samples[contender.key].append(s)
                    print(
                        f"  round {r + 1} {contender.label:<32} {s.wall_s:6.2f} s"
                        f" {args.urls / s.wall_s:8,.0f} req/s"
                        f" {s.cpu_s / args.urls * 1e6:5.0f} us/req"
                        f" {s.peak_rss_mb:6.1f} MB  (one URL: {start.cpu_s:.2f} s CPU;"
                        f" other CPU {s.other_cpu_pct:.0f}%)",
                        flush=True,
                    )
        a, b = (summary(samples[k], starts[k], args.urls) for k in ("a", "b"))
        print(
            f"\nsurefetch fetch {' '.join(extra)}, {args.urls:,} URLs, concurrency"
            f" {args.concurrency}, median of {args.rounds}:"
        )
        for c, s in zip(contenders, (a, b), strict=True):
            print(
                f"  {c.label:<32} {s['req_per_s']:8,.0f} req/s {s['cpu_us_per_req']:5.0f} us/req"
                f" ({s['net_cpu_us_per_req']:.0f} net of the start-up's {s['start_cpu_s']:.2f} s)"
                f" {s['peak_rss_mb']:6.1f} MB (other CPU up to {s['other_cpu_pct_max']:.0f}%)"
            )
        print(
            f"  B / A: {b['req_per_s'] / a['req_per_s']:.3f}x req/s,"
            f" {b['cpu_us_per_req'] / a['cpu_us_per_req']:.3f}x CPU per request"
            f" ({b['net_cpu_us_per_req'] / a['net_cpu_us_per_req']:.3f}x net of start-up),"
            f" {b['peak_rss_mb'] / a['peak_rss_mb']:.3f}x peak RSS"
        )
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"ab-{time.strftime('%Y%m%d-%H%M%S')}.json"
        runs = {k: [vars(s) for s in v] for k, v in samples.items()}
        runs.update({f"{k}_one_url": [vars(s) for s in v] for k, v in starts.items()})
        out.write_text(
            json.dumps(
                {"commits": commits, "extra": extra, "urls": args.urls, "a": a, "b": b,
                 "runs": runs},
                indent=2,
            )
        )  # fmt: skip
        print(f"results: {out}")
    except BenchError as exc:
        print(f"ab: {exc}", file=sys.stderr)
        return 1
    finally:
        harness.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
