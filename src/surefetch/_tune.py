"""Process-wide settings for surefetch's own processes (the CLI and its workers), never
applied by merely importing the library."""

from __future__ import annotations

import ctypes
import gc
import resource
import sys

_M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number


def tune_process() -> bool:
    """Settings that keep a long run's CPU and memory flat.

    - glibc raises its mmap threshold each time a large block is freed (up to 32 MB),
      after which large buffers (batches of records, the URL index as it grows) come
      from the heap, which then keeps the holes: a run of a million URLs ended about
      4 MB higher. A fixed threshold sends every block of 128 KiB or more to mmap, and
      back to the system when freed.

    - The garbage collector's youngest generation is collected every 20,000 net new
      objects instead of every 700: each request briefly holds a few dozen, so at the
      default it ran every few requests, each time walking all of those in flight and
      the URLs waiting (66 ms of a 50,000-URL run, against 11 ms now). Objects in
      cycles wait a little longer to be freed; nothing else changes.

    Returns whether the mmap threshold could be set.
    """
    gc.set_threshold(20_000, 10, 10)
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has it too, as a no-op)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, 128 * 1024))


#: Open files a fetching process needs besides its sockets: output, bodies, pipes,
#: the resolver's sockets, logs.
SPARE_FILES = 64
#: Linux never allows more (fs.nr_open's default).
_MOST_FILES = 1 << 20


def raise_open_files() -> int:
    """Raise this process's soft limit of open files to its hard limit (worker processes
    inherit it); return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = _MOST_FILES if hard == resource.RLIM_INFINITY else min(hard, _MOST_FILES)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft


def concurrency_for(limit: int, workers: int) -> int:
    """The most requests in flight, over ``workers`` processes, that ``limit`` open
    files per process allow: each request holds a socket, at least as many may stay
    open idle in the pool (see :func:`idle_connections`), plus ``SPARE_FILES``."""
    return workers * max(1, (limit - SPARE_FILES) // 2)


#: The most idle keep-alive connections one process keeps, over all hosts, when the
#: open-files limit has room for them (about 2.3 kB of memory each, and one socket).
IDLE_CONNECTIONS = 4096


def idle_connections(concurrency: int) -> int:
    """How many idle connections a process with ``concurrency`` requests in flight
    keeps at most: :data:`IDLE_CONNECTIONS`, or what the open-files limit leaves
    besides those requests and ``SPARE_FILES``; never fewer than ``concurrency``.

    A host's next URL finds its connection waiting only if that connection was not
    closed to make room: with a shuffled input over a few thousand hosts, keeping
    idle connections for only ``concurrency / per_host`` of them meant a new
    connection (and, on the internet, a handshake) for nearly every URL."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = _MOST_FILES
    room = soft - SPARE_FILES - concurrency
    return max(concurrency, min(IDLE_CONNECTIONS, room))
