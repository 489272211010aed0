"""Cookies in a bulk run: off by default; ``per-host`` keeps what each host sets for
that same host only, in a bounded jar.

Off, the session's jar is aiohttp's :class:`~aiohttp.DummyCookieJar`: nothing is
stored, so a cookie set for one URL never rides along with an unrelated URL of the
same host, or (as a ``Domain`` cookie) of another host, and nothing grows with the
number of hosts. It is also the cheapest per request.

``per-host``: one aiohttp :class:`~aiohttp.CookieJar` per host name, made when the
host first sets a cookie; a cookie goes back only to the host that set it (a
``Domain`` attribute does not widen that), also through redirects. At most
``max_hosts`` hosts keep cookies (the least recently used leave first), each at most
``per_host`` cookies (later ones are not kept).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterator
from http.cookies import BaseCookie, Morsel, SimpleCookie
from types import MappingProxyType
from typing import Final, Literal

from aiohttp import CookieJar, DummyCookieJar
from aiohttp.abc import AbstractCookieJar, ClearCookiePredicate
from aiohttp.typedefs import LooseCookies
from yarl import URL

from .client import COOKIE_MODES

__all__ = ["COOKIE_MODES", "PerHostCookieJar", "cookie_jar"]

#: The bounds of the per-host jar.
MAX_HOSTS: Final = 1_000
PER_HOST: Final = 50
_NO_URL: Final = URL()


class PerHostCookieJar(AbstractCookieJar):
    """A cookie jar per host, bounded in hosts (LRU) and in cookies per host."""

    def __init__(
        self,
        *,
        max_hosts: int = MAX_HOSTS,
        per_host: int = PER_HOST,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(loop=loop)
        self.max_hosts = max_hosts
        self.per_host = per_host
        self._jars: OrderedDict[str, CookieJar] = OrderedDict()

    def __iter__(self) -> Iterator[Morsel[str]]:
        for jar in list(self._jars.values()):
            yield from jar

    def __len__(self) -> int:
        return sum(len(jar) for jar in self._jars.values())

    @property
    def hosts(self) -> int:
        """Hosts that have cookies kept."""
        return len(self._jars)

    @property
    def unsafe(self) -> bool:
        return True  # hosts that are IP addresses keep cookies too

    @property
    def quote_cookie(self) -> bool:
        return True

    @property
    def cookies(self) -> MappingProxyType[tuple[str, str], SimpleCookie]:
        merged: dict[tuple[str, str], SimpleCookie] = {}
        for jar in self._jars.values():
            merged.update(jar.cookies)
        return MappingProxyType(merged)

    @property
    def host_only_cookies(self) -> frozenset[tuple[str, str, str]]:
        return frozenset().union(*(jar.host_only_cookies for jar in self._jars.values()))

    def clear(self, predicate: ClearCookiePredicate | None = None) -> None:
        if predicate is None:
            self._jars.clear()
            return
        for jar in self._jars.values():
            jar.clear(predicate)

    def clear_domain(self, domain: str) -> None:
        for jar in self._jars.values():
            jar.clear_domain(domain)

    def update_cookies(self, cookies: LooseCookies, response_url: URL = _NO_URL) -> None:
        host = response_url.raw_host
        if not host:
            return
        jar = self._jars.get(host)
        if jar is None:
            jar = self._jars[host] = CookieJar(unsafe=True, loop=self._loop)
            while len(self._jars) > self.max_hosts:
                self._jars.popitem(last=False)
        else:
            self._jars.move_to_end(host)
        if len(jar) < self.per_host:
            jar.update_cookies(cookies, response_url)

    def filter_cookies(self, request_url: URL) -> BaseCookie[str]:
        host = request_url.raw_host
        jar = self._jars.get(host) if host else None
        if jar is None:
            return SimpleCookie()  # aiohttp may add to it: a new one each time
        return jar.filter_cookies(request_url)


def cookie_jar(mode: Literal["off", "per-host"]) -> AbstractCookieJar:
    """The session's jar for ``mode`` (see the module's docstring)."""
    if mode == "off":
        return DummyCookieJar()
    if mode == "per-host":
        return PerHostCookieJar()
    raise ValueError(f"cookies must be one of {', '.join(COOKIE_MODES)}, got {mode!r}")
