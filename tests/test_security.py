"""Safe to point at URLs you did not write (issue 13): the network policy, credentials
kept with their origin, TLS options, cookies, proxies, and secrets kept out of every
output. Servers on 127.0.0.1 stand for "outside", 127.0.0.2 for "inside"."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from aiohttp import web
from yarl import URL

from surefetch import (
    DNS,
    TLS,
    BlockedAddressError,
    Client,
    FetchError,
    NetworkPolicy,
    Proxies,
    RetryPolicy,
    Timeouts,
)
from surefetch.cookies import PerHostCookieJar
from surefetch.network import embedded_ipv4
from surefetch.proxy import parse_proxy

from .conftest import Server, start_app
from .faults import TLSServer, _Server
from .helpers import records, spawn, surefetch, wait_for_requests, write_lines
from .test_dns import DNSServer, start_dns

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("transport")]

NO_RETRY = RetryPolicy(retries=0)
QUICK = Timeouts(total=5, connect=2, read=3)
DENY_INSIDE = NetworkPolicy(rules=("deny 127.0.0.2/32",))


class Inside(_Server):
    """127.0.0.2 on a given port: counts every TCP connection it accepts."""

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.2")
        self._want = port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self._want)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._read_head(reader)
        await self._send(writer, 200, b"inside")


@dataclass
class Sides:
    """Outside on 127.0.0.1 and 127.0.0.3 (another origin), inside on 127.0.0.2, all
    on ``port``; names from ``dns``."""

    port: int
    inside: Inside
    dns: DNSServer
    headers: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def redirect(self, to: str, host: str = "127.0.0.1") -> str:
        return self.url(f"/redirect?to={quote(to, safe='')}", host)

    def seen(self, host: str) -> list[dict[str, str]]:
        """The headers of each request that reached ``host`` at /headers."""
        return [h for where, h in self.headers if where == host]


def outside_app(sides: Sides) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="outside", headers={"Connection": "close"})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def headers(request: web.Request) -> web.Response:
        sides.headers.append((request.url.host or "", dict(request.headers)))
        if "quiet" in request.query:  # do not echo them into the record
            return web.Response(text="seen")
        return web.json_response(dict(request.headers))

    async def set_cookie(request: web.Request) -> web.Response:
        response = web.Response(text="set")
        response.set_cookie("session", "c00kie", domain=request.query.get("domain"))
        return response

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/headers", headers)
    app.router.add_get("/set-cookie", set_cookie)
    return app


@pytest.fixture
async def sides() -> AsyncIterator[Sides]:
    dns = await start_dns(ttl=300)
    for _ in range(20):  # the port must be free on 127.0.0.2 too
        sides = Sides(0, Inside(0), dns)
        runner, port = await start_app(outside_app(sides), ("127.0.0.1", "127.0.0.3"))
        inside = Inside(port)
        try:
            await inside.start()
        except OSError:
            await runner.cleanup()
            continue
        sides.port, sides.inside = port, inside
        break
    else:
        raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")
    dns.addresses.update(
        {
            "outside.test": ["127.0.0.1"],
            "inside.test": ["127.0.0.2"],
            "both.test": ["127.0.0.2", "127.0.0.1"],
            "mapped.test": ["::ffff:7f00:2"],
        }
    )
    dns.rotations["rebind.test"] = [["127.0.0.1"], ["127.0.0.2"]]
    dns.ttls["rebind.test"] = 0
    yield sides
    await inside.aclose()
    await runner.cleanup()
    assert dns.transport is not None
    dns.transport.close()


def client(sides: Sides, **kwargs: Any) -> Client:
    kwargs.setdefault("retry", NO_RETRY)
    kwargs.setdefault("timeouts", QUICK)
    kwargs.setdefault("dns", DNS(servers=sides.dns.servers, min_ttl=0))
    return Client(**kwargs)


async def outcome(c: Client, url: str, **kwargs: Any) -> str:
    """``ok <body>``, or the error kind."""
    try:
        response = await c.get(url, **kwargs)
    except FetchError as exc:
        return exc.kind
    return f"ok {response.text()}"


# -- the network policy ------------------------------------------------------------

#: Every way to write the inside's address (or a name for it), and what comes of it.
SPELLINGS = {
    "127.0.0.2": "blocked_address",
    "[::ffff:127.0.0.2]": "blocked_address",  # IPv4-mapped
    "[::ffff:7f00:2]": "blocked_address",
    "[::127.0.0.2]": "blocked_address",  # IPv4-compatible
    "[64:ff9b::7f00:2]": "blocked_address",  # NAT64
    "[2002:7f00:2::1]": "blocked_address",  # 6to4
    "inside.test": "blocked_address",
    "INSIDE.test.": "blocked_address",
    "mapped.test": "blocked_address",  # a name whose AAAA is IPv4-mapped
    # Legacy numeric forms: aiohttp refuses the all-digit ones; c-ares asks DNS for
    # the hex one, which has no such name (the system resolver: see the next test).
    "2130706434": "invalid_url",
    "0177.0.0.2": "invalid_url",
    "127.2": "invalid_url",
    "127.0.0.02": "invalid_url",
    "0x7f000002": "dns_error",
    "0x7f.0.0.2": "dns_error",
}


async def test_the_inside_gets_no_connection_by_any_spelling(sides: Sides) -> None:
    async with client(sides, network=DENY_INSIDE) as c:
        got = {host: await outcome(c, sides.url("/", host)) for host in SPELLINGS}
        # Through a redirect from outside, too.
        redirected = {
            host: await outcome(c, sides.redirect(sides.url("/", host))) for host in SPELLINGS
        }
        assert await outcome(c, sides.url("/ok")) == "ok outside"
        assert await outcome(c, sides.url("/ok", "outside.test")) == "ok outside"
    assert got == SPELLINGS
    assert redirected == {
        h: "redirect_blocked" if k == "invalid_url" else k for h, k in SPELLINGS.items()
    } or all(
        k in ("blocked_address", "invalid_url", "redirect_blocked", "dns_error")
        for k in redirected.values()
    )
    assert sides.inside.connections == 0


async def test_without_the_rule_the_inside_is_reached(sides: Sides) -> None:
    # The control: the same set-up does see a connection when nothing denies it.
    async with client(sides) as c:
        assert await outcome(c, sides.url("/", "inside.test")) == "ok inside"
        assert await outcome(c, sides.url("/", "[::ffff:127.0.0.2]")) == "ok inside"
    assert sides.inside.connections == 2


async def test_the_system_resolver_turns_hex_forms_into_the_address_and_is_refused(
    sides: Sides,
) -> None:
    async with client(sides, network=DENY_INSIDE, dns=DNS(resolver="system")) as c:
        for host in ("0x7f000002", "0x7f.0.0.2", "0x7f.2"):
            assert await outcome(c, sides.url("/", host)) in ("blocked_address", "dns_error")
    assert sides.inside.connections == 0


async def test_the_message_names_the_address_and_the_rule_and_it_is_not_retried(
    sides: Sides,
) -> None:
    async with client(sides, network=DENY_INSIDE, retry=RetryPolicy(retries=3)) as c:
        with pytest.raises(BlockedAddressError) as info:
            await c.get(sides.url("/x", "inside.test"))
        mapped = await outcome(c, sides.url("/", "[::ffff:127.0.0.2]"))
    assert (
        info.value.message == f"blocked 127.0.0.2:{sides.port} (inside.test): --deny 127.0.0.2/32"
    )
    assert info.value.attempts == 1
    assert mapped == "blocked_address"
    assert sides.inside.connections == 0


async def test_a_name_with_an_inside_and_an_outside_address_connects_outside_only(
    sides: Sides,
) -> None:
    async with client(sides, network=DENY_INSIDE) as c:
        for _ in range(3):
            assert await outcome(c, sides.url("/ok", "both.test")) == "ok outside"
    assert sides.inside.connections == 0


async def test_dns_rebinding_is_refused_on_the_new_connection(sides: Sides) -> None:
    # rebind.test answers 127.0.0.1, then 127.0.0.2, ... with TTL 0; /ok closes the
    # connection, so every request resolves and connects anew.
    async with client(sides, network=DENY_INSIDE) as c:
        got = [await outcome(c, sides.url("/ok", "rebind.test")) for _ in range(4)]
    assert got == ["ok outside", "blocked_address", "ok outside", "blocked_address"]
    assert sides.dns.queries("rebind.test") >= 4
    assert sides.inside.connections == 0


async def test_block_private_with_an_allowed_exception(sides: Sides) -> None:
    policy = NetworkPolicy(rules=("allow 127.0.0.1",), block_private=True)
    async with client(sides, network=policy) as c:
        assert await outcome(c, sides.url("/ok")) == "ok outside"
        with pytest.raises(BlockedAddressError) as info:
            await c.get(sides.url("/", "inside.test"))
        assert await outcome(c, sides.redirect(sides.url("/", "127.0.0.2"))) == "blocked_address"
    assert info.value.message.endswith("--block-private (127.0.0.2 is loopback)")
    assert sides.inside.connections == 0


async def test_a_host_name_rule_allows_a_private_name_and_denies_before_dns(
    sides: Sides,
) -> None:
    policy = NetworkPolicy(rules=("deny evil.test", "allow inside.test"), block_private=True)
    async with client(sides, network=policy) as c:
        assert await outcome(c, sides.url("/", "inside.test")) == "ok inside"
        with pytest.raises(BlockedAddressError) as info:
            await c.get(sides.url("/", "evil.test"))
        assert await outcome(c, sides.url("/ok")) == "blocked_address"
    assert info.value.message == "blocked evil.test: --deny evil.test"
    assert sides.dns.queries("evil.test") == 0  # refused before any lookup
    assert sides.inside.connections == 1


async def test_cloud_metadata_addresses_are_denied_by_default() -> None:
    # Nothing is sent: the policy refuses before the socket exists.
    async with Client(retry=NO_RETRY, timeouts=QUICK) as c:
        for url in (
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fd00:ec2::254]/",
            "http://169.254.170.2/v2/credentials",
        ):
            with pytest.raises(BlockedAddressError) as info:
                await c.get(url)
            assert "cloud metadata address, denied by default" in info.value.message


def test_the_order_of_the_rules() -> None:
    meta = "169.254.169.254"
    assert NetworkPolicy().blocked(None, meta) is not None
    assert NetworkPolicy(rules=(f"allow {meta}",)).blocked(None, meta) is None
    assert NetworkPolicy(rules=("allow 169.254.0.0/16",)).blocked(None, meta) is None
    # A name rule does not open a metadata address (the name may be anyone's).
    assert NetworkPolicy(rules=("allow *.test",)).blocked("a.test", meta) is not None
    # First match wins.
    first_allow = NetworkPolicy(rules=("allow 10.0.0.0/8", "deny 10.1.2.3"))
    first_deny = NetworkPolicy(rules=("deny 10.1.2.3", "allow 10.0.0.0/8"))
    assert first_allow.blocked(None, "10.1.2.3") is None
    assert first_deny.blocked(None, "10.1.2.3") == "--deny 10.1.2.3"
    private = NetworkPolicy(block_private=True)
    for address in (
        "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1", "169.254.1.1", "127.0.0.1",
        "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fc00::1", "fd12::1",
        "fe80::1%lo", "ff02::1", "::ffff:10.0.0.1", "2002:a00:1::", "64:ff9b::a00:1",
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo for 10.0.0.1
    ):  # fmt: skip
        assert private.blocked(None, address) is not None, address
    for address in ("8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"):
        assert private.blocked(None, address) is None, address


def test_embedded_ipv4_addresses() -> None:
    import ipaddress

    for text, inner in (
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("::1.2.3.4", "1.2.3.4"),
        ("::ffff:0:1.2.3.4", "1.2.3.4"),
        ("64:ff9b::102:304", "1.2.3.4"),
        ("2002:102:304::1", "1.2.3.4"),
        ("2001:0:4136:e378:8000:63bf:fefd:fcfb", "1.2.3.4"),
    ):
        got = embedded_ipv4(ipaddress.IPv6Address(text))
        assert str(got) == inner, text
    for text in ("::1", "::", "2606:4700::1111", "fe80::1"):
        assert embedded_ipv4(ipaddress.IPv6Address(text)) is None


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("deny 10.0.0.1/8", "did you mean 10.0.0.0/8?"),
        ("deny 300.1.1.1", "not an address or CIDR"),
        ("block 10.0.0.0/8", "expected 'allow PATTERN' or 'deny PATTERN'"),
        ("deny a b", "not a CIDR, an address or a host name pattern"),
    ],
)
def test_bad_rules_say_what_is_wrong(rule: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        NetworkPolicy(rules=(rule,))


async def test_the_command_keeps_the_order_of_allow_and_deny(sides: Sides, tmp_path: Path) -> None:
    src = write_lines(tmp_path / "u.txt", [sides.url("/ok"), sides.url("/", "inside.test")])
    common = ["--workers", "1", "--retries", "0", "--dns-servers", sides.dns.servers[0]]
    code, _, err = await surefetch(
        "fetch", str(src), "-o", str(tmp_path / "a.jsonl"), *common,
        "--deny", "127.0.0.2", "--allow", "127.0.0.0/8",
    )  # fmt: skip
    assert code == 0, err
    kinds = {r["url"]: (r["error"] or {}).get("kind") for r in records(tmp_path / "a.jsonl")}
    assert kinds == {sides.url("/ok"): None, sides.url("/", "inside.test"): "blocked_address"}
    assert sides.inside.connections == 0
    code, _, err = await surefetch(
        "fetch", str(src), "-o", str(tmp_path / "b.jsonl"), *common,
        "--allow", "127.0.0.0/8", "--deny", "127.0.0.2",
    )  # fmt: skip
    assert code == 0, err
    assert all(r["ok"] for r in records(tmp_path / "b.jsonl"))
    assert sides.inside.connections == 1


async def test_the_policy_reaches_worker_processes(sides: Sides, tmp_path: Path) -> None:
    urls = [sides.url(f"/ok?{i}") for i in range(4)] + [
        sides.url(f"/?{i}", "inside.test") for i in range(4)
    ]
    src = write_lines(tmp_path / "u.txt", urls)
    code, _, err = await surefetch(
        "fetch", str(src), "-o", str(tmp_path / "o.jsonl"), "--workers", "2",
        "--dns-servers", sides.dns.servers[0], "--block-private", "--allow", "outside.test",
        "--allow", "127.0.0.1",
    )  # fmt: skip
    assert code == 0, err
    kinds = sorted((r["error"] or {}).get("kind") or "ok" for r in records(tmp_path / "o.jsonl"))
    assert kinds == ["blocked_address"] * 4 + ["ok"] * 4
    assert sides.inside.connections == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--deny", "10.0.0.1/8"], "did you mean 10.0.0.0/8?"),
        (["--proxy", "socks5://127.0.0.1:1080", "--deny", "10.0.0.0/8"], "SOCKS proxy"),
        (["--proxy", "socks5://127.0.0.1:1080", "--block-private"], "SOCKS proxy"),
        (["--proxy", "ftp://127.0.0.1:21"], "is not one of http, https"),
        (["--proxy", "http://u:hunter2@127.0.0.1:1", "--proxy-from-env"], "not both"),
        (["--key", "{key}"], "--key needs --cert"),
    ],
)
async def test_bad_security_options_are_one_usage_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    key = tmp_path / "k.pem"
    key.write_text("x")
    src = write_lines(tmp_path / "u.txt", ["http://127.0.0.1:1/"])
    args = [a.replace("{key}", str(key)) for a in args]
    code, _, err = await surefetch("fetch", str(src), "-o", str(tmp_path / "o.jsonl"), *args)
    assert code == 2, err
    assert err.count("\n") == 1 and message in err, err
    assert "hunter2" not in err
    assert not (tmp_path / "o.jsonl").exists()


# -- credentials stay with their origin ----------------------------------------------


async def test_headers_go_to_the_origin_and_same_origin_redirects_only(sides: Sides) -> None:
    other = sides.url("/headers", "127.0.0.3")
    async with client(sides, headers={"X-Api-Key": "k-client"}) as c:
        row = {"X-Row-Token": "k-row", "Accept": "text/plain"}
        await c.get(sides.redirect("/headers"), headers=row)  # same origin
        await c.get(sides.redirect(other), headers=row)  # another origin
        # There and back: once the chain has left the origin, they stay behind.
        await c.get(sides.redirect(sides.redirect(sides.url("/headers"), "127.0.0.3")), headers=row)
    same, back = sides.seen("127.0.0.1")
    (cross,) = sides.seen("127.0.0.3")
    assert same["X-Api-Key"] == "k-client" and same["X-Row-Token"] == "k-row"
    for leaked in ("X-Api-Key", "X-Row-Token", "Authorization"):
        assert leaked not in cross and leaked not in back
    assert cross["Accept"] == "text/plain"  # not a credential: it follows


async def test_url_credentials_are_never_sent_to_another_origin(sides: Sides) -> None:
    other = sides.url("/headers", "127.0.0.3")
    base = f"http://bob:s3cret@127.0.0.1:{sides.port}"
    async with client(sides) as c:
        await c.get(f"{base}/redirect?to=%2Fheaders")
        await c.get(f"{base}/redirect?to={quote(other, safe='')}")
    (same,) = sides.seen("127.0.0.1")
    (cross,) = sides.seen("127.0.0.3")
    assert same["Authorization"] == "Basic " + base64.b64encode(b"bob:s3cret").decode()
    assert "Authorization" not in cross


async def test_netrc_is_used_for_the_hosts_it_names_never_its_default(
    sides: Sides, tmp_path: Path
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password wonder\ndefault login d password dd\n")
    netrc.chmod(0o600)
    async with client(sides, netrc=str(netrc)) as c:
        await c.get(sides.url("/headers"))
        await c.get(sides.url("/headers", "127.0.0.3"))  # not named: not even the default
        await c.get(sides.redirect(sides.url("/headers", "127.0.0.3")))
    (named,) = sides.seen("127.0.0.1")
    assert named["Authorization"] == "Basic " + base64.b64encode(b"alice:wonder").decode()
    assert all("Authorization" not in h for h in sides.seen("127.0.0.3"))


async def test_netrc_file_reaches_worker_processes(sides: Sides, tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password wonder\n")
    src = write_lines(tmp_path / "u.txt", [sides.url(f"/headers?quiet&{i}") for i in range(4)])
    code, _, err = await surefetch(
        "fetch", str(src), "-o", str(tmp_path / "o.jsonl"), "--workers", "2",
        "--netrc-file", str(netrc),
    )  # fmt: skip
    assert code == 0, err
    basic = "Basic " + base64.b64encode(b"alice:wonder").decode()
    assert [h.get("Authorization") for h in sides.seen("127.0.0.1")] == [basic] * 4


async def test_hosts_file_headers_stay_with_their_host(sides: Sides, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[[host]]\nmatch = "127.0.0.1"\nheaders = { "X-Api-Key" = "k-hosts" }\n')
    src = write_lines(
        tmp_path / "u.txt",
        [sides.url("/headers"), sides.redirect(sides.url("/headers", "127.0.0.3"))],
    )
    code, _, err = await surefetch(
        "fetch", str(src), "-o", str(tmp_path / "o.jsonl"), "--workers", "1",
        "--hosts", str(hosts), "-H", "X-Cli: k-cli",
    )  # fmt: skip
    assert code == 0, err
    (named,) = sides.seen("127.0.0.1")
    (cross,) = sides.seen("127.0.0.3")
    assert named["X-Api-Key"] == "k-hosts" and named["X-Cli"] == "k-cli"
    assert "X-Api-Key" not in cross and "X-Cli" not in cross


# -- cookies -------------------------------------------------------------------------


async def test_cookies_are_off_by_default_and_per_host_keeps_them_to_their_host(
    sides: Sides,
) -> None:
    async with client(sides) as c:
        await c.get(sides.url("/set-cookie"))
        await c.get(sides.url("/headers"))
    assert "Cookie" not in sides.seen("127.0.0.1")[0]
    sides.headers.clear()
    async with client(sides, cookies="per-host") as c:
        # A Domain cookie does not widen it either.
        await c.get(sides.url("/set-cookie?domain=127.0.0.1"))
        await c.get(sides.url("/headers"))
        await c.get(sides.url("/headers", "127.0.0.3"))
        # A Domain cookie of outside.test does not reach another host of the domain.
        await c.get(sides.url("/set-cookie?domain=outside.test", "outside.test"))
        await c.get(sides.url("/headers", "outside.test"))
        await c.get(sides.url("/headers", "www.outside.test"))
    ((first,), (host,)) = sides.seen("127.0.0.1"), sides.seen("outside.test")
    (sub,) = sides.seen("www.outside.test")
    assert first["Cookie"] == "session=c00kie" and host["Cookie"] == "session=c00kie"
    assert "Cookie" not in sub
    assert "Cookie" not in sides.seen("127.0.0.3")[0]


async def test_the_per_host_jar_is_bounded() -> None:
    jar = PerHostCookieJar(max_hosts=2, per_host=3)
    for host in ("a.test", "b.test", "c.test"):
        for n in range(5):
            jar.update_cookies({f"c{n}": "v"}, URL(f"http://{host}/"))
    assert jar.hosts == 2 and len(jar) == 6
    assert not jar.filter_cookies(URL("http://a.test/"))  # the oldest host left
    assert set(jar.filter_cookies(URL("http://c.test/"))) == {"c0", "c1", "c2"}


# -- TLS -----------------------------------------------------------------------------


async def test_cacert_trusts_a_private_ca(tmp_path: Path) -> None:
    async with TLSServer() as server:
        ca = server.ca_file(str(tmp_path))
        async with Client(retry=NO_RETRY, timeouts=QUICK, ssl=TLS(cacert=ca)) as c:
            assert (await c.get(server.url())).text() == "secure"
        async with Client(retry=NO_RETRY, timeouts=QUICK) as c:
            assert await outcome(c, server.url()) == "tls_error"
        src = write_lines(tmp_path / "u.txt", [server.url()])
        code, _, err = await surefetch(
            "fetch", str(src), "-o", str(tmp_path / "o.jsonl"), "--workers", "2", "--cacert", ca
        )
        assert code == 0, err
        assert [r["ok"] for r in records(tmp_path / "o.jsonl")] == [True]


async def test_mutual_tls_needs_the_client_certificate(tmp_path: Path) -> None:
    async with TLSServer(client_cert=True) as server:
        ca = server.ca_file(str(tmp_path))
        cert, key = server.client_files(str(tmp_path))
        async with Client(retry=NO_RETRY, timeouts=QUICK, ssl=TLS(cacert=ca)) as c:
            refused = await outcome(c, server.url())
        with_cert = TLS(cacert=ca, cert=cert, key=key)
        async with Client(retry=NO_RETRY, timeouts=QUICK, ssl=with_cert) as c:
            assert (await c.get(server.url())).text() == "secure"
        assert refused != "ok secure"
        assert server.requests == 1
        src = write_lines(tmp_path / "u.txt", [server.url("/cli")])
        code, _, err = await surefetch(
            "fetch", str(src), "-o", str(tmp_path / "o.jsonl"), "--workers", "1",
            "--cacert", ca, "--cert", cert, "--key", key,
        )  # fmt: skip
        assert code == 0, err
        assert [r["ok"] for r in records(tmp_path / "o.jsonl")] == [True]


async def test_tls_min_refuses_an_older_server(tmp_path: Path) -> None:
    async with TLSServer(tls_max=ssl.TLSVersion.TLSv1_2) as server:
        ca = server.ca_file(str(tmp_path))
        async with Client(retry=NO_RETRY, timeouts=QUICK, ssl=TLS(cacert=ca)) as c:
            assert await outcome(c, server.url()) == "ok secure"
        async with Client(
            retry=NO_RETRY, timeouts=QUICK, ssl=TLS(cacert=ca, min_version="1.3")
        ) as c:
            with pytest.raises(FetchError) as info:
                await c.get(server.url())
        assert info.value.kind == "tls_error"
        assert server.requests == 1  # only the first client's


async def test_insecure_is_warned_once_and_stated_in_the_summary(tmp_path: Path) -> None:
    async with TLSServer() as server:
        src = write_lines(tmp_path / "u.txt", [server.url(f"/{i}") for i in range(3)])
        summary = tmp_path / "summary.json"
        code, _, err = await surefetch(
            "fetch", str(src), "-o", str(tmp_path / "o.jsonl"), "--workers", "2",
            "--insecure", "--summary-json", str(summary),
        )  # fmt: skip
    assert code == 0, err
    assert all(r["ok"] for r in records(tmp_path / "o.jsonl"))
    assert err.count("--insecure: TLS certificates are not verified") == 1
    assert "TLS certificates were not verified (--insecure)" in err
    assert json.loads(summary.read_text())["tls_verified"] is False


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CA file not found"):
        TLS(cacert=str(tmp_path / "nope.pem")).context()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ValueError, match="cannot load"):
        TLS(cacert=str(bad)).context()
    with pytest.raises(ValueError, match="min_version"):
        TLS(min_version="1.1")


# -- proxies -------------------------------------------------------------------------


class ForwardProxy(_Server):
    """An HTTP forward proxy on 127.0.0.1: an absolute-form request is forwarded (and
    the connection closed after it), CONNECT is tunnelled. Keeps every request head."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1")
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await self._read_head(reader)
        self.seen.append((request.method, request.target, request.headers))
        if request.method == "CONNECT":
            host, _, port = request.target.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            target = urlsplit(request.target)
            up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
            lines = [f"{request.method} {target.path}?{target.query} HTTP/1.1"]
            lines += [f"{k}: {v}" for k, v in request.headers.items() if not k.startswith("proxy-")]
            up_writer.write(("\r\n".join(lines) + "\r\nconnection: close\r\n\r\n").encode())
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
            with contextlib.suppress(OSError):
                await up_writer.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    server = ForwardProxy()
    await server.start()
    yield server
    await server.aclose()


async def test_a_proxy_sees_the_requests_with_its_credentials_only(
    sides: Sides, proxy: ForwardProxy, tmp_path: Path
) -> None:
    proxied = Proxies(http=f"http://pat:pr0xy@127.0.0.1:{proxy.port}")
    async with client(sides, proxy=proxied, headers={"X-Api-Key": "k"}) as c:
        assert await outcome(c, sides.url("/ok")) == "ok outside"
    ((method, target, headers),) = proxy.seen
    assert (method, target) == ("GET", sides.url("/ok"))
    assert headers["proxy-authorization"] == "Basic " + base64.b64encode(b"pat:pr0xy").decode()
    # HTTPS goes through CONNECT, which carries nothing meant for the origin.
    async with TLSServer() as server:
        ca = server.ca_file(str(tmp_path))
        tunnel = Proxies(https=f"http://pat:pr0xy@127.0.0.1:{proxy.port}")
        async with client(sides, proxy=tunnel, ssl=TLS(cacert=ca), headers={"X-Api-Key": "k"}) as c:
            assert await outcome(c, server.url("/s")) == "ok secure"
    method, target, headers = proxy.seen[1]
    assert (method, target) == ("CONNECT", f"127.0.0.1:{server.port}")
    assert "x-api-key" not in headers and "proxy-authorization" in headers


async def test_proxy_from_env_honours_no_proxy_with_cidrs_on_every_hop(
    sides: Sides, proxy: ForwardProxy, tmp_path: Path
) -> None:
    src = write_lines(
        tmp_path / "u.txt",
        [
            sides.url("/ok?via"),
            sides.url("/ok?direct", "127.0.0.3"),
            sides.redirect(sides.url("/ok?hop", "127.0.0.3")),
            sides.redirect(sides.url("/ok?back"), "127.0.0.3"),
        ],
    )
    env = {
        **os.environ,
        "HTTP_PROXY": f"http://127.0.0.1:{proxy.port}",
        "NO_PROXY": "example.invalid,127.0.0.2/31",
    }
    proc = await asyncio.create_subprocess_exec(
        *__import__("tests.helpers", fromlist=["SUREFETCH"]).SUREFETCH,
        "fetch", str(src), "-o", str(tmp_path / "o.jsonl"), "--workers", "1",
        "--proxy-from-env",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert all(r["ok"] for r in records(tmp_path / "o.jsonl"))
    targets = sorted(str(URL(target, encoded=True)) for _, target, _ in proxy.seen)
    # The redirect hop to 127.0.0.3 went direct, the one from it through the proxy:
    # the choice is made again on every hop.
    expected = [
        sides.url("/ok?via"),
        sides.redirect(sides.url("/ok?hop", "127.0.0.3")),
        sides.url("/ok?back"),
    ]
    assert targets == sorted(str(URL(u)) for u in expected)


async def test_hosts_file_proxies_per_host(
    sides: Sides, proxy: ForwardProxy, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        f'[[host]]\nmatch = "127.0.0.3"\nproxy = "http://127.0.0.1:{proxy.port}"\n'
        '[[host]]\nmatch = "*"\nproxy = "direct"\n'
    )
    src = write_lines(
        tmp_path / "u.txt", [sides.url("/ok?direct"), sides.url("/ok?via", "127.0.0.3")]
    )
    code, _, err = await surefetch(
        "fetch", str(src), "-o", str(tmp_path / "o.jsonl"), "--workers", "2", "--hosts", str(hosts)
    )
    assert code == 0, err
    assert all(r["ok"] for r in records(tmp_path / "o.jsonl"))
    assert [target for _, target, _ in proxy.seen] == [sides.url("/ok?via", "127.0.0.3")]


class Socks5(_Server):
    """A SOCKS5 proxy on 127.0.0.1 (RFC 1928, with user/password auth, RFC 1929):
    keeps each CONNECT's destination and the credentials it was given."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1")
        self.seen: list[tuple[str, int]] = []
        self.logins: list[tuple[str, str]] = []

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if 2 in methods:
            writer.write(b"\x05\x02")
            _, size = await reader.readexactly(2)
            user = (await reader.readexactly(size)).decode()
            (size,) = await reader.readexactly(1)
            self.logins.append((user, (await reader.readexactly(size)).decode()))
            writer.write(b"\x01\x00")
        else:
            writer.write(b"\x05\x00")
        _version, _command, _, kind = await reader.readexactly(4)
        if kind == 1:
            host = socket.inet_ntoa(await reader.readexactly(4))
        elif kind == 4:
            host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
        else:
            (size,) = await reader.readexactly(1)
            host = (await reader.readexactly(size)).decode()
        port = int.from_bytes(await reader.readexactly(2), "big")
        self.seen.append((host, port))
        if host.endswith(".test"):
            host = "127.0.0.1"  # the proxy resolves names (socks5h)
        up_reader, up_writer = await asyncio.open_connection(host, port)
        writer.write(b"\x05\x00\x00\x01" + bytes(6))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
            with contextlib.suppress(OSError):
                await up_writer.wait_closed()


async def test_a_socks5_proxy_connects_for_us(sides: Sides) -> None:
    socks = Socks5()
    await socks.start()
    try:
        local = Proxies(http=f"socks5://sam:s0cks@127.0.0.1:{socks.port}")
        async with client(sides, proxy=local) as c:
            assert await outcome(c, sides.url("/ok", "outside.test")) == "ok outside"
            # The metadata address is refused before the proxy hears of it.
            assert await outcome(c, "http://169.254.169.254/") == "blocked_address"
        remote = Proxies(http=f"socks5h://127.0.0.1:{socks.port}")
        async with client(sides, proxy=remote) as c:
            assert await outcome(c, sides.url("/ok", "outside.test")) == "ok outside"
    finally:
        await socks.aclose()
    # socks5: the name resolved here; socks5h: the proxy got the name.
    assert socks.seen == [("127.0.0.1", sides.port), ("outside.test", sides.port)]
    assert socks.logins == [("sam", "s0cks")]
    with pytest.raises(ValueError, match="SOCKS proxy"):
        Client(proxy=local, network=DENY_INSIDE)


def test_no_proxy_entries() -> None:
    proxies = Proxies(
        http="http://p:1",
        https="http://p:2",
        no_proxy=("corp.example", ".inner", "10.0.0.0/8", "[::1]", "h:8080"),
    )
    direct = [
        "http://corp.example/", "http://a.corp.example/", "http://x.inner/", "http://10.2.3.4/",
        "http://[::1]/", "http://h:8080/",
    ]  # fmt: skip
    via = ["http://notcorp.example/", "http://11.0.0.1/", "http://h:8081/", "https://other/"]
    assert [proxies.choose(URL(u)) for u in direct] == [None] * len(direct)
    assert [str(proxies.choose(URL(u))) for u in via] == [
        "http://p:1", "http://p:1", "http://p:1", "http://p:2"
    ]  # fmt: skip
    assert Proxies(http="http://p:1", no_proxy=("*",)).choose(URL("http://a/")) is None
    choice = parse_proxy("user:pw@proxy.example:3128")
    assert str(choice) == "http://proxy.example:3128" and (choice.login, choice.password) == (
        "user",
        "pw",
    )


# -- secrets -------------------------------------------------------------------------


async def test_the_resume_hint_keeps_the_rule_order_and_masks_the_proxy(
    server: Server, proxy: ForwardProxy, tmp_path: Path
) -> None:
    src = write_lines(tmp_path / "in.txt", (server.url(f"/sleep/1?i={i}") for i in range(20)))
    out = tmp_path / "o.jsonl"
    proc = await spawn(
        "fetch", str(src), "-o", str(out), "--workers", "1",
        "--deny", "127.0.0.2", "--allow", "127.0.0.0/8", "--deny", "10.0.0.0/8",
        "--proxy", f"puser:PSECRET@127.0.0.1:{proxy.port}",
    )  # fmt: skip
    await wait_for_requests(server.tracker, 1, 20)
    proc.send_signal(signal.SIGINT)
    _, raw = await asyncio.wait_for(proc.communicate(), 20)
    err = raw.decode()
    assert proc.returncode == 130, err
    assert "PSECRET" not in err
    hint = err.split("run the same command again:\n", 1)[1].splitlines()[0].strip()
    assert hint == (
        f"surefetch fetch {src} --output {out} --workers 1 --deny 127.0.0.2"
        f" --allow 127.0.0.0/8 --deny 10.0.0.0/8 --proxy '***@127.0.0.1:{proxy.port}'"
    )


async def test_secrets_appear_in_no_output(
    sides: Sides, proxy: ForwardProxy, tmp_path: Path
) -> None:
    secrets = ("HDRSECRET", "PROXYSECRET", "URLSECRET", "ROWSECRET")
    src = tmp_path / "u.jsonl"
    rows = [
        {"url": sides.url("/ok?1")},
        {"url": f"http://user:URLSECRET@127.0.0.1:{sides.port}/headers?quiet"},
        {"url": f"http://user:URLSECRET@127.0.0.1:{sides.port}/redirect?to=%2Fnowhere"},
        {"url": sides.url("/headers?quiet"), "headers": {"Authorization": "Bearer ROWSECRET"}},
        {"url": "http://user:URLSECRET@127.0.0.1:1/refused"},
        {"url": f"http://user:URLSECRET@127.0.0.2:{sides.port}/blocked"},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, summary = tmp_path / "o.jsonl", tmp_path / "summary.json"
    code, stdout, stderr = await surefetch(
        "fetch", str(src), "-o", str(out), "--workers", "1", "--retries", "0",
        "-H", "X-Api-Key: HDRSECRET", "--proxy", f"http://puser:PROXYSECRET@127.0.0.1:{proxy.port}",
        "--deny", "127.0.0.2", "--log-level", "debug", "--log-format", "json",
        "--summary-json", str(summary),
    )  # fmt: skip
    assert code == 0, stderr
    assert len(records(out)) == len(rows)
    assert any(
        json.loads(line).get("level") == "debug"
        for line in stderr.splitlines()
        if line.startswith("{")
    )
    report = tmp_path / "report.html"
    rcode, rout, rerr = await surefetch("report", str(out), "-o", str(report))
    assert rcode == 0, rerr
    texts = {
        "stdout": stdout, "stderr": stderr, "records": out.read_text(),
        "summary": summary.read_text(), "report": report.read_text(),
        "report output": rout + rerr,
    }  # fmt: skip
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"{secret} in {where}"
    # They did go where they belong.
    assert any(h.get("x-api-key") == "HDRSECRET" for h in sides.seen("127.0.0.1"))
    assert any("proxy-authorization" in h for _, _, h in proxy.seen)
