"""Memory does not grow with the input beyond the compact index of URLs seen."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
from array import array
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surefetch import _index as index_module
from surefetch._index import UrlIndex, fingerprint

MEASURE = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_input(path: Path, lines: int, port: int) -> None:
    """Distinct URLs: one in twenty is really attempted (a refused port, so it is fast),
    the rest are rejected before sending; all pass through the source, the index,
    the records and the sink."""
    with path.open("w") as f:
        for i in range(lines):
            if i % 20 == 0:
                f.write(f"http://127.0.0.1:{port}/item/{i}\n")
            else:
                f.write(f"ftp://127.0.0.1/item/{i}\n")


def peak_kib(src: Path, out: Path) -> int:
    cmd = [
        sys.executable,
        "-m",
        "surefetch",
        "fetch",
        str(src),
        "-o",
        str(out),
        "--retries",
        "0",
        "--workers",
        "1",
        # The refused port's circuit gives up quickly instead of after 5 minutes.
        "--host-down-after",
        "1",
    ]
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *cmd],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return int(result.stdout.strip())


@pytest.mark.timeout(400)
def test_peak_memory_is_flat_in_the_number_of_urls(tmp_path: Path) -> None:
    port = closed_port()
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    write_input(small, 10_000, port)
    write_input(large, 1_000_000, port)
    small_peak = peak_kib(small, tmp_path / "small.jsonl")
    large_peak = peak_kib(large, tmp_path / "large.jsonl")
    with (tmp_path / "large.jsonl").open("rb") as f:
        assert sum(1 for _ in f) == 1_000_000
    print(f"peak RSS: 10k lines {small_peak} KiB, 1M lines {large_peak} KiB")
    assert large_peak <= small_peak * 1.2 + 16 * 1024, (small_peak, large_peak)


def test_index_costs_at_most_16_bytes_per_url() -> None:
    index = UrlIndex()
    for i in range(200_000):
        assert index.add(f"http://h/{i}")
    for i in range(0, 200_000, 7):
        assert not index.add(f"http://h/{i}")
        assert f"http://h/{i}" in index
    assert "http://h/absent" not in index
    assert len(index) == 200_000
    # The sorted levels hold 8 bytes per URL, the filter 1 to 2; the recent set is
    # bounded.
    assert len(index._bits) <= 2 * len(index)
    assert index.nbytes + 100 * len(index._recent) <= 16 * len(index)
    assert len(index._levels) <= 4  # 200,000 / 16,384 < 2**4


def test_index_agrees_with_a_set_through_many_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small sets and slices, so that levels merge often and slices end everywhere."""
    monkeypatch.setattr(UrlIndex, "_RECENT", 50)
    monkeypatch.setattr(index_module, "_CHUNK", 7)
    rng = random.Random(5)
    index, truth, added = UrlIndex(), set(), [1]
    for _ in range(20_000):
        key = rng.getrandbits(64) if rng.random() < 0.8 else rng.choice(added)
        assert index.add_fingerprint(key) is (key not in truth)
        truth.add(key)
        added.append(key)
    assert len(index) == len(truth)
    assert all(index.has_fingerprint(key) for key in truth)
    assert not any(index.has_fingerprint(rng.getrandbits(64)) for _ in range(2_000))
    keys = [key for level in index._levels for key in level] + sorted(index._recent)
    assert sorted(keys) == sorted(truth)  # each key held once
    assert all(list(level) == sorted(level) for level in index._levels)
    sizes = [len(level) for level in index._levels]
    assert all(big > 2 * small for big, small in pairwise(sizes)), sizes


@given(st.lists(st.integers(0, 2**64 - 1), unique=True, max_size=300), st.randoms())
def test_merging_two_levels_is_their_sorted_union(keys: list[int], rng: random.Random) -> None:
    cut = rng.randint(0, len(keys))
    a, b = sorted(keys[:cut]), sorted(keys[cut:])
    old = index_module._CHUNK
    index_module._CHUNK = rng.randint(1, 20)
    try:
        merged = index_module._merged(array("Q", a), array("Q", b))
    finally:
        index_module._CHUNK = old
    assert list(merged) == sorted(keys)


def test_index_filter_never_hides_an_added_url_and_passes_lookalikes_to_the_array() -> None:
    index = UrlIndex()
    keys = [fingerprint(f"http://h/{i}") for i in range(150_000)]
    for key in keys:  # the filter doubles several times and the set merges on the way
        assert index.add_fingerprint(key)
    assert len(index._bits) * 8 >= 8 * len(index)
    assert all(index.has_fingerprint(key) for key in keys)
    # Same filter bit (the low bits agree), different URL: the filter says "maybe",
    # the sorted array and the recent set must say no.
    lookalikes = [key ^ (1 << 63) for key in keys[::100]]
    assert not any(index.has_fingerprint(key) for key in lookalikes)
    assert all(index.add_fingerprint(key) for key in lookalikes)
    assert len(index) == 150_000 + len(lookalikes)


def test_cli_processes_are_tuned_but_importing_the_library_changes_nothing() -> None:
    check = (
        "import gc, os, sys\n"
        "import surefetch, surefetch.engine\n"
        "assert gc.get_threshold()[0] < 20_000\n"
        "from surefetch._tune import tune_process\n"
        "assert tune_process() is sys.platform.startswith('linux')\n"
        "assert 'numpy' not in sys.modules\n"
        "assert gc.get_threshold() == (20_000, 10, 10)\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)


def test_fetch_loads_neither_numpy_nor_rich() -> None:
    """The command's modules (the CLI, the engine, the worker) leave out what a run
    does not need: NumPy (the URL index is the standard library's array) and rich
    (loaded only to draw on a terminal): about 16 and 6 MB of memory."""
    check = (
        "import sys\n"
        "import surefetch.cli, surefetch._worker, surefetch.job\n"
        "loaded = {'numpy', 'rich'} & {m.split('.')[0] for m in sys.modules}\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)
