"""A compact set of URLs seen so far: about 8 bytes per URL."""

from __future__ import annotations

import numpy as np

from ._fingerprint import fingerprint

__all__ = ["UrlIndex", "fingerprint"]


class UrlIndex:
    """Remembers which URLs were added, in memory that stays compact.

    Fingerprints live in one sorted ``uint64`` array plus a small set of recent ones;
    the set is merged into the array when it grows past a fraction of it, so lookups
    stay O(log n) and memory stays near 8 bytes per URL plus the small set, never a
    Python object per URL.

    In front of both sits a one-hash Bloom filter of 8 to 16 bits per URL (1 to 2
    bytes): a URL that was never added (the common case while reading an input) is
    almost always answered from one byte of it, without the cost of a numpy search.
    The filter doubles, and is rebuilt from the array, when the URLs outgrow it.
    """

    __slots__ = ("_bits", "_capacity", "_mask", "_recent", "_sorted")

    _MIN_RECENT = 16_384
    #: Filter bits per URL at the most: a false positive costs one numpy search, and
    #: happens for about 1 - exp(-1/8) = 12 % of absent URLs when the filter is full,
    #: 6 % when it has just doubled.
    _BITS_PER_URL = 8
    _MIN_BITS = 1 << 16

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype=np.uint64)
        self._recent: set[int] = set()
        self._bits = bytearray(self._MIN_BITS // 8)
        self._mask = self._MIN_BITS - 1
        self._capacity = self._MIN_BITS // self._BITS_PER_URL

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
        bit = key & self._mask
        self._bits[bit >> 3] |= 1 << (bit & 7)
        if len(recent) >= max(self._MIN_RECENT, self._sorted.size >> 6):
            self._merge()
        if len(recent) + self._sorted.size > self._capacity:
            self._grow_filter()
        return True

    def _has(self, key: int) -> bool:
        bit = key & self._mask
        if not self._bits[bit >> 3] >> (bit & 7) & 1:
            return False
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

    def _grow_filter(self) -> None:
        """Double the filter and set the bits of every URL again."""
        nbits = (self._mask + 1) * 2
        mask = nbits - 1
        filter_ = bytearray(nbits // 8)
        bits = np.frombuffer(filter_, dtype=np.uint8)  # a view: no second copy
        self._set_bits(bits, self._sorted, mask)
        if self._recent:
            recent = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
            self._set_bits(bits, recent, mask)
        del bits
        self._bits = filter_
        self._mask = mask
        self._capacity = nbits // self._BITS_PER_URL

    @staticmethod
    def _set_bits(bits: np.ndarray, keys: np.ndarray, mask: int) -> None:
        # In slices, so that the temporaries stay small however many keys there are.
        step = 1 << 16
        for start in range(0, keys.size, step):
            positions = keys[start : start + step] & np.uint64(mask)
            np.bitwise_or.at(
                bits,
                (positions >> np.uint64(3)).astype(np.intp),
                (np.uint8(1) << (positions & np.uint64(7)).astype(np.uint8)),
            )
