"""Choosing the event loop: uvloop where it is installed (it is faster), else asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LOOPS", "run"]

T = TypeVar("T")
LOOPS = ("auto", "uvloop", "asyncio")


def run(main: Coroutine[Any, Any, T], loop: str = "auto") -> T:
    """``asyncio.run(main)`` on the chosen loop: ``uvloop``, ``asyncio``, or ``auto``
    (uvloop if it can be imported). Raises RuntimeError if uvloop is asked for and
    missing."""
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {', '.join(LOOPS)}, got {loop!r}")
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                main.close()
                raise RuntimeError(
                    "uvloop is not installed (pip install 'surefetch[fast]')"
                ) from None
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)
