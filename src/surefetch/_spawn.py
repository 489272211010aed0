"""The worker processes of ``--workers N``, and starting them early.

A worker spends most of its start-up importing aiohttp and the engine (about 0.3 s of
a core); the main process spends longer before it knows its options. Done one
after the other, that is a second before the first request of a run that could have
begun in half of it. So the ``surefetch fetch`` command starts its workers first thing
(:func:`start_early`, before it imports the CLI), guessing their number from the
command line as the CLI will read it; :func:`start_workers` then takes those already
running, starts any more it needs, and ends any it does not. A worker that never gets
its configuration exits quietly on the end of its input; one still importing when the
command ends early (a bad option) is killed by :func:`discard`.

This module imports nothing heavy: it runs before the rest is loaded.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # asyncio alone is 50 ms to import: it waits until the workers are off
    import asyncio

__all__ = ["DEFAULT_WORKERS", "WorkerProcess", "discard", "start_early", "start_workers"]

#: ``--workers``'s default (the CLI's option reads it from here, so the guess agrees).
DEFAULT_WORKERS = os.cpu_count() or 1

_COMMAND = (sys.executable, "-m", "surefetch._worker")
_early: list[subprocess.Popen[bytes]] = []


def start_early(argv: Sequence[str]) -> None:
    """Start the workers a ``fetch`` command line asks for (``argv`` without the
    program), so that they load while the CLI does."""
    if argv[:1] != ["fetch"] or any(a in ("--help", "-h", "--version") for a in argv):
        return
    if any(a == "--redis" or a.startswith("--redis=") for a in argv):
        return  # the coordinator of the Redis mode fetches nothing itself
    count = _workers_asked(argv[1:])
    if count > 1:
        _early.extend(_popen() for _ in range(count))


def _workers_asked(args: Sequence[str]) -> int:
    """``--workers N`` as given (the last one wins, as in click), else the number of
    cores (the option's default); 0 when it is not a number (the CLI says why)."""
    count = DEFAULT_WORKERS
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--workers" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
        else:
            continue
        count = int(value) if value.isdigit() else 0
    return count


def _popen() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        _COMMAND,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        # Own session: a Ctrl-C at the terminal reaches the main process only, which
        # then stops the workers in order.
        start_new_session=True,
    )


def discard() -> None:
    """End the workers started early that no run took (their start-up is all they did)."""
    while _early:
        proc = _early.pop()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


class WorkerProcess:
    """A worker process with its pipes as asyncio streams (made by :func:`start_workers`)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
    ) -> None:
        self._proc = proc
        self.stdin = stdin
        self.stdout = stdout

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()

    async def wait(self) -> int:
        """Its exit status, once it has exited (polled: this is only asked at the end)."""
        import asyncio

        pause = 0.002
        while (code := self._proc.poll()) is None:
            await asyncio.sleep(pause)
            pause = min(2 * pause, 0.05)
        return code


async def start_workers(count: int) -> list[WorkerProcess]:
    """``count`` workers: those started early first, then new ones. Early ones beyond
    ``count`` are ended."""
    taken, _early[:] = _early[:count], _early[count:]
    discard()
    taken += [_popen() for _ in range(count - len(taken))]
    try:
        return [await _streams(proc) for proc in taken]
    except BaseException:
        _early.extend(taken)  # none is anyone's yet
        discard()
        raise


async def _streams(proc: subprocess.Popen[bytes]) -> WorkerProcess:
    import asyncio

    assert proc.stdin is not None and proc.stdout is not None
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), proc.stdout)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, proc.stdin
    )
    return WorkerProcess(proc, asyncio.StreamWriter(transport, protocol, None, loop), reader)
