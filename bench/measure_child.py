"""Run one command and record its wall time, peak memory and CPU time.

    python -S bench/measure_child.py RESULT.json PROGRAM [ARG ...]

Writes one JSON object to RESULT.json:

- ``wall_s``: from fork to exit;
- ``maxrss_kib``: ``ru_maxrss`` from ``wait4()``: the peak RSS of the *largest single*
  process among the command and the children it waited for (exact);
- ``tree_rss_kib``: the peak of the *sum* of the RSS of the command and all its
  descendants, sampled from /proc every 20 ms (what a multi-process run costs;
  equal to ``maxrss_kib`` but for sampling for a single process);
- ``utime_s`` / ``stime_s``: CPU time of the command and its waited-for children;
- ``returncode``.

Why a launcher: on Linux a child's ``ru_maxrss`` starts from the high-water RSS of
the process it was forked from (the mm that ``exec`` replaced), so a child of the
benchmark harness, whose RSS is large, would report at least the harness's peak.
This launcher is a bare interpreter (``-S``, stdlib only, ~8 MB): the command it
forks inherits only that, below any Python program's own peak.
"""

import os
import signal
import sys
import threading
import time

INTERVAL = 0.02
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads), from /proc."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as f:
                found.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue
    return found


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * PAGE_KIB
    except (OSError, ValueError, IndexError):
        return 0


def tree_rss_kib(root: int) -> int:
    """The summed RSS of ``root`` and all its descendants, in KiB."""
    total = 0
    todo = [root]
    seen: set[int] = set()
    while todo and len(seen) < 10_000:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _rss_kib(pid)
        todo.extend(_children(pid))
    return total


def main() -> int:
    """Fork, exec the command, sample its tree, wait4 it, write the JSON result."""
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    result, argv = sys.argv[1], sys.argv[2:]
    # Outlive a SIGTERM to the process group, so as to reap the command and report.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(INTERVAL):
            peak[0] = max(peak[0], tree_rss_kib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    with open(result, "w", encoding="ascii") as f:
        f.write(
            f'{{"wall_s": {wall!r}, "maxrss_kib": {usage.ru_maxrss}, '
            f'"tree_rss_kib": {max(peak[0], usage.ru_maxrss)}, '
            f'"utime_s": {usage.ru_utime!r}, "stime_s": {usage.ru_stime!r}, '
            f'"returncode": {code}}}\n'
        )
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
