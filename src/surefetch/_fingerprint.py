"""The 64-bit fingerprint of a URL (what :mod:`surefetch._index` keeps, and what the
engine and ``--workers N`` key URLs and hosts by)."""

from __future__ import annotations

from hashlib import blake2b

__all__ = ["fingerprint"]


def fingerprint(url: str) -> int:
    """A stable 64-bit fingerprint of ``url`` (the same in every process and run).

    Two distinct URLs share one with probability about n**2 / 2**65: for ten million
    URLs, about one chance in 370,000.
    """
    return int.from_bytes(blake2b(url.encode("utf-8", "surrogateescape"), digest_size=8).digest())
