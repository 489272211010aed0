"""A compact set of URLs seen so far: about 8 bytes per URL."""

from __future__ import annotations

from hashlib import blake2b

import numpy as np

__all__ = ["UrlIndex", "fingerprint"]


def fingerprint(url: str) -> int:
    """A stable 64-bit fingerprint of ``url`` (the same in every process and run).

    Two distinct URLs share one with probability about n**2 / 2**65: for ten million
    URLs, about one chance in 370,000.
    """
    return int.from_bytes(blake2b(url.encode("utf-8", "surrogateescape"), digest_size=8).digest())


class UrlIndex:
    """Remembers which URLs were added, in memory that stays compact.

    Fingerprints live in one sorted ``uint64`` array plus a small set of recent ones;
    the set is merged into the array when it grows past a fraction of it, so lookups
    stay O(log n) and memory stays near 8 bytes per URL plus the small set, never a
    Python object per URL.
    """

    __slots__ = ("_recent", "_sorted")

    _MIN_RECENT = 16_384

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype=np.uint64)
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return int(self._sorted.size) + len(self._recent)

    def __contains__(self, url: str) -> bool:
        return self._has(fingerprint(url))

    def add(self, url: str) -> bool:
        """Add ``url``; return True if it was not there before."""
        return self.add_fingerprint(fingerprint(url))

    def has_fingerprint(self, key: int) -> bool:
        """Whether the URL with this :func:`fingerprint` was added."""
        return self._has(key)

    def add_fingerprint(self, key: int) -> bool:
        """Add the URL with this :func:`fingerprint`; True if it was not there before."""
        if self._has(key):
            return False
        recent = self._recent
        recent.add(key)
        if len(recent) >= max(self._MIN_RECENT, self._sorted.size >> 6):
            self._merge()
        return True

    def _has(self, key: int) -> bool:
        if key in self._recent:
            return True
        arr = self._sorted
        if not arr.size:
            return False
        probe = np.uint64(key)
        i = int(arr.searchsorted(probe))
        return i < arr.size and arr[i] == probe

    def _merge(self) -> None:
        arr = self._sorted
        size = arr.size
        # Grow in place (realloc, usually without a copy), append, and let timsort merge
        # the long sorted run with the short new one: no second full-size array.
        arr.resize(size + len(self._recent), refcheck=False)
        arr[size:] = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
        arr.sort(kind="stable")
        self._recent = set()
