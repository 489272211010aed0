"""The `surefetch` command, run as a real subprocess against a local server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from surefetch.errors import KINDS

from .conftest import Server
from .helpers import records, spawn, surefetch, wait_for_requests, write_lines

FIELDS = {
    "url",
    "final_url",
    "ok",
    "status",
    "error",
    "attempts",
    "redirects",
    "elapsed_ms",
    "bytes",
    "content_type",
    "fetched_at",
    "sha256",
}


async def test_fetch_writes_one_complete_record_per_url(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/p/{i}") for i in range(50)]
    lines = [
        "# a comment",
        "",
        *urls,
        f"  {urls[0]}  ",
        urls[1],
        server.url("/status/404"),
        server.url("/binary"),
        server.url("/latin1"),
        "ftp://nope/x",
    ]
    src = write_lines(tmp_path / "urls.txt", lines)
    out = tmp_path / "out.jsonl"
    code, stdout, stderr = await surefetch("fetch", str(src), "-o", str(out), "--retries", "0")
    assert code == 0, stderr
    assert stdout == ""
    recs = records(out)
    assert len(recs) == 54
    assert {r["url"] for r in recs} == {
        *urls,
        server.url("/status/404"),
        server.url("/binary"),
        server.url("/latin1"),
        "ftp://nope/x",
    }
    by_url = {r["url"]: r for r in recs}
    ok = by_url[urls[3]]
    assert set(ok) >= FIELDS
    assert ok["ok"] is True and ok["status"] == 200 and ok["error"] is None
    assert ok["body"] == "ok /p/3" and "body_b64" not in ok and ok["bytes"] == 7
    assert ok["final_url"] == urls[3] and ok["attempts"] == 1 and ok["redirects"] == 0
    assert str(ok["fetched_at"]).endswith("Z") and "T" in str(ok["fetched_at"])
    assert ok["content_type"] == "text/plain; charset=utf-8"
    assert by_url[server.url("/latin1")]["body"] == "café"
    binary = by_url[server.url("/binary")]
    assert "body" not in binary and binary["body_b64"].startswith("AAECAwQF")  # type: ignore[union-attr]
    missing = by_url[server.url("/status/404")]
    assert missing["ok"] is False and missing["status"] == 404
    assert missing["error"] == {
        "kind": "http_status",
        "message": "HTTP 404 from the final response",
    }
    bad = by_url["ftp://nope/x"]
    assert bad["attempts"] == 0 and bad["error"]["kind"] == "invalid_url"  # type: ignore[index]
    assert "54 records (52 ok, 2 failed" in stderr
    assert "2 duplicate lines skipped" in stderr


async def test_no_body_keeps_sha256(server: Server, tmp_path: Path) -> None:
    src = tmp_path / "urls.txt"
    src.write_text(server.url("/p/x") + "\n")
    out = tmp_path / "out.jsonl"
    code, _, stderr = await surefetch("fetch", str(src), "-o", str(out), "--no-body")
    assert code == 0, stderr
    (rec,) = records(out)
    assert "body" not in rec and "body_b64" not in rec
    assert rec["sha256"] == hashlib.sha256(b"ok /p/x").hexdigest()
    assert rec["bytes"] == 7


async def test_stdin_in_stdout_out(server: Server) -> None:
    data = "\n".join(server.url(f"/p/{i}") for i in range(5)).encode()
    code, stdout, stderr = await surefetch("fetch", "-", "-o", "-", stdin=data)
    assert code == 0, stderr
    urls = sorted(json.loads(line)["url"] for line in stdout.splitlines())
    assert urls == sorted(server.url(f"/p/{i}") for i in range(5))


async def test_options_reach_the_requests(server: Server, tmp_path: Path) -> None:
    src = tmp_path / "urls.txt"
    src.write_text(server.url("/headers") + "\n" + server.url("/redirect/3") + "\n")
    out = tmp_path / "out.jsonl"
    code, _, stderr = await surefetch(
        "fetch",
        str(src),
        "-o",
        str(out),
        "--header",
        "X-Key: secret",
        "-H",
        "X-Two:2",
        "--user-agent",
        "ua-test/1",
        "--max-redirects",
        "2",
    )
    assert code == 0, stderr
    by_url = {r["url"]: r for r in records(out)}
    sent = json.loads(str(by_url[server.url("/headers")]["body"]))
    assert sent["X-Key"] == "secret" and sent["X-Two"] == "2" and sent["User-Agent"] == "ua-test/1"
    redirected = by_url[server.url("/redirect/3")]
    assert redirected["error"]["kind"] == "too_many_redirects"  # type: ignore[index]
    assert redirected["redirects"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fetch", "IN"], "Missing option '-o' / '--output'"),
        (["fetch", "IN", "-o", "OUT", "--concurrency", "0"], "--concurrency"),
        (["fetch", "IN", "-o", "OUT", "--timeout", "-1"], "--timeout"),
        (["fetch", "IN", "-o", "OUT", "--max-body", "lots"], "not a size: 'lots'"),
        (["fetch", "IN", "-o", "OUT", "--header", "NoColon"], "bad header 'NoColon'"),
        (["fetch", "missing.txt", "-o", "OUT"], "input file not found: missing.txt"),
        (["fetch", "IN", "-o", "OUT", "--retry-failed", "slow,7xx"], "unknown 'slow'"),
        (["fetch", "IN", "-o", "OUT", "--data", "a", "--json", "{}"], "--data or --json"),
        (["fetch", "IN", "-o", "OUT", "--json", "{nope"], "--json is not valid JSON"),
        (["fetch", "IN", "-o", "-", "--format", "sqlite"], "SQLite output needs a file"),
        (["fetch", "IN", "-o", "EXISTING"], "EXISTING line 2 is not a surefetch record"),
        (["fetch", "IN", "-o", "nowhere/out.jsonl"], "output folder does not exist"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
async def test_usage_errors_are_one_line_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    src = tmp_path / "in.txt"
    src.write_text("http://127.0.0.1:9/\n")
    existing = tmp_path / "existing.jsonl"
    existing.write_text('{"url": "kept", "ok": true}\nnot json\n{"url": "x", "ok": true}\n')
    names = {"IN": str(src), "OUT": str(tmp_path / "o.jsonl"), "EXISTING": str(existing)}
    argv = [names.get(a, a) for a in args]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code, stdout, stderr = await surefetch(*argv)
    finally:
        os.chdir(cwd)
    assert code == 2
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("surefetch: error: ")
    assert message.replace("EXISTING", str(existing)) in stderr
    assert "Traceback" not in stderr
    # never lose what is there
    assert (
        existing.read_text() == '{"url": "kept", "ok": true}\nnot json\n{"url": "x", "ok": true}\n'
    )


async def test_failures_still_exit_0(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("http://127.0.0.1:9/\nnot-a-url\n")
    out = tmp_path / "o.jsonl"
    code, _, stderr = await surefetch("fetch", str(src), "-o", str(out), "--retries", "0")
    assert code == 0, stderr
    kinds = {r["error"]["kind"] for r in records(out)}  # type: ignore[index]
    assert kinds == {"connect_refused", "invalid_url"}
    assert kinds <= set(KINDS)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_interrupt_leaves_valid_records(
    slow_server: Server, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    src = write_lines(tmp_path / "in.txt", (slow_server.url(f"/p/{i}") for i in range(5000)))
    out = tmp_path / "o.jsonl"
    proc = await spawn(
        "fetch",
        str(src),
        "-o",
        str(out),
        "--per-host",
        "16",
    )
    await wait_for_requests(slow_server.tracker, 200, 20)
    proc.send_signal(sig)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == code, err
    assert "interrupted:" in err.decode()
    recs = records(out)
    assert 100 < len(recs) < 5000
    assert len({r["url"] for r in recs}) == len(recs)
    assert all(r["ok"] for r in recs)


async def test_second_ctrl_c_stops_at_once(server: Server, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text(server.url("/p/quick") + "\n" + server.url("/sleep/20") + "\n")
    out = tmp_path / "o.jsonl"
    proc = await spawn(
        "fetch",
        str(src),
        "-o",
        str(out),
        "--grace",
        "30",
    )
    # Once the server holds the slow request (0.3 s after the first request was in
    # flight, it had not always been sent yet: then the first Ctrl-C ended the run).
    deadline = time.monotonic() + 10
    while server.tracker.hits["/sleep/20"] < 1:
        assert time.monotonic() < deadline, "the slow request was never sent"
        await asyncio.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    await asyncio.sleep(0.5)
    assert proc.returncode is None  # still waiting for the request in flight
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert time.monotonic() - started < 3
    assert proc.returncode == 130, err.decode()
    assert [r["url"] for r in records(out)] == [server.url("/p/quick")]


async def test_grace_period_lets_requests_in_flight_finish(server: Server, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("\n".join([server.url("/sleep/1")] + [server.url(f"/p/{i}") for i in range(3)]))
    out = tmp_path / "o.jsonl"
    proc = await spawn(
        "fetch",
        str(src),
        "-o",
        str(out),
        "--per-host",
        "1",
        "--concurrency",
        "1",
    )
    deadline = time.monotonic() + 10
    while server.tracker.total_inflight < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 143, err.decode()
    text = err.decode()
    assert "SIGTERM: finishing the requests in flight" in text
    # The request in flight finished and got its record; nothing new was started.
    assert [r["url"] for r in records(out)] == [server.url("/sleep/1")]
    assert sum(server.tracker.hits.values()) == 1


async def test_pure_python_aiohttp_parser_is_reported_loudly() -> None:
    """Said when the first aiohttp session is made (aiohttp is loaded only then)."""
    opened = (
        "import asyncio, surefetch\n"
        "async def main():\n"
        "    async with surefetch.Client(transport='aiohttp'):\n"
        "        pass\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "AIOHTTP_NO_EXTENSIONS": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", opened, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert "pure-Python HTTP parser" in err.decode()
    assert err.decode().count("pure-Python") == 1
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", opened, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert err.decode() == ""
