"""The resolver (surefetch.resolve), against a DNS server written here (dnslib) on
127.0.0.1: concurrency, the TTL cache and its bounds, negative caching, one query per
name, IPv4/IPv6, the error messages, and the Client and the command line using it."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord

from surefetch import DNS, Client, DNSError, Resolver, RetryPolicy, Timeouts
from surefetch import resolve as resolve_module
from surefetch.resolve import parse_server, parse_servers

from .conftest import Server, start_app
from .helpers import records, surefetch, write_lines

pytestmark = pytest.mark.usefixtures("transport")

UNSPEC = socket.AF_UNSPEC
NO_RETRY = RetryPolicy(retries=0)


class DNSServer(asyncio.DatagramProtocol):
    """Answers ``*.test`` names after ``delay`` seconds: A with 127.0.0.1, AAAA with
    nothing, TTL ``ttl``, unless ``addresses`` says otherwise for a name. Names that
    start with ``nx`` get NXDOMAIN, ``fail`` SERVFAIL, ``refused`` REFUSED, ``nodata``
    no record, ``mute`` no answer at all; names outside ``.test`` NXDOMAIN. A name in
    ``rotations`` answers each A query with the next of its address lists in turn (DNS
    rebinding, with ``ttls[name] = 0``). Counts the queries per (name, type) in
    ``asked``."""

    def __init__(self, delay: float = 0.0, ttl: int = 300) -> None:
        self.delay = delay
        self.ttl = ttl
        self.addresses: dict[str, list[str]] = {}
        self.ttls: dict[str, int] = {}
        self.rotations: dict[str, list[list[str]]] = {}
        self.asked: Counter[tuple[str, str]] = Counter()
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    @property
    def servers(self) -> tuple[str, ...]:
        return (f"127.0.0.1:{self.port}",)

    def queries(self, name: str) -> int:
        """A queries for ``name`` (c-ares asks A and AAAA per lookup of both families)."""
        return self.asked[(name, "A")]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.DatagramTransport", transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = DNSRecord.parse(data)
        name = str(request.q.qname).rstrip(".")
        qtype = QTYPE[request.q.qtype]
        self.asked[(name, qtype)] += 1
        reply = request.reply()
        label = name.split(".")[0]
        if not name.endswith(".test") or label.startswith("nx"):
            reply.header.rcode = RCODE.NXDOMAIN
        elif label.startswith("fail"):
            reply.header.rcode = RCODE.SERVFAIL
        elif label.startswith("refused"):
            reply.header.rcode = RCODE.REFUSED
        elif label.startswith("mute"):
            return
        elif not label.startswith("nodata"):
            ttl = self.ttls.get(name, self.ttl)
            addresses = self.addresses.get(name, ["127.0.0.1"])
            if (turns := self.rotations.get(name)) is not None:
                addresses = turns[(self.asked[(name, "A")] - 1) % len(turns)]
            for address in addresses:
                if ":" in address and qtype == "AAAA":
                    reply.add_answer(RR(request.q.qname, QTYPE.AAAA, rdata=AAAA(address), ttl=ttl))
                elif ":" not in address and qtype == "A":
                    reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=ttl))
        packet = reply.pack()
        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, self._send, packet, addr)
        else:
            self._send(packet, addr)

    def _send(self, packet: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(packet, addr)


async def start_dns(delay: float = 0.0, ttl: int = 300) -> DNSServer:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # bursts of queries
    sock.bind(("127.0.0.1", 0))
    server = DNSServer(delay, ttl)
    await asyncio.get_running_loop().create_datagram_endpoint(lambda: server, sock=sock)
    server.port = sock.getsockname()[1]
    return server


@pytest.fixture
async def dns() -> AsyncIterator[DNSServer]:
    server = await start_dns()
    yield server
    assert server.transport is not None
    server.transport.close()


@pytest.fixture
async def slow_dns() -> AsyncIterator[DNSServer]:
    """Answers after 100 ms."""
    server = await start_dns(delay=0.1)
    yield server
    assert server.transport is not None
    server.transport.close()


async def resolver_for(server: DNSServer, **options: Any) -> Resolver:
    return Resolver(DNS(servers=server.servers, **options))


def hosts(results: list[Any]) -> list[str]:
    return [r["host"] for r in results]


# -- concurrency and the cache -------------------------------------------------------


async def test_hundreds_of_names_resolve_at_once(slow_dns: DNSServer) -> None:
    resolver = await resolver_for(slow_dns)
    names = [f"h{i}.test" for i in range(500)]
    started = time.monotonic()
    answers = await asyncio.gather(*(resolver.resolve(n, 80, UNSPEC) for n in names))
    took = time.monotonic() - started
    await resolver.close()
    # One after another they would take 500 x 100 ms = 50 s.
    assert took < 3.0, f"500 names took {took:.2f} s"
    assert all(hosts(a) == ["127.0.0.1"] for a in answers)
    assert [(a[0]["hostname"], a[0]["port"]) for a in answers] == [(n, 80) for n in names]
    assert all(slow_dns.queries(n) == 1 for n in names)


async def test_a_name_is_not_asked_again_within_its_ttl_and_is_after_it(dns: DNSServer) -> None:
    dns.ttl = 1
    resolver = await resolver_for(dns, min_ttl=0)
    assert hosts(await resolver.resolve("a.test", 80, UNSPEC)) == ["127.0.0.1"]
    for _ in range(5):
        assert hosts(await resolver.resolve("a.test", 443, UNSPEC)) == ["127.0.0.1"]
    assert dns.queries("a.test") == 1 and resolver.lookups == 1
    await asyncio.sleep(1.2)
    await resolver.resolve("a.test", 80, UNSPEC)
    assert dns.queries("a.test") == 2
    await resolver.close()


async def test_ttls_are_held_within_the_floor_and_the_ceiling(dns: DNSServer) -> None:
    dns.ttls = {"zero.test": 0, "long.test": 3600}
    resolver = await resolver_for(dns, min_ttl=0.5, max_ttl=0.5)
    # c-ares's own answer cache is off: this cache is the only one.
    assert resolver.one_cache
    for name in ("zero.test", "long.test"):
        await resolver.resolve(name, 80, UNSPEC)
        await resolver.resolve(name, 80, UNSPEC)
    # TTL 0 is kept for the floor (c-ares would not keep it at all) ...
    assert dns.queries("zero.test") == 1
    # ... and 3600 s only for the ceiling, then asked of the server again.
    assert dns.queries("long.test") == 1
    await asyncio.sleep(0.7)
    for name in ("zero.test", "long.test"):
        await resolver.resolve(name, 80, UNSPEC)
        assert dns.queries(name) == 2, name
    await resolver.close()


async def test_one_query_per_name_under_a_burst(slow_dns: DNSServer) -> None:
    resolver = await resolver_for(slow_dns)
    names = [f"burst{i}.test" for i in range(50)]
    calls = [resolver.resolve(n, 80, UNSPEC) for n in names for _ in range(40)]
    answers = await asyncio.gather(*calls)
    assert len(answers) == 2000 and all(hosts(a) == ["127.0.0.1"] for a in answers)
    assert {n: slow_dns.queries(n) for n in names} == dict.fromkeys(names, 1)
    assert resolver.lookups == 50
    await resolver.close()


async def test_a_cancelled_caller_does_not_cancel_the_lookup_for_the_others(
    dns: DNSServer,
) -> None:
    dns.delay = 0.3
    resolver = await resolver_for(dns)
    first = asyncio.create_task(resolver.resolve("shared.test", 80, UNSPEC))
    second = asyncio.create_task(resolver.resolve("shared.test", 80, UNSPEC))
    await asyncio.sleep(0.1)
    first.cancel()
    assert hosts(await second) == ["127.0.0.1"]
    assert first.cancelled()
    await resolver.resolve("shared.test", 80, UNSPEC)  # kept, too
    assert dns.queries("shared.test") == 1
    await resolver.close()


async def test_the_cache_keeps_at_most_max_names_the_least_recently_used_leaving(
    dns: DNSServer,
) -> None:
    resolver = await resolver_for(dns, max_names=10)
    for i in range(10):
        await resolver.resolve(f"n{i}.test", 80, UNSPEC)
    await resolver.resolve("n0.test", 80, UNSPEC)  # used again: now the most recent
    for i in range(10, 15):  # push out five: n1..n5, the least recently used
        await resolver.resolve(f"n{i}.test", 80, UNSPEC)
    assert len(resolver) == 10
    asked = sum(dns.asked.values())
    for i in (0, *range(6, 15)):  # the ten kept
        await resolver.resolve(f"n{i}.test", 80, UNSPEC)
    assert sum(dns.asked.values()) == asked
    await resolver.resolve("n1.test", 80, UNSPEC)  # pushed out: asked again
    assert dns.queries("n1.test") == 2
    assert dns.queries("n0.test") == 1
    await resolver.close()


async def test_ipv4_and_ipv6_as_aiohttp_asks(dns: DNSServer) -> None:
    dns.addresses = {"dual.test": ["::1", "127.0.0.1"], "six.test": ["::1"]}
    resolver = await resolver_for(dns)
    both = await resolver.resolve("dual.test", 443, UNSPEC)
    assert sorted(hosts(both)) == ["127.0.0.1", "::1"]
    assert {(r["host"], r["family"]) for r in both} == {
        ("127.0.0.1", socket.AF_INET),
        ("::1", socket.AF_INET6),
    }
    assert hosts(await resolver.resolve("dual.test", 443, socket.AF_INET)) == ["127.0.0.1"]
    assert hosts(await resolver.resolve("dual.test", 443, socket.AF_INET6)) == ["::1"]
    assert hosts(await resolver.resolve("six.test", 80, socket.AF_INET6)) == ["::1"]
    # Several addresses take turns at the front, as with aiohttp's own cache.
    fronts = {hosts(await resolver.resolve("dual.test", 443, UNSPEC))[0] for _ in range(4)}
    assert fronts == {"127.0.0.1", "::1"}
    await resolver.close()


# -- failures ------------------------------------------------------------------------


async def test_nxdomain_is_a_dns_error_naming_the_host_and_is_kept_briefly(
    dns: DNSServer,
) -> None:
    async with Client(dns=DNS(servers=dns.servers, negative_ttl=0.5), retry=NO_RETRY) as client:
        for _ in range(3):
            with pytest.raises(DNSError) as info:
                await client.get("http://nx-one.test:8080/")
            assert info.value.kind == "dns_error"
            assert (
                info.value.message
                == "host name nx-one.test did not resolve: no such name (NXDOMAIN)"
            )
        assert dns.queries("nx-one.test") == 1
        await asyncio.sleep(0.7)
        with pytest.raises(DNSError):
            await client.get("http://nx-one.test:8080/")
        assert dns.queries("nx-one.test") == 2


@pytest.mark.parametrize(
    ("name", "reason", "kept"),
    [
        ("fail.test", "the DNS server failed (SERVFAIL)", False),
        ("refused.test", "the DNS server refused the query (REFUSED)", False),
        ("mute.test", "no answer from the DNS server (timeout)", False),
        ("nodata.test", "the name has no address (NODATA)", True),
    ],
)
async def test_dns_failures_say_which(dns: DNSServer, name: str, reason: str, kept: bool) -> None:
    options = DNS(servers=dns.servers, timeout=0.2, tries=1)
    async with Client(dns=options, retry=NO_RETRY) as client:
        for _ in range(2):
            with pytest.raises(DNSError) as info:
                await client.get(f"http://{name}/")
            assert info.value.message == f"host name {name} did not resolve: {reason}"
        (record,) = [r async for r in client.fetch_many([f"http://{name}/x"])]
    assert record.error is not None and record.error.kind == "dns_error"
    assert record.error.message == f"host name {name} did not resolve: {reason}"
    # "No such name" and "no address" are the name's own answer and are kept; a server
    # failure, a refusal or a timeout may pass, and are asked again.
    assert dns.queries(name) == (1 if kept else 3)


# -- the Client and the command line ---------------------------------------------------


async def test_the_client_fetches_by_name_through_the_given_server(
    dns: DNSServer, server: Server
) -> None:
    async with Client(dns=DNS(servers=dns.servers)) as client:
        response = await client.get(f"http://a.test:{server.port}/ok")
        assert response.status == 200 and response.body == b"ok /ok"
        urls = [f"http://many.test:{server.port}/p/{i}" for i in range(40)]
        results = [r async for r in client.fetch_many(urls)]
    assert all(r.ok for r in results) and len(results) == 40
    assert dns.queries("a.test") == 1
    assert dns.queries("many.test") == 1  # 40 URLs, up to 8 connections: one query


async def test_the_clients_one_dns_cache_is_the_resolvers(dns: DNSServer) -> None:
    """Every request on a new connection asks the resolver: aiohttp's own DNS cache
    (which would keep the name 10 s, or as long as it was told) is off."""

    async def closing(request: web.Request) -> web.Response:
        response = web.Response(text="bye")
        response.force_close()
        return response

    app = web.Application()
    app.router.add_get("/", closing)
    runner, port = await start_app(app)
    dns.ttl = 1
    try:
        async with Client(dns=DNS(servers=dns.servers, min_ttl=0)) as client:
            for _ in range(3):
                assert (await client.get(f"http://short.test:{port}/")).body == b"bye"
            assert dns.queries("short.test") == 1
            await asyncio.sleep(1.2)
            assert (await client.get(f"http://short.test:{port}/")).body == b"bye"
            assert dns.queries("short.test") == 2
    finally:
        await runner.cleanup()


async def test_ip_addresses_never_ask_dns(dns: DNSServer, server: Server) -> None:
    async with Client(dns=DNS(servers=dns.servers)) as client:
        assert (await client.get(server.url("/ok"))).status == 200
        assert client._resolver is not None and client._resolver.lookups == 0
    assert not dns.asked


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_the_command_uses_dns_servers(
    dns: DNSServer, server: Server, tmp_path: Path, workers: str
) -> None:
    urls = [f"http://a.test:{server.port}/p/{i}" for i in range(6)] + ["http://nx-x.test/"]
    listing = write_lines(tmp_path / "urls.txt", urls)
    out = tmp_path / "out.jsonl"
    code, _, stderr = await surefetch(
        "fetch", str(listing), "-o", str(out), "-q", "--retries", "0", "--workers", workers,
        "--dns-servers", f"127.0.0.1:{dns.port}",
    )  # fmt: skip
    assert code == 0, stderr
    by_url = {r["url"]: r for r in records(out)}
    assert all(by_url[u]["ok"] for u in urls[:-1]), by_url
    assert by_url["http://nx-x.test/"]["error"] == {
        "kind": "dns_error",
        "message": "host name nx-x.test did not resolve: no such name (NXDOMAIN)",
    }
    assert 1 <= dns.queries("a.test") <= int(workers)  # one per process


async def test_with_workers_each_host_is_resolved_in_one_process(
    dns: DNSServer, server: Server, tmp_path: Path
) -> None:
    """A host shared by --workers 2 sends its URLs to one worker (by hash) while the
    workers are about evenly loaded: its name is asked for once, not once per worker."""
    names = [f"h{i}.test" for i in range(31)]  # odd: round-robin would split each name
    urls = [f"http://{n}:{server.port}/p/{j}" for j in range(4) for n in names]
    listing = write_lines(tmp_path / "urls.txt", urls)
    out = tmp_path / "out.jsonl"
    code, _, stderr = await surefetch(
        "fetch", str(listing), "-o", str(out), "-q", "--workers", "2", "--concurrency", "512",
        "--dns-servers", f"127.0.0.1:{dns.port}",
    )  # fmt: skip
    assert code == 0, stderr
    assert sum(r["ok"] for r in records(out)) == len(urls)
    assert {n: dns.queries(n) for n in names} == dict.fromkeys(names, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dns-servers", "dns.example"], "not a DNS server address: 'dns.example'"),
        (["--dns-servers", "127.0.0.1:0"], "bad port in DNS server address '127.0.0.1:0'"),
        (["--dns-servers", "[::1]53"], "not a DNS server address: '[::1]53'"),
        (["--dns-servers", ","], "no DNS server given"),
        (["--resolver", "fast"], "'fast' is not one of 'async', 'system'"),
        (["--resolver", "system", "--dns-servers", "127.0.0.1"], "needs --resolver async"),
    ],
)
async def test_bad_dns_options_are_one_usage_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    listing = write_lines(tmp_path / "urls.txt", ["http://a.test/"])
    code, stdout, stderr = await surefetch(
        "fetch", str(listing), "-o", str(tmp_path / "out.jsonl"), *args
    )
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("surefetch: error: ") and message in stderr
    assert not (tmp_path / "out.jsonl").exists()


# -- the system resolver, and the fallback to it ---------------------------------------


async def test_the_system_resolver_is_cached_too(server: Server) -> None:
    resolver = Resolver(DNS(resolver="system"))
    assert resolver.backend == "system"
    for _ in range(3):
        assert "127.0.0.1" in hosts(await resolver.resolve("localhost", 80, socket.AF_INET))
    assert resolver.lookups == 1
    with pytest.raises(socket.gaierror):
        await resolver.resolve("nothing.invalid", 80, UNSPEC)
    await resolver.close()
    async with Client(dns=DNS(resolver="system")) as client:
        assert (await client.get(f"http://localhost:{server.port}/ok")).status == 200


async def test_without_aiodns_the_system_resolver_answers_after_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, server: Server
) -> None:
    monkeypatch.setitem(sys.modules, "aiodns", None)  # as if it were not installed
    monkeypatch.setattr(resolve_module, "_warned", False)
    caplog.set_level(logging.WARNING, logger="surefetch.resolve")
    first, second = Resolver(), Resolver()
    assert first.backend == second.backend == "system"
    assert "127.0.0.1" in hosts(await first.resolve("localhost", 80, socket.AF_INET))
    async with Client() as client:
        assert (await client.get(f"http://localhost:{server.port}/ok")).status == 200
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "aiodns (c-ares) cannot load" in warnings[0], warnings
    with pytest.raises(RuntimeError, match=r"need c-ares \(aiodns\), which cannot load"):
        Resolver(DNS(servers=("127.0.0.1:53",)))
    await first.close()
    await second.close()


# -- settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "server"),
    [
        ("127.0.0.1", "127.0.0.1:53"),
        (" 10.0.0.2:5353 ", "10.0.0.2:5353"),
        ("::1", "[::1]:53"),
        ("[::1]", "[::1]:53"),
        ("[2001:db8::0:1]:5300", "[2001:db8::1]:5300"),
    ],
)
def test_dns_server_addresses(text: str, server: str) -> None:
    assert parse_server(text) == server
    assert parse_servers(f"{text},127.0.0.2") == (server, "127.0.0.2:53")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DNS(servers=("localhost",)), "not a DNS server address"),
        (lambda: DNS(servers="127.0.0.1"), "not one"),  # type: ignore[arg-type]
        (lambda: DNS(resolver="fast"), "resolver must be"),  # type: ignore[arg-type]
        (lambda: DNS(resolver="system", servers=("127.0.0.1",)), "need the async resolver"),
        (lambda: DNS(min_ttl=-1), "min_ttl must be a number >= 0"),
        (lambda: DNS(min_ttl=10, max_ttl=5), "max_ttl (5) is below min_ttl (10)"),
        (lambda: DNS(negative_ttl=-0.1), "negative_ttl must be"),
        (lambda: DNS(max_names=0), "max_names must be a whole number >= 1"),
        (lambda: DNS(timeout=0), "timeout must be a positive number"),
        (lambda: DNS(tries=0), "tries must be a whole number >= 1"),
    ],
)
def test_dns_settings_are_checked(make: Callable[[], DNS], message: str) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)


def test_dns_defaults_are_the_documented_ones() -> None:
    dns = DNS()
    assert (dns.resolver, dns.servers) == ("async", ())
    assert (dns.min_ttl, dns.max_ttl, dns.negative_ttl, dns.max_names) == (30, 3600, 30, 100_000)
    assert Client().dns == dns and Client(timeouts=Timeouts()).dns.resolver == "async"
