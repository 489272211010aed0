"""`surefetch report`: totals, charts, the failures table, redaction, bad inputs, memory,
and the page as a real browser renders it."""

from __future__ import annotations

import asyncio
import html
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from click.testing import CliRunner

from surefetch import report
from surefetch.errors import KINDS
from surefetch.record import ErrorInfo, Record, encode
from surefetch.report import (
    FAILURES_SHOWN,
    HOSTS_TRACKED,
    TIME_BINS,
    ReportError,
    ReportStats,
    build_report,
    report_command,
)
from surefetch.sinks.sqlite import SqliteSink

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHARTS = ("chart-outcomes", "chart-throughput", "chart-latency", "chart-statuses", "chart-hosts")
USER = "zq-operator"
PASSWORD = "s3cretPW"
SECRET_URL = f"http://{USER}:{PASSWORD}@secret.example/login?next=/home"
T0 = datetime(2026, 11, 25, 16, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    when = T0 + timedelta(seconds=seconds)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(
    url: str,
    *,
    when: float,
    status: int | None = 200,
    kind: str | None = None,
    message: str = "",
    attempts: int = 1,
    elapsed_ms: float = 10.0,
    size: int = 0,
) -> Record:
    return Record(
        url=url,
        final_url=url if status is not None else None,
        ok=kind is None,
        status=status,
        error=ErrorInfo(kind, message) if kind else None,
        attempts=attempts,
        redirects=0,
        elapsed_ms=elapsed_ms,
        bytes=size,
        content_type="text/plain" if status is not None else None,
        fetched_at=at(when),
        sha256=None,
    )


def mixed_records() -> list[Record]:
    """A known mix: ok, several error kinds and statuses, four hosts, and a URL with
    credentials whose error message repeats them."""
    records = []
    for i in range(20):  # ok: 20 x 100 bytes, one retried once
        records.append(
            record(
                f"http://a.example/ok/{i}",
                when=i,
                size=100,
                elapsed_ms=5.0 + i,
                attempts=2 if i == 7 else 1,
            )
        )
    for i in range(5):
        records.append(
            record(
                f"http://b.example/missing/{i}",
                when=20 + i,
                status=404,
                kind="http_status",
                message="HTTP 404 from the final response",
                size=12,
            )
        )
    for i in range(4):
        records.append(
            record(
                f"http://b.example/busy/{i}",
                when=25 + i,
                status=503,
                kind="http_status",
                message="HTTP 503 from the final response",
                attempts=3,
                elapsed_ms=800.0,
            )
        )
    for i in range(3):
        records.append(
            record(
                f"http://c.example:8080/slow/{i}",
                when=30 + i,
                status=None,
                kind="read_timeout",
                message="no data from the server within the read timeout",
                attempts=3,
                elapsed_ms=20_000.0 + i,
            )
        )
    for i in range(2):
        records.append(
            record(
                f"http://d.example/{i}",
                when=40 + i,
                status=None,
                kind="connect_refused",
                message="connection refused by d.example:80",
                attempts=3,
                elapsed_ms=1500.0,
            )
        )
    records.append(
        record(
            "ftp://x.example/file",
            when=50,
            status=None,
            kind="invalid_url",
            message="not an http(s) URL",
            attempts=0,
            elapsed_ms=0.0,
        )
    )
    records.append(
        record(
            SECRET_URL,
            when=60,
            status=None,
            kind="dns_error",
            message=f"cannot resolve host of {SECRET_URL}",
            attempts=3,
            elapsed_ms=250.0,
        )
    )
    return records


def write_jsonl(path: Path, records: list[Record]) -> Path:
    with path.open("wb") as f:
        for r in records:
            f.write(encode(r))
    return path


def write_sqlite(path: Path, records: list[Record]) -> Path:
    async def main() -> None:
        sink = SqliteSink(str(path))
        for r in records:
            await sink.write(r)
        await sink.close()

    asyncio.run(main())
    return path


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "out.jsonl", mixed_records())


def check_totals(stats: ReportStats) -> None:
    """The totals of :func:`mixed_records`, counted by hand."""
    assert stats.records == 36
    assert (stats.ok, stats.failed) == (20, 16)
    assert stats.bytes == 20 * 100 + 5 * 12
    assert stats.retries == 1 + 4 * 2 + 3 * 2 + 2 * 2 + 2
    assert stats.kinds == {
        "http_status": 9,
        "read_timeout": 3,
        "connect_refused": 2,
        "invalid_url": 1,
        "dns_error": 1,
    }
    assert stats.statuses == {200: 20, 404: 5, 503: 4, None: 7}
    assert stats.first == T0
    assert stats.last == T0 + timedelta(seconds=60)
    assert stats.span_seconds == 60
    assert stats.throughput == pytest.approx(36 / 60)
    assert stats.failures_listed == 16
    assert stats.top_hosts == [
        ("b.example", 9),
        ("c.example:8080", 3),
        ("d.example", 2),
        ("secret.example", 1),
        ("x.example", 1),
    ]
    assert not stats.hosts_approximate
    assert not stats.torn_tail
    assert stats.bin_seconds * 1000 in report._BIN_WIDTHS_MS
    assert math.ceil(60 / stats.bin_seconds) <= TIME_BINS


def tbody_rows(page: str) -> list[str]:
    body = page.split('<table id="failures">', 1)[1].split("<tbody>", 1)[1]
    body = body.split("</tbody>", 1)[0]
    return re.findall(r"<tr>.*?</tr>", body)


def test_jsonl_report_has_the_totals_charts_and_table(jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    stats = build_report(str(jsonl), str(out))
    check_totals(stats)
    page = out.read_text()
    assert stats.html_bytes == len(page.encode())
    for chart in CHARTS:
        assert f'id="{chart}"' in page
    rows = tbody_rows(page)
    assert len(rows) == 16
    # Most recent first: the dns_error at +60 s leads, the 404s at +20 s end the list.
    assert "secret.example" in rows[0]
    assert "/missing/0" in rows[-1]
    assert sum("http_status" in r for r in rows) == 9
    assert any(">503<" in r and "HTTP 503 from the final response" in r for r in rows)
    assert "All 16 failures" in page
    # The header block.
    assert ">36<" in page and ">20<" in page and ">16<" in page
    assert "2,060 B" in page
    assert ">1 min<" in page
    # Self-contained: plotly inline, nothing loaded from elsewhere.
    assert "Plotly.newPlot" in page
    assert len(page) > 1_000_000
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert not re.search(r"<link\b", page, re.IGNORECASE)


def test_credentials_never_reach_the_page(jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    build_report(str(jsonl), str(out), title=f"run of {SECRET_URL}")
    page = out.read_text()
    assert PASSWORD not in page
    assert USER not in page
    assert html.escape("http://***@secret.example/login?next=/home") in page
    assert "cannot resolve host of http://***@secret.example/login" in page


def test_sqlite_output_gives_the_same_report(jsonl: Path, tmp_path: Path) -> None:
    db = write_sqlite(tmp_path / "out.sqlite", mixed_records())
    from_sqlite = build_report(str(db), str(tmp_path / "a.html"))
    from_jsonl = build_report(str(jsonl), str(tmp_path / "b.html"))
    check_totals(from_sqlite)
    assert from_sqlite == from_jsonl
    page = (tmp_path / "a.html").read_text()
    assert PASSWORD not in page
    assert len(tbody_rows(page)) == 16


def test_sqlite_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    db = write_sqlite(tmp_path / "results.data", mixed_records())
    assert build_report(str(db), str(tmp_path / "r.html")).records == 36


def test_latency_percentiles_are_close_to_the_exact_ones(tmp_path: Path) -> None:
    elapsed = [0.5 * 1.01**i for i in range(1000)]  # 0.5 ms .. about 10 s
    records = [record(f"http://h/{i}", when=i, elapsed_ms=ms) for i, ms in enumerate(elapsed)]
    stats = build_report(str(write_jsonl(tmp_path / "o.jsonl", records)), str(tmp_path / "r.html"))
    ordered = sorted(elapsed)
    for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        assert stats.latency_ms[name] == pytest.approx(exact, rel=0.03), name


def test_failures_table_is_capped_to_the_most_recent(tmp_path: Path) -> None:
    n = FAILURES_SHOWN + 500
    # Written out of time order, as a resumed or retried run may leave them.
    order = list(range(0, n, 2)) + list(range(1, n, 2))
    records = [
        record(f"http://h{i % 7}.example/{i}", when=i, status=500, kind="http_status")
        for i in order
    ]
    out = tmp_path / "r.html"
    stats = build_report(str(write_jsonl(tmp_path / "o.jsonl", records)), str(out))
    assert stats.failed == n
    assert stats.failures_listed == FAILURES_SHOWN
    page = out.read_text()
    rows = tbody_rows(page)
    assert len(rows) == FAILURES_SHOWN
    shown = [int(re.search(r"example/(\d+)<", r).group(1)) for r in rows]  # type: ignore[union-attr]
    assert shown == list(range(n - 1, n - 1 - FAILURES_SHOWN, -1))
    assert f"Showing the {FAILURES_SHOWN:,} most recent of {n:,} failures" in page


def test_many_failing_hosts_are_bounded_and_a_late_heavy_host_still_leads(
    tmp_path: Path,
) -> None:
    many = 2 * HOSTS_TRACKED + 5000
    records = [
        record(f"http://host{i}.example/", when=i / 100, status=None, kind="dns_error")
        for i in range(many)
    ]
    records += [
        record(f"http://heavy.example/{i}", when=many / 100 + i, status=503, kind="http_status")
        for i in range(100)
    ]
    out = tmp_path / "r.html"
    stats = build_report(str(write_jsonl(tmp_path / "o.jsonl", records)), str(out))
    assert stats.hosts_approximate
    assert stats.top_hosts[0] == ("heavy.example", 100)
    assert len(stats.top_hosts) == report.HOSTS_SHOWN
    assert "per-host counts may be slightly low" in out.read_text()


def test_time_bins_stay_few_and_keep_every_count() -> None:
    agg = report._Aggregate()
    rows = 0
    # One record per 10 ms for 100 s, then a burst 3 days later (a resumed run).
    for i in range(10_000):
        row = (f"http://h/{i}", i % 3 != 0, 200, None if i % 3 else "dns_error", "", 1, 1.0, 0, "")
        agg.add(row, 1_800_000_000_000 + 10 * i)
        rows += 1
    for i in range(50):
        agg.add(("http://h/late", True, 200, None, None, 1, 1.0, 0, ""), 1_800_259_200_000 + i)
        rows += 1
    assert len(agg.bins) <= report._TIME_BINS_HELD
    width, starts, bins = agg.display_bins()
    assert len(starts) <= TIME_BINS
    assert all(b - a == width for a, b in pairwise(starts))
    assert sum(sum(counts) for counts in bins) == rows
    failed = sum(sum(counts[1:]) for counts in bins)
    assert failed == sum(1 for i in range(10_000) if i % 3 == 0)
    assert agg.kind_counts[agg.series_index["dns_error"]] == failed


def test_torn_last_line_is_left_out_and_said(jsonl: Path, tmp_path: Path) -> None:
    with jsonl.open("ab") as f:
        f.write(encode(mixed_records()[0])[:40])  # a run still writing, or a crash
    out = tmp_path / "r.html"
    stats = build_report(str(jsonl), str(out))
    assert stats.torn_tail
    assert stats.records == 36
    assert "The last line of the output was incomplete" in out.read_text()


def test_unknown_and_odd_error_kinds_get_their_own_or_a_safe_series(tmp_path: Path) -> None:
    records = [
        record("http://h/1", when=0, status=None, kind="quantum_error", message="new kind"),
        record("http://h/2", when=1, status=None, kind="<b onmouseover=x>", message="odd"),
    ]
    out = tmp_path / "r.html"
    stats = build_report(str(write_jsonl(tmp_path / "o.jsonl", records)), str(out))
    assert stats.kinds == {"quantum_error": 1, "unknown": 1}
    page = out.read_text()
    assert "<b onmouseover" not in page
    assert "&lt;b onmouseover=x&gt;" in page  # escaped in the table


def test_every_error_kind_has_its_own_color_and_none_is_oks() -> None:
    colors = [report.KIND_COLORS[kind] for kind in KINDS]
    assert len(set(colors)) == len(KINDS)
    assert report.KIND_COLORS["ok"] not in colors
    assert not set(colors) & set(report._SPARE_COLORS)


def test_markup_in_urls_and_messages_is_escaped(tmp_path: Path) -> None:
    records = [
        record(
            "http://h.example/<script>alert(1)</script>",
            when=0,
            status=None,
            kind="invalid_url",
            message="bad <script>alert(2)</script>",
        )
    ]
    out = tmp_path / "r.html"
    build_report(str(write_jsonl(tmp_path / "o.jsonl", records)), str(out))
    page = out.read_text()
    assert "<script>alert(" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "missing.jsonl", "no such file"),
        (b"", "empty.jsonl", "holds no records"),
        (b"http://example.com/\n", "urls.txt", "line 1 is not a surefetch output"),
        (b'{"url": "http://example.com/", "ok": true}\n', "x.jsonl", "line 1 is not"),
        (b"not sqlite at all\n", "results.sqlite", "is not a SQLite database"),
    ],
)
def test_bad_inputs_are_usage_errors(
    tmp_path: Path, content: bytes | None, name: str, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ReportError, match=re.escape(message)) as info:
        build_report(str(path), str(tmp_path / "r.html"))
    assert "\n" not in info.value.format_message()
    assert not (tmp_path / "r.html").exists()


def test_a_corrupt_line_in_the_middle_is_named(jsonl: Path, tmp_path: Path) -> None:
    lines = jsonl.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"url": "http://a.example/ok/2", "ok": tru\n'
    jsonl.write_bytes(b"".join(lines))
    with pytest.raises(ReportError, match=r"out\.jsonl line 3 is not a surefetch record"):
        build_report(str(jsonl), str(tmp_path / "r.html"))


def test_a_bad_timestamp_is_named(tmp_path: Path) -> None:
    bad = record("http://h/", when=0)
    bad.fetched_at = "yesterday"
    path = write_jsonl(tmp_path / "o.jsonl", [record("http://h/0", when=0), bad])
    with pytest.raises(ReportError, match="record 2 has a bad fetched_at: 'yesterday'"):
        build_report(str(path), str(tmp_path / "r.html"))


def test_sqlite_without_records_table_is_not_a_surefetch_output(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE things (a)")
    db.commit()
    db.close()
    with pytest.raises(ReportError, match="not a surefetch output: no table 'records'"):
        build_report(str(path), str(tmp_path / "r.html"))


def test_command_writes_the_report_where_asked(jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "custom.html"
    result = CliRunner().invoke(report_command, [str(jsonl), "-o", str(out), "--title", "Run 7"])
    assert result.exit_code == 0, result.output
    assert "report of 36 records (20 ok, 16 failed) written to" in result.output
    assert "<title>Run 7</title>" in out.read_text()


def test_command_defaults_to_a_name_next_to_the_output(jsonl: Path) -> None:
    result = CliRunner().invoke(report_command, [str(jsonl)])
    assert result.exit_code == 0, result.output
    page = (jsonl.parent / "out-report.html").read_text()
    assert "<title>surefetch report: out.jsonl</title>" in page


def test_command_reports_bad_input_as_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(report_command, [str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_command_without_plotly_says_how_to_install_it(
    jsonl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(sys.modules):
        if name == "plotly" or name.startswith("plotly."):
            monkeypatch.delitem(sys.modules, name)
    for name in ("plotly", "plotly.graph_objects", "plotly.offline"):
        monkeypatch.setitem(sys.modules, name, None)
    result = CliRunner().invoke(report_command, [str(jsonl)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: surefetch report needs plotly, which is not installed: "
        "pip install 'surefetch[report]'"
    ]


# --- memory on a large output -------------------------------------------------------

# Peak RSS of building one report, in a fresh process. The peak (VmHWM) is reset first:
# a forked child starts with its parent's peak, and pytest's is large.
MEASURE = """
import sys, time

def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
from surefetch.report import build_report
base = kib("VmHWM")
start = time.perf_counter()
stats = build_report(sys.argv[1], sys.argv[2])
took = time.perf_counter() - start
print(base, kib("VmHWM"), took, stats.records, stats.failed)
"""


def write_large_jsonl(path: Path, n: int) -> None:
    """n records in a minute-long run, no bodies: 9 in 10 ok; each failure on a host of
    its own (so the host counter must prune) and with credentials in its URL."""
    kinds = ("http_status", "read_timeout", "connect_refused", "dns_error", "payload_error")
    with path.open("w") as f:
        write = f.write
        for i in range(n):
            ms = i * 60_000 // n
            when = f"2026-11-25T16:{ms // 60_000:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}Z"
            elapsed = (i * 7919) % 100_000 / 10
            if i % 10:
                write(
                    f'{{"url":"http://ok{i % 500}.example/p/{i}","final_url":"http://ok.example/",'
                    f'"ok":true,"status":200,"error":null,"attempts":1,"redirects":0,'
                    f'"elapsed_ms":{elapsed},"bytes":512,"content_type":"text/html",'
                    f'"fetched_at":"{when}","sha256":null}}\n'
                )
            else:
                kind = kinds[i // 10 % len(kinds)]
                status = 503 if kind == "http_status" else "null"
                write(
                    f'{{"url":"http://user:{PASSWORD}@f{i}.example/p","final_url":null,'
                    f'"ok":false,"status":{status},"error":{{"kind":"{kind}",'
                    f'"message":"failed at http://user:{PASSWORD}@f{i}.example/p"}},'
                    f'"attempts":3,"redirects":0,"elapsed_ms":{elapsed},"bytes":0,'
                    f'"content_type":null,"fetched_at":"{when}","sha256":null}}\n'
                )


def measure(source: Path, out: Path) -> tuple[int, int, float, int, int]:
    """(KiB after imports, peak KiB, seconds, records, failed) of building a report."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(source), str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    base, peak, took, records, failed = result.stdout.split()
    return int(base), int(peak), float(took), int(records), int(failed)


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to reset peak RSS"
)
@pytest.mark.timeout(400)
def test_peak_memory_does_not_grow_with_the_number_of_records(tmp_path: Path) -> None:
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    write_large_jsonl(small, 1_000)
    write_large_jsonl(large, 1_000_000)
    _, small_peak, _, _, _ = measure(small, tmp_path / "small.html")
    base, large_peak, took, records, failed = measure(large, tmp_path / "large.html")
    assert (records, failed) == (1_000_000, 100_000)
    print(
        f"report peak RSS: after imports {base / 1024:.1f} MiB; peak with 1k records "
        f"{small_peak / 1024:.1f} MiB, with 1M records {large_peak / 1024:.1f} MiB "
        f"({(large_peak - base) / 1024:.1f} MiB over the baseline); 1M records took {took:.1f} s"
    )
    assert large_peak - base < 100 * 1024, (base, large_peak)
    assert large_peak - small_peak < 40 * 1024, (small_peak, large_peak)
    page = (tmp_path / "large.html").read_text()
    assert PASSWORD not in page
    assert len(tbody_rows(page)) == FAILURES_SHOWN
    assert "more than" in page  # the host counter pruned, and the page says so


# --- in a real browser --------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Clicks the status header twice (ascending, then descending) and filters the table,
# writing what it saw into attributes that --dump-dom shows.
PROBE = """
<script>
(function () {
  var th = document.querySelectorAll("#failures thead th")[3];
  function firstStatus() {
    return document.querySelector("#failures tbody tr td:nth-child(4)").textContent;
  }
  th.click();
  document.body.setAttribute("data-ascending-first", firstStatus() || "none");
  th.click();
  document.body.setAttribute("data-descending-first", firstStatus());
  var filter = document.getElementById("failures-filter");
  filter.value = "secret.example";
  filter.dispatchEvent(new Event("input"));
  var shown = Array.prototype.filter.call(
    document.querySelectorAll("#failures tbody tr"), function (r) { return !r.hidden; });
  document.body.setAttribute("data-filtered", String(shown.length));
})();
</script>
"""


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on a page with no network at all (every host name fails
    to resolve), so the page must be self-contained to render."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="surefetch-chromium-") as profile:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                "--window-size=1400,2900",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )


def console_lines(stderr: str) -> list[str]:
    # With --enable-logging=stderr every console message (log, warning, error, uncaught
    # exception) is a line with ":CONSOLE"; the page itself never writes to the console.
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.mark.timeout(300)
def test_report_renders_in_headless_chromium_without_console_errors(
    jsonl: Path, tmp_path: Path
) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; CI must run this test (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / "report.html"
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    build_report(str(jsonl), str(page), title="surefetch report: test fixture")

    result = chromium("--enable-logging=stderr", "--v=0", f"--screenshot={shot}", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_lines(result.stderr) == []
    assert shot.stat().st_size > 50_000

    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    result = chromium("--dump-dom", probed.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    positions = sorted((dom.index(f'id="{chart}"'), chart) for chart in CHARTS)
    for n, (start, chart) in enumerate(positions):
        end = positions[n + 1][0] if n + 1 < len(positions) else len(dom)
        rendered = dom[start:end]
        assert "js-plotly-plot" in rendered[:200], chart
        assert 'class="main-svg"' in rendered, chart
    assert dom.count('class="main-svg"') >= 2 * len(CHARTS)
    assert 'data-ascending-first="none"' in dom  # no status sorts first (-1)
    assert 'data-descending-first="503"' in dom
    assert 'data-filtered="1"' in dom
