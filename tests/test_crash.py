"""Exactly one record per URL, whatever kills the run: SIGKILL or Ctrl-C, then re-run."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

N = 50_000
SUREFETCH = [sys.executable, "-m", "surefetch", "fetch"]


def write_input(path: Path, port: int) -> set[str]:
    """N distinct URLs, with some duplicate lines and comments mixed in."""
    urls = [f"http://127.0.0.1:{port}/item/{i}" for i in range(N)]
    lines = [*urls, *urls[::1000], "# comment", ""]
    random.Random(1).shuffle(lines)
    path.write_text("\n".join(lines) + "\n")
    return set(urls)


def start(src: Path, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *SUREFETCH,
            str(src),
            "-o",
            str(out),
            "--concurrency",
            "64",
            "--per-host",
            "64",
            "--no-body",
            "--grace",
            "5",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stored_urls(out: Path) -> list[str]:
    if out.suffix == ".sqlite":
        with sqlite3.connect(out) as db:
            return [row[0] for row in db.execute("SELECT url FROM records")]
    urls = []
    for line in out.read_bytes().splitlines():
        record = json.loads(line)
        assert record["ok"] is True, record
        urls.append(record["url"])
    return urls


def wait_a_little(proc: subprocess.Popen[bytes], rng: random.Random) -> None:
    deadline = time.monotonic() + rng.uniform(0.4, 3.0)
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite"])
def test_sigkill_at_random_moments_then_rerun(
    fast_server: int, tmp_path: Path, suffix: str
) -> None:
    src, out = tmp_path / "urls.txt", tmp_path / f"out{suffix}"
    expected = write_input(src, fast_server)
    rng = random.Random(f"kill{suffix}")
    kills = 0
    for _ in range(4):
        proc = start(src, out)
        wait_a_little(proc, rng)
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.communicate(timeout=30)
    assert kills >= 2, "the runs finished before they could be killed; raise N"
    proc = start(src, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    urls = stored_urls(out)
    assert len(urls) == len(expected)
    assert set(urls) == expected
    # The last run fetched only what was missing.
    assert "URLs already had a record" in err.decode()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite"])
def test_ctrl_c_at_random_moments_then_rerun(fast_server: int, tmp_path: Path, suffix: str) -> None:
    src, out = tmp_path / "urls.txt", tmp_path / f"out{suffix}"
    expected = write_input(src, fast_server)
    rng = random.Random(f"int{suffix}")
    stops = 0
    for _ in range(3):
        proc = start(src, out)
        wait_a_little(proc, rng)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            stops += 1
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 130, err.decode()
            assert "To continue where it stopped, run the same command again" in err.decode()
            # A graceful stop leaves a clean file: every record whole, none twice.
            urls = stored_urls(out)
            assert len(urls) == len(set(urls)) and set(urls) <= expected
        else:
            proc.communicate(timeout=30)
    assert stops >= 2
    proc = start(src, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    urls = stored_urls(out)
    assert len(urls) == len(expected)
    assert set(urls) == expected
