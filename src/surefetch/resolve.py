"""Host names to addresses, for the client's connections: asynchronous, cached, bounded.

:class:`Resolver` is an aiohttp resolver (:class:`aiohttp.abc.AbstractResolver`). It
asks c-ares (through aiodns) without a thread per lookup, so hundreds of names resolve
at once; where aiodns cannot load it falls back to the system's ``getaddrinfo`` in
threads, and says so once. In front of either sits one cache:

- an answer is kept for its records' TTL, held within ``min_ttl`` .. ``max_ttl``;
- "no such name" (NXDOMAIN) and "no address" (NODATA) are kept ``negative_ttl``;
  other failures (server failure, timeout, refused) are not kept;
- at most ``max_names`` names, the least recently used leaving first;
- one lookup in flight per name: callers that arrive while it runs wait for the same
  answer, and a caller that is cancelled does not cancel it for the others.

A cache hit is two dictionary lookups and a clock read, without a task or an await.
Knows nothing of files, queues or the command line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    import aiodns
    from aiohttp.abc import AbstractResolver, ResolveResult

    _ResolverBase = AbstractResolver
else:
    # aiohttp takes any object with its resolver's methods; importing it for the base
    # class would load it in every process, also where the lean transport resolves.
    _ResolverBase = object

__all__ = ["DNS", "Resolver", "async_dns_error", "parse_server", "parse_servers"]

log = logging.getLogger("surefetch.resolve")

_now = time.monotonic

#: Seconds an answer of the system resolver is kept: getaddrinfo tells no TTL.
SYSTEM_TTL: Final = 300.0

# c-ares error codes (ares.h; stable across versions) whose answer is the name's own:
# asking again at once gets the same answer, so they are kept for negative_ttl.
_ARES_ENODATA: Final = 1
_ARES_ENOTFOUND: Final = 4
_ARES_EBADNAME: Final = 8
_ARES_NEGATIVE: Final = frozenset({_ARES_ENODATA, _ARES_ENOTFOUND, _ARES_EBADNAME})
# getaddrinfo's: EAI_NONAME, EAI_NODATA (glibc).
_GAI_NEGATIVE: Final = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
)
# c-ares >= 1.23 keeps an answer cache of its own (ARES_OPT_QUERY_CACHE), unbounded in
# entries (about 1.2 kB per name, for up to an hour); pycares has no switch for it.
_ARES_OPT_QUERY_CACHE: Final = 1 << 21
#: Bytes the kernel may hold of answers not read yet: hundreds of lookups at once may be
#: answered at once, and the default (about 200 kB, some 250 answers) drops the rest.
_RECEIVE_BUFFER: Final = 1 << 20


def parse_server(text: str) -> str:
    """A DNS server ``ADDR[:PORT]`` (IPv6 in brackets when a port follows: ``[::1]:53``)
    -> the form c-ares takes (``127.0.0.1:53``, ``[::1]:53``); ``ValueError`` if it is
    not an IP address with an optional port in 1..65535."""
    spec = text.strip()
    host, port = spec, "53"
    if spec.startswith("["):
        inside, sep, rest = spec[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"not a DNS server address: {text!r} (expected ADDR[:PORT])")
        host = inside
        if rest:
            port = rest[1:]
    elif spec.count(":") == 1:
        host, port = spec.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"not a DNS server address: {text!r} (expected an IP address with an optional"
            " port: 127.0.0.1, 127.0.0.1:5353, ::1, [::1]:5353)"
        ) from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in DNS server address {text!r} (expected 1-65535)")
    if address.version == 6:
        return f"[{address.compressed}]:{int(port)}"
    return f"{address.compressed}:{int(port)}"


def parse_servers(text: str) -> tuple[str, ...]:
    """``"ADDR[:PORT],..."`` (as curl's ``--dns-servers``) -> a tuple of :func:`parse_server`."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise ValueError("no DNS server given (expected ADDR[:PORT],...)")
    return tuple(parse_server(part) for part in parts)


@dataclass(frozen=True, slots=True)
class DNS:
    """How the client resolves host names.

    - ``resolver``: ``"async"`` (c-ares through aiodns, many lookups at once; the
      system resolver in threads where aiodns cannot load) or ``"system"`` (the
      system's ``getaddrinfo``, in threads: what a plain program sees, e.g. with
      nsswitch sources that are not DNS).
    - ``servers``: DNS servers to ask instead of the system's (``resolv.conf``), as
      ``ADDR[:PORT]`` (IPv6 in brackets when a port follows); async only.
    - ``min_ttl`` / ``max_ttl``: an answer is kept for its TTL, but at least and at
      most this many seconds. The system resolver tells no TTL: its answers are kept
      300 s within these bounds.
    - ``negative_ttl``: seconds "no such name" (NXDOMAIN) and "no address" are kept.
    - ``max_names``: most names kept; the least recently used goes first.
    - ``timeout`` / ``tries``: seconds c-ares waits for a server's answer before asking
      again, and how many times it asks each server; None: resolv.conf's ``options``
      or c-ares's defaults (2 s, 3 tries; the wait grows with each try).
    """

    resolver: Literal["async", "system"] = "async"
    servers: tuple[str, ...] = ()
    min_ttl: float = 30.0
    max_ttl: float = 3600.0
    negative_ttl: float = 30.0
    max_names: int = 100_000
    timeout: float | None = None
    tries: int | None = None

    def __post_init__(self) -> None:
        if self.resolver not in ("async", "system"):
            raise ValueError(f"resolver must be 'async' or 'system', got {self.resolver!r}")
        if isinstance(self.servers, str):
            raise ValueError("servers must be a sequence of 'ADDR[:PORT]' strings, not one")
        object.__setattr__(self, "servers", tuple(parse_server(s) for s in self.servers))
        if self.servers and self.resolver == "system":
            raise ValueError(
                "DNS servers need the async resolver (the system resolver asks the system's)"
            )
        for name in ("min_ttl", "max_ttl", "negative_ttl"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.max_ttl < self.min_ttl:
            raise ValueError(f"max_ttl ({self.max_ttl}) is below min_ttl ({self.min_ttl})")
        if isinstance(self.max_names, bool) or not isinstance(self.max_names, int):
            raise ValueError(f"max_names must be a whole number >= 1, got {self.max_names!r}")
        if self.max_names < 1:
            raise ValueError(f"max_names must be a whole number >= 1, got {self.max_names!r}")
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or self.timeout <= 0
        ):
            raise ValueError(f"timeout must be a positive number, got {self.timeout!r}")
        if self.tries is not None and (
            isinstance(self.tries, bool) or not isinstance(self.tries, int) or self.tries < 1
        ):
            raise ValueError(f"tries must be a whole number >= 1, got {self.tries!r}")


_warned = False


def async_dns_error() -> str | None:
    """Why aiodns (c-ares) cannot load here, or None when it can."""
    try:
        import aiodns  # noqa: F401
    except Exception as exc:  # ImportError, or a broken binary (OSError from cffi)
        return f"{type(exc).__name__}: {exc}"
    return None


#: A failed lookup: (from c-ares, not getaddrinfo; the error code; its text).
_Failure = tuple[bool, int, str]


class _Entry:
    """One name's answer, until when it holds: aiohttp's dicts for its addresses, with
    the last port asked (some 700 bytes for a name with one address, all told), or
    the error that came instead."""

    __slots__ = ("error", "expires", "port", "results", "turn")

    def __init__(
        self,
        host: str,
        addresses: tuple[tuple[str, int], ...],
        error: _Failure | None,
        expires: float,
    ) -> None:
        self.error = error
        self.expires = expires
        self.port = 0
        self.results: list[ResolveResult] = [
            {
                "hostname": host,
                "host": address,
                "port": 0,
                "family": family,
                "proto": 0,
                "flags": _NUMERIC_FLAGS,
            }
            for address, family in addresses
        ]
        self.turn = 0


class Resolver(_ResolverBase):
    """An aiohttp resolver with the cache and the single flight described in this
    module's docstring, configured by a :class:`DNS`.

    Make it inside the event loop it serves; give it to ``TCPConnector(resolver=...,
    use_dns_cache=False)`` (this is the one cache), and close it after the connector.
    """

    def __init__(self, dns: DNS | None = None) -> None:
        self.dns = dns = dns or DNS()
        self._loop = asyncio.get_running_loop()
        self._cache: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self._pending: dict[tuple[str, int], asyncio.Future[_Entry]] = {}
        self._threads: set[asyncio.Future[Any]] = set()
        self._closed = False
        #: Lookups sent to c-ares or getaddrinfo (misses of the cache, one per flight).
        self.lookups = 0
        self._ares: aiodns.DNSResolver | None = None
        #: Whether c-ares's own answer cache is off (see _without_answer_cache).
        self.one_cache = False
        if dns.resolver == "async":
            reason = async_dns_error()
            if reason is None:
                try:
                    self._ares = self._open_ares()
                except Exception as exc:  # c-ares cannot make a channel here
                    reason = f"{type(exc).__name__}: {exc}"
            if reason is not None:
                if dns.servers:
                    raise RuntimeError(
                        f"the DNS servers {', '.join(dns.servers)} need c-ares (aiodns),"
                        f" which cannot load here ({reason})"
                    )
                _warn_fallback(reason)

    @property
    def backend(self) -> Literal["async", "system"]:
        """Which resolver answers: ``"async"`` (c-ares) or ``"system"`` (getaddrinfo)."""
        return "async" if self._ares is not None else "system"

    def __len__(self) -> int:
        """Names in the cache (expired ones included, until they are asked again or
        pushed out)."""
        return len(self._cache)

    def _open_ares(self) -> aiodns.DNSResolver:
        import aiodns

        options: dict[str, Any] = {}
        if self.dns.timeout is not None:
            options["timeout"] = float(self.dns.timeout)
        if self.dns.tries is not None:
            options["tries"] = self.dns.tries
        options["socket_receive_buffer_size"] = _RECEIVE_BUFFER
        resolver = aiodns.DNSResolver(loop=self._loop, **options)
        self.one_cache = _without_answer_cache(resolver, self.dns)
        if self.dns.servers:
            resolver.nameservers = list(self.dns.servers)
        return resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of ``host`` for ``family`` (aiohttp passes its connector's
        ``family``: ``AF_UNSPEC`` for IPv4 and IPv6), as aiohttp's dicts with ``port``.
        Raises ``OSError`` when the name does not resolve (c-ares's error as its cause;
        ``socket.gaierror`` from the system resolver)."""
        key = (host, family)
        entry = self._cache.get(key)
        if entry is not None and entry.expires > _now():
            self._cache.move_to_end(key)
            return _answer(entry, host, port)
        shared = self._pending.get(key)
        if shared is None:
            if self._closed:
                raise OSError(None, "the resolver is closed")
            shared = self._start(key, host, family)
        # The lookup is shared: cancelling this caller must not cancel it for the others.
        return _answer(await asyncio.shield(shared), host, port)

    def _start(
        self, key: tuple[str, int], host: str, family: socket.AddressFamily
    ) -> asyncio.Future[_Entry]:
        self.lookups += 1
        shared: asyncio.Future[_Entry] = self._loop.create_future()
        self._pending[key] = shared
        lookup: asyncio.Future[Any]
        if self._ares is not None:
            lookup = self._ares.getaddrinfo(host, family=family, type=socket.SOCK_STREAM)
        else:
            lookup = asyncio.ensure_future(
                self._loop.getaddrinfo(
                    host, None, family=family, type=socket.SOCK_STREAM, flags=_AI_ADDRCONFIG
                )
            )
            self._threads.add(lookup)
            lookup.add_done_callback(self._threads.discard)
        lookup.add_done_callback(partial(self._landed, key, shared, self._ares is not None))
        return shared

    def _landed(
        self,
        key: tuple[str, int],
        shared: asyncio.Future[_Entry],
        ares: bool,
        lookup: asyncio.Future[Any],
    ) -> None:
        """The lookup for ``key`` ended: keep its answer, hand it to every waiter."""
        if self._pending.get(key) is shared:
            del self._pending[key]
        dns = self.dns
        error = None if lookup.cancelled() else lookup.exception()
        if lookup.cancelled():
            failure: _Failure | None = (False, 0, "the lookup was cancelled: the resolver closed")
        elif error is None:
            if ares:
                addresses, ttl = _from_ares(lookup.result())
            else:
                addresses, ttl = _from_system(lookup.result()), SYSTEM_TTL
            failure = None if addresses else (True, _ARES_ENODATA, "no address for the name")
        elif ares and _is_ares_error(error):
            failure = (True, error.args[0], _text(error))
        elif isinstance(error, socket.gaierror) and isinstance(error.args[0], int):
            failure = (False, error.args[0], _text(error))
        else:  # not an answer from DNS (a bug, or the channel closed): every waiter sees it
            if not shared.done():
                shared.set_exception(error)
            shared.exception()  # no waiter left is fine: no "never retrieved" warning
            return
        if failure is None:
            expires = _now() + min(max(ttl, dns.min_ttl), dns.max_ttl)
            entry = _Entry(key[0], addresses, None, expires)
            self._keep(key, entry)
        else:
            entry = _Entry(key[0], (), failure, _now() + dns.negative_ttl)
            if failure[1] in (_ARES_NEGATIVE if failure[0] else _GAI_NEGATIVE):
                self._keep(key, entry)
        if not shared.done():
            shared.set_result(entry)

    def _keep(self, key: tuple[str, int], entry: _Entry) -> None:
        if entry.expires <= _now():
            self._cache.pop(key, None)  # a TTL of 0 (min_ttl 0): nothing to keep
            return
        cache = self._cache
        cache[key] = entry
        cache.move_to_end(key)
        if len(cache) > self.dns.max_names:
            cache.popitem(last=False)

    def clear(self) -> None:
        """Forget every cached answer (lookups in flight go on)."""
        self._cache.clear()

    async def close(self) -> None:
        """Cancel lookups in flight and release c-ares; the cache is emptied."""
        if self._closed:
            return
        self._closed = True
        ares, self._ares = self._ares, None
        for lookup in list(self._threads):
            lookup.cancel()
        if ares is not None:
            # Lookups in flight end with ARES_ECANCELLED (delivered through the loop).
            await ares.close()
        self._cache.clear()


def _answer(entry: _Entry, host: str, port: int) -> list[ResolveResult]:
    """``entry`` as aiohttp takes it, or its error raised; with several addresses the
    first one turns with every call (as aiohttp's own cache does), spreading connections."""
    if entry.error is not None:
        raise _error(entry.error)
    results = entry.results
    if entry.port != port:
        results = entry.results = [{**result, "port": port} for result in results]
        entry.port = port
    if len(results) > 1:
        turn = entry.turn = (entry.turn + 1) % len(results)
        return results[turn:] + results[:turn]
    return results


def _error(error: _Failure) -> OSError:
    """A fresh exception for a failed lookup: what aiohttp's AsyncResolver raises for
    c-ares (``OSError(None, text)`` from aiodns's error, whose code ``classify`` reads),
    or the system resolver's ``socket.gaierror``."""
    ares, code, text = error
    if not ares:
        return socket.gaierror(code, text) if code else OSError(None, text)
    import aiodns.error

    failure = OSError(None, text)
    failure.__cause__ = aiodns.error.DNSError(code, text)
    return failure


def _text(error: BaseException) -> str:
    args = error.args
    return str(args[1]) if len(args) > 1 else str(error)


def _is_ares_error(error: BaseException) -> bool:
    try:
        import aiodns.error
    except Exception:  # pragma: no cover - then no c-ares error exists
        return False
    return isinstance(error, aiodns.error.DNSError) and bool(error.args)


def _from_ares(result: Any) -> tuple[tuple[tuple[str, int], ...], float]:
    """Addresses and TTL (the smallest of the records, CNAMEs included) of a pycares
    ``AddrInfoResult``."""
    addresses: list[tuple[str, int]] = []
    ttl: float | None = None
    for node in result.nodes:
        address = node.addr[0]
        host = address.decode("ascii") if isinstance(address, bytes) else str(address)
        if node.family == socket.AF_INET6 and len(node.addr) > 3 and node.addr[3]:
            host = _scoped(host, node.addr[3])
        if (host, node.family) not in addresses:
            addresses.append((host, node.family))
        ttl = node.ttl if ttl is None else min(ttl, node.ttl)
    for cname in result.cnames:
        ttl = cname.ttl if ttl is None else min(ttl, cname.ttl)
    return tuple(addresses), max(0.0, float(ttl or 0))


def _from_system(infos: list[Any]) -> tuple[tuple[str, int], ...]:
    addresses: list[tuple[str, int]] = []
    for family, _, _, _, sockaddr in infos:
        if family == socket.AF_INET6:
            if len(sockaddr) < 3:  # IPv6 off in this Python build
                continue
            host = sockaddr[0]
            if sockaddr[3] and "%" not in host:
                host = _scoped(host, sockaddr[3])
        elif family == socket.AF_INET:
            host = sockaddr[0]
        else:
            continue
        if (host, family) not in addresses:
            addresses.append((host, family))
    return tuple(addresses)


def _scoped(host: str, scope: int) -> str:
    """A link-local IPv6 address with its zone, as the connect needs it (``fe80::1%eth0``)."""
    try:
        return f"{host}%{socket.if_indextoname(scope)}"
    except OSError:
        return f"{host}%{scope}"


_NUMERIC_FLAGS: Final = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
_AI_ADDRCONFIG: Final = socket.AI_ADDRCONFIG & getattr(socket, "AI_MASK", -1)


def _warn_fallback(reason: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(
            "aiodns (c-ares) cannot load (%s): host names are resolved by the system"
            " resolver in threads, which is slow with many hosts; pip install aiodns",
            reason,
        )


def _without_answer_cache(resolver: aiodns.DNSResolver, dns: DNS) -> bool:
    """Switch off c-ares's own answer cache, so that :class:`Resolver`'s (bounded) is the
    one cache: pycares has no option for it, so the channel is made again with the
    options aiodns gave it and the cache off. Returns False, leaving c-ares's cache on
    (it still honours TTLs, for at most an hour), where pycares is not as expected."""
    try:
        from pycares import _cares

        ffi, lib = _cares.ffi, _cares.lib
        channel = resolver._channel
        if not resolver._event_thread or channel._sock_state_cb_handle is not None:
            return False
        options = ffi.new("struct ares_options *")
        mask = lib.ARES_OPT_EVENT_THREAD | _ARES_OPT_QUERY_CACHE
        options.evsys = lib.ARES_EVSYS_DEFAULT
        options.qcache_max_ttl = 0
        if dns.timeout is not None:
            options.timeout = int(dns.timeout * 1000)
            mask |= lib.ARES_OPT_TIMEOUTMS
        if dns.tries is not None:
            options.tries = dns.tries
            mask |= lib.ARES_OPT_TRIES
        options.socket_receive_buffer_size = _RECEIVE_BUFFER
        mask |= lib.ARES_OPT_SOCK_RCVBUF
        fresh = ffi.new("ares_channel *")
        if lib.ares_init_options(fresh, options, mask) != lib.ARES_SUCCESS:
            return False
        with channel._lock:
            old, channel._channel = channel._channel, fresh
        if old is not None:
            lib.ares_destroy(old[0])  # nothing was ever asked on it
    except Exception as exc:
        log.debug("c-ares's answer cache stays on: %r", exc)
        return False
    return True
