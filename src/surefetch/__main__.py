"""``python -m surefetch``: the command line."""

from ._entry import main

main()
