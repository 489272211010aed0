"""Nothing lost, nothing leaked: the mistakes a user makes with OUTPUT and INPUT, stops,
full disks, and what the resume hint may show. Each test runs the real command."""

from __future__ import annotations

import asyncio
import glob
import hashlib
import io
import json
import os
import signal
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from surefetch.record import ErrorInfo
from surefetch.sinks import Outcome, retry_filter
from surefetch.sinks.jsonl import _HEAD_MAX, _lines

from .conftest import Server, start_app
from .helpers import records, spawn, surefetch, wait_for_requests, write_lines


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- OUTPUT is validated before a byte is written -------------------------------------


async def test_an_unrelated_file_as_output_is_refused_untouched(
    server: Server, tmp_path: Path
) -> None:
    src = write_lines(tmp_path / "one.txt", [server.url("/p/1")])
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"line1\nprecious last")
    code, _, err = await surefetch("fetch", str(src), "-o", str(notes))
    assert code == 2, err
    assert err.count("\n") == 1 and "line 1 is not a surefetch record" in err
    assert "nothing was changed" in err
    assert notes.read_bytes() == b"line1\nprecious last"
    assert sum(server.tracker.hits.values()) == 0
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "one.txt"]  # no side file either


async def test_the_input_given_as_output_keeps_its_last_url(tmp_path: Path) -> None:
    src = tmp_path / "urls.txt"
    src.write_bytes(b"http://127.0.0.1:9/a\nhttp://127.0.0.1:9/b")  # no final newline
    code, _, err = await surefetch("fetch", str(src), "-o", str(src))
    assert code == 2, err
    assert src.read_bytes() == b"http://127.0.0.1:9/a\nhttp://127.0.0.1:9/b"
    one = tmp_path / "one.txt"
    one.write_bytes(b"http://127.0.0.1:9/a")  # its only line is not a record either
    code, _, err = await surefetch("fetch", str(one), "-o", str(one))
    assert code == 2 and "does not end in a surefetch record" in err, err
    assert one.read_bytes() == b"http://127.0.0.1:9/a"


async def test_torn_line_repair_cuts_only_the_torn_record(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/p/{i}") for i in range(5)]
    src = write_lines(tmp_path / "a.txt", urls)
    out = tmp_path / "out.jsonl"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out))
    assert code == 0, err
    lines = out.read_bytes().splitlines(keepends=True)
    torn_url = json.loads(lines[-1])["url"]
    out.write_bytes(b"".join(lines[:-1]) + lines[-1][:25])
    before = sum(server.tracker.hits.values())
    code, _, err = await surefetch("fetch", str(src), "-o", str(out))
    assert code == 0, err
    # Exactly the torn record's URL was fetched again, and the four others kept.
    assert sum(server.tracker.hits.values()) - before == 1
    assert server.tracker.hits[torn_url.removeprefix(server.base)] == 2
    assert out.read_bytes().startswith(b"".join(lines[:-1]))
    assert sorted(r["url"] for r in records(out)) == sorted(urls)
    (side,) = map(Path, glob.glob(f"{tmp_path}/out.torn-*.jsonl"))
    assert side.read_bytes() == lines[-1][:25]
    assert f"kept in {side}" in err


async def test_nul_padding_after_a_power_cut_is_repaired(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/p/{i}") for i in range(3)]
    src = write_lines(tmp_path / "a.txt", urls)
    out = tmp_path / "out.jsonl"
    assert (await surefetch("fetch", str(src), "-o", str(out)))[0] == 0
    with out.open("ab") as f:
        f.write(b"\0" * 4096)
    code, _, err = await surefetch("fetch", str(src), "-o", str(out))
    assert code == 0 and "cut a torn last line (4096 bytes)" in err, err
    assert len(records(out)) == 3 and sum(server.tracker.hits.values()) == 3


async def test_sqlite_output_that_is_not_ours_is_refused_untouched(tmp_path: Path) -> None:
    src = write_lines(tmp_path / "a.txt", ["http://127.0.0.1:9/"])
    text = tmp_path / "notes.db"
    text.write_bytes(b"not a database at all\n")
    foreign = tmp_path / "people.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE people (name TEXT)")
        db.execute("INSERT INTO people VALUES ('ada')")
    db.close()
    for path in (text, foreign):
        before = digest(path)
        code, _, err = await surefetch("fetch", str(src), "-o", str(path))
        assert code == 2, err
        assert "is not a surefetch SQLite output; nothing was changed" in err
        assert digest(path) == before
        assert not Path(f"{path}-wal").exists()  # noqa: ASYNC240 - a quick stat
    # --restart moves it aside whole, and starts a new output.
    code, _, err = await surefetch("fetch", str(src), "-o", str(foreign), "--restart")
    assert code == 0, err
    (moved,) = glob.glob(f"{tmp_path}/people.old-*.sqlite")
    with sqlite3.connect(moved) as db:
        assert db.execute("SELECT name FROM people").fetchall() == [("ada",)]
    db.close()


def test_the_resume_scan_holds_a_bounded_part_of_each_line(tmp_path: Path) -> None:
    path = tmp_path / "lines"
    long = b"x" * (3 * _HEAD_MAX + 17)
    path.write_bytes(b"a\n" + long + b"\n\nb" + b"y" * 10)
    with path.open("rb") as f:
        got = list(_lines(f))
    size = path.stat().st_size
    assert [(len(h), start, stop) for h, start, stop in got] == [
        (1, 0, 2),
        (_HEAD_MAX, 2, 2 + len(long) + 1),
        (0, 3 + len(long), 4 + len(long)),
        (11, 4 + len(long), -1),
    ]
    assert got[1][0] == b"x" * _HEAD_MAX and got[3][0] == b"b" + b"y" * 10
    assert 4 + len(long) + 11 == size


async def test_records_longer_than_the_scan_keeps_are_resumed(
    server: Server, tmp_path: Path
) -> None:
    """A record whose body is larger than the part of a line the scan reads is still
    known as done (its outcome fields come first)."""
    big = server.url("/gzip?size=3000000")
    src = write_lines(tmp_path / "a.txt", [big, server.url("/status/500")])
    out = tmp_path / "out.jsonl"
    args = ("fetch", str(src), "-o", str(out), "--max-body", "5M", "--retries", "0")
    assert (await surefetch(*args))[0] == 0
    (long_line,) = [line for line in out.read_bytes().splitlines() if len(line) > _HEAD_MAX]
    code, _, err = await surefetch(*args)
    assert code == 0 and "2 URLs already had a record" in err, err
    assert server.tracker.hits["/gzip?size=3000000"] == 1
    # --retry-failed rewrites the file around it, keeping it byte for byte.
    code, _, err = await surefetch(*args, "--retry-failed")
    assert code == 0 and "1 failed records taken out" in err, err
    assert long_line in out.read_bytes().splitlines()
    assert len(records(out)) == 2 and server.tracker.hits["/status/500"] == 2


# -- special files as OUTPUT ------------------------------------------------------------


async def test_dev_null_is_a_stream_and_never_moved(server: Server, tmp_path: Path) -> None:
    src = write_lines(tmp_path / "a.txt", [server.url(f"/p/{i}") for i in range(20)])
    for extra in ((), ("--restart",), ("--retry-failed",)):
        code, _, err = await surefetch("fetch", str(src), "-o", "/dev/null", *extra)
        assert code == 0, err
        assert "/dev/null is not a regular file: records are streamed to it" in err
        assert "Traceback" not in err and "20 records" in err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


async def test_dev_full_fails_at_once_with_one_line(server: Server, tmp_path: Path) -> None:
    src = write_lines(tmp_path / "a.txt", [server.url(f"/p/{i}") for i in range(20)])
    started = time.monotonic()
    code, _, err = await surefetch("fetch", str(src), "-o", "/dev/full", timeout=30)
    assert code == 1, err
    assert time.monotonic() - started < 20
    assert "surefetch: error: cannot write records to /dev/full: No space left on device" in err
    assert "Traceback" not in err and "ExceptionGroup" not in err


async def test_dev_stdout_writes_records_to_stdout(server: Server, tmp_path: Path) -> None:
    src = write_lines(tmp_path / "a.txt", [server.url(f"/p/{i}") for i in range(5)])
    code, out, err = await surefetch("fetch", str(src), "-o", "/dev/stdout")
    assert code == 0, err
    assert sorted(json.loads(line)["url"] for line in out.splitlines()) == sorted(
        server.url(f"/p/{i}") for i in range(5)
    )


async def test_a_fifo_as_output_is_streamed(server: Server, tmp_path: Path) -> None:
    src = write_lines(tmp_path / "a.txt", [server.url(f"/p/{i}") for i in range(5)])
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = io.BytesIO()

    def read() -> None:
        with fifo.open("rb") as f:
            got.write(f.read())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        code, _, err = await surefetch("fetch", str(src), "-o", str(fifo))
    finally:
        reader.join(10)
    assert code == 0, err
    assert len(got.getvalue().splitlines()) == 5
    code, _, err = await surefetch("fetch", str(src), "-o", str(fifo), "--format", "sqlite")
    assert code == 2 and "SQLite output needs a regular file" in err


# -- input that is not UTF-8 ------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_line_that_is_not_utf8_gets_a_record(
    server: Server, tmp_path: Path, workers: str
) -> None:
    src = tmp_path / "in.txt"
    good = [server.url("/p/a"), server.url("/p/b")]
    src.write_bytes(f"{good[0]}\n".encode() + server.url("/p/caf").encode() + b"\xe9\n")
    with src.open("a") as f:
        f.write(good[1] + "\n")
    out = tmp_path / "out.jsonl"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out), "--workers", workers)
    assert code == 0, err
    by_url = {r["url"]: r for r in records(out)}
    assert set(by_url) == {*good, server.url("/p/caf") + "\\xe9"}
    bad = by_url[server.url("/p/caf") + "\\xe9"]
    at = len(server.url("/p/caf")) + 1
    assert bad["error"] == {
        "kind": "invalid_url",
        "message": f"URL is not valid UTF-8 (byte 0xE9 at character {at})",
    }
    assert bad["attempts"] == 0 and "/p/caf" not in server.tracker.hits
    # Resumed: the record is matched to its line, nothing is fetched or written twice.
    code, _, err = await surefetch("fetch", str(src), "-o", str(out), "--workers", workers)
    assert code == 0 and "3 URLs already had a record" in err, err
    assert len(records(out)) == 3


@pytest.mark.parametrize(
    ("name", "header", "bad"),
    [
        ("in.csv", b"url,id\n", b"http://127.0.0.1:9/x,caf\xe9\n"),
        ("in.jsonl", b"", b'{"url": "http://127.0.0.1:9/x", "id": "caf\xe9"}\n'),
    ],
)
async def test_csv_and_jsonl_lines_that_are_not_utf8_stop_with_their_line(
    server: Server, tmp_path: Path, name: str, header: bytes, bad: bytes
) -> None:
    src = tmp_path / name
    good = server.url("/p/first")
    first = f"{good},1\n" if name.endswith(".csv") else json.dumps({"url": good}) + "\n"
    src.write_bytes(header + first.encode() + bad)
    out = tmp_path / "out.jsonl"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out))
    assert code == 2, err
    line = 3 if header else 2
    assert f"{src} line {line} is not valid UTF-8 (byte 0xE9 at character" in err
    assert "Traceback" not in err
    assert [r["url"] for r in records(out)] == [good]


async def test_a_csv_field_too_large_stops_with_its_line(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("url,note\nhttp://127.0.0.1:9/," + "n" * 200_000 + "\n")
    code, _, err = await surefetch("fetch", str(src), "-o", str(tmp_path / "o.jsonl"))
    assert code == 2, err
    assert f"{src} line 2: not CSV (field larger than field limit (131072))" in err
    assert "Traceback" not in err


async def test_nul_bytes_in_a_url_give_an_invalid_url_record(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(b"url\nhttp://127.0.0.1:9/\x00x\n")
    out = tmp_path / "o.jsonl"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out))
    assert code == 0, err
    (record,) = records(out)
    assert record["url"] == "http://127.0.0.1:9/\x00x"
    assert record["error"]["kind"] == "invalid_url" and record["attempts"] == 0


# -- stops ------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_after_ctrl_c_no_request_starts(server: Server, tmp_path: Path, workers: str) -> None:
    """100 URLs of 1 s each, 4 at a time: a Ctrl-C at the 10th request lets those in
    flight finish and starts no other, with one worker process or several."""
    src = write_lines(tmp_path / "in.txt", (server.url(f"/sleep/1?i={i}") for i in range(100)))
    out = tmp_path / "o.jsonl"
    summary = tmp_path / "summary.json"
    proc = await spawn(
        "fetch",
        str(src),
        "-o",
        str(out),
        "--per-host",
        "4",
        "--grace",
        "5",
        "--workers",
        workers,
        "--summary-json",
        str(summary),
    )
    await wait_for_requests(server.tracker, 9, 20)
    # The stop comes while the server holds 4 requests (all the slots) that started less
    # than 0.6 s ago: none is on its way, and none may start for 0.4 s or more. A stop
    # sent just as a wave of requests goes out races that wave (with two workers, the
    # other one's wave may come a moment later, before the stop has reached it).
    times = server.tracker.times
    deadline = time.monotonic() + 10
    while server.tracker.total_inflight < 4 or time.monotonic() - times[-4] > 0.6:
        assert time.monotonic() < deadline, "never 4 requests in flight that started lately"
        await asyncio.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130, err.decode()
    late = [t - signalled for t in server.tracker.times if t > signalled]
    assert late == []
    assert time.monotonic() - signalled < 3  # those in flight took about a second
    recs = records(out)
    assert len(recs) == len(server.tracker.times) and all(r["ok"] for r in recs)
    assert json.loads(summary.read_text())["interrupted"] is True
    text = err.decode()
    assert (
        "surefetch: SIGINT: finishing the requests in flight (up to 5 s);"
        " press Ctrl-C again to stop at once\n" in text
    )
    assert "To continue where it stopped, run the same command again:" in text


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_after_ctrl_c_no_retry_starts(server: Server, tmp_path: Path, workers: str) -> None:
    """A URL waiting out a Retry-After when the stop comes is not tried again: it gets
    no record (the next run fetches it), and the run ends at once."""
    flaky = server.url("/flaky/k?n=1&code=503&after=3")
    src = write_lines(tmp_path / "in.txt", [flaky])
    out = tmp_path / "o.jsonl"
    proc = await spawn("fetch", str(src), "-o", str(out), "--workers", workers)
    await wait_for_requests(server.tracker, 1, 20)
    await asyncio.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130, err.decode()
    assert time.monotonic() - signalled < 2
    assert server.tracker.hits["/flaky/k?n=1&code=503&after=3"] == 1
    assert records(out) == []
    # The next run fetches it (its retry now succeeds at once).
    code, _, text = await surefetch("fetch", str(src), "-o", str(out), "--workers", workers)
    assert code == 0, text
    assert [r["url"] for r in records(out)] == [flaky]


async def test_sigterm_notice_is_one_line_that_names_sigterm(
    server: Server, tmp_path: Path
) -> None:
    src = write_lines(tmp_path / "in.txt", [server.url("/sleep/1")])
    summary = tmp_path / "summary.json"
    proc = await spawn(
        "fetch", str(src), "-o", str(tmp_path / "o.jsonl"), "--summary-json", str(summary)
    )
    await wait_for_requests(server.tracker, 1, 20)
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 143
    assert (
        "surefetch: SIGTERM: finishing the requests in flight (up to 10 s);"
        " send SIGTERM again to stop at once\n" in err.decode()
    )
    assert json.loads(summary.read_text())["interrupted"] is True


async def test_summary_json_of_a_complete_run_is_not_interrupted(
    server: Server, tmp_path: Path
) -> None:
    src = write_lines(tmp_path / "in.txt", [server.url("/p/1")])
    summary = tmp_path / "summary.json"
    code, _, err = await surefetch(
        "fetch", str(src), "-o", str(tmp_path / "o.jsonl"), "--summary-json", str(summary)
    )
    assert code == 0, err
    assert json.loads(summary.read_text())["interrupted"] is False


async def test_summary_json_in_a_missing_folder_is_refused_before_the_run(
    server: Server, tmp_path: Path
) -> None:
    src = write_lines(tmp_path / "in.txt", [server.url("/p/1")])
    code, _, err = await surefetch(
        "fetch",
        str(src),
        "-o",
        str(tmp_path / "o.jsonl"),
        "--summary-json",
        str(tmp_path / "nowhere" / "s.json"),
    )
    assert code == 2, err
    assert err.count("\n") == 1 and "--summary-json: folder does not exist" in err
    assert sum(server.tracker.hits.values()) == 0
    assert not (tmp_path / "o.jsonl").exists()


# -- the resume hint --------------------------------------------------------------------


async def test_the_resume_hint_masks_every_spelling_of_a_secret(
    server: Server, tmp_path: Path
) -> None:
    src = write_lines(tmp_path / "in.txt", (server.url(f"/sleep/1?i={i}") for i in range(20)))
    out = tmp_path / "o.jsonl"
    proc = await spawn(
        "fetch",
        str(src),
        "-o",
        str(out),
        "--header=Authorization: Bearer SECRET-A",
        "-HCookie: sid=SECRET-B",
        "-H",
        "X-Api-Key: SECRET-C",
        "--header",
        "Proxy-Authorization: Basic SECRET-D",
        "-H",
        "Accept: text/plain",
        "--dns-servers",
        "127.0.0.1:53,[::1]:53",
        "--restart",
        "--per-host",
        "2",
        "--workers",
        "1",
    )
    await wait_for_requests(server.tracker, 1, 20)
    proc.send_signal(signal.SIGINT)
    _, raw = await asyncio.wait_for(proc.communicate(), 20)
    err = raw.decode()
    assert proc.returncode == 130, err
    assert "SECRET" not in err
    hint = err.split("run the same command again:\n", 1)[1].splitlines()[0].strip()
    assert hint == (
        f"surefetch fetch {src} --output {out} --per-host 2"
        " --header 'Authorization: ***' --header 'Cookie: ***' --header 'X-Api-Key: ***'"
        " --header 'Proxy-Authorization: ***' --header 'Accept: text/plain' --workers 1"
        " --dns-servers '127.0.0.1:53,[::1]:53'"
    )


# -- a full disk ------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs (needs root, as CI has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


async def test_a_full_disk_ends_with_one_line_and_a_resumable_output(
    small_disk: Path, tmp_path: Path
) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="x" * 100)

    app = web.Application()
    app.router.add_get("/{n}", page)
    runner, port = await start_app(app)
    try:
        urls = [f"http://127.0.0.1:{port}/{n}" for n in range(600)]
        src = write_lines(tmp_path / "in.txt", urls)
        filler = small_disk / "filler"
        filler.write_bytes(b"f" * 400_000)
        out = small_disk / "out.jsonl"
        code, _, err = await surefetch("fetch", str(src), "-o", str(out))
        assert code == 1, err
        assert (
            f"surefetch: error: cannot write records to {out}: No space left on device;"
            " the records written before are kept, run again to go on" in err
        )
        assert "Traceback" not in err and "ExceptionGroup" not in err
        first = out.read_bytes()
        assert first == b"" or first.endswith(b"\n")  # a whole batch or nothing
        kept = records(out)
        filler.unlink()
        code, _, err = await surefetch("fetch", str(src), "-o", str(out))
        assert code == 0, err
        if kept:
            assert f"{len(kept)} URLs already had a record" in err
        assert sorted(r["url"] for r in records(out)) == sorted(urls)
    finally:
        await runner.cleanup()


# -- smaller ones -----------------------------------------------------------------------


async def test_retry_failed_before_the_input_takes_no_value(server: Server, tmp_path: Path) -> None:
    src = write_lines(tmp_path / "urls.txt", [server.url("/status/500"), server.url("/p/1")])
    out = tmp_path / "out.jsonl"
    assert (await surefetch("fetch", str(src), "-o", str(out), "--retries", "0"))[0] == 0
    code, _, err = await surefetch(
        "fetch", "--retry-failed", str(src), "-o", str(out), "--retries", "0"
    )
    assert code == 0, err
    assert "1 failed records taken out to fetch again" in err
    assert server.tracker.hits["/status/500"] == 2 and server.tracker.hits["/p/1"] == 1
    code, _, err = await surefetch(
        "fetch", "--retry-failed", "read_timout", str(src), "-o", str(out)
    )
    assert code == 2 and "--retry-failed: unknown 'read_timout'" in err, err


def test_retry_failed_picks_plain_statuses_classes_and_kinds() -> None:
    def failed(status: int | None, kind: str) -> Outcome:
        return Outcome("u", False, status, ErrorInfo(kind, "m"))

    only_429 = retry_filter("429")
    assert only_429 is not None
    assert only_429(failed(429, "http_status"))
    assert not only_429(failed(503, "http_status"))
    assert not only_429(Outcome("u", True, 200, None))
    mixed = retry_filter("read_timeout, 5XX")
    assert mixed is not None
    assert mixed(failed(None, "read_timeout")) and mixed(failed(502, "http_status"))
    assert not mixed(failed(404, "http_status")) and not mixed(failed(None, "dns_error"))


async def test_body_too_large_records_keep_the_content_type(server: Server, tmp_path: Path) -> None:
    src = write_lines(tmp_path / "in.txt", [server.url("/binary")])
    out = tmp_path / "out.jsonl"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out), "--max-body", "100")
    assert code == 0, err
    (record,) = records(out)
    assert record["error"]["kind"] == "body_too_large" and record["status"] == 200
    assert record["content_type"] == "application/octet-stream"


@pytest.fixture
async def failing_robots() -> Iterator[tuple[str, dict[str, int]]]:
    hits: dict[str, int] = {}

    async def handle(request: web.Request) -> web.Response:
        hits[request.path] = hits.get(request.path, 0) + 1
        if request.path == "/robots.txt":
            return web.Response(status=503)
        return web.Response(text="page")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner, port = await start_app(app)
    yield f"http://127.0.0.1:{port}", hits
    await runner.cleanup()


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_robots_txt_that_fails_is_asked_once_and_disallows(
    failing_robots: tuple[str, dict[str, int]], tmp_path: Path, workers: str
) -> None:
    base, hits = failing_robots
    src = write_lines(tmp_path / "in.txt", (f"{base}/p/{i}" for i in range(20)))
    out = tmp_path / "out.jsonl"
    code, _, err = await surefetch(
        "fetch", str(src), "-o", str(out), "--obey-robots", "--workers", workers
    )
    assert code == 0, err
    assert hits == {"/robots.txt": 1}
    kinds = {r["error"]["kind"] for r in records(out)}
    assert kinds == {"robots_disallowed"}
