"""The ``surefetch`` command's entry point: a Ctrl-C that comes while the program is
still starting (importing, parsing options) ends it quietly with status 130 instead
of a traceback; from then on the command handles signals itself."""

from __future__ import annotations

import os
import sys


def main() -> None:
    # numpy (the URL index) needs no BLAS, whose thread pool would only spin on a core.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        from .cli import main as run_cli

        run_cli()
    except KeyboardInterrupt:
        print("surefetch: interrupted before the run started; nothing was changed", file=sys.stderr)
        sys.exit(130)
