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


def stored_count(out: Path) -> int:
    """How many records are durable in OUT right now (the run may be writing to it)."""
    if not out.exists():
        return 0
    if out.suffix == ".sqlite":
        try:
            with sqlite3.connect(f"file:{out}?mode=ro", uri=True, timeout=5) as db:
                return int(db.execute("SELECT count(*) FROM records").fetchone()[0])
        except sqlite3.OperationalError:  # the run has not created the table yet
            return 0
    return out.read_bytes().count(b"\n")


def stop_moment(
    proc: subprocess.Popen[bytes], out: Path, rng: random.Random, *, early: bool
) -> None:
    """Wait for a random moment of the run: measured in progress, not in time.

    A time-based moment is flaky on a loaded machine (the run may finish before it, or
    not have started); a progress-based one always falls inside the run: each stop
    comes at most 8,000 records after the previous one, far fewer than N. With
    ``early``, a quarter of the moments fall in the first half second instead, while
    the run is starting up and reading the old output.
    """
    if early and rng.random() < 0.25:
        deadline = time.monotonic() + rng.uniform(0.05, 0.5)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
    else:
        target = stored_count(out) + rng.randint(1_000, 8_000)
        deadline = time.monotonic() + 120
        while stored_count(out) < target and proc.poll() is None:
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.02)
    assert proc.poll() is None, "the run ended before the moment to stop it"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite"])
def test_sigkill_at_random_moments_then_rerun(
    fast_server: int, tmp_path: Path, suffix: str
) -> None:
    src, out = tmp_path / "urls.txt", tmp_path / f"out{suffix}"
    expected = write_input(src, fast_server)
    rng = random.Random(f"kill{suffix}")
    for _ in range(4):
        proc = start(src, out)
        stop_moment(proc, out, rng, early=True)
        proc.kill()
        proc.communicate(timeout=30)
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
    for _ in range(3):
        proc = start(src, out)
        # Not early: a Ctrl-C during start-up exits quietly, without the resume hint.
        stop_moment(proc, out, rng, early=False)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err.decode()
        assert "To continue where it stopped, run the same command again" in err.decode()
        # A graceful stop leaves a clean file: every record whole, none twice.
        urls = stored_urls(out)
        assert len(urls) == len(set(urls)) and set(urls) <= expected
    proc = start(src, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    urls = stored_urls(out)
    assert len(urls) == len(expected)
    assert set(urls) == expected
