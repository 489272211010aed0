"""The ``surefetch`` command's entry point: a Ctrl-C that comes while the program is
still starting (importing, parsing options) ends it quietly with status 130 instead
of a traceback; from then on the command handles signals itself. The process is tuned
first (:mod:`surefetch._tune`), and the workers of ``fetch --workers N`` are started
before the CLI loads (:mod:`surefetch._spawn`)."""

from __future__ import annotations

import sys

from ._spawn import discard, start_early
from ._tune import tune_process


def main() -> None:
    tune_process()
    try:
        if sys.argv[1:2] == ["lint"]:
            # The linter needs nothing of the fetch engine: skip loading aiohttp, msgspec, ...
            from .lint.command import main as run_lint

            run_lint(sys.argv[2:])
            return
        start_early(sys.argv[1:])  # they load while the CLI does (see surefetch._spawn)
        from .cli import main as run_cli

        run_cli()
    except KeyboardInterrupt:
        print("surefetch: interrupted before the run started; nothing was changed", file=sys.stderr)
        sys.exit(130)
    finally:
        discard()
