"""Seeing a run: status lines, --quiet, summary JSON, logs, redaction, metrics, events."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import aiohttp

from surefetch import AttemptEvent, Client, RetryPolicy
from surefetch.observe import LatencyHistogram

from .conftest import Server
from .helpers import records, spawn, surefetch, wait_for_requests, write_lines


def mixed_input(server: Server, tmp_path: Path) -> Path:
    lines = [server.url(f"/p/{i}") for i in range(20)]
    lines += [
        server.url("/status/404"),
        server.url("/status/410"),
        "ftp://x/",
        "http://127.0.0.1:9/",
    ]
    src = write_lines(tmp_path / "in.txt", lines)
    return src


async def test_status_lines_when_stderr_is_not_a_terminal(
    slow_server: Server, tmp_path: Path
) -> None:
    src = write_lines(tmp_path / "in.txt", (slow_server.url(f"/p/{i}") for i in range(150)))
    code, _, err = await surefetch(
        "fetch",
        str(src),
        "-o",
        str(tmp_path / "o.jsonl"),
        "--per-host",
        "4",
        "--concurrency",
        "4",
        "--status-every",
        "0.5",
        "--workers",
        "1",
    )
    assert code == 0, err
    status = [
        line for line in err.splitlines() if line.startswith("surefetch: ") and "/150 (" in line
    ]
    assert len(status) >= 2, err
    assert "/s, ETA" in status[0] and "in flight" in status[0] and "ok " in status[0]
    assert "\x1b[" not in err  # no terminal escapes in logs


async def test_quiet_prints_nothing_on_success(server: Server, tmp_path: Path) -> None:
    code, out, err = await surefetch(
        "fetch",
        str(mixed_input(server, tmp_path)),
        "-o",
        str(tmp_path / "o.jsonl"),
        "-q",
        "--retries",
        "0",
        "--status-every",
        "0.1",
    )
    assert code == 0 and out == "" and err == ""


async def test_summary_json_and_text_match_the_records(server: Server, tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    out = tmp_path / "o.jsonl"
    code, _, err = await surefetch(
        "fetch",
        str(mixed_input(server, tmp_path)),
        "-o",
        str(out),
        "--retries",
        "1",
        "--summary-json",
        str(summary),
    )
    assert code == 0, err
    data = json.loads(summary.read_text())
    assert data["records"] == 24 and data["ok"] == 20 and data["failed"] == 4
    assert data["error_kinds"] == {"http_status": 2, "invalid_url": 1, "connect_refused": 1}
    assert data["status_classes"] == {"2xx": 20, "4xx": 2}
    assert data["retries"] == 1  # the refused connection was tried twice
    assert data["bytes"] == sum(r["bytes"] for r in records(out))
    assert data["top_failing_hosts"][0] == {
        "host": "127.0.0.1",
        "failures": 3,
        "main_error": "http_status",
    }
    lat = data["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert data["input"] == {"read": 24, "duplicates": 0, "already_done": 0, "not_fetched": 0}
    assert "latency  p50" in err and "top failing hosts:" in err and "mostly http_status" in err


def test_latency_percentiles_are_close() -> None:
    hist = LatencyHistogram()
    for ms in range(1, 1001):
        hist.add(float(ms))
    assert abs(hist.percentile(50) - 500) / 500 < 0.07
    assert abs(hist.percentile(99) - 990) / 990 < 0.07
    assert hist.percentile(100) == hist.max == 1000.0


async def test_secrets_never_reach_logs_or_records(server: Server, tmp_path: Path) -> None:
    port = server.port
    src = tmp_path / "in.txt"
    src.write_text(
        f"http://alice:hunter2@127.0.0.1:{port}/p/secret\n"
        f"http://tok3n@127.0.0.1:{port}/status/503\n"
        f"http://bob:pa55@127.0.0.1:{port}/redirect/0?next=http://carol:w0rd@x/\n"
    )
    out = tmp_path / "o.jsonl"
    code, _, err = await surefetch(
        "fetch",
        str(src),
        "-o",
        str(out),
        "--retries",
        "1",
        "--log-level",
        "debug",
        "--log-format",
        "json",
    )
    assert code == 0, err
    everything = err + out.read_text()
    for secret in ("hunter2", "alice", "tok3n", "pa55", "bob", "carol", "w0rd"):
        assert secret not in everything
    urls = sorted(r["url"] for r in records(out))
    assert urls[0] == f"http://***@127.0.0.1:{port}/p/secret"
    assert urls[1] == f"http://***@127.0.0.1:{port}/redirect/0?next=http://***@x/"
    # Every line but the summary's is one JSON event.
    log_lines = [line for line in err.splitlines() if not line.startswith(("surefetch:", "  "))]
    events = [json.loads(line) for line in log_lines]
    assert sum(e["message"].startswith("fetched") for e in events) == 2
    retry = next(e for e in events if e["message"].startswith("retrying"))
    assert retry["attempt"] == 1 and retry["status"] == 503 and retry["level"] == "info"
    failed = next(e for e in events if e["message"].startswith("failed"))
    assert failed["kind"] == "http_status" and failed["attempt"] == 2 and "elapsed_ms" in failed
    # The request did carry the credentials: only the logs and records hide them.
    assert server.tracker.hits["/p/secret"] == 1
    # Resume matches the redacted records: nothing is fetched again.
    code, _, err = await surefetch("fetch", str(src), "-o", str(out))
    assert "3 URLs already had a record" in err


async def test_secret_headers_never_reach_logs_or_the_resume_hint(
    slow_server: Server, tmp_path: Path
) -> None:
    src = write_lines(tmp_path / "in.txt", (slow_server.url(f"/p/{i}") for i in range(2000)))
    out = tmp_path / "o.jsonl"
    proc = await spawn(
        "fetch",
        str(src),
        "-o",
        str(out),
        "--log-level",
        "debug",
        "-H",
        "Authorization: Bearer s3cr3t-token",
        "-H",
        "Cookie: session=c00kie",
    )
    await wait_for_requests(slow_server.tracker, 50, 15)
    proc.terminate()
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    text = err.decode() + out.read_text()
    assert "run the same command again" in text and "'Authorization: ***'" in text
    assert "s3cr3t-token" not in text and "c00kie" not in text


async def test_prometheus_metrics_during_a_run(slow_server: Server, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = write_lines(tmp_path / "in.txt", (slow_server.url(f"/p/{i}") for i in range(400)))
    proc = await spawn(
        "fetch",
        str(src),
        "-o",
        str(tmp_path / "o.jsonl"),
        "--per-host",
        "4",
        "--concurrency",
        "4",
        "--metrics-port",
        str(port),
        "-q",
    )
    text = ""
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    text = await resp.text()
                if 'surefetch_records_total{outcome="ok"}' in text:
                    break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    proc.terminate()
    await asyncio.wait_for(proc.communicate(), 20)
    assert 'surefetch_records_total{outcome="ok"}' in text
    assert "surefetch_in_flight" in text and "surefetch_url_seconds_bucket" in text
    assert "surefetch_requests_total" in text and "surefetch_retries_total" in text


async def test_client_reports_attempt_events(server: Server) -> None:
    events: list[AttemptEvent] = []
    retry = RetryPolicy(retries=2, backoff=0.01)
    async with Client(retry=retry, on_event=events.append) as client:
        await client.get(server.url("/flaky/ev?n=1&code=503"))
    assert [(e.type, e.attempt, e.status) for e in events] == [
        ("start", 1, None),
        ("finish", 1, 503),
        ("retry", 1, 503),
        ("start", 2, None),
        ("finish", 2, 200),
    ]
    assert events[2].delay is not None and 0 <= events[2].delay <= 0.01
    assert events[1].elapsed is not None and events[1].elapsed > 0


def test_latency_histogram_edges_extremes_and_bucket_bounds() -> None:
    hist = LatencyHistogram()
    for ms in (0.0, 0.005, 0.01):  # at or under the lowest edge: the first bucket
        hist.add(ms)
    assert hist.counts[0] == 3
    hist.add(1e9)  # past the highest edge: the last bucket, and the max
    assert hist.counts[-1] == 1 and hist.max == 1e9
    # Every latency lands in a bucket whose upper edge is within 12 % above it.
    for ms in (0.011, 0.5, 3.3, 47.0, 999.0, 123456.0):
        one = LatencyHistogram()
        one.add(ms)
        edge = 0.01 * 10 ** (one.counts.index(1) / 20)
        assert ms <= edge < ms * 1.123, (ms, edge)
