"""Running the `surefetch` command in tests."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

SUREFETCH = [sys.executable, "-m", "surefetch"]


async def surefetch(
    *args: str, stdin: bytes | None = None, timeout: float = 60
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *SUREFETCH,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]
