"""The command line: parses options into policy objects and runs a job."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import click
from click.core import ParameterSource

from . import __version__, _loop, logs
from ._loop import LOOPS
from ._spawn import DEFAULT_WORKERS
from ._tune import concurrency_for, raise_open_files
from .client import COOKIE_MODES, DEFAULT_USER_AGENT, TRANSPORTS, Client
from .distributed import Distributed, JobTaken, RedisUnavailable, check_reachable
from .distributed import check_url as check_redis_url
from .job import FetchJob, Job
from .metrics import Metrics
from .network import NetworkPolicy
from .observe import Summary
from .parallel import WorkerError
from .policy import IDEMPOTENT_METHODS, Limits, RetryPolicy, Timeouts
from .polite import Politeness, load_host_rules, parse_rate
from .proxy import Proxies, parse_proxy
from .record import Record
from .redact import redact_text
from .resolve import DNS, async_dns_error, parse_servers
from .sinks import FORMATS, OutputError, SinkError, output_format, retry_filter
from .sinks.base import OutputGone
from .sources import INPUT_FORMATS, InputError, input_format
from .status import InputTotal, StatusLines, on_terminal, say
from .tls import TLS, TLS_VERSIONS

if TYPE_CHECKING:
    from .view import LiveView

__all__ = ["main"]

#: ``--loop``, the same for ``fetch`` and ``worker``.
_LOOP_OPTION = click.option(
    "--loop",
    "loop_name",
    type=click.Choice(LOOPS),
    default="auto",
    show_default=True,
    help="Event loop: uvloop if installed (auto), or plain asyncio.",
)

EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
_EXIT_BY_SIGNAL = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_ALL_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH"})


def parse_size(text: str) -> int:
    """``"10485760"``, ``"512k"``, ``"10MB"``, ``"1GiB"`` -> bytes (units are powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (try 10485760, 512k, 10M or 1G)")
    unit = (match.group(2) or "").lower()[:1]
    return int(match.group(1)) * _UNITS[unit]


def parse_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` -> ``("Name", "value")``."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c in name for c in " \t\r\n") or "\n" in value or "\r" in value:
        raise ValueError(f"bad header {text!r} (expected 'Name: value')")
    return name, value.strip()


class _Size(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Servers(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """``ADDR[:PORT],...`` -> the same, each address checked and written out in full."""

    name = "servers"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return ",".join(parse_servers(str(value)))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Header(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    name = "header"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_header(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _RedisURL(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    name = "URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            check_redis_url(str(value))
        except ImportError:
            self.fail("needs redis-py: pip install 'surefetch[redis]'", param, ctx)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


_REDIS_URL = _RedisURL()


class _FetchCommand(click.Command):
    """``fetch``, which also keeps the order in which --allow and --deny were given
    (click gathers each option's values apart): first match wins among them."""

    def make_parser(self, ctx: click.Context) -> Any:
        parser = super().make_parser(ctx)
        parse = parser.parse_args

        def parse_args(args: list[str]) -> Any:
            opts, rest, order = parse(args=args)
            ctx.meta["surefetch.rule_order"] = [
                p.name for p in order if p.name in ("allow", "deny")
            ]
            return opts, rest, order

        parser.parse_args = parse_args  # type: ignore[method-assign]
        return parser


def _rules_in_order(
    ctx: click.Context, allow: tuple[str, ...], deny: tuple[str, ...]
) -> tuple[str, ...]:
    """--allow and --deny as ``"allow X"``/``"deny X"``, in the command line's order."""
    order = ctx.meta.get("surefetch.rule_order")
    if order is None or order.count("allow") != len(allow) or order.count("deny") != len(deny):
        order = ["allow"] * len(allow) + ["deny"] * len(deny)  # not parsed here: as documented
    given = {"allow": iter(allow), "deny": iter(deny)}
    return tuple(f"{name} {next(given[name])}" for name in order)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="surefetch")
def cli() -> None:
    """Fetch very many HTTP URLs reliably and fast, with a record of every failure."""


_POSITIVE = click.FloatRange(min=0, min_open=True)


@cli.command(cls=_FetchCommand)
@click.argument("input_path", metavar="INPUT", type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(allow_dash=True, dir_okay=False),
    help="Where records go: .jsonl (default) or .sqlite; '-' for stdout.",
)
@click.option(
    "--format",
    "out_format",
    type=click.Choice(FORMATS),
    help="Output format, if not by OUTPUT's extension.",
)
@click.option(
    "--input-format",
    "in_format",
    type=click.Choice(INPUT_FORMATS),
    help="Input format, if not by INPUT's extension (.csv, .jsonl; else lines).",
)
@click.option(
    "--url-column",
    default="url",
    show_default=True,
    help="The CSV column or JSON field that holds the URL.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Requests in flight at once, over all hosts.",
)
@click.option(
    "--per-host",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Requests in flight at once to one host.",
)
@click.option(
    "--timeout",
    type=_POSITIVE,
    default=30.0,
    show_default=True,
    help="Seconds one attempt may take in all (connect, head and body).",
)
@click.option(
    "--connect-timeout",
    type=_POSITIVE,
    default=10.0,
    show_default=True,
    help="Seconds to establish the connection (TCP and TLS).",
)
@click.option(
    "--read-timeout",
    type=_POSITIVE,
    default=20.0,
    show_default=True,
    help="Longest wait, in seconds, for the server: for the response head once connected,"
    " and between two pieces of the body.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Extra attempts after a transient failure.",
)
@click.option(
    "--retry-non-idempotent",
    is_flag=True,
    help="Retry POST and PATCH too (they may then take effect twice).",
)
@click.option(
    "--max-body",
    type=_Size(),
    default="10M",
    show_default=True,
    help="Largest body accepted, after decompression (512k, 10M, 1G).",
)
@click.option(
    "--max-redirects",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Redirects to follow before giving up.",
)
@click.option(
    "-X",
    "--method",
    default="GET",
    show_default=True,
    help="Request method for every URL (JSON lines rows may set their own).",
)
@click.option("--data", help="Request body for every URL (sent as given).")
@click.option("--json", "json_body", help="JSON request body for every URL.")
@click.option(
    "-H",
    "--header",
    "headers",
    type=_Header(),
    multiple=True,
    help="Extra request header 'Name: value' (repeatable).",
)
@click.option(
    "--user-agent", default=DEFAULT_USER_AGENT, show_default=True, help="The User-Agent header."
)
@click.option("--no-body", is_flag=True, help="Leave bodies out of records (sha256 stays).")
@click.option(
    "--bodies",
    type=click.Path(file_okay=False),
    help="Store bodies as files in this folder (by sha256) instead of inline.",
)
@click.option(
    "--restart",
    is_flag=True,
    help="Move an existing OUTPUT aside and start over (default: resume it).",
)
@click.option(
    "--retry-failed",
    "retry_failed",
    is_flag=False,
    flag_value="all",
    default=None,
    metavar="[KINDS]",
    help="Fetch again the URLs whose stored record failed: all, or the listed "
    "error kinds / status classes / statuses (read_timeout,5xx,429).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="On Ctrl-C or SIGTERM, seconds to let requests in flight finish.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=DEFAULT_WORKERS,
    show_default="the number of cores",
    help="Processes that fetch, each with its own event loop and connections.",
)
@_LOOP_OPTION
@click.option(
    "--resolver",
    type=click.Choice(["async", "system"]),
    default="async",
    show_default=True,
    help="Host names by c-ares, many at once (async), or by the system's getaddrinfo"
    " in threads (system).",
)
@click.option(
    "--dns-servers",
    type=_Servers(),
    metavar="ADDR[:PORT],...",
    help="DNS servers to ask instead of the system's (IPv6 as [::1]:53).",
)
@click.option(
    "--deny",
    multiple=True,
    metavar="CIDR|HOST",
    help="Never connect to these addresses (10.0.0.0/8) or host names (*.internal);"
    " repeatable, first match among --allow/--deny wins.",
)
@click.option(
    "--allow",
    multiple=True,
    metavar="CIDR|HOST",
    help="Connect to these even if --block-private (or a later --deny) would refuse;"
    " an address rule also lets a cloud metadata address through.",
)
@click.option(
    "--block-private",
    is_flag=True,
    help="Refuse every address that is not globally routable (loopback, private,"
    " link-local, CGNAT, ULA, multicast), on every connection.",
)
@click.option(
    "--netrc",
    "use_netrc",
    is_flag=True,
    help="Send credentials from ~/.netrc (or $NETRC) to the hosts it names (never its"
    " default entry).",
)
@click.option(
    "--netrc-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Like --netrc, from this file.",
)
@click.option(
    "--cacert",
    type=click.Path(exists=True, dir_okay=False),
    help="Trust the CA certificates in this PEM file instead of the system's.",
)
@click.option(
    "--cert",
    type=click.Path(exists=True, dir_okay=False),
    help="Client certificate (PEM) for servers that ask for one (mutual TLS).",
)
@click.option(
    "--key",
    type=click.Path(exists=True, dir_okay=False),
    help="The private key of --cert, if not in the same file.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Do not verify TLS certificates (test setups only; said in the summary).",
)
@click.option(
    "--tls-min",
    type=click.Choice(sorted(TLS_VERSIONS)),
    help="Oldest TLS version accepted.",
)
@click.option(
    "--transport",
    type=click.Choice(TRANSPORTS),
    default="auto",
    show_default=True,
    envvar="SUREFETCH_TRANSPORT",
    help="auto: GET/HEAD by the lean transport (httptools), the rest by aiohttp; fast:"
    " the same, an error with a proxy or cookies; aiohttp: all by aiohttp."
    " Also $SUREFETCH_TRANSPORT.",
)
@click.option(
    "--cookies",
    type=click.Choice(COOKIE_MODES),
    default="off",
    show_default=True,
    help="off: none kept; per-host: what a host sets goes back to that host only.",
)
@click.option(
    "--proxy",
    metavar="URL",
    help="Send every request through this proxy (http://, https://, socks5://).",
)
@click.option(
    "--proxy-from-env",
    is_flag=True,
    help="Use HTTP_PROXY, HTTPS_PROXY and NO_PROXY (CIDRs allowed) from the environment.",
)
@click.option(
    "--rate",
    help="Most requests per second to one host (20/s, 30/m); none by default.",
)
@click.option(
    "--hosts",
    "hosts_file",
    type=click.Path(dir_okay=False),
    help="TOML file of per-host overrides: [[host]] match, rate, per_host, headers.",
)
@click.option(
    "--adaptive/--no-adaptive",
    default=True,
    show_default=True,
    help="Find each host's best concurrency (up to --per-host) from its responses.",
)
@click.option(
    "--retry-budget",
    type=click.FloatRange(min=0),
    default=0.2,
    show_default=True,
    help="Retries may add at most this share to the requests sent to a host.",
)
@click.option(
    "--host-down-after",
    type=_POSITIVE,
    default=300.0,
    show_default=True,
    help="Seconds a host may fail every connect before its URLs get host_unavailable.",
)
@click.option("--obey-robots", is_flag=True, help="Obey robots.txt and its Crawl-delay.")
@click.option(
    "--redis",
    "redis_url",
    type=_REDIS_URL,
    help="Coordinate `surefetch worker`s through Redis (redis://HOST:PORT/DB) instead of"
    " fetching here.",
)
@click.option(
    "--job",
    "job_name",
    default="surefetch",
    show_default=True,
    help="With --redis: the job's name (workers join it with the same --job).",
)
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="With --redis: URLs in Redis at most (admitted, not yet recorded).",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=0.5),
    default=30.0,
    show_default=True,
    help="With --redis: seconds a dead worker's URLs and hosts stay leased before others"
    " take them over.",
)
@click.option(
    "--max-deliveries",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="With --redis: times a URL is handed to workers before it ends as worker_lost.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress, status lines or summary.")
@click.option(
    "--status-every",
    type=_POSITIVE,
    default=10.0,
    show_default=True,
    help="When stderr is not a terminal: seconds between status lines.",
)
@click.option(
    "--summary-json",
    type=click.Path(dir_okay=False),
    help="Also write the end-of-run summary as JSON to this file.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=1, max=65535),
    help="Serve Prometheus metrics on 127.0.0.1:PORT while the run goes.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
    help="info: every retry and failure; debug: every record.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per event (url, attempt, kind, status, elapsed_ms).",
)
def fetch(
    input_path: str,
    output: str,
    out_format: str | None,
    in_format: str | None,
    url_column: str,
    concurrency: int,
    per_host: int,
    timeout: float,
    connect_timeout: float,
    read_timeout: float,
    retries: int,
    retry_non_idempotent: bool,
    max_body: int,
    max_redirects: int,
    method: str,
    data: str | None,
    json_body: str | None,
    headers: tuple[tuple[str, str], ...],
    user_agent: str,
    no_body: bool,
    bodies: str | None,
    restart: bool,
    retry_failed: str | None,
    grace: float,
    workers: int,
    loop_name: str,
    quiet: bool,
    status_every: float,
    summary_json: str | None,
    metrics_port: int | None,
    log_level: str,
    log_format: str,
    rate: str | None,
    hosts_file: str | None,
    adaptive: bool,
    retry_budget: float,
    host_down_after: float,
    obey_robots: bool,
    resolver: str,
    dns_servers: str | None,
    deny: tuple[str, ...],
    allow: tuple[str, ...],
    block_private: bool,
    use_netrc: bool,
    netrc_file: str | None,
    cacert: str | None,
    cert: str | None,
    key: str | None,
    insecure: bool,
    tls_min: str | None,
    transport: str,
    cookies: str,
    proxy: str | None,
    proxy_from_env: bool,
    redis_url: str | None,
    job_name: str,
    window: int,
    lease: float,
    max_deliveries: int,
) -> None:
    """Fetch every URL in INPUT and write one record per distinct URL to OUTPUT.

    INPUT is one URL per line, CSV with a header, or JSON lines objects ('-' for
    stdin). An existing OUTPUT is resumed: URLs that already have a record are skipped.
    """
    logs.configure(log_level, log_format)
    if input_path != "-" and not os.path.isfile(input_path):
        raise click.UsageError(f"input file not found: {input_path}")
    if output != "-":
        if os.path.isdir(output):
            raise click.UsageError(f"output is a directory: {output}")
        parent = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(parent):
            raise click.UsageError(f"output folder does not exist: {parent}")
    elif output_format(output, out_format) == "sqlite":
        raise click.UsageError("SQLite output needs a file name, not '-'")
    if summary_json is not None:
        _check_writable("--summary-json", summary_json)
    concurrency = _fit_open_files(concurrency, min(workers, concurrency))
    if data is not None and json_body is not None:
        raise click.UsageError("give --data or --json, not both")
    body: bytes | None = None
    extra = dict(headers)
    if json_body is not None:
        try:
            json.loads(json_body)
        except ValueError as exc:
            raise click.UsageError(f"--json is not valid JSON: {exc}") from None
        body = json_body.encode()
        extra.setdefault("Content-Type", "application/json")
    elif data is not None:
        body = data.encode()
    method = method.upper()
    if not method.isalpha():
        raise click.UsageError(f"bad --method {method!r}")
    try:
        rules = load_host_rules(hosts_file) if hosts_file else ()
        politeness = Politeness(
            rate=parse_rate(rate) if rate else None,
            per_host=min(per_host, concurrency),
            adaptive=adaptive,
            retry_budget=retry_budget,
            host_down_after=host_down_after,
            retry_after_max=120.0,
            rules=rules,
        )
        job = Job(
            input=input_path,
            output=output,
            input_format=in_format,
            output_format=out_format,
            url_column=url_column,
            method=method,
            data=body,
            restart=restart,
            retry_failed=retry_failed,
            store_body=not no_body,
            bodies=bodies,
            workers=min(workers, concurrency),
            loop=loop_name,
            politeness=politeness,
            robots=obey_robots,
            distributed=Distributed(
                redis_url,
                job=job_name,
                window=window,
                lease=lease,
                deliveries=max_deliveries,
            )
            if redis_url
            else None,
        )
        if dns_servers and resolver == "system":
            raise ValueError(
                "--dns-servers needs --resolver async (the system resolver asks the system's)"
            )
        if dns_servers and (why := async_dns_error()) is not None:
            raise ValueError(f"--dns-servers needs aiodns (c-ares), which cannot load: {why}")
        dns = DNS(
            resolver="system" if resolver == "system" else "async",
            servers=tuple(dns_servers.split(",")) if dns_servers else (),
        )
        network = NetworkPolicy(
            rules=_rules_in_order(click.get_current_context(), allow, deny),
            block_private=block_private,
        )
        if key is not None and cert is None:
            raise ValueError("--key needs --cert")
        if insecure and cacert is not None:
            raise ValueError("give --cacert or --insecure, not both")
        tls = TLS(cacert=cacert, cert=cert, key=key, min_version=tls_min, insecure=insecure)
        proxies = _proxies(proxy, proxy_from_env, [(r.match, r.proxy) for r in rules if r.proxy])
        if proxies is not None and proxies.socks is not None and network.filters:
            raise ValueError(
                "--deny and --block-private cannot be kept through a SOCKS proxy: it"
                " resolves and connects on its own; use an HTTP proxy, or none"
            )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if proxies is not None and network.filters:
        click.echo(
            "surefetch: warning: through a proxy, --deny/--allow/--block-private see only"
            " the URLs' hosts (the proxy resolves names): IP addresses in URLs and host name"
            " rules are checked, the addresses names resolve to are not",
            err=True,
        )
    if insecure:
        click.echo(
            "surefetch: warning: --insecure: TLS certificates are not verified; anyone on"
            " the path can read and change what is fetched",
            err=True,
        )
    try:
        client = Client(
            limits=Limits(
                concurrency=concurrency,
                # The pool's per-host cap must let the largest per-host override through.
                per_host=min(max([per_host, *(r.per_host or 0 for r in rules)]), concurrency),
                max_body=max_body,
                max_redirects=max_redirects,
            ),
            timeouts=Timeouts(total=timeout, connect=connect_timeout, read=read_timeout),
            retry=RetryPolicy(
                retries=retries,
                methods=_ALL_METHODS if retry_non_idempotent else IDEMPOTENT_METHODS,
            ),
            headers=extra,
            user_agent=user_agent,
            dns=dns,
            network=network,
            ssl=tls,
            proxy=proxies,
            cookies="per-host" if cookies == "per-host" else "off",
            netrc=netrc_file or use_netrc,
            transport=transport,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if redis_url:
        try:  # before the output is opened: a wrong address changes nothing
            asyncio.run(check_reachable(redis_url))
        except RedisUnavailable as exc:
            _fail(str(exc))
    display = Display(
        quiet=quiet,
        status_every=status_every,
        summary_json=summary_json,
        metrics_port=metrics_port,
        insecure=insecure,
    )
    _run(
        FetchJob(job, client),
        grace=grace,
        again=_again(click.get_current_context()),
        loop=loop_name,
        display=display,
    )


@cli.command()
@click.option(
    "--redis",
    "redis_url",
    type=_REDIS_URL,
    required=True,
    help="The Redis of the job (redis://HOST:PORT/DB), as given to `fetch --redis`.",
)
@click.option(
    "--job",
    "job_name",
    default="surefetch",
    show_default=True,
    help="The job to work for (`fetch --job`).",
)
@_LOOP_OPTION
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="info: joining a job, a status line every 10 s, reclaimed URLs, Redis lost.",
)
@click.option("-q", "--quiet", is_flag=True, help="No summary line at the end.")
def worker(redis_url: str, job_name: str, loop_name: str, log_level: str, quiet: bool) -> None:
    """Fetch the URLs of a job that `surefetch fetch --redis` coordinates, with the
    job's options, until the job is done. Any number may run, anywhere, joining and
    leaving at any time. Ctrl-C or SIGTERM: finish the requests in flight, give the
    rest back, exit."""
    logs.configure(log_level, "text")
    try:
        Distributed(redis_url, job=job_name)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _run_worker(redis_url, job_name, loop_name, quiet=quiet)


class _WorkerSignals:
    """A worker's Ctrl-C and SIGTERM: the first stops it gracefully, a second at once."""

    def __init__(self, stop: asyncio.Event, task: asyncio.Task[Any]) -> None:
        self.stop = stop
        self.task = task
        self.received: list[signal.Signals] = []

    def __call__(self, sig: signal.Signals) -> None:
        self.received.append(sig)
        if len(self.received) > 1:
            self.task.cancel()
            return
        self.stop.set()
        click.echo(
            f"surefetch worker: {sig.name}: finishing the requests in flight; again to stop"
            " at once",
            err=True,
        )


def _run_worker(url: str, job: str, loop_name: str, *, quiet: bool) -> None:
    from ._redis_worker import WorkerTotals, work

    totals = WorkerTotals()
    received: list[signal.Signals] = []
    started = time.monotonic()

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        stop = asyncio.Event()
        signals = _WorkerSignals(stop, task)
        signals.received = received
        for sig in _EXIT_BY_SIGNAL:
            asyncio.get_running_loop().add_signal_handler(sig, signals, sig)
        await work(url, job, stop, totals)

    gc.freeze()
    try:
        _loop.run(main(), loop_name)
    except asyncio.CancelledError:
        pass
    except RuntimeError as exc:
        if "uvloop is not installed" not in str(exc):
            raise
        _fail(str(exc))
    except RedisUnavailable as exc:
        _fail(str(exc))
    if not quiet:
        wall = time.monotonic() - started
        click.echo(
            f"surefetch worker: {totals.records} records ({totals.ok} ok,"
            f" {totals.records - totals.ok} failed, {totals.lost} worker_lost) in {wall:.1f} s;"
            f" {totals.reclaimed} URLs reclaimed from workers gone, {totals.handed_back}"
            " handed back",
            err=True,
        )
    if received:
        sys.exit(_EXIT_BY_SIGNAL[received[0]])


@cli.command()
@click.option(
    "-o",
    "--output",
    default="demo-results.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Where the demo's records go (replaced).",
)
@click.option(
    "--report",
    default="demo-report.html",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Where the demo's HTML report goes (replaced).",
)
@click.option(
    "--urls",
    "count",
    type=click.IntRange(min=10, max=100_000),
    default=3000,
    show_default=True,
    help="How many URLs to fetch.",
)
def demo(output: str, report: str, count: int) -> None:
    """Fetch a few thousand URLs from a built-in local server that misbehaves on purpose."""
    from .demo import demo_urls, serve_demo

    with serve_demo() as base, tempfile.TemporaryDirectory() as tmp:
        urls = demo_urls(base, count)
        listing = os.path.join(tmp, "demo-urls.txt")
        with open(listing, "w") as f:
            f.write("\n".join(urls) + "\n")
        if os.path.exists(output):
            os.unlink(output)  # the demo's own file from an earlier demo
        click.echo(
            f"surefetch demo: a local server at {base} with healthy, slow, flaky, failing,"
            f" redirecting and oversized endpoints; fetching {len(urls)} URLs...",
            err=True,
        )
        client = Client(
            limits=Limits(concurrency=64, per_host=64, max_body=1024 * 1024),
            timeouts=Timeouts(total=5, connect=2, read=2),
            retry=RetryPolicy(retries=2, backoff=0.2, retry_after_max=2),
        )
        _run(
            FetchJob(Job(input=listing, output=output), client),
            grace=2,
            again="",
            loop="auto",
            display=Display(),
        )
    from .report import build_report

    try:
        build_report(output, report)
        where = f"Report: {report} (open it in a browser; it needs no network).\n"
    except click.ClickException as exc:
        where = f"No report: {exc.format_message()}\n"
    click.echo(
        f"\n{where}"
        f"Records: {output} (one JSON object per URL). Try:\n"
        f"  jq -c 'select(.ok | not) | {{url, error}}' {output} | head\n"
        f"  jq -r '.error.kind // \"ok\"' {output} | sort | uniq -c\n"
        f"  surefetch report {output} -o my-report.html\n"
        "  surefetch fetch urls.txt -o results.jsonl   # your own list, one URL per line",
        err=True,
    )


#: Header names whose values are secrets: never shown, not even in the resume hint.
_SECRET_HEADER = re.compile(
    r"(?i)auth|cookie|token|secret|passw|api[-_]?key|session|signature|credential"
)


def _proxies(proxy: str | None, from_env: bool, per_host: list[tuple[str, str]]) -> Proxies | None:
    """--proxy / --proxy-from-env / --hosts proxies -> the client's (None: no proxy)."""
    if proxy is not None and from_env:
        raise ValueError("give --proxy or --proxy-from-env, not both")
    hosts = tuple(per_host)
    if proxy is not None:
        parse_proxy(proxy)  # its own message, credentials masked
        found = Proxies(http=proxy, https=proxy, hosts=hosts)
    elif from_env:
        env = Proxies.from_env(os.environ)
        found = Proxies(http=env.http, https=env.https, no_proxy=env.no_proxy, hosts=hosts)
    else:
        found = Proxies(hosts=hosts)
    return found if found.any else None


def _register_report() -> None:
    from .report import report_command

    cli.add_command(report_command)


_register_report()


def _register_lint() -> None:
    from .lint.command import lint_command

    cli.add_command(lint_command)


_register_lint()


def _again(ctx: click.Context) -> str:
    """The command line to resume with: what was given, as click read it (so every
    spelling of an option comes out the same), minus --restart and --retry-failed,
    with secret header values and URL credentials masked."""
    words = ["surefetch", ctx.info_name or "fetch"]
    rules_done = False
    for param in ctx.command.params:
        name = param.name
        if name is None or name in ("restart", "retry_failed"):
            continue
        if ctx.get_parameter_source(name) is not ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[name]
        if not isinstance(param, click.Option):
            words.append(_shown(value))
            continue
        if param.is_flag:
            spellings = param.opts if value else param.secondary_opts
            if spellings:
                words.append(max(spellings, key=len))
            continue
        if name in ("allow", "deny"):  # both at the first of them, in the order given
            if not rules_done:
                rules_done = True
                for rule in _rules_in_order(ctx, ctx.params["allow"], ctx.params["deny"]):
                    action, pattern = rule.split(" ", 1)
                    words += [f"--{action}", _shown(pattern)]
            continue
        if name == "proxy" and isinstance(value, str) and "://" not in value and "@" in value:
            value = "***@" + value.rsplit("@", 1)[1]  # user:password@host:port, no scheme
        spelling = max(param.opts, key=len)
        for one in value if param.multiple else (value,):
            words += [spelling, _shown(one, header=name == "headers")]
    return " ".join(words)


def _shown(value: object, *, header: bool = False) -> str:
    """One value of the resume hint, masked and quoted for a shell."""
    if header and isinstance(value, tuple):  # a -H option: ("Name", "value")
        name, text = value
        value = f"{name}: ***" if _SECRET_HEADER.search(name) else f"{name}: {text}"
    return shlex.quote(redact_text(str(value)))


def _fit_open_files(concurrency: int, workers: int) -> int:
    """``concurrency``, lowered (with a warning) if the open-files limit, raised as far
    as it goes, cannot hold that many sockets."""
    limit = raise_open_files()
    most = concurrency_for(limit, workers)
    if concurrency <= most:
        return concurrency
    click.echo(
        f"surefetch: warning: the open-files limit is {limit} per process: --concurrency"
        f" lowered from {concurrency} to {most} (raise the limit with ulimit -n)",
        err=True,
    )
    return most


def _check_writable(option: str, path: str) -> None:
    """Refuse, before the run, a file that could not be written after it."""
    if os.path.isdir(path):
        raise click.UsageError(f"{option}: {path} is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise click.UsageError(f"{option}: folder does not exist: {parent}")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise click.UsageError(f"{option}: cannot write {path} (permission denied)")


@dataclass(frozen=True)
class Display:
    """How a run shows itself: live progress or status lines, summary, metrics."""

    quiet: bool = False
    status_every: float = 10.0
    summary_json: str | None = None
    metrics_port: int | None = None
    #: --insecure: said in the summary.
    insecure: bool = False


def _run(fetch_job: FetchJob, *, grace: float, again: str, loop: str, display: Display) -> None:
    """Run the job under signal handling and its display; print the summary; exit with
    the right code."""
    received: list[signal.Signals] = []
    stats = fetch_job.stats
    summary = Summary(started=fetch_job.started)
    metrics = None
    if display.metrics_port is not None:
        try:
            metrics = Metrics(display.metrics_port, stats)
        except RuntimeError as exc:
            _fail(str(exc))
        except OSError as exc:
            _fail(f"cannot serve metrics on 127.0.0.1:{display.metrics_port}: {exc.strerror}")
    job = fetch_job.job
    view: LiveView | StatusLines | None = None
    if not display.quiet:
        total = InputTotal(job.input, header=input_format(job.input, job.input_format) == "csv")
        if on_terminal():
            from .view import LiveView  # rich: only to draw on a terminal

            view = LiveView(summary, stats, total, fetch_job.fleet)
        else:
            view = StatusLines(
                summary, stats, total, display.status_every, sys.stderr, fetch_job.fleet
            )

    def on_record(record: Record) -> None:
        summary.add(record)
        if metrics is not None:
            metrics.observe(record)

    fetch_job.on_record = on_record if metrics is not None else summary.add
    if view is not None:
        fetch_job.watch = view.update

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stop = asyncio.Event()

        def on_signal(sig: signal.Signals) -> None:
            received.append(sig)
            if len(received) == 1:
                stop.set()
                again = "press Ctrl-C" if sig == signal.SIGINT else f"send {sig.name}"
                (view.say if view is not None else say)(
                    f"surefetch: {sig.name}: finishing the requests in flight (up to {grace:g} s);"
                    f" {again} again to stop at once"
                )
                loop.call_later(grace, task.cancel)
            else:
                task.cancel()

        for sig in _EXIT_BY_SIGNAL:
            loop.add_signal_handler(sig, on_signal, sig)
        await fetch_job.execute(stop)

    error: str | None = None
    code = 0
    # What start-up made (modules, classes, option tables) lives as long as the process:
    # set it aside so that the garbage collector does not walk it again and again.
    gc.freeze()
    try:
        _loop.run(main(), loop)
    except RuntimeError as exc:
        if "uvloop is not installed" not in str(exc):
            raise
        error, code = str(exc), EXIT_USAGE
    except asyncio.CancelledError:
        pass
    except KeyboardInterrupt:
        received.append(signal.SIGINT)
    except (
        ExceptionGroup,
        OutputError,
        InputError,
        SinkError,
        OSError,
        RedisUnavailable,
        JobTaken,
    ) as exc:
        leaf = _first_leaf(exc)
        if isinstance(leaf, InputError | OutputError | RedisUnavailable | JobTaken):
            error, code = str(leaf), EXIT_USAGE
        elif isinstance(leaf, OutputGone):
            error, code = str(leaf), 1
        elif isinstance(leaf, SinkError):
            error, code = f"{leaf}; the records written before are kept, run again to go on", 1
        elif isinstance(leaf, WorkerError):
            error, code = f"{leaf}; the records received are kept, run again to go on", 1
        elif isinstance(leaf, OSError):
            error, code = f"cannot go on: {leaf}", 1
        else:
            raise
    finally:
        if view is not None:
            view.close()
        if metrics is not None:
            metrics.close()
    if received and not code:
        code = _EXIT_BY_SIGNAL[received[0]]
    interrupted = bool(received)
    if not display.quiet or interrupted:
        _summarise(fetch_job, interrupted=interrupted, again=again, insecure=display.insecure)
    if not display.quiet and summary.records:
        click.echo(summary.render(stats), err=True)
    if display.summary_json is not None:
        data = summary.as_dict(stats)
        data["output"] = job.output
        data["interrupted"] = interrupted
        data["tls_verified"] = not display.insecure
        data["error"] = error
        try:
            with open(display.summary_json, "w") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
        except OSError as exc:
            click.echo(
                f"surefetch: error: cannot write --summary-json {display.summary_json}:"
                f" {exc.strerror or exc}",
                err=True,
            )
            code = code or 1
    if error is not None:
        click.echo(f"surefetch: error: {error}", err=True)
    if code:
        sys.exit(code)


def _summarise(
    fetch_job: FetchJob, *, interrupted: bool, again: str, insecure: bool = False
) -> None:
    stats, sink, resume = fetch_job.stats, fetch_job.sink, fetch_job.resume
    if sink is None or resume is None:
        return
    wall = fetch_job.elapsed
    done = sink.written
    failed = sum(fetch_job.kinds.values())
    detail = ", ".join(f"{kind} {n}" for kind, n in fetch_job.kinds.most_common())
    parts = [
        f"{done} records ({done - failed} ok, {failed} failed"
        + (f": {detail}" if detail else "")
        + f") in {wall:.1f} s ({done / wall if wall else 0:.0f}/s)"
    ]
    if sink.durable < done:
        parts.append(
            f"{done - sink.durable} of them could not be written (the next run fetches them)"
        )
    if workers := fetch_job.fleet.summary_text():
        parts.append(workers)
    if resume.moved_to:
        parts.append(f"old output moved to {resume.moved_to}")
    if resume.repaired:
        parts.append(
            f"cut a torn last line ({resume.repaired} bytes) left by a crash,"
            f" kept in {resume.torn_to}"
        )
    if resume.records or stats.already_done:
        parts.append(f"{stats.already_done} URLs already had a record")
    if resume.dropped:
        parts.append(f"{resume.dropped} failed records taken out to fetch again")
    if stats.duplicates:
        parts.append(f"{stats.duplicates} duplicate lines skipped")
    if fetch_job.removed:
        parts.append(
            f"{fetch_job.removed} records for URLs no longer in the input moved to"
            f" {fetch_job.removed_to}"
        )
    if sink.path != "-":
        parts.append(f"written to {sink.path}")
    if insecure:
        parts.append("TLS certificates were not verified (--insecure)")
    line = "surefetch: " + "; ".join(parts)
    if interrupted:
        line = "surefetch: interrupted: " + line.removeprefix("surefetch: ")
        if again and not resume.stream:
            line += f"\nTo continue where it stopped, run the same command again:\n  {again}"
    click.echo(line, err=True)


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _fail(message: str, *, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"surefetch: error: {message}", err=True)
    sys.exit(code)


def _retry_failed_alone(args: list[str]) -> list[str]:
    """``--retry-failed urls.txt -o out``: click would take ``urls.txt`` as the option's
    value. A word after it that is no list of kinds but names an input is the input."""
    args = list(args)
    for i, word in enumerate(args[:-1]):
        if word == "--retry-failed":
            value = args[i + 1]
            try:
                retry_filter(value)
            except ValueError:
                if value == "-" or os.path.exists(value):
                    args[i] = "--retry-failed=all"
    return args


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``surefetch`` command."""
    logs.configure()
    args = _retry_failed_alone(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="surefetch", standalone_mode=False)
    except click.UsageError as exc:
        # One line, no traceback, exit 2.
        _fail(exc.format_message().replace("\n", " "))
    except click.ClickException as exc:
        _fail(exc.format_message().replace("\n", " "), code=exc.exit_code)
    except click.Abort:
        sys.exit(EXIT_SIGINT)


if __name__ == "__main__":
    main()
