"""--workers N: the same guarantees over several processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from surefetch._fingerprint import fingerprint
from surefetch._spawn import _workers_asked

from .conftest import HOSTS, Server, start_app
from .helpers import records, spawn, surefetch, wait_for_requests, write_lines


@pytest.mark.parametrize(("per_host", "concurrency"), [(4, 10), (1, 2)])
async def test_limits_hold_in_total_over_workers(
    slow_server: Server, tmp_path: Path, per_host: int, concurrency: int
) -> None:
    urls = [slow_server.url(f"/p/{h}-{i}", h) for i in range(40) for h in HOSTS]
    src = write_lines(tmp_path / "in.txt", urls + urls[:7])
    out = tmp_path / "out.jsonl"
    code, _, err = await surefetch(
        "fetch",
        str(src),
        "-o",
        str(out),
        "--workers",
        "2",
        "--per-host",
        str(per_host),
        "--concurrency",
        str(concurrency),
    )
    assert code == 0, err
    recs = records(out)
    assert sorted(r["url"] for r in recs) == sorted(urls)
    assert all(r["ok"] for r in recs)
    assert max(slow_server.tracker.peak.values()) <= per_host
    assert slow_server.tracker.total_peak <= concurrency
    assert all(n == 1 for n in slow_server.tracker.hits.values())


async def test_resume_and_invalid_urls_with_workers(server: Server, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    first = [server.url(f"/p/{i}") for i in range(100)]
    src.write_text("\n".join([*first, "ftp://x/"]) + "\n")
    out = tmp_path / "out.sqlite"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out), "--workers", "2")
    assert code == 0, err
    src.write_text("\n".join([*first, "ftp://x/", *(server.url(f"/p/q{i}") for i in range(50))]))
    code, _, err = await surefetch("fetch", str(src), "-o", str(out), "--workers", "2")
    assert code == 0, err
    assert "50 records (50 ok, 0 failed)" in err
    assert "101 URLs already had a record" in err


async def test_ctrl_c_with_workers_is_graceful(slow_server: Server, tmp_path: Path) -> None:
    src = write_lines(tmp_path / "in.txt", (slow_server.url(f"/p/{i}") for i in range(5000)))
    out = tmp_path / "o.jsonl"
    proc = await spawn(
        "fetch",
        str(src),
        "-o",
        str(out),
        "--workers",
        "2",
        "--per-host",
        "16",
    )
    await wait_for_requests(slow_server.tracker, 300, 20)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130, err.decode()
    recs = records(out)
    urls = [r["url"] for r in recs]
    assert len(urls) == len(set(urls)) and all(r["ok"] for r in recs)
    # Every request the server answered before the stop has its record.
    assert len(urls) == sum(slow_server.tracker.hits.values())
    assert not psutil.Process().children(recursive=True)


async def test_a_dead_worker_stops_the_run_and_keeps_records(
    slow_server: Server, tmp_path: Path
) -> None:
    src = write_lines(tmp_path / "in.txt", (slow_server.url(f"/p/{i}") for i in range(5000)))
    out = tmp_path / "o.jsonl"
    proc = await spawn(
        "fetch",
        str(src),
        "-o",
        str(out),
        "--workers",
        "2",
        "--per-host",
        "16",
    )
    await wait_for_requests(slow_server.tracker, 300, 20)
    workers = psutil.Process(proc.pid).children()
    assert len(workers) == 2
    workers[0].kill()
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1, err.decode()
    assert "worker process" in err.decode() and "died" in err.decode()
    urls = [r["url"] for r in records(out)]
    assert len(urls) == len(set(urls)) > 100
    assert not psutil.Process().children(recursive=True)


async def test_a_host_is_shared_until_it_pushes_back_then_owned(tmp_path: Path) -> None:
    """With --workers 2, one host without a limit is fetched by both workers (each with
    half its --per-host); once it answers a 429, one worker owns it: the other hands
    its URLs over, and the host never sees more than one worker's share again. The
    summary counts every 429, the last one's too (the very last answer)."""
    inflight: list[int] = [0]
    seen: list[tuple[float, int]] = []  # (arrival, requests in flight then)
    pushed_back: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        inflight[0] += 1
        seen.append((time.monotonic(), inflight[0]))
        try:
            if len(seen) in (150, 400):
                pushed_back.append(time.monotonic())
                return web.Response(status=429)
            await asyncio.sleep(0.02)
            return web.Response(text="ok")
        finally:
            inflight[0] -= 1

    app = web.Application()
    app.router.add_get("/{n}", handle)
    runner, port = await start_app(app)
    src = write_lines(tmp_path / "in.txt", (f"http://127.0.0.1:{port}/{n}" for n in range(400)))
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    try:
        code, _, err = await surefetch(
            "fetch",
            str(src),
            "-o",
            str(out),
            "--workers",
            "2",
            "--concurrency",
            "8",
            "--per-host",
            "8",
            "--no-adaptive",
            "--retries",
            "0",
            "--summary-json",
            str(summary),
        )
    finally:
        await runner.cleanup()
    assert code == 0, err
    statuses = sorted(r["status"] for r in records(out))
    assert statuses == [200] * 398 + [429] * 2
    assert len(seen) == 400 and len(pushed_back) == 2
    before = max(n for t, n in seen if t < pushed_back[0])
    after = max(n for t, n in seen if t > pushed_back[0] + 0.3)
    assert before == 8, before  # both workers, 4 each
    assert after <= 4, after  # one worker's 4
    throttled = json.loads(summary.read_text())["throttled_hosts"]
    assert [(h["host"], h["429s"]) for h in throttled] == [(f"127.0.0.1:{port}", 2)]


class TwoHosts:
    """One server on the loopback addresses, and two of its hosts owned by different
    workers of --workers 2 (by hash), or by the same one (``same_owner``): /slow/N on
    ``slow`` answers nothing until ``release`` is set; /fast/N on ``fast`` answers at
    once (its hits counted)."""

    def __init__(self, *, same_owner: bool = False) -> None:
        self.same_owner = same_owner
        self.release = asyncio.Event()
        self.fast_hits: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.slow = self.fast = ""

    def app(self) -> web.Application:
        async def slow(request: web.Request) -> web.Response:
            await self.release.wait()
            return web.Response(text="slow")

        async def fast(request: web.Request) -> web.Response:
            self.fast_hits.append(request.path)
            return web.Response(text="fast")

        app = web.Application()
        app.router.add_get("/slow/{n}", slow)
        app.router.add_get("/fast/{n}", fast)
        return app

    async def __aenter__(self) -> TwoHosts:
        for _ in range(8):  # until two of the hosts have different owners (or one)
            self.runner, self.port = await start_app(self.app(), HOSTS)
            by_owner: dict[int, list[str]] = {}
            for h in HOSTS:
                by_owner.setdefault(fingerprint(f"{h}:{self.port}") % 2, []).append(h)
            if self.same_owner:  # three hosts, two owners: one has two of them
                self.slow, self.fast = next(hosts for hosts in by_owner.values() if len(hosts) > 1)[
                    :2
                ]
                return self
            if len(by_owner) == 2:
                self.slow, self.fast = by_owner[0][0], by_owner[1][0]
                return self
            await self.runner.cleanup()
        pytest.fail("no two hosts with different owners in 8 ports")

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self.runner is not None
        await self.runner.cleanup()

    def urls(self, slow: int, fast: int) -> list[str]:
        return [f"http://{self.slow}:{self.port}/slow/{i}" for i in range(slow)] + [
            f"http://{self.fast}:{self.port}/fast/{i}" for i in range(fast)
        ]

    async def wait_fast(self, count: int) -> None:
        deadline = time.monotonic() + 20
        while len(self.fast_hits) < count:
            assert time.monotonic() < deadline, f"{len(self.fast_hits)} of {count} fetched"
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("same_owner", [False, True])
async def test_a_host_that_waits_does_not_stop_the_others(tmp_path: Path, same_owner: bool) -> None:
    """--workers 2, --per-host 1 (each host owned by one worker): 1,500 URLs of a host
    that answers nothing yet, more than its worker may hold (1,024), then 200 of
    another host. Those 200 are all fetched while the first host still holds its one
    request. If the other worker owns them, the main process keeps the first host's
    extra URLs aside and goes on reading the input (until 2026-12-03 it stopped once a
    worker held 256, and this run hung until the first host answered). If the same
    worker owns both (``same_owner``), that worker, its other requests idle, says so
    (Hungry) and the main process sends it more than its credit, so the second host's
    URLs reach it past the first's (before, they waited aside behind them: a hang)."""
    async with TwoHosts(same_owner=same_owner) as site:
        urls = site.urls(1500, 200)
        src = write_lines(tmp_path / "in.txt", urls)
        out = tmp_path / "out.jsonl"
        proc = await spawn(
            "fetch", str(src), "-o", str(out), "--workers", "2", "--per-host", "1",
            "--timeout", "60",
        )  # fmt: skip
        await site.wait_fast(200)
        site.release.set()
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    recs = records(out)
    assert sorted(r["url"] for r in recs) == sorted(urls)
    assert all(r["ok"] for r in recs)


async def _interrupt(proc: asyncio.subprocess.Process, site: TwoHosts) -> None:
    """Ctrl-C, then the slow host answers its request in flight (no other may start
    now); the run ends 130."""
    proc.send_signal(signal.SIGINT)
    await asyncio.sleep(0.3)
    site.release.set()
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, err.decode()


async def test_a_stop_with_urls_kept_aside_loses_none(tmp_path: Path) -> None:
    """Ctrl-C while URLs wait aside for a full worker (the slow host answers its one
    request in flight just after): the run stops (130) with the records it has and
    counts every other URL as not fetched (those aside among them), and the same
    command run again fetches exactly the rest."""
    async with TwoHosts() as site:
        urls = site.urls(1500, 200)
        src = write_lines(tmp_path / "in.txt", urls)
        out = tmp_path / "out.jsonl"
        summary = tmp_path / "summary.json"
        args = ["fetch", str(src), "-o", str(out), "--workers", "2", "--per-host", "1"]
        args += ["--summary-json", str(summary)]
        proc = await spawn(*args)
        await site.wait_fast(200)
        await _interrupt(proc, site)
        first = records(out)
        slow = [r for r in first if "/slow/" in r["url"]]
        assert len(first) - len(slow) == 200 and 1 <= len(slow) <= 2, len(slow)
        assert json.loads(summary.read_text())["input"]["not_fetched"] == 1500 - len(slow)
        code, _, err = await surefetch(*args)
        assert code == 0, err
    recs = records(out)
    assert sorted(r["url"] for r in recs) == sorted(urls)  # one each: none fetched twice
    assert all(r["ok"] for r in recs)


async def test_a_stop_after_all_the_input_went_to_the_workers_reaches_them(
    tmp_path: Path,
) -> None:
    """Ctrl-C once every URL has gone to a worker (50, within its credit; the main
    process has told the workers the input ended): the workers still hear the stop,
    start nothing new, and the run ends 130 with the one record in flight (until
    2026-12-03 they fetched all they held first, here forever)."""
    async with TwoHosts() as site:
        urls = site.urls(50, 0)
        src = write_lines(tmp_path / "in.txt", urls)
        out = tmp_path / "out.jsonl"
        summary = tmp_path / "summary.json"
        args = ["fetch", str(src), "-o", str(out), "--workers", "2", "--per-host", "1"]
        proc = await spawn(*args, "--summary-json", str(summary))
        await asyncio.sleep(1.5)  # the workers are there, the URLs sent, one in flight
        await _interrupt(proc, site)
    assert len(records(out)) == 1
    assert json.loads(summary.read_text())["input"]["not_fetched"] == 49


@pytest.mark.parametrize(
    ("args", "count"),
    [
        ([], os.cpu_count() or 1),
        (["--workers", "3"], 3),
        (["--workers=4"], 4),
        (["--workers", "3", "--workers", "1"], 1),
        (["--workers", "many"], 0),
        (["--workers"], os.cpu_count() or 1),
        (["--", "--workers", "3"], os.cpu_count() or 1),
    ],
)
def test_the_workers_started_early_are_those_the_cli_will_ask_for(
    args: list[str], count: int
) -> None:
    assert _workers_asked(["in.txt", "-o", "out.jsonl", *args]) == count


async def test_workers_started_early_end_with_a_command_that_fails(tmp_path: Path) -> None:
    """The workers start before the options are read (surefetch._spawn); a command that
    then fails leaves none of them behind."""
    before = {p.pid for p in psutil.process_iter()}
    code, _, err = await surefetch(
        "fetch", str(tmp_path / "missing.txt"), "-o", str(tmp_path / "out.jsonl"),
        "--workers", "2",
    )  # fmt: skip
    assert code == 2 and "input file not found" in err, err
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [
            p
            for p in psutil.process_iter(["cmdline"])
            if p.pid not in before and "surefetch._worker" in (p.info["cmdline"] or [])
        ]
        if not left:
            break
        await asyncio.sleep(0.05)
    assert not left
    assert not (tmp_path / "out.jsonl").exists()


async def test_workers_started_early_end_once_one_process_is_chosen(
    slow_server: Server, tmp_path: Path
) -> None:
    """--workers 2 with --concurrency 1 runs in one process: the two workers started
    before the options were read are ended when the run starts, not when it ends."""
    src = write_lines(tmp_path / "in.txt", (slow_server.url(f"/p/{i}") for i in range(40)))
    out = tmp_path / "o.jsonl"
    proc = await spawn("fetch", str(src), "-o", str(out), "--workers", "2", "--concurrency", "1")
    await wait_for_requests(slow_server.tracker, 2, 20)
    workers = [
        p.pid
        for p in psutil.Process(proc.pid).children()
        if "surefetch._worker" in " ".join(p.cmdline())
    ]
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.communicate(), 20)
    assert workers == []
