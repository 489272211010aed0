"""The internet-like benchmark (issue 10): thousands of host names, slow DNS, slow answers.

A DNS server written here (answers built by hand, checked against dnslib) answers
every ``*.test`` name with 127.0.0.1 (TTL 300 s) after 30 ms, each query on a timer of
its own, so any number at once; an HTTP server (aiohttp, in a process of its own)
answers every request after 50 ms with a short body.

As root, both servers and every contender run in a private network namespace
(``ip netns add sfbench-<pid>``) whose ``/etc/netns/<name>/resolv.conf`` names that DNS
server on 127.0.0.1:53: the C library's resolver, c-ares and surefetch all take it
for the system's. The namespace and its folder are deleted on the way out, also on
Ctrl-C or SIGTERM (and a run killed outright leaves one that the next run deletes).
Not as root (or with ``--loopback``), the DNS server listens on a high port of
127.0.0.1 and the contenders are pointed at it: surefetch with ``--dns-servers``, the
hand loop's aiodns with ``nameservers``. The threaded resolver (``getaddrinfo``)
cannot be given another server or port, so that contender is skipped there.

Two scenarios, in interleaved rounds (medians reported):

- many hosts: 2,000 host names x 3 URLs (``http://h{i}.test:PORT/{j}``), shuffled,
  ``--concurrency 512 --per-host 8``: surefetch with its defaults otherwise (``--no-body
  -q``), and the hand-written aiohttp + uvloop loop (bench/baseline_aiohttp.py: one
  session, ``TCPConnector(limit=512, limit_per_host=8)``, 512 workers on a bounded
  queue) with the threaded resolver, and with ``aiohttp.AsyncResolver`` (aiodns);
- one host: 6,000 URLs on one name, 512 per host: surefetch (``--adaptive``, its
  default), surefetch ``--no-adaptive`` and the hand loop. The best of the three is
  the ceiling of this server and machine; every row is given as a share of it.

Every output is checked (one record per URL, every URL once, all status 200 with the
server's body or its SHA-256), so a broken contender cannot look fast. A run whose
only failures are DNS errors is done again, once, and said so (see DNSFailures).

Besides URLs/s, each run reports what the servers saw: the DNS queries (and the most
waiting at once: how concurrent the contender's resolver is), UDP datagrams dropped
for a full socket buffer (and whether at the DNS server or the contender), the
requests the HTTP server got, when the first one arrived after the launch (start-up)
and the server's CPU (is it the bottleneck?).

    python bench/internet.py --rounds 2          # what `make bench` runs, on its own
    python bench/internet.py --rounds 1 --hosts 500 --one-host-urls 2000   # quick look
    python bench/internet.py --loopback          # the non-root set-up, also as root

Results: bench/results/internet.json (and a time-stamped copy); ``bench/run.py
--internet`` runs the same as a section of its report.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness
from harness import BenchError, markdown_table, run_measured
from servers import free_port

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
BASELINE = BENCH / "baseline_aiohttp.py"

#: What the HTTP server answers to every request.
BODY = b"surefetch internet benchmark: ok\n"
BODY_TEXT = BODY.decode("ascii")
BODY_SHA256 = hashlib.sha256(BODY).hexdigest()

NETNS_PREFIX = "sfbench-"
NETNS_DIR = Path("/etc/netns")
#: Inside the namespace every port is free.
NETNS_HTTP_PORT = 8080
NETNS_DNS_PORT = 53

#: The one-host scenario's host name.
ONE_HOST = "one.test"
#: Most seconds one contender's run may take (it is stopped and the section fails).
RUN_TIMEOUT = 240.0
#: Most seconds to wait before each run for other processes to go idle (these runs
#: wait on DNS and the server more than on the CPU, and there are a dozen of them).
QUIET_WAIT = 5.0
CONCURRENCY = 512


# -- the servers (each runs as ``internet.py --serve-...`` in a process of its own) ----


def _event_loop_runner() -> Any:
    import asyncio

    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


_A_LOCALHOST = b"\x00\x01\x00\x01"  # type A, class IN
_OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"  # EDNS0, 1232 bytes, no options


def dns_answer(data: bytes, ttl: int) -> tuple[bytes, str] | None:
    """The answer to the DNS query ``data`` and its kind (``a``, ``aaaa``, ``other``,
    ``nxdomain``), built by hand (a few µs; dnslib takes ~70 µs a query, which in a
    burst of 1,000 queries adds 70 ms to the last answer); None when the query is not
    a plain one-question query, for :func:`dnslib_answer` to deal with.

    Every ``*.test`` A query gets 127.0.0.1; other types under .test an empty NOERROR
    answer; other names NXDOMAIN. An EDNS query gets an OPT record back."""
    if len(data) < 17 or data[2] & 0xFE or data[4:10] != b"\x00\x01\x00\x00\x00\x00":
        return None  # a response, another opcode, not one question, or answers in it
    end = 12
    while (length := data[end]) != 0:
        if length & 0xC0 or end + length + 1 >= len(data):
            return None
        end += length + 1
    question_end = end + 5
    if question_end > len(data):
        return None
    name_end = data[max(12, end - 5) : end + 1].lower()
    qtype = data[end + 1 : end + 3]
    edns = data[10:12] != b"\x00\x00"
    flags = bytes((0x84 | (data[2] & 0x01), 0x80))  # QR AA (RD as asked), RA, NOERROR
    answer = b""
    if end - 12 <= 5 or name_end != b"\x04test\x00":
        kind, flags = "nxdomain", bytes((flags[0], 0x83))
    elif qtype == b"\x00\x01":
        kind = "a"
        answer = b"\xc0\x0c" + _A_LOCALHOST + ttl.to_bytes(4, "big") + b"\x00\x04\x7f\x00\x00\x01"
    else:
        kind = "aaaa" if qtype == b"\x00\x1c" else "other"
    counts = b"\x00\x01" + (b"\x00\x01" if answer else b"\x00\x00") + b"\x00\x00"
    counts += b"\x00\x01" if edns else b"\x00\x00"
    packet = data[:2] + flags + counts + data[12:question_end] + answer
    return (packet + _OPT if edns else packet), kind


def dnslib_answer(data: bytes, ttl: int) -> tuple[bytes, str] | None:
    """What :func:`dns_answer` does, through dnslib, for any query (None: unparsable)."""
    from dnslib import QTYPE, RCODE, RR, A, DNSRecord

    try:
        request = DNSRecord.parse(data)
        question = request.q
        name = str(question.qname).rstrip(".").lower()
    except Exception:
        return None
    reply = request.reply()
    if name.endswith(".test"):
        if question.qtype == QTYPE.A:
            kind = "a"
            reply.add_answer(RR(question.qname, QTYPE.A, ttl=ttl, rdata=A("127.0.0.1")))
        else:
            kind = "aaaa" if question.qtype == QTYPE.AAAA else "other"
    else:
        kind = "nxdomain"
        reply.header.rcode = RCODE.NXDOMAIN
    return reply.pack(), kind


def check_dns_answer() -> None:
    """Check :func:`dns_answer` against dnslib on the queries it will get (glibc's,
    c-ares's with EDNS), so that a mistake in the hand-built answers shows at once."""
    from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

    for name, qtype, edns, want in (
        ("h1.test", "A", False, ["127.0.0.1"]),
        ("H1999.Test", "A", True, ["127.0.0.1"]),
        ("one.test", "AAAA", True, []),
        ("one.test", "MX", False, []),
        ("example.com", "A", True, None),
        ("test", "A", False, None),
    ):
        query = DNSRecord.question(name, qtype)
        if edns:
            query.add_ar(EDNS0(udp_len=1232))
        built = dns_answer(query.pack(), 300)
        assert built is not None, name
        reply = DNSRecord.parse(built[0])
        assert reply.header.id == query.header.id and reply.header.qr == 1, name
        assert reply.q == query.q, name
        if want is None:
            assert reply.header.rcode == RCODE.NXDOMAIN and not reply.rr, name
        else:
            assert reply.header.rcode == RCODE.NOERROR, name
            assert [str(rr.rdata) for rr in reply.rr] == want, name
            assert all(rr.ttl == 300 and rr.rtype == QTYPE.A for rr in reply.rr), name
        assert (len(reply.ar) == 1) == edns, name


def serve_dns(host: str, port: int, delay: float, ttl: int, stats_path: Path) -> None:
    """Answer every query (see :func:`dns_answer`) after ``delay`` seconds, each on a
    timer of its own, so that the delay never holds up the next query.

    On SIGUSR1 the counters since the previous SIGUSR1 are written to ``stats_path``
    (as JSON, replaced atomically): queries by kind, those it could not parse
    (``bad``), and the most that were waiting for their answer at once (how
    concurrent the client's resolver is)."""
    import asyncio

    check_dns_answer()
    counts = {"queries": 0, "a": 0, "aaaa": 0, "other": 0, "nxdomain": 0, "bad": 0}
    state = {"seq": 0, "pending": 0, "peak": 0}

    def write_stats() -> None:
        state["seq"] += 1
        _write_stats(stats_path, {"seq": state["seq"], "peak_in_flight": state["peak"], **counts})
        for key in counts:
            counts[key] = 0
        state["peak"] = state["pending"]

    class Protocol(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]
            self.loop = asyncio.get_running_loop()

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            counts["queries"] += 1
            try:
                built = dns_answer(data, ttl) or dnslib_answer(data, ttl)
            except IndexError:
                built = dnslib_answer(data, ttl)
            if built is None:
                counts["bad"] += 1
                return
            packet, kind = built
            counts[kind] += 1
            state["pending"] += 1
            state["peak"] = max(state["peak"], state["pending"])
            self.loop.call_later(delay, self.answer, packet, addr)

        def answer(self, packet: bytes, addr: tuple[str, int]) -> None:
            state["pending"] -= 1
            with contextlib.suppress(OSError):
                self.transport.sendto(packet, addr)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Room for every query of a burst (as root, past net.core.rmem_max).
        force = getattr(socket, "SO_RCVBUFFORCE", None) if os.geteuid() == 0 else None
        sock.setsockopt(socket.SOL_SOCKET, force or socket.SO_RCVBUF, 8 << 20)
        sock.bind((host, port))
        transport, _ = await loop.create_datagram_endpoint(Protocol, sock=sock)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, write_stats)
        write_stats()  # seq 1: listening
        try:
            await stop.wait()
        finally:
            transport.close()

    with _event_loop_runner() as runner:
        runner.run(main())


def _write_stats(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="ascii")
    tmp.replace(path)


def serve_http(host: str, port: int, delay: float, procs: int, stats_path: Path) -> None:
    """``procs`` processes (SO_REUSEPORT on one port), each answering every request
    after ``delay`` seconds with :data:`BODY`.

    Each process N writes ``stats_path``-N once listening and then on every SIGUSR1:
    the requests since the previous SIGUSR1, when the first arrived and when the last
    answer went (``time.monotonic()``, the same clock in every process here)."""
    index = 0
    for i in range(1, procs):
        if os.fork() == 0:
            index = i
            break
    import asyncio

    from aiohttp import web

    counts: dict[str, Any] = {"seq": 0, "requests": 0, "first": None, "last": None}
    mine = Path(f"{stats_path}-{index}")

    def write_stats() -> None:
        counts["seq"] += 1
        _write_stats(mine, counts)
        counts.update(requests=0, first=None, last=None)

    async def handler(request: web.BaseRequest) -> web.Response:
        if not counts["requests"]:
            counts["first"] = time.monotonic()
        counts["requests"] += 1
        await asyncio.sleep(delay)
        counts["last"] = time.monotonic()
        return web.Response(body=BODY, content_type="text/plain")

    async def main() -> None:
        server = web.Server(handler, access_log=None, keepalive_timeout=600)
        runner = web.ServerRunner(server, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=8192, reuse_port=True)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, write_stats)
        write_stats()  # seq 1: listening
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    with _event_loop_runner() as runner:
        runner.run(main())
    if index:
        os._exit(0)


def probe(url: str, dns: str | None) -> None:
    """From where the contenders run: resolve ``url``'s host (through the system's
    resolver, or by asking ``dns`` directly) and GET it; print the times."""
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    name, port = parts.hostname or "", parts.port or 80
    started = time.perf_counter()
    if dns is None:
        addr = socket.getaddrinfo(name, port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    else:
        from dnslib import DNSRecord

        dns_host, _, dns_port = dns.rpartition(":")
        answer = DNSRecord.parse(
            DNSRecord.question(name).send(dns_host, int(dns_port), timeout=5)
        ).short()
        addr = str(answer).split()[0] if answer else ""
    resolved = time.perf_counter()
    if addr != "127.0.0.1":
        raise SystemExit(f"probe: {name} resolved to {addr!r}, not 127.0.0.1")
    request = urllib.request.Request(url.replace(name, addr, 1), headers={"Host": parts.netloc})
    with urllib.request.urlopen(request, timeout=10) as resp:
        body = resp.read()
    done = time.perf_counter()
    if body != BODY:
        raise SystemExit(f"probe: unexpected body from {url}: {body[:80]!r}")
    print(
        f"probe: {name} resolved in {(resolved - started) * 1000:.0f} ms, "
        f"GET in {(done - resolved) * 1000:.0f} ms"
    )


# -- the lab: namespace, servers, how contenders are started -----------------------


def _ask_stats(send: Callable[[], None], paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Signal a server (``send``) and wait until each of ``paths`` has been rewritten
    (its ``seq`` went up); their contents."""
    before = [json.loads(p.read_text())["seq"] for p in paths]
    send()
    deadline = time.monotonic() + 5
    got: list[dict[str, Any] | None] = [None] * len(paths)
    while time.monotonic() < deadline:
        for i, path in enumerate(paths):
            if got[i] is None:
                with contextlib.suppress(OSError, ValueError):
                    data = json.loads(path.read_text())
                    if data["seq"] > before[i]:
                        got[i] = data
        if all(g is not None for g in got):
            return [g for g in got if g is not None]
        time.sleep(0.01)
    raise BenchError(f"a server did not report its counters ({', '.join(p.name for p in paths)})")


def _run(argv: Sequence[str], what: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise BenchError(f"{what} failed ({done.returncode}): {done.stderr.strip()}")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def remove_stale_namespaces() -> list[str]:
    """Delete the ``sfbench-<pid>`` namespaces (and folders) of runs that are gone."""
    ip = shutil.which("ip")
    if ip is None or os.geteuid() != 0:
        return []
    done = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, timeout=30)
    names = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    if NETNS_DIR.is_dir():
        names += [p.name for p in NETNS_DIR.iterdir() if p.name not in names]
    removed = []
    for name in names:
        pid = name.removeprefix(NETNS_PREFIX)
        if not name.startswith(NETNS_PREFIX) or not pid.isdigit():
            continue
        if Path(f"/proc/{pid}").exists() and int(pid) != os.getpid():
            continue  # another benchmark still running
        subprocess.run([ip, "netns", "delete", name], capture_output=True, timeout=30)
        shutil.rmtree(NETNS_DIR / name, ignore_errors=True)
        removed.append(name)
    return removed


@dataclass
class Lab:
    """The DNS and HTTP servers and, as root, the namespace they and the contenders
    run in. :meth:`stop` undoes everything :meth:`start` did, whatever it got to."""

    work: Path
    netns: bool
    dns_delay: float
    http_delay: float
    ttl: int
    http_procs: int
    name: str = ""
    dns_port: int = 0
    http_port: int = 0
    prefix: list[str] = field(default_factory=list)
    dns_proc: subprocess.Popen[bytes] | None = None
    http_proc: subprocess.Popen[bytes] | None = None
    made_netns: bool = False
    made_netns_dir: bool = False
    #: Where surefetch is imported from, if not from the installed package.
    surefetch_src: Path | None = None

    @property
    def dns_stats_path(self) -> Path:
        return self.work / "dns-stats.json"

    @property
    def http_stats_path(self) -> Path:
        return self.work / "http-stats.json"

    def start(self) -> None:
        """Make the namespace (as root), start both servers, probe them."""
        ip = shutil.which("ip") or "ip"
        if self.netns:
            self.name = f"{NETNS_PREFIX}{os.getpid()}"
            _run([ip, "netns", "add", self.name], f"ip netns add {self.name}")
            self.made_netns = True
            self.prefix = [ip, "netns", "exec", self.name]
            _run([*self.prefix, ip, "link", "set", "lo", "up"], "bringing up lo")
            # Loopback only: TIME_WAIT sockets of one round must not starve the next.
            for setting in ("net.ipv4.ip_local_port_range=1024 65000", "net.ipv4.tcp_tw_reuse=1"):
                with contextlib.suppress(BenchError):
                    _run([*self.prefix, "sysctl", "-q", "-w", setting], f"sysctl {setting}")
            self.made_netns_dir = not NETNS_DIR.exists()
            folder = NETNS_DIR / self.name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "resolv.conf").write_text(
                "# surefetch benchmark: the DNS server of bench/internet.py\n"
                "nameserver 127.0.0.1\n",
                encoding="ascii",
            )
            self.dns_port, self.http_port = NETNS_DNS_PORT, NETNS_HTTP_PORT
        else:
            self.dns_port, self.http_port = _free_udp_port(), free_port()
        me = [sys.executable, str(Path(__file__).resolve())]
        self.dns_proc = self._spawn(
            [
                *me,
                "--serve-dns",
                str(self.dns_port),
                "--dns-delay",
                str(self.dns_delay),
                "--ttl",
                str(self.ttl),
                "--stats",
                str(self.dns_stats_path),
            ],
            "dns",
        )
        self.http_proc = self._spawn(
            [
                *me,
                "--serve-http",
                str(self.http_port),
                "--http-delay",
                str(self.http_delay),
                "--http-procs",
                str(self.http_procs),
                "--stats",
                str(self.http_stats_path),
            ],
            "http",
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for proc, what in ((self.dns_proc, "dns"), (self.http_proc, "http")):
                if proc.poll() is not None:
                    log = (self.work / f"{what}.log").read_text(errors="replace")
                    raise BenchError(
                        f"the {what} server exited ({proc.returncode}):\n{log[-2000:]}"
                    )
            files = [self.dns_stats_path, *self._http_files()]
            if all(path.exists() for path in files):
                break
            time.sleep(0.05)
        else:
            raise BenchError("the DNS and HTTP servers did not start within 20 s")
        argv = [*me, "--probe", self.url("h0.test", 0)]
        if not self.netns:
            argv += ["--probe-dns", f"127.0.0.1:{self.dns_port}"]
        done = subprocess.run([*self.prefix, *argv], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise BenchError(f"probe failed: {(done.stderr or done.stdout).strip()[-2000:]}")
        print(f"  {done.stdout.strip()}", flush=True)

    def _spawn(self, argv: list[str], what: str) -> subprocess.Popen[bytes]:
        with (self.work / f"{what}.log").open("wb") as log:
            proc = subprocess.Popen(
                [*self.prefix, *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        harness.LIVE.add(proc)
        return proc

    def url(self, host: str, path: int) -> str:
        return f"http://{host}:{self.http_port}/{path}"

    def describe(self) -> str:
        where = (
            f"network namespace {self.name} (resolv.conf: nameserver 127.0.0.1)"
            if self.netns
            else "127.0.0.1 of this machine (no namespace)"
        )
        return (
            f"{where}; DNS on 127.0.0.1:{self.dns_port} ({self.dns_delay * 1000:.0f} ms, "
            f"TTL {self.ttl} s), HTTP on 127.0.0.1:{self.http_port} "
            f"({self.http_delay * 1000:.0f} ms, {self.http_procs} process(es))"
        )

    def _http_files(self) -> list[Path]:
        return [Path(f"{self.http_stats_path}-{i}") for i in range(self.http_procs)]

    def dns_stats(self) -> dict[str, int]:
        """The DNS server's counters since the previous call (see :func:`serve_dns`)."""
        assert self.dns_proc is not None
        pid = self.dns_proc.pid
        (got,) = _ask_stats(lambda: os.kill(pid, signal.SIGUSR1), [self.dns_stats_path])
        return got

    def http_stats(self) -> dict[str, Any]:
        """The HTTP server's requests since the previous call, and the first one's
        arrival and the last answer's time (None without requests); all processes."""
        assert self.http_proc is not None
        pgid = self.http_proc.pid
        got = _ask_stats(lambda: os.killpg(pgid, signal.SIGUSR1), self._http_files())
        firsts = [g["first"] for g in got if g["first"] is not None]
        lasts = [g["last"] for g in got if g["last"] is not None]
        return {
            "requests": sum(g["requests"] for g in got),
            "first": min(firsts) if firsts else None,
            "last": max(lasts) if lasts else None,
        }

    def udp_counters(self) -> dict[str, int]:
        """The UDP counters of the DNS server's network namespace (/proc/PID/net/snmp:
        with a namespace, only the lab's traffic)."""
        assert self.dns_proc is not None
        try:
            text = Path(f"/proc/{self.dns_proc.pid}/net/snmp").read_text(encoding="ascii")
        except OSError:
            return {}
        rows = [line.split()[1:] for line in text.splitlines() if line.startswith("Udp:")]
        if len(rows) < 2:
            return {}
        counters = {k: int(v) for k, v in zip(rows[0], rows[1], strict=False)}
        # The DNS server's own socket (its last column counts its drops).
        local = f"0100007F:{self.dns_port:04X}"
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{self.dns_proc.pid}/net/udp").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1] == local:
                    counters["server_drops"] = int(fields[-1])
        return counters

    def server_cpu_s(self) -> float:
        return harness.tree_cpu_s(self.http_proc.pid) if self.http_proc else 0.0

    def dns_cpu_s(self) -> float:
        return harness.tree_cpu_s(self.dns_proc.pid) if self.dns_proc else 0.0

    def stop(self) -> None:
        """Stop both servers; delete the namespace and its /etc/netns folder."""
        for proc in (self.http_proc, self.dns_proc):
            if proc is not None:
                harness.kill(proc)
        if self.made_netns:
            ip = shutil.which("ip") or "ip"
            subprocess.run([ip, "netns", "delete", self.name], capture_output=True, timeout=30)
            shutil.rmtree(NETNS_DIR / self.name, ignore_errors=True)
            if self.made_netns_dir:
                with contextlib.suppress(OSError):
                    NETNS_DIR.rmdir()  # only if empty: another run may have its folder there
            self.made_netns = False


# -- contenders ---------------------------------------------------------------------

Argv = Callable[[Lab, Path, Path, int], list[str]]


@dataclass(frozen=True)
class Contender:
    """One row: how to run it on (lab, urls, output, per-host limit)."""

    key: str
    label: str
    scenario: str  # "many" or "one"
    argv: Argv
    #: In the default run (else only when named in --contenders).
    default: bool = True


def _surefetch_path() -> str:
    beside = Path(sys.executable).parent / "surefetch"
    return str(beside) if beside.exists() else (shutil.which("surefetch") or "surefetch")


def surefetch(*extra: str) -> Argv:
    """``surefetch fetch`` with the scenario's limits, ``--no-body -q``, and (without a
    namespace) ``--dns-servers`` naming the lab's DNS server; with ``lab.surefetch_src``,
    surefetch is imported from there (``PYTHONPATH``)."""

    def argv(lab: Lab, urls: Path, out: Path, per_host: int) -> list[str]:
        dns = [] if lab.netns else ["--dns-servers", f"127.0.0.1:{lab.dns_port}"]
        env = []
        if lab.surefetch_src is not None:
            env = [shutil.which("env") or "/usr/bin/env", f"PYTHONPATH={lab.surefetch_src}"]
        return [
            *env,
            _surefetch_path(),
            "fetch",
            str(urls),
            "-o",
            str(out),
            "--concurrency",
            str(CONCURRENCY),
            "--per-host",
            str(per_host),
            "--no-body",
            "-q",
            *dns,
            *extra,
        ]

    return argv


def hand_loop(resolver: str, loop: str = "uvloop") -> Argv:
    """bench/baseline_aiohttp.py on ``loop`` with ``resolver`` (threaded or async)."""

    def argv(lab: Lab, urls: Path, out: Path, per_host: int) -> list[str]:
        dns = [] if lab.netns else ["--nameserver", f"127.0.0.1:{lab.dns_port}"]
        return [
            sys.executable,
            str(BASELINE),
            str(urls),
            str(out),
            "--concurrency",
            str(CONCURRENCY),
            "--per-host",
            str(per_host),
            "--loop",
            loop,
            "--resolver",
            resolver,
            *dns,
        ]

    return argv


HAND_AIODNS = "hand-aiodns"
SUREFETCH = "surefetch"
ONE_ADAPTIVE = "one-surefetch"
ONE_FIXED = "one-surefetch-fixed"

CONTENDERS: list[Contender] = [
    Contender(SUREFETCH, "surefetch (defaults otherwise)", "many", surefetch()),
    Contender(
        "hand-threaded", "aiohttp + uvloop loop, threaded resolver", "many", hand_loop("threaded")
    ),
    Contender(
        HAND_AIODNS, "aiohttp + uvloop loop, AsyncResolver (aiodns)", "many", hand_loop("async")
    ),
    Contender(ONE_ADAPTIVE, "one host: surefetch (--adaptive)", "one", surefetch()),
    Contender(ONE_FIXED, "one host: surefetch --no-adaptive", "one", surefetch("--no-adaptive")),
    Contender("one-hand", "one host: aiohttp + uvloop loop, aiodns", "one", hand_loop("async")),
    # Opt-in (--contenders ...): uvloop runs getaddrinfo on libuv's pool, on at most half
    # of its 4 threads, so the threaded resolver gets 2 lookups at a time there, and 6
    # (the default executor on 2 cores) on asyncio's loop.
    Contender(
        "hand-threaded-asyncio",
        "aiohttp + asyncio loop, threaded resolver",
        "many",
        hand_loop("threaded", "asyncio"),
        default=False,
    ),
    # Opt-in: one process, to tell what --workers adds from what the engine costs.
    Contender(
        "surefetch-w1", "surefetch --workers 1", "many", surefetch("--workers", "1"), default=False
    ),
    Contender(
        "one-surefetch-w1",
        "one host: surefetch --workers 1",
        "one",
        surefetch("--workers", "1"),
        default=False,
    ),
]
DEFAULT_CONTENDERS = [c.key for c in CONTENDERS if c.default]


def skip_reason(contender: Contender, lab: Lab) -> str | None:
    """Why ``contender`` cannot run in ``lab`` (None: it can)."""
    if not lab.netns and contender.key.startswith("hand-threaded"):
        return (
            "the threaded resolver (getaddrinfo) reads only /etc/resolv.conf, which takes "
            "no port: it needs the namespace (run as root)"
        )
    return None


# -- checking and measuring ---------------------------------------------------------


def write_url_files(lab: Lab, work: Path, hosts: int, per_host_urls: int, one: int, seed: int):
    """The URL files of both scenarios; the set of URLs each must produce."""
    many = [lab.url(f"h{i}.test", j) for i in range(hosts) for j in range(per_host_urls)]
    random.Random(seed).shuffle(many)
    single = [lab.url(ONE_HOST, j) for j in range(one)]
    files = {}
    for scenario, urls in (("many", many), ("one", single)):
        path = work / f"urls-{scenario}.txt"
        path.write_text("".join(u + "\n" for u in urls), encoding="ascii")
        files[scenario] = (path, frozenset(urls))
    return files


class DNSFailures(BenchError):
    """Every URL has its record, and the only failures are DNS errors (with the
    threaded resolver or c-ares, a burst of answers can overflow the client's socket
    buffer; c-ares then gives up after its retries): the run is done again, once."""


def verify(path: Path, expected: frozenset[str]) -> dict[str, int]:
    """Check ``path`` holds one record per URL of ``expected``, each once, all status
    200 with the server's body (or its SHA-256); counts of retried records. Raises
    BenchError, or DNSFailures if DNS errors are all that is wrong."""
    seen: set[str] = set()
    lines = bad = retried = dns_failed = 0
    problems: list[str] = []
    with path.open("rb") as f:
        for raw in f:
            lines += 1
            try:
                rec = json.loads(raw)
                url = rec["url"]
                if url not in expected:
                    raise ValueError(f"foreign URL {url!r}")
                if url in seen:
                    raise ValueError(f"duplicate URL {url!r}")
                seen.add(url)
                if rec.get("status") != 200 or rec.get("ok", True) is not True:
                    raise ValueError(f"{url}: status {rec.get('status')}, error {rec.get('error')}")
                if "body" in rec:
                    if rec["body"] != BODY_TEXT:
                        raise ValueError(f"{url}: wrong body")
                elif rec.get("sha256") != BODY_SHA256:
                    raise ValueError(f"{url}: neither the body nor its sha256")
                if rec.get("attempts", 1) > 1:
                    retried += 1
            except (ValueError, KeyError, TypeError) as exc:
                bad += 1
                if "dns" in str(exc).lower():
                    dns_failed += 1
                if len(problems) < 5:
                    problems.append(f"line {lines}: {exc}")
    if lines != len(expected) or len(seen) != len(expected) or bad:
        error = DNSFailures if bad == dns_failed and len(seen) == len(expected) else BenchError
        raise error(
            f"{path.name}: {lines} lines, {len(seen)} distinct URLs, {bad} bad, "
            f"of {len(expected)} expected" + (f" ({'; '.join(problems)})" if problems else "")
        )
    return {"records": lines, "retried": retried}


def wait_quiet(lab: Lab, max_wait: float) -> float:
    """Wait (1 s steps, ``max_wait`` at most) until processes other than the lab's
    servers use under harness.QUIET_PCT % of one core; the last reading."""
    deadline = time.monotonic() + max_wait
    while True:
        busy0, ours0, t0 = harness.machine_busy_s(), _lab_cpu(lab), time.monotonic()
        time.sleep(1.0)
        busy1, ours1, t1 = harness.machine_busy_s(), _lab_cpu(lab), time.monotonic()
        other = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (t1 - t0) * 100
        if other < harness.QUIET_PCT or time.monotonic() >= deadline:
            return other


def _lab_cpu(lab: Lab) -> float:
    return lab.server_cpu_s() + lab.dns_cpu_s()


@dataclass
class Run:
    """One measured run of one contender."""

    wall_s: float
    urls_per_s: float
    cpu_s: float
    server_cpu_pct: float
    dns_queries: int
    dns_peak_in_flight: int
    #: Queries the DNS server could not parse.
    dns_bad: int
    #: UDP datagrams dropped for a full receive buffer (RcvbufErrors), in the lab's
    #: namespace (without one: the whole machine's).
    udp_drops: int
    #: Of those, the ones at the DNS server's socket (the rest: the contender's).
    dns_server_drops: int
    retried: int
    other_cpu_pct: float
    #: Requests the HTTP server got (retries and re-sends included).
    server_requests: int = 0
    #: From the contender's launch to the first request at the server (start-up).
    first_request_s: float | None = None
    #: From the last answer to the contender's exit (shutdown, last writes).
    after_last_s: float | None = None


@dataclass
class Row:
    key: str
    label: str
    scenario: str
    urls: int
    runs: list[Run] = field(default_factory=list)
    skipped: str | None = None
    #: Runs done again because DNS errors were all that was wrong (see DNSFailures).
    reruns: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    urls_per_s: float = 0.0
    cpu_s: float = 0.0
    server_cpu_pct: float = 0.0
    dns_queries: int = 0
    dns_peak_in_flight: int = 0
    retried: int = 0
    server_requests: int = 0
    first_request_s: float | None = None
    after_last_s: float | None = None
    vs_hand_aiodns: float | None = None
    share_of_ceiling: float | None = None

    def summarize(self) -> None:
        if not self.runs:
            return
        self.wall_s = statistics.median(r.wall_s for r in self.runs)
        self.urls_per_s = self.urls / self.wall_s
        self.cpu_s = statistics.median(r.cpu_s for r in self.runs)
        self.server_cpu_pct = statistics.median(r.server_cpu_pct for r in self.runs)
        self.dns_queries = int(statistics.median(r.dns_queries for r in self.runs))
        self.dns_peak_in_flight = max(r.dns_peak_in_flight for r in self.runs)
        self.retried = max(r.retried for r in self.runs)
        self.server_requests = max(r.server_requests for r in self.runs)
        firsts = [r.first_request_s for r in self.runs if r.first_request_s is not None]
        lasts = [r.after_last_s for r in self.runs if r.after_last_s is not None]
        self.first_request_s = statistics.median(firsts) if firsts else None
        self.after_last_s = statistics.median(lasts) if lasts else None


def measure(
    lab: Lab, contender: Contender, urls: Path, expected: frozenset[str], per_host: int, work: Path
) -> Run:
    """Run ``contender`` once (in the lab), check its output, delete it."""
    out = work / f"{contender.key}.jsonl"
    log = work / f"{contender.key}.log"
    out.unlink(missing_ok=True)
    wait_quiet(lab, min(harness.QUIET_WAIT, QUIET_WAIT))
    lab.dns_stats()  # reset the counters
    lab.http_stats()
    udp0 = lab.udp_counters()
    busy0, server0, dns0 = harness.machine_busy_s(), lab.server_cpu_s(), lab.dns_cpu_s()
    argv = [*lab.prefix, *contender.argv(lab, urls, out, per_host)]
    launched = time.monotonic()
    sample = run_measured(argv, log=log, timeout=RUN_TIMEOUT)
    ended = time.monotonic()
    busy = harness.machine_busy_s() - busy0
    server_cpu = lab.server_cpu_s() - server0
    dns_cpu = lab.dns_cpu_s() - dns0
    dns = lab.dns_stats()
    http = lab.http_stats()
    udp1 = lab.udp_counters()
    udp_drops = udp1.get("RcvbufErrors", 0) - udp0.get("RcvbufErrors", 0)
    server_drops = udp1.get("server_drops", 0) - udp0.get("server_drops", 0)
    if sample.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise BenchError(f"{contender.label} exited with {sample.returncode}:\n{tail}")
    try:
        checked = verify(out, expected)
    finally:
        out.unlink(missing_ok=True)
    other = max(0.0, busy - sample.cpu_s - server_cpu - dns_cpu) / sample.wall_s * 100
    return Run(
        wall_s=sample.wall_s,
        urls_per_s=len(expected) / sample.wall_s,
        cpu_s=sample.cpu_s,
        server_cpu_pct=server_cpu / sample.wall_s * 100,
        dns_queries=dns["queries"],
        dns_peak_in_flight=dns["peak_in_flight"],
        dns_bad=dns["bad"],
        udp_drops=udp_drops,
        dns_server_drops=server_drops,
        retried=checked["retried"],
        other_cpu_pct=other,
        server_requests=http["requests"],
        first_request_s=None if http["first"] is None else http["first"] - launched,
        after_last_s=None if http["last"] is None else ended - http["last"],
    )


# -- the section --------------------------------------------------------------------


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


def run_section(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Start the lab, run every contender ``args.rounds`` times interleaved, print the
    table; the results as a dict. The lab is torn down whatever happens."""
    started = time.monotonic()
    try:
        import dnslib  # noqa: F401
    except ImportError:
        raise BenchError("the internet section needs dnslib: pip install -e '.[bench]'") from None
    root = os.geteuid() == 0
    use_netns = root and not args.loopback
    if not args.loopback and not root:
        print("  not root: no network namespace; the DNS server gets a high port", flush=True)
    if use_netns and shutil.which("ip") is None:
        raise BenchError("running as root, but there is no `ip` command (iproute2)")
    wants_surefetch = any(k.startswith(("surefetch", "one-surefetch")) for k in args.contenders)
    if not use_netns and wants_surefetch and not harness.cli_has("--dns-servers"):
        raise BenchError(
            "without a network namespace (not root, or --loopback) surefetch must be pointed "
            "at the benchmark's DNS server with --dns-servers, and this surefetch has no "
            "such option yet; run as root (the namespace needs no option), or add it"
        )
    for name in remove_stale_namespaces():
        print(f"  deleted the namespace {name} of a benchmark run that is gone", flush=True)
    lab = Lab(
        work,
        netns=use_netns,
        dns_delay=args.dns_delay,
        http_delay=args.http_delay,
        ttl=args.ttl,
        http_procs=args.http_procs,
        surefetch_src=args.surefetch_src,
    )
    many_n = args.hosts * args.urls_per_host
    sizes = {"many": many_n, "one": args.one_host_urls}
    per_host = {"many": args.per_host, "one": CONCURRENCY}
    chosen = [c for c in CONTENDERS if c.key in args.contenders]
    print(
        f"\n== internet: {args.hosts:,} hosts x {args.urls_per_host} URLs (shuffled, "
        f"--concurrency {CONCURRENCY} --per-host {args.per_host}) and one host x "
        f"{args.one_host_urls:,} URLs (--per-host {CONCURRENCY}); {args.rounds} "
        f"interleaved rounds ==",
        flush=True,
    )
    rows = {c.key: Row(c.key, c.label, c.scenario, sizes[c.scenario]) for c in chosen}
    try:
        lab.start()
        print(f"  lab: {lab.describe()}", flush=True)
        files = write_url_files(
            lab, work, args.hosts, args.urls_per_host, args.one_host_urls, args.seed
        )
        runnable = []
        for c in chosen:
            reason = skip_reason(c, lab)
            if reason:
                rows[c.key].skipped = reason
                print(f"  skipping {c.label!r}: {reason}", flush=True)
            else:
                runnable.append(c)
        total, step = args.rounds * len(runnable), 0
        for round_no in range(1, args.rounds + 1):
            for c in runnable:
                step += 1
                path, expected = files[c.scenario]
                try:
                    run = measure(lab, c, path, expected, per_host[c.scenario], work)
                except DNSFailures as exc:
                    print(f"  {c.label}: {exc}\n    DNS errors only: running it again, once")
                    rows[c.key].reruns.append(f"round {round_no}: {exc}")
                    run = measure(lab, c, path, expected, per_host[c.scenario], work)
                rows[c.key].runs.append(run)
                print(
                    f"  [{step}/{total}] round {round_no} {c.label:<46} {run.wall_s:6.2f} s "
                    f"{run.urls_per_s:7.0f} URLs/s  ok  (first request after "
                    f"{_s(run.first_request_s)}, exit {_s(run.after_last_s)} after the last "
                    f"answer; CPU {run.cpu_s:.1f} s, server "
                    f"{run.server_cpu_pct:.0f}%, DNS {run.dns_queries} queries, peak "
                    f"{run.dns_peak_in_flight} in flight"
                    + (f", {run.retried} retried" if run.retried else "")
                    + (
                        f", {run.udp_drops} UDP drops ({run.dns_server_drops} at the DNS server)"
                        if run.udp_drops
                        else ""
                    )
                    + (f", {run.dns_bad} bad queries" if run.dns_bad else "")
                    + (
                        f", the server got {run.server_requests} requests"
                        if run.server_requests != len(expected)
                        else ""
                    )
                    + f", other CPU {run.other_cpu_pct:.0f}%)",
                    flush=True,
                )
    finally:
        lab.stop()
    return summarize(rows, args, lab, time.monotonic() - started)


def summarize(
    rows: dict[str, Row], args: argparse.Namespace, lab: Lab, duration: float
) -> dict[str, Any]:
    """Medians, ratios, the table and the targets; print them; the JSON-able dict."""
    for row in rows.values():
        row.summarize()
    done = [r for r in rows.values() if r.runs]
    one = [r for r in done if r.scenario == "one"]
    ceiling = max(one, key=lambda r: r.urls_per_s) if one else None
    base = rows.get(HAND_AIODNS)
    base_rps = base.urls_per_s if base and base.runs else None
    for row in done:
        if ceiling is not None:
            row.share_of_ceiling = row.urls_per_s / ceiling.urls_per_s
        if base_rps and row.scenario == "many":
            row.vs_hand_aiodns = row.urls_per_s / base_rps
    headers = [
        "contender",
        "URLs",
        "wall s",
        "URLs/s",
        "vs loop + aiodns",
        "share of ceiling",
        "start-up s",
        "CPU s",
        "server CPU %",
        "DNS queries",
        "DNS peak in flight",
    ]
    table = markdown_table(
        headers,
        [
            [
                r.label,
                f"{r.urls:,}",
                f"{r.wall_s:.2f}" if r.runs else "skipped",
                f"{r.urls_per_s:,.0f}" if r.runs else "—",
                _x(r.vs_hand_aiodns),
                _pct(r.share_of_ceiling),
                "—" if r.first_request_s is None else f"{r.first_request_s:.2f}",
                f"{r.cpu_s:.1f}" if r.runs else "—",
                f"{r.server_cpu_pct:.0f}" if r.runs else "—",
                f"{r.dns_queries:,}" if r.runs else "—",
                f"{r.dns_peak_in_flight:,}" if r.runs else "—",
            ]
            for r in rows.values()
        ],
    )
    sf = rows.get(SUREFETCH)
    adaptive, fixed = rows.get(ONE_ADAPTIVE), rows.get(ONE_FIXED)
    figures: dict[str, float | None] = {
        "ceiling_urls_per_s": ceiling.urls_per_s if ceiling else None,
        "surefetch_vs_hand_aiodns": sf.vs_hand_aiodns if sf and sf.runs else None,
        "surefetch_share_of_ceiling": sf.share_of_ceiling if sf and sf.runs else None,
        "adaptive_vs_no_adaptive": (
            adaptive.urls_per_s / fixed.urls_per_s
            if adaptive and fixed and adaptive.runs and fixed.runs
            else None
        ),
        "theoretical_urls_per_s": CONCURRENCY / args.http_delay,
    }
    targets = [
        ("surefetch vs hand loop + aiodns", figures["surefetch_vs_hand_aiodns"], 1.2, _x),
        (
            "surefetch share of the one-host ceiling",
            figures["surefetch_share_of_ceiling"],
            0.7,
            _pct,
        ),
        ("one host: --adaptive vs --no-adaptive", figures["adaptive_vs_no_adaptive"], 0.9, _x),
    ]
    lines = []
    if ceiling is not None:
        cores = args.http_procs
        lines.append(
            f"ceiling (best one-host row, {ceiling.label}): {ceiling.urls_per_s:,.0f} URLs/s; "
            f"the server used {ceiling.server_cpu_pct:.0f}% of one core there "
            f"({args.http_procs} process(es): {ceiling.server_cpu_pct / cores:.0f}% of their "
            f"share); {CONCURRENCY} in flight at {args.http_delay * 1000:.0f} ms allow "
            f"{figures['theoretical_urls_per_s']:,.0f}/s"
        )
        if ceiling.server_cpu_pct > 80 * cores:
            lines.append(
                "WARNING: the server was near its CPU limit: the ceiling may be the server's"
            )
    for row in done:
        if row.reruns:
            lines.append(
                f"NOTE: {row.label} was run again after a run whose only failures were DNS "
                f"errors: {'; '.join(row.reruns)}"
            )
    for what, value, target, fmt in targets:
        verdict = "—" if value is None else ("met" if value >= target else "NOT met")
        lines.append(f"target {what}: {fmt(value)} (want >= {fmt(target)}): {verdict}")
    print(
        f"\nInternet-like ({lab.describe()}; median of {args.rounds}):\n\n{table}\n\n"
        + "\n".join(lines)
        + f"\n(section took {duration:.0f} s)\n",
        flush=True,
    )
    return {
        "meta": _meta(lab),
        "hosts": args.hosts,
        "urls_per_host": args.urls_per_host,
        "one_host_urls": args.one_host_urls,
        "concurrency": CONCURRENCY,
        "per_host": args.per_host,
        "dns_delay_s": args.dns_delay,
        "http_delay_s": args.http_delay,
        "ttl_s": args.ttl,
        "http_procs": args.http_procs,
        "rounds": args.rounds,
        "mode": "netns" if lab.netns else "loopback",
        "ceiling_key": ceiling.key if ceiling else None,
        "figures": figures,
        "targets": [
            {"what": w, "value": v, "want": t, "met": None if v is None else v >= t}
            for w, v, t, _ in targets
        ],
        "rows": [asdict(r) for r in rows.values()],
        "markdown": table,
        "notes": lines,
        "duration_s": round(duration, 1),
    }


def _meta(lab: Lab) -> dict[str, Any]:
    from importlib import metadata

    versions: dict[str, str] = {}
    for name in ("surefetch", "aiohttp", "aiodns", "pycares", "uvloop", "dnslib"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    try:
        import aiohttp.resolver

        default_resolver = aiohttp.resolver.DefaultResolver.__name__
    except ImportError:
        default_resolver = "?"
    git = ["git", "-C", str(BENCH.parent)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True)
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "lab": lab.describe(),
        "surefetch_src": str(lab.surefetch_src) if lab.surefetch_src else None,
        "versions": versions,
        # What a TCPConnector built without a resolver (surefetch's, today) gets.
        "aiohttp_default_resolver": default_resolver,
        "git_head": head.stdout.strip(),
        "src_modified": bool(dirty.stdout.strip()),
        "cores": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# -- command line -------------------------------------------------------------------


def add_arguments(parser: argparse._ActionsContainer, *, prefix: str = "") -> None:
    """The scenario's options (``prefix`` for bench/run.py, e.g. ``internet-``)."""
    p = prefix
    parser.add_argument(f"--{p}rounds", type=int, default=2, help="interleaved rounds (median)")
    parser.add_argument(f"--{p}hosts", type=int, default=2000, help="host names (many hosts)")
    parser.add_argument(f"--{p}urls-per-host", type=int, default=3)
    parser.add_argument(f"--{p}per-host", type=int, default=8, help="per-host limit (many)")
    parser.add_argument(f"--{p}one-host-urls", type=int, default=6000)
    parser.add_argument(f"--{p}dns-delay", type=float, default=0.030, help="seconds")
    parser.add_argument(f"--{p}http-delay", type=float, default=0.050, help="seconds")
    parser.add_argument(f"--{p}ttl", type=int, default=300, help="DNS TTL, seconds")
    parser.add_argument(f"--{p}http-procs", type=int, default=1, help="HTTP server processes")
    parser.add_argument(f"--{p}seed", type=int, default=10, help="shuffle seed")
    parser.add_argument(
        f"--{p}surefetch-src",
        type=lambda text: Path(text).resolve(),
        metavar="DIR",
        help="import surefetch from DIR (e.g. a `git archive` of a commit's src/), "
        "not from the installed package",
    )
    parser.add_argument(
        f"--{p}loopback",
        action="store_true",
        help="no network namespace even as root (the non-root set-up: --dns-servers)",
    )
    parser.add_argument(
        f"--{p}contenders",
        type=_keys,
        default=DEFAULT_CONTENDERS,
        help=f"comma-separated keys (default {','.join(DEFAULT_CONTENDERS)}; also: "
        f"{','.join(c.key for c in CONTENDERS if not c.default)})",
    )


def section_args(args: argparse.Namespace, prefix: str) -> argparse.Namespace:
    """The options added by :func:`add_arguments` with ``prefix``, without it."""
    attr = prefix.replace("-", "_")
    return argparse.Namespace(
        **{k[len(attr) :]: v for k, v in vars(args).items() if k.startswith(attr)}
    )


def _keys(text: str) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    known = [c.key for c in CONTENDERS]
    unknown = [k for k in keys if k not in known]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"unknown contender(s) {unknown}; known: {known}")
    return keys


def _on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the section on its own; write bench/results/internet.json."""
    parser = argparse.ArgumentParser(
        description="surefetch's internet-like benchmark",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    # The servers and the probe (started by the lab, in the namespace).
    parser.add_argument("--serve-dns", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-http", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--probe", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--probe-dns", metavar="ADDR:PORT", help=argparse.SUPPRESS)
    add_arguments(parser)
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=QUIET_WAIT,
        help="seconds to wait, at most, before each run for other processes to go idle",
    )
    args = parser.parse_args(argv)
    if args.serve_dns:
        serve_dns("127.0.0.1", args.serve_dns, args.dns_delay, args.ttl, args.stats)
        return 0
    if args.serve_http:
        serve_http("127.0.0.1", args.serve_http, args.http_delay, args.http_procs, args.stats)
        return 0
    if args.probe:
        probe(args.probe, args.probe_dns)
        return 0
    if min(args.rounds, args.hosts, args.urls_per_host, args.one_host_urls, args.http_procs) < 1:
        parser.error("--rounds, --hosts, --urls-per-host, --one-host-urls, --http-procs: >= 1")
    harness.QUIET_WAIT = args.quiet_wait
    # As `make bench` does: with PYTHONDONTWRITEBYTECODE (or a src/ just edited) each
    # of surefetch's processes would compile its modules again at every start.
    for src in (BENCH.parent / "src", args.surefetch_src):
        if src is not None and src.is_dir():
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=False)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        with tempfile.TemporaryDirectory(prefix="surefetch-bench-internet-") as tmp:
            result = run_section(args, Path(tmp))
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped, namespace deleted", file=sys.stderr, flush=True)
        return 130
    finally:
        harness.stop_all()
    RESULTS.mkdir(exist_ok=True)
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    (RESULTS / "internet.json").write_text(text, encoding="utf-8")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"internet-{stamp}.json").write_text(text, encoding="utf-8")
    print(f"results: {RESULTS / 'internet.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
