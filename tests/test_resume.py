"""Long runs: resume, torn lines, --restart, --retry-failed, SQLite, rich input, --bodies."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from .conftest import Server
from .helpers import records, surefetch, write_lines


def list_files(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern))


def stored(out: Path) -> list[dict[str, object]]:
    if out.suffix == ".sqlite":
        with sqlite3.connect(out) as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute("SELECT * FROM records")]
    return records(out)


@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite"])
async def test_rerun_fetches_only_new_urls_of_a_grown_reordered_input(
    server: Server, tmp_path: Path, suffix: str
) -> None:
    first = [server.url(f"/p/{i}") for i in range(10)]
    out = tmp_path / f"out{suffix}"
    code, _, err = await surefetch(
        "fetch", str(write_lines(tmp_path / "a.txt", first)), "-o", str(out)
    )
    assert code == 0, err
    grown = [server.url(f"/p/{i}") for i in range(20)][::-1]
    code, _, err = await surefetch(
        "fetch", str(write_lines(tmp_path / "a.txt", grown)), "-o", str(out)
    )
    assert code == 0, err
    assert "10 records" in err and "10 URLs already had a record" in err
    urls = [r["url"] for r in stored(out)]
    assert sorted(urls) == sorted(grown)
    assert all(server.tracker.hits[f"/p/{i}"] == 1 for i in range(20))


async def test_torn_last_line_is_repaired(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/p/{i}") for i in range(5)]
    src = write_lines(tmp_path / "a.txt", urls)
    out = tmp_path / "out.jsonl"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out))
    assert code == 0, err
    lines = out.read_bytes().splitlines(keepends=True)
    # As if a crash cut the last record in half.
    out.write_bytes(b"".join(lines[:-1]) + lines[-1][:25])
    code, _, err = await surefetch("fetch", str(src), "-o", str(out))
    assert code == 0, err
    assert "cut a torn last line (25 bytes)" in err
    assert sorted(r["url"] for r in records(out)) == sorted(urls)


async def test_restart_moves_the_old_output_aside(server: Server, tmp_path: Path) -> None:
    src = write_lines(tmp_path / "a.txt", [server.url("/p/1")])
    out = tmp_path / "out.jsonl"
    await surefetch("fetch", str(src), "-o", str(out))
    old = out.read_text()
    code, _, err = await surefetch("fetch", str(src), "-o", str(out), "--restart")
    assert code == 0, err
    (aside,) = list_files(tmp_path, "out.old-*.jsonl")
    assert aside.read_text() == old
    assert f"old output moved to {aside}" in err
    assert len(records(out)) == 1
    assert server.tracker.hits["/p/1"] == 2


@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite"])
async def test_retry_failed_replaces_failed_records(
    server: Server, tmp_path: Path, suffix: str
) -> None:
    # Each flaky URL fails twice with 503 (retries off), then succeeds.
    flaky = [server.url(f"/flaky/{i}?n=1&code=503") for i in range(3)]
    missing = server.url("/status/404")
    refused = "http://127.0.0.1:9/"
    good = server.url("/p/ok")
    src = write_lines(tmp_path / "a.txt", [*flaky, missing, refused, good])
    out = tmp_path / f"out{suffix}"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out), "--retries", "0")
    assert code == 0, err
    before = {r["url"]: r for r in stored(out)}
    assert [before[u]["status"] for u in flaky] == [503, 503, 503]
    # Only the 5xx records: the 404 and the refused connection stay as they are.
    code, _, err = await surefetch(
        "fetch", str(src), "-o", str(out), "--retries", "0", "--retry-failed", "5xx"
    )
    assert code == 0, err
    assert "3 failed records taken out to fetch again" in err
    after = {r["url"]: r for r in stored(out)}
    assert len(after) == 6
    assert all(after[u]["status"] == 200 for u in flaky)
    assert after[missing]["status"] == 404 and after[good]["status"] == 200
    assert server.tracker.hits["/status/404"] == 1 and server.tracker.hits["/p/ok"] == 1
    # Everything that failed: the 404 and the refused connection are tried again.
    code, _, err = await surefetch("fetch", str(src), "-o", str(out), "--retry-failed")
    assert code == 0, err
    assert "2 failed records taken out to fetch again" in err
    assert len(stored(out)) == 6
    assert server.tracker.hits["/status/404"] == 2 and server.tracker.hits["/p/ok"] == 1


async def test_records_for_urls_gone_from_the_input_are_moved_aside(
    server: Server, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    await surefetch(
        "fetch",
        str(write_lines(tmp_path / "a.txt", [server.url("/p/1"), server.url("/p/2")])),
        "-o",
        str(out),
    )
    code, _, err = await surefetch(
        "fetch",
        str(write_lines(tmp_path / "a.txt", [server.url("/p/2"), server.url("/p/3")])),
        "-o",
        str(out),
    )
    assert code == 0, err
    assert sorted(r["url"] for r in records(out)) == [server.url("/p/2"), server.url("/p/3")]
    (side,) = list_files(tmp_path, "out.removed-*.jsonl")
    assert [r["url"] for r in records(side)] == [server.url("/p/1")]
    assert "1 records for URLs no longer in the input moved to" in err


async def test_sqlite_output_schema_wal_and_index(server: Server, tmp_path: Path) -> None:
    src = write_lines(tmp_path / "a.txt", [server.url("/p/1"), server.url("/binary"), "ftp://x/"])
    out = tmp_path / "out.sqlite"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out))
    assert code == 0, err
    with sqlite3.connect(out) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = db.execute("SELECT sql FROM sqlite_master WHERE type='index'").fetchall()
        assert any("ON records (url)" in sql for (sql,) in indexes)
        rows = {
            row[0]: row[1:]
            for row in db.execute("SELECT url, ok, status, error_kind, body, body_b64 FROM records")
        }
    assert rows[server.url("/p/1")] == (1, 200, None, "ok /p/1", None)
    assert rows[server.url("/binary")][3] is None
    assert rows[server.url("/binary")][4].startswith("AAECAwQF")
    assert rows["ftp://x/"][:3] == (0, None, "invalid_url")


async def test_csv_input_carries_meta(server: Server, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text(
        "id,link,note\n"
        f"1,{server.url('/p/a')},plain\n"
        f'2,{server.url("/p/b")},"with, comma and\nnewline"\n'
    )
    out = tmp_path / "out.jsonl"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out), "--url-column", "link")
    assert code == 0, err
    by_url = {r["url"]: r for r in records(out)}
    assert by_url[server.url("/p/a")]["meta"] == {"id": "1", "note": "plain"}
    assert by_url[server.url("/p/b")]["meta"] == {"id": "2", "note": "with, comma and\nnewline"}


async def test_csv_without_the_url_column_is_a_usage_error(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,address\n1,http://127.0.0.1:9/\n")
    code, _, err = await surefetch("fetch", str(src), "-o", str(tmp_path / "o.jsonl"))
    assert code == 2
    assert f"surefetch: error: {src} line 1: no 'url' column in the CSV header" in err


async def test_jsonl_input_rows_set_method_headers_body_and_meta(
    server: Server, tmp_path: Path
) -> None:
    src = tmp_path / "in.jsonl"
    rows = [
        {"url": server.url("/headers"), "headers": {"X-Row": "1"}, "id": 1, "tags": ["a"]},
        {"url": server.url("/status/201"), "method": "post", "body": "payload", "id": 2},
    ]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out))
    assert code == 0, err
    by_id = {r["meta"]["id"]: r for r in records(out)}
    assert by_id[1]["meta"] == {"id": 1, "tags": ["a"]}
    assert json.loads(by_id[1]["body"])["X-Row"] == "1"
    assert by_id[2]["status"] == 201


async def test_bad_jsonl_line_stops_with_one_line_and_keeps_what_was_fetched(
    server: Server, tmp_path: Path
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"url": server.url("/p/1")}) + "\n{broken\n")
    out = tmp_path / "out.jsonl"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out))
    assert code == 2
    assert err.strip().splitlines()[-1] == f"surefetch: error: {src} line 2: not a JSON object"
    assert "Traceback" not in err


async def test_a_header_with_a_line_break_stops_with_one_line_and_keeps_what_was_fetched(
    server: Server, tmp_path: Path
) -> None:
    src = tmp_path / "in.jsonl"
    rows = [
        {"url": server.url("/p/1")},
        {"url": server.url("/p/2"), "headers": {"X-Inject": "a\r\nEvil: yes"}},
    ]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out))
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        f"surefetch: error: {src} line 2: header 'X-Inject' has a line break or NUL in it"
    )
    assert "Traceback" not in err
    assert [r["url"] for r in records(out)] == [server.url("/p/1")]


async def test_post_is_not_retried_unless_asked(server: Server, tmp_path: Path) -> None:
    src = write_lines(tmp_path / "a.txt", [server.url("/status/503")])
    out = tmp_path / "out.jsonl"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out), "-X", "POST", "--data", "x")
    assert code == 0, err
    (rec,) = records(out)
    assert rec["status"] == 503 and rec["attempts"] == 1
    out2 = tmp_path / "out2.jsonl"
    code, _, err = await surefetch(
        "fetch",
        str(src),
        "-o",
        str(out2),
        "-X",
        "POST",
        "--json",
        '{"a": 1}',
        "--retries",
        "2",
        "--retry-non-idempotent",
    )
    assert code == 0, err
    (rec,) = records(out2)
    assert rec["status"] == 503 and rec["attempts"] == 3


async def test_bodies_go_to_content_addressed_files(server: Server, tmp_path: Path) -> None:
    src = write_lines(tmp_path / "a.txt", [server.url("/p/1"), server.url("/binary")])
    out = tmp_path / "out.jsonl"
    bodies = tmp_path / "bodies"
    code, _, err = await surefetch("fetch", str(src), "-o", str(out), "--bodies", str(bodies))
    assert code == 0, err
    for rec in records(out):
        assert "body" not in rec and "body_b64" not in rec
        sha = rec["sha256"]
        assert rec["body_path"] == f"{sha[:2]}/{sha[2:4]}/{sha}"
        data = (bodies / rec["body_path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha and len(data) == rec["bytes"]
    assert not list(bodies.rglob("*.tmp"))
