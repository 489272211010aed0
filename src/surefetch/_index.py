"""A compact set of URLs seen so far: about 8 bytes per URL."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable

from ._fingerprint import fingerprint

__all__ = ["UrlIndex", "fingerprint"]

#: Keys per slice when sorted arrays are merged: the Python ints alive at once.
_CHUNK = 1 << 15


class UrlIndex:
    """Remembers which URLs were added, in memory that stays compact.

    Fingerprints (64-bit) live in a few sorted ``array("Q")`` levels plus a small set of
    recent ones: 8 bytes per URL, never a Python object per URL. When the set is full
    it becomes a sorted level of its own, and levels of about the same size are
    merged (as a binary counter carries), so there are at most about log2(n / 16,384)
    levels, each key is merged that many times in all, and a lookup bisects each.
    Merging goes slice by slice from the top, cutting what it took off the levels it
    merges, so the keys are held about once while it runs and no more than two slices
    of them are Python ints at once.

    In front of them sits a one-hash Bloom filter of 8 to 16 bits per URL (1 to 2
    bytes): a URL that was never added (the common case while reading an input) is
    almost always answered from one byte of it, without a search. The filter doubles,
    and is rebuilt from the keys, when the URLs outgrow it.
    """

    __slots__ = ("_bits", "_capacity", "_count", "_levels", "_mask", "_recent")

    _RECENT = 16_384
    #: Filter bits per URL at the most: a false positive costs a search of the levels,
    #: and happens for about 1 - exp(-1/8) = 12 % of absent URLs when the filter is
    #: full, 6 % when it has just doubled.
    _BITS_PER_URL = 8
    _MIN_BITS = 1 << 16

    def __init__(self) -> None:
        #: Sorted, disjoint, from the largest (oldest) to the smallest.
        self._levels: list[array[int]] = []
        self._recent: set[int] = set()
        self._count = 0
        self._bits = bytearray(self._MIN_BITS // 8)
        self._mask = self._MIN_BITS - 1
        self._capacity = self._MIN_BITS // self._BITS_PER_URL

    def __len__(self) -> int:
        return self._count

    def __contains__(self, url: str) -> bool:
        return self._has(fingerprint(url))

    @property
    def nbytes(self) -> int:
        """Bytes held for the URLs: the sorted levels and the filter (the recent set,
        at most ``_RECENT`` keys, aside)."""
        return sum(level.itemsize * len(level) for level in self._levels) + len(self._bits)

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
        self._count += 1
        bit = key & self._mask
        self._bits[bit >> 3] |= 1 << (bit & 7)
        if len(recent) >= self._RECENT:
            self._flush()
        if self._count > self._capacity:
            self._grow_filter()
        return True

    def _has(self, key: int) -> bool:
        bit = key & self._mask
        if not self._bits[bit >> 3] >> (bit & 7) & 1:
            return False
        if key in self._recent:
            return True
        for level in self._levels:
            i = bisect_left(level, key)
            if i < len(level) and level[i] == key:
                return True
        return False

    def _flush(self) -> None:
        """The recent set becomes a sorted level; levels of about its size merge in."""
        levels = self._levels
        fresh = array("Q", sorted(self._recent))
        self._recent = set()
        while levels and len(levels[-1]) <= 2 * len(fresh):
            fresh = _merged(levels.pop(), fresh)
        levels.append(fresh)

    def _grow_filter(self) -> None:
        """Double the filter and set the bits of every URL again."""
        nbits = (self._mask + 1) * 2
        mask = nbits - 1
        filter_ = bytearray(nbits // 8)
        keys: Iterable[int]
        for keys in (*self._levels, self._recent):
            for key in keys:
                bit = key & mask
                filter_[bit >> 3] |= 1 << (bit & 7)
        self._bits = filter_
        self._mask = mask
        self._capacity = nbits // self._BITS_PER_URL


def _merged(a: array[int], b: array[int]) -> array[int]:
    """The union of the sorted, disjoint arrays ``a`` and ``b``, sorted; both are used
    up. It is built from the top a slice at a time (at most ``_CHUNK`` keys of each,
    each slice above all that is left of both), and the slices taken are cut off the
    ends of ``a`` and ``b`` as it goes, so the keys are held about once, not twice."""
    out = array("Q")  # descending until the end
    while a and b:
        start_a = max(len(a) - _CHUNK, 0)
        start_b = bisect_left(b, a[start_a])
        if len(b) - start_b > _CHUNK:
            start_b = len(b) - _CHUNK
            start_a = bisect_left(a, b[start_b], start_a)
        part = a[start_a:].tolist()
        part += b[start_b:].tolist()
        part.sort(reverse=True)
        out.fromlist(part)
        del a[start_a:], b[start_b:]
    rest = a or b  # below all of ``out``
    rest.reverse()
    out.extend(rest)
    del rest[:]
    out.reverse()
    return out
