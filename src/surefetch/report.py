"""``surefetch report``: one self-contained HTML page that shows what a run did.

A run's output can hold millions of records, so the page is built in one streaming
pass over it (JSON lines line by line, SQLite through a cursor) into aggregates of
fixed size; memory does not grow with the number of records:

* outcomes and throughput over time: counts per time bin and outcome. Bins are
  aligned to the epoch and made coarser (by whole multiples, so no count is ever
  split) whenever more than ``_TIME_BINS_HELD`` of them are in use; the page then
  shows at most ``TIME_BINS`` bins over the whole span;
* latency: a fixed histogram of 100 logarithmic buckets per decade from 0.1 ms to
  1000 s; percentiles read from it are within about 2.3 % of the exact value;
* failures by host: counts for the busiest hosts, pruned to the ``HOSTS_TRACKED`` with
  most failures whenever twice that many are held (the page says when that happened,
  because counts of pruned hosts are then lower bounds);
* the failures table: the ``FAILURES_SHOWN`` most recent failures (a bounded heap).

The page embeds plotly's JavaScript once and every chart's data, so it opens without
any network. URL credentials never reach it: URLs, messages and host names pass
through :mod:`surefetch.redact`.
"""

from __future__ import annotations

import dataclasses
import heapq
import html
import math
import os
import re
import sqlite3
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import click
import msgspec

from .errors import KINDS
from .redact import redact_text, redact_url

__all__ = [
    "FAILURES_SHOWN",
    "HOSTS_SHOWN",
    "HOSTS_TRACKED",
    "TIME_BINS",
    "MissingExtraError",
    "ReportError",
    "ReportStats",
    "build_report",
    "default_report_path",
    "report_command",
]

#: Most time bins shown in the charts over time.
TIME_BINS: Final = 300
#: Most failures listed in the table (the most recent ones).
FAILURES_SHOWN: Final = 2000
#: Hosts whose failure counts are kept at each pruning (see the module docstring).
HOSTS_TRACKED: Final = 10_000
#: Hosts shown in the "failures by host" chart.
HOSTS_SHOWN: Final = 15

# Distinct time bins held while reading, before they are merged into coarser ones.
_TIME_BINS_HELD: Final = 3000
# Bin widths in milliseconds. Each is a whole multiple of the one before, so coarser
# bins are exact unions of finer ones.
_BIN_WIDTHS_MS: Final[tuple[int, ...]] = (
    1,
    2,
    10,
    20,
    100,
    200,
    1_000,
    2_000,
    10_000,
    20_000,
    60_000,
    120_000,
    600_000,
    1_200_000,
    3_600_000,
    7_200_000,
    21_600_000,
    43_200_000,
    *(86_400_000 * 2**k for k in range(16)),
)
# Latency histogram: buckets of 1/100 decade from 10**_LAT_LOG_MIN ms (0.1 ms) to
# 10**(_LAT_LOG_MIN + _LAT_DECADES) ms (1000 s), plus one below and one above.
_LAT_LOG_MIN: Final = -1
_LAT_DECADES: Final = 7
_LAT_PER_DECADE: Final = 100
_LAT_SHOWN_PER_DECADE: Final = 10
_LAT_BUCKETS: Final = _LAT_DECADES * _LAT_PER_DECADE + 2
# Distinct status codes and unknown error kinds counted one by one; more are lumped.
_STATUSES_HELD: Final = 1000
_EXTRA_KINDS_HELD: Final = 16
# Longest URL and message kept for the failures table (cut after redaction).
_URL_CHARS: Final = 600
_MESSAGE_CHARS: Final = 1000

OK: Final = "ok"
_OTHER_KINDS: Final = "other kinds"
_NO_KIND: Final = "unknown"

#: One color per outcome, the same in every chart: ok is green and no error kind is.
KIND_COLORS: Final[dict[str, str]] = {
    OK: "#2ca02c",
    "invalid_url": "#8c564b",
    "dns_error": "#9467bd",
    "connect_refused": "#d62728",
    "connect_error": "#e377c2",
    "connect_timeout": "#ff9896",
    "tls_error": "#17becf",
    "read_timeout": "#1f77b4",
    "total_timeout": "#aec7e8",
    "server_disconnected": "#c5b0d5",
    "connection_reset": "#7f7f7f",
    "payload_error": "#bcbd22",
    "protocol_error": "#c49c94",
    "too_many_redirects": "#f7b6d2",
    "redirect_blocked": "#dbdb8d",
    "body_too_large": "#ffbb78",
    "http_status": "#ff7f0e",
    "host_unavailable": "#393b79",
    "robots_disallowed": "#7b4173",
    "blocked_address": "#637939",
    "worker_lost": "#e7969c",
    "internal_error": "#262626",
    _OTHER_KINDS: "#b0b0b0",
}
# For kinds this version does not know (a newer surefetch wrote the output).
_SPARE_COLORS: Final = ("#843c39", "#5254a3", "#ad494a", "#a55194", "#8c6d31", "#6b6ecf")

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_SQLITE_COLUMNS: Final = (
    "url",
    "ok",
    "status",
    "error_kind",
    "error_message",
    "attempts",
    "elapsed_ms",
    "bytes",
    "fetched_at",
)
_HOST_CHARS: Final = re.compile(r"[a-z0-9.\-_:\[\]%]{1,120}")
_AUTHORITY: Final = re.compile(r"[^/?#\s]*")
_KIND_NAME: Final = re.compile(r"[a-z0-9_]{1,40}")


class ReportError(click.UsageError):
    """The input cannot be reported on: missing, not a surefetch output, or corrupt.

    A :class:`click.UsageError`, so the command line prints it as one line and exits 2.
    """


class MissingExtraError(click.ClickException):
    """plotly, which draws the charts, is not installed (it is an optional extra)."""

    def __init__(self) -> None:
        super().__init__(
            "surefetch report needs plotly, which is not installed: pip install 'surefetch[report]'"
        )


@dataclass(frozen=True)
class ReportStats:
    """The totals a report shows, returned so that callers and tests can check them."""

    records: int
    ok: int
    failed: int
    #: Sum of ``bytes`` over all records.
    bytes: int
    #: Requests beyond the first: sum of ``attempts - 1`` (never below 0 per record).
    retries: int
    #: The earliest and latest ``fetched_at``.
    first: datetime
    last: datetime
    #: Seconds from ``first`` to ``last``.
    span_seconds: float
    #: Records per second over the span (``records`` when the span is 0).
    throughput: float
    #: Failures per error kind.
    kinds: dict[str, int]
    #: Records per final status; ``None`` counts records without a response.
    statuses: dict[int | None, int]
    #: Approximate latency percentiles in ms: keys ``p50``, ``p90``, ``p99``.
    latency_ms: dict[str, float]
    #: Rows in the failures table (at most :data:`FAILURES_SHOWN`).
    failures_listed: int
    #: Hosts with failures in the "by host" chart, busiest first, with their counts.
    top_hosts: list[tuple[str, int]]
    #: True when more hosts failed than could be tracked (host counts are lower bounds).
    hosts_approximate: bool
    #: Width of one time bin in the charts over time, in seconds.
    bin_seconds: float
    #: True when the last JSON line was incomplete (a run still writing, or a crash)
    #: and was left out.
    torn_tail: bool = False
    #: Size of the written HTML file.
    html_bytes: int = field(default=0, compare=False)


# --- reading ------------------------------------------------------------------------


class _Error(msgspec.Struct):
    kind: str
    message: str = ""


class _Line(msgspec.Struct):
    """The fields of a JSON record that the report needs; the rest (bodies) is skipped."""

    url: str
    ok: bool
    status: int | None
    error: _Error | None
    attempts: int
    elapsed_ms: float
    bytes: int
    fetched_at: str


# (url, ok, status, kind or None, message or None, attempts, elapsed_ms, bytes, fetched_at)
_Row = tuple[str, bool, int | None, str | None, str | None, int, float, int, str]

_line_decoder = msgspec.json.Decoder(_Line)


def _is_sqlite(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(len(_SQLITE_MAGIC))
    if head == _SQLITE_MAGIC:
        return True
    if path.lower().endswith((".sqlite", ".sqlite3", ".db")):
        raise ReportError(f"{path} is not a SQLite database")
    return False


def _jsonl_rows(path: str, torn: list[bool]) -> Iterator[_Row]:
    """Rows of a JSON lines output. A last line without its newline that does not
    parse is what a run still writing (or a crash) leaves: it is skipped, and
    ``torn[0]`` set, rather than refusing the whole file."""
    decode = _line_decoder.decode
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                r = decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                if not line.strip():
                    continue
                if not line.endswith(b"\n"):
                    torn[0] = True
                    return
                what = "a surefetch output" if number == 1 else "a surefetch record"
                raise ReportError(
                    f"{path} line {number} is not {what}: {_one_line(str(exc))}"
                ) from None
            error = r.error
            yield (
                r.url,
                r.ok,
                r.status,
                error.kind if error else None,
                error.message if error else None,
                r.attempts,
                r.elapsed_ms,
                r.bytes,
                r.fetched_at,
            )


def _sqlite_rows(path: str) -> Iterator[_Row]:
    """Rows of the ``records`` table, read through a read-only connection."""
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise ReportError(f"cannot open {path}: {exc}") from None
    try:
        try:
            columns = {row[1] for row in db.execute("PRAGMA table_info(records)")}
        except sqlite3.DatabaseError as exc:
            raise ReportError(f"{path} is not a usable SQLite database: {exc}") from None
        missing = [c for c in _SQLITE_COLUMNS if c not in columns]
        if missing:
            raise ReportError(
                f"{path} is not a surefetch output: no table 'records' with columns "
                + ", ".join(missing)
            )
        cursor = db.execute(f"SELECT rowid, {', '.join(_SQLITE_COLUMNS)} FROM records")
        for rowid, url, ok, status, kind, message, attempts, elapsed, size, at in cursor:
            if not (
                isinstance(url, str)
                and isinstance(ok, int)
                and isinstance(at, str)
                and isinstance(attempts, int)
                and isinstance(elapsed, int | float)
                and isinstance(size, int)
                and (status is None or isinstance(status, int))
                and (kind is None or isinstance(kind, str))
                and (message is None or isinstance(message, str))
            ):
                raise ReportError(f"{path}: row {rowid} of table records is not a record")
            yield url, bool(ok), status, kind, message, attempts, float(elapsed), size, at
    except sqlite3.DatabaseError as exc:
        raise ReportError(f"cannot read {path}: {_one_line(str(exc))}") from None
    finally:
        db.close()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _epoch_ms(text: str) -> int:
    """``2026-11-25T16:04:05.997Z`` -> milliseconds since the epoch (no zone = UTC)."""
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return round(at.timestamp() * 1000)


# --- aggregating --------------------------------------------------------------------


def _latency_bucket(ms: float) -> int:
    if not ms >= 10.0**_LAT_LOG_MIN:  # also NaN
        return 0
    i = 1 + int((math.log10(ms) - _LAT_LOG_MIN) * _LAT_PER_DECADE)
    return min(i, _LAT_BUCKETS - 1)


def _bucket_low(i: int) -> float:
    """Lower edge (ms) of fine latency bucket ``i`` (1 .. _LAT_BUCKETS-1)."""
    return float(10.0 ** (_LAT_LOG_MIN + (i - 1) / _LAT_PER_DECADE))


def _host_of(url: str) -> str:
    """``host[:port]`` of a URL, lower-cased, never with userinfo; a placeholder when
    the URL has none or it has characters no host name has."""
    start = url.find("://")
    if start < 0:
        return "(no host)"
    match = _AUTHORITY.match(url, start + 3)
    authority = match.group() if match else ""
    host = authority.rpartition("@")[2].lower()
    if not host:
        return "(no host)"
    return host if _HOST_CHARS.fullmatch(host) else "(invalid host)"


@dataclass(order=True)
class _Failure:
    """One row of the failures table; ordered by time, then by position in the file."""

    at_ms: int
    seq: int
    url: str = field(compare=False)
    kind: str = field(compare=False)
    status: int | None = field(compare=False)
    message: str = field(compare=False)
    attempts: int = field(compare=False)
    elapsed_ms: float = field(compare=False)
    fetched_at: str = field(compare=False)


class _Aggregate:
    """Everything the page shows, in structures of bounded size."""

    def __init__(self) -> None:
        self.records = 0
        self.ok = 0
        self.bytes = 0
        self.retries = 0
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        # Outcome series: ok, the known kinds, then kinds this version does not know.
        self.series: list[str] = [OK, *KINDS]
        self.series_index: dict[str, int] = {name: i for i, name in enumerate(self.series)}
        self.series_slots = len(self.series) + _EXTRA_KINDS_HELD + 1
        self.kind_counts = [0] * self.series_slots
        self.width_step = 0
        self.bins: dict[int, list[int]] = {}
        self.lat_ok = [0] * _LAT_BUCKETS
        self.lat_failed = [0] * _LAT_BUCKETS
        self.statuses: dict[int | None, int] = {}
        self.other_statuses = 0
        self.host_totals: dict[str, int] = {}
        self.host_kinds: dict[str, dict[int, int]] = {}
        self.hosts_pruned = 0
        self.failures: list[_Failure] = []

    def series_of(self, kind: str | None) -> int:
        """Index of the outcome series of a failure with this error kind."""
        name = kind or _NO_KIND
        i = self.series_index.get(name)
        if i is None and not _KIND_NAME.fullmatch(name):
            # Not a kind name (a foreign or damaged file): it would be shown as a
            # legend label, where plotly interprets some HTML.
            name = _NO_KIND
            i = self.series_index.get(name)
        if i is None:
            if len(self.series) < self.series_slots - 1:
                i = len(self.series)
                self.series.append(name)
            else:
                if _OTHER_KINDS not in self.series_index:
                    self.series.append(_OTHER_KINDS)
                    self.series_index[_OTHER_KINDS] = self.series_slots - 1
                i = self.series_slots - 1
            self.series_index[name] = i
        return i

    def add(self, row: _Row, at_ms: int) -> None:
        url, ok, status, kind, message, attempts, elapsed_ms, size, fetched_at = row
        self.records += 1
        self.bytes += size
        if attempts > 1:
            self.retries += attempts - 1
        if self.first_ms is None or at_ms < self.first_ms:
            self.first_ms = at_ms
        if self.last_ms is None or at_ms > self.last_ms:
            self.last_ms = at_ms

        s = 0 if ok else self.series_of(kind)
        self.kind_counts[s] += 1
        key = at_ms // _BIN_WIDTHS_MS[self.width_step]
        counts = self.bins.get(key)
        if counts is None:
            if len(self.bins) >= _TIME_BINS_HELD:
                self._coarsen()
                key = at_ms // _BIN_WIDTHS_MS[self.width_step]
                counts = self.bins.get(key)
            if counts is None:
                counts = self.bins[key] = [0] * self.series_slots
        counts[s] += 1

        b = _latency_bucket(elapsed_ms)
        if ok:
            self.ok += 1
            self.lat_ok[b] += 1
        else:
            self.lat_failed[b] += 1

        n = self.statuses.get(status)
        if n is not None:
            self.statuses[status] = n + 1
        elif len(self.statuses) < _STATUSES_HELD:
            self.statuses[status] = 1
        else:
            self.other_statuses += 1

        if not ok:
            self._add_host(s, url)
            self._add_failure_row(
                url, kind, status, message, attempts, elapsed_ms, at_ms, fetched_at
            )

    def _coarsen(self) -> None:
        """Merge time bins into the next coarser width until few enough are in use."""
        while len(self.bins) >= _TIME_BINS_HELD and self.width_step + 1 < len(_BIN_WIDTHS_MS):
            old = _BIN_WIDTHS_MS[self.width_step]
            self.width_step += 1
            factor = _BIN_WIDTHS_MS[self.width_step] // old
            merged: dict[int, list[int]] = {}
            for key, counts in self.bins.items():
                into = merged.get(key // factor)
                if into is None:
                    merged[key // factor] = counts
                else:
                    for i, n in enumerate(counts):
                        into[i] += n
            self.bins = merged

    def _add_host(self, s: int, url: str) -> None:
        host = _host_of(url)
        total = self.host_totals.get(host)
        if total is None:
            if len(self.host_totals) >= 2 * HOSTS_TRACKED:
                self._prune_hosts()
            self.host_totals[host] = 1
            self.host_kinds[host] = {s: 1}
        else:
            self.host_totals[host] = total + 1
            by_kind = self.host_kinds[host]
            by_kind[s] = by_kind.get(s, 0) + 1

    def _prune_hosts(self) -> None:
        keep = heapq.nlargest(HOSTS_TRACKED, self.host_totals.items(), key=lambda kv: kv[1])
        self.hosts_pruned += len(self.host_totals) - len(keep)
        self.host_totals = dict(keep)
        self.host_kinds = {host: self.host_kinds[host] for host, _ in keep}

    def _add_failure_row(
        self,
        url: str,
        kind: str | None,
        status: int | None,
        message: str | None,
        attempts: int,
        elapsed_ms: float,
        at_ms: int,
        fetched_at: str,
    ) -> None:
        seq = self.records
        heap = self.failures
        if len(heap) >= FAILURES_SHOWN and (at_ms, seq) <= (heap[0].at_ms, heap[0].seq):
            return  # older than every failure listed
        # Redact before cutting: a cut could separate a password from its "@".
        row = _Failure(
            at_ms,
            seq,
            redact_url(url)[:_URL_CHARS],
            redact_text(kind)[:60] if kind else _NO_KIND,
            status,
            redact_text(message or "")[:_MESSAGE_CHARS],
            attempts,
            elapsed_ms,
            fetched_at,
        )
        if len(heap) < FAILURES_SHOWN:
            heapq.heappush(heap, row)
        else:
            heapq.heapreplace(heap, row)

    # --- derived values

    def percentile(self, q: float) -> float:
        """The ``q`` quantile of elapsed_ms from the histogram, interpolated
        geometrically inside its bucket (bucket width 2.3 %)."""
        total = self.records
        target = q * total
        seen = 0
        for i in range(_LAT_BUCKETS):
            n = self.lat_ok[i] + self.lat_failed[i]
            if n and seen + n >= target:
                if i == 0:
                    return 0.0
                low = _bucket_low(i)
                if i == _LAT_BUCKETS - 1:
                    return low
                fraction = (target - seen) / n
                return float(low * 10.0 ** (fraction / _LAT_PER_DECADE))
            seen += n
        return 0.0

    def display_width_ms(self) -> int:
        """The finest bin width (at least the one held) giving at most TIME_BINS bins."""
        assert self.first_ms is not None and self.last_ms is not None
        step = self.width_step
        while step + 1 < len(_BIN_WIDTHS_MS):
            width = _BIN_WIDTHS_MS[step]
            if self.last_ms // width - self.first_ms // width + 1 <= TIME_BINS:
                break
            step += 1
        return _BIN_WIDTHS_MS[step]

    def display_bins(self) -> tuple[int, list[int], list[list[int]]]:
        """(width ms, bin start times in ms, counts per bin per series), gaps included."""
        assert self.first_ms is not None and self.last_ms is not None
        width = self.display_width_ms()
        factor = width // _BIN_WIDTHS_MS[self.width_step]
        merged: dict[int, list[int]] = {}
        for key, counts in self.bins.items():
            into = merged.setdefault(key // factor, [0] * self.series_slots)
            for i, n in enumerate(counts):
                into[i] += n
        first, last = self.first_ms // width, self.last_ms // width
        keys = range(first, last + 1)
        empty = [0] * self.series_slots
        return width, [k * width for k in keys], [merged.get(k, empty) for k in keys]

    def top_hosts(self) -> list[tuple[str, int]]:
        """The hosts with most failures, busiest first (ties by name)."""
        return sorted(self.host_totals.items(), key=lambda kv: (-kv[1], kv[0]))[:HOSTS_SHOWN]


# --- drawing ------------------------------------------------------------------------


def _plotly() -> tuple[Any, Any]:
    """plotly's ``graph_objects`` and ``offline`` modules, or a clear error."""
    try:
        import plotly.graph_objects as go
        import plotly.offline as offline
    except ImportError:
        raise MissingExtraError() from None
    return go, offline


def _color(name: str, spare: dict[str, str]) -> str:
    color = KIND_COLORS.get(name)
    if color is None:
        color = spare.setdefault(name, _SPARE_COLORS[len(spare) % len(_SPARE_COLORS)])
    return color


def _ms_text(ms: float) -> str:
    """A duration for people: ``0.42 ms``, ``12.3 ms``, ``1.25 s``, ``2.5 min``, ``3.1 h``."""
    if ms == 0:
        return "0 ms"
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 100:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.3g} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.3g} min"
    if ms < 86_400_000:
        return f"{ms / 3_600_000:.3g} h"
    return f"{ms / 86_400_000:.3g} days"


def _decade_text(decade: float) -> str:
    """Tick label of a power of ten of milliseconds: ``0.1 ms`` ... ``100 ms``, ``1 s`` ..."""
    ms = 10.0**decade
    return f"{ms:g} ms" if ms < 1000 else f"{ms / 1000:g} s"


def _bytes_text(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n:,} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _iso_ms(ms: int) -> str:
    """Epoch ms -> ``2026-11-25 16:04:05.997`` (UTC), the form plotly's date axes read."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


_BASE_LAYOUT: Final[dict[str, Any]] = {
    "template": "plotly_white",
    "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13},
    "margin": {"l": 70, "r": 30, "t": 90, "b": 60},
    "hoverlabel": {"namelength": -1},
}
_CONFIG: Final[dict[str, Any]] = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
}


def _div(go: Any, div_id: str, traces: list[Any], layout: dict[str, Any]) -> str:
    fig = go.Figure(data=traces, layout={**_BASE_LAYOUT, **layout})
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG))


def _title(text: str, sub: str) -> dict[str, Any]:
    """A chart title with a smaller explanatory line under it (escaped: it may hold data)."""
    return {
        "text": f"<b>{html.escape(text)}</b><br><sup>{html.escape(sub)}</sup>",
        "font": {"size": 17},
        "x": 0.01,
        "xanchor": "left",
        "yref": "container",
        "y": 1,
        "yanchor": "top",
        "pad": {"t": 14},
    }


def _right_legend(title: str) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "orientation": "v",
        "x": 1.01,
        "xanchor": "left",
        "y": 1,
        "yanchor": "top",
        "traceorder": "normal",
    }


def _outcomes_chart(go: Any, agg: _Aggregate, spare: dict[str, str]) -> str:
    width, starts, bins = agg.display_bins()
    x = [_iso_ms(t) for t in starts]
    traces = []
    for i, name in enumerate(agg.series):
        if agg.series_index.get(name) != i or not agg.kind_counts[i]:
            continue
        traces.append(
            go.Bar(
                name=name,
                x=x,
                y=[counts[i] for counts in bins],
                width=width,
                offset=0,
                marker={"color": _color(name, spare), "line": {"width": 0}},
                hovertemplate="%{x}<br>" + html.escape(name) + ": %{y}<extra></extra>",
            )
        )
    return _div(
        go,
        "chart-outcomes",
        traces,
        {
            "title": _title("Outcomes over time", f"records per {_ms_text(width)} bin, by outcome"),
            "barmode": "stack",
            "bargap": 0,
            # Tall enough for every legend entry without a scroll bar.
            "height": max(440, 190 + 21 * len(traces)),
            "xaxis": {"title": {"text": "fetched_at (UTC)"}, "type": "date"},
            "yaxis": {"title": {"text": "records"}},
            "legend": _right_legend("outcome"),
        },
    )


def _throughput_chart(go: Any, agg: _Aggregate, stats: ReportStats) -> str:
    width, starts, bins = agg.display_bins()
    seconds = width / 1000
    x = [_iso_ms(t) for t in starts] + [_iso_ms(starts[-1] + width)]
    total = [sum(counts) / seconds for counts in bins]
    failed = [(sum(counts) - counts[0]) / seconds for counts in bins]
    traces = [
        go.Scatter(
            name="all records",
            x=x,
            y=[*total, total[-1]],
            mode="lines",
            line={"shape": "hv", "color": "#1f77b4", "width": 2},
            fill="tozeroy",
            fillcolor="rgba(31,119,180,0.15)",
            hovertemplate="%{x}<br>%{y:.1f} records/s<extra></extra>",
        ),
        go.Scatter(
            name="failed",
            x=x,
            y=[*failed, failed[-1]],
            mode="lines",
            line={"shape": "hv", "color": "#d62728", "width": 1.5},
            hovertemplate="%{x}<br>%{y:.1f} failed/s<extra></extra>",
        ),
    ]
    return _div(
        go,
        "chart-throughput",
        traces,
        {
            "title": _title(
                "Throughput",
                f"records completed per second in {_ms_text(width)} bins;"
                f" {stats.throughput:,.1f}/s over the whole span",
            ),
            "height": 360,
            "xaxis": {"title": {"text": "fetched_at (UTC)"}, "type": "date"},
            "yaxis": {"title": {"text": "records per second"}, "rangemode": "tozero"},
            "legend": _right_legend(""),
        },
    )


def _latency_chart(go: Any, agg: _Aggregate, stats: ReportStats) -> str:
    group = _LAT_PER_DECADE // _LAT_SHOWN_PER_DECADE
    step = 1 / _LAT_SHOWN_PER_DECADE
    xs: list[float] = []
    labels: list[str] = []
    ok: list[int] = []
    failed: list[int] = []
    # The bucket below 0.1 ms (including 0: URLs rejected before sending) gets its own
    # bar just left of the scale, the one above 1000 s just right of it.
    xs.append(_LAT_LOG_MIN - step / 2)
    labels.append(f"< {_ms_text(10.0**_LAT_LOG_MIN)}")
    ok.append(agg.lat_ok[0])
    failed.append(agg.lat_failed[0])
    for g in range(_LAT_DECADES * _LAT_SHOWN_PER_DECADE):
        lo = 1 + g * group
        low = _LAT_LOG_MIN + g * step
        xs.append(low + step / 2)
        labels.append(f"{_ms_text(10.0**low)} to {_ms_text(10.0 ** (low + step))}")
        ok.append(sum(agg.lat_ok[lo : lo + group]))
        failed.append(sum(agg.lat_failed[lo : lo + group]))
    top = _LAT_LOG_MIN + _LAT_DECADES
    xs.append(top + step / 2)
    labels.append(f"≥ {_ms_text(10.0**top)}")
    ok.append(agg.lat_ok[-1])
    failed.append(agg.lat_failed[-1])
    used = [i for i in range(len(xs)) if ok[i] or failed[i]]
    lo_i, hi_i = used[0], used[-1]
    traces = [
        go.Bar(
            name=name,
            x=xs[lo_i : hi_i + 1],
            y=values[lo_i : hi_i + 1],
            customdata=labels[lo_i : hi_i + 1],
            width=step,
            marker={"color": color, "line": {"width": 0}},
            hovertemplate="%{customdata}<br>" + name + ": %{y}<extra></extra>",
        )
        for name, values, color in (
            ("ok", ok, KIND_COLORS[OK]),
            ("failed", failed, KIND_COLORS["connect_refused"]),
        )
    ]
    # Ticks on whole decades, plus the two outer bars when they are shown (then the
    # decade tick next to each is left out: its label would collide).
    top_decade = _LAT_LOG_MIN + _LAT_DECADES
    low_end = max(math.floor(xs[lo_i]), _LAT_LOG_MIN + (1 if lo_i == 0 else 0))
    high_end = min(math.ceil(xs[hi_i]), top_decade - (1 if hi_i == len(xs) - 1 else 0))
    ticks: list[float] = list(range(low_end, high_end + 1))
    tick_text = [_decade_text(t) for t in ticks]
    if lo_i == 0:
        ticks.insert(0, xs[0])
        tick_text.insert(0, labels[0])
    if hi_i == len(xs) - 1:
        ticks.append(xs[-1])
        tick_text.append(labels[-1])
    shapes = []
    annotations = []
    for n, (name, ms) in enumerate(stats.latency_ms.items()):
        x = math.log10(max(ms, 10.0**_LAT_LOG_MIN))
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": x,
                "x1": x,
                "y0": 0,
                "y1": 1,
                "line": {"color": "#444", "width": 1.5, "dash": "dash"},
            }
        )
        annotations.append(
            {
                "x": x,
                "xref": "x",
                "y": 1 - 0.09 * n,
                "yref": "paper",
                "text": f"{name} {_ms_text(ms)}",
                "showarrow": False,
                "xanchor": "left",
                "xshift": 4,
                "bgcolor": "rgba(255,255,255,0.85)",
                "font": {"size": 12},
            }
        )
    quantiles = " · ".join(f"{k} ≈ {_ms_text(v)}" for k, v in stats.latency_ms.items())
    return _div(
        go,
        "chart-latency",
        traces,
        {
            "title": _title("Latency", f"green ok, red failed; {quantiles}"),
            "showlegend": False,
            "barmode": "stack",
            "bargap": 0.05,
            "height": 420,
            "xaxis": {
                "title": {"text": "elapsed_ms per URL, log scale (retries and waits included)"},
                "tickvals": ticks,
                "ticktext": tick_text,
                "range": [min(ticks[0], xs[lo_i]) - 0.1, max(ticks[-1], xs[hi_i]) + 0.1],
                "showgrid": True,
            },
            "yaxis": {"title": {"text": "records"}},
            "shapes": shapes,
            "annotations": annotations,
        },
    )


def _hosts_chart(go: Any, agg: _Aggregate, stats: ReportStats, spare: dict[str, str]) -> str:
    hosts = [host for host, _ in reversed(stats.top_hosts)]  # busiest at the top
    traces = []
    for i, name in enumerate(agg.series):
        if i == 0 or agg.series_index.get(name) != i or not agg.kind_counts[i]:
            continue
        values = [agg.host_kinds[h].get(i, 0) for h in hosts]
        if not any(values):
            continue
        traces.append(
            go.Bar(
                name=name,
                y=hosts,
                x=values,
                orientation="h",
                marker={"color": _color(name, spare), "line": {"width": 0}},
                hovertemplate="%{y}<br>" + html.escape(name) + ": %{x}<extra></extra>",
            )
        )
    distinct = len(agg.host_totals) + agg.hosts_pruned
    of = f"more than {distinct:,}" if agg.hosts_pruned else f"{distinct:,}"
    return _div(
        go,
        "chart-hosts",
        traces,
        {
            "title": _title(
                "Failures by host",
                f"top {len(hosts)} of {of} hosts with failures, by error kind",
            ),
            "barmode": "stack",
            # Tall enough for a bar per host and for the legend's entries.
            "height": 170 + max(30 * len(hosts), 22 * (len(traces) + 1)),
            "margin": {"l": 20, "r": 30, "t": 70, "b": 60},
            "xaxis": {"title": {"text": "failed records"}},
            "yaxis": {"automargin": True, "type": "category", "ticksuffix": "  "},
            "legend": _right_legend("error kind"),
        },
    )


def _status_color(status: int | None) -> str:
    if status is None:
        return "#7f7f7f"
    return {2: "#2ca02c", 3: "#1f77b4", 4: "#ff7f0e", 5: "#d62728"}.get(status // 100, "#9467bd")


def _statuses_chart(go: Any, agg: _Aggregate) -> str:
    items = sorted(agg.statuses.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    labels = ["no response" if status is None else str(status) for status, _ in items]
    counts = [n for _, n in items]
    colors = [_status_color(status) for status, _ in items]
    if agg.other_statuses:
        labels.append("other")
        counts.append(agg.other_statuses)
        colors.append("#b0b0b0")
    trace = go.Bar(
        x=labels,
        y=counts,
        marker={"color": colors},
        text=[f"{n:,}" for n in counts],
        textposition="outside",
        cliponaxis=False,
        hovertemplate="%{x}: %{y} records<extra></extra>",
        showlegend=False,
    )
    return _div(
        go,
        "chart-statuses",
        [trace],
        {
            "title": _title(
                "Final status codes", "records per status: 2xx green, 3xx blue, 4xx orange, 5xx red"
            ),
            "height": 420,
            "xaxis": {"title": {"text": "status"}, "type": "category"},
            "yaxis": {"title": {"text": "records"}, "rangemode": "tozero"},
        },
    )


# --- the page -----------------------------------------------------------------------

_CSS: Final = """
:root { --fg: #1d232a; --muted: #5f6b7a; --line: #e3e7ec; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
main { max-width: 1360px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 10px; }
.sub { color: var(--muted); margin: 0 0 18px; word-break: break-all; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr));
  gap: 12px; margin-bottom: 18px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .04em; }
.card .value { font-size: 22px; font-weight: 600; margin-top: 2px; white-space: nowrap; }
.card .note { color: var(--muted); font-size: 12px; }
.panel { background: #fff; border: 1px solid var(--line); border-radius: 8px;
  padding: 14px 16px; margin-bottom: 18px; }
.chart { background: #fff; border: 1px solid var(--line); border-radius: 8px;
  padding: 6px; margin-bottom: 18px; min-width: 0; }
.row2 { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 18px; }
@media (max-width: 1000px) { .row2 { grid-template-columns: 1fr; } }
.kinds { display: flex; flex-wrap: wrap; gap: 8px 18px; }
.kind { white-space: nowrap; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px;
  margin-right: 6px; vertical-align: -1px; }
.notes { color: var(--muted); margin: 6px 0 0; padding-left: 18px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { position: sticky; top: 0; background: #eef1f5; cursor: pointer; user-select: none;
  white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.url { word-break: break-all; min-width: 280px; max-width: 520px; }
td.msg { max-width: 420px; overflow-wrap: anywhere; }
td.when, td.kind { white-space: nowrap; }
tbody tr:hover { background: #f3f6fa; }
.table-wrap { max-height: 640px; overflow: auto; border: 1px solid var(--line);
  border-radius: 6px; }
.filter { margin: 0 0 10px; padding: 6px 10px; width: 320px; max-width: 100%;
  border: 1px solid #c9d1d9; border-radius: 6px; font: inherit; }
.empty { color: var(--muted); font-style: italic; }
"""

# Sorts the failures table by the clicked column (numbers by data-v), and filters it.
_TABLE_JS: Final = """
(function () {
  var table = document.getElementById("failures");
  if (!table) { return; }
  var body = table.tBodies[0];
  var heads = table.tHead.rows[0].cells;
  function key(row, col, numeric) {
    var cell = row.cells[col];
    if (numeric) { return parseFloat(cell.getAttribute("data-v")); }
    return cell.textContent.toLowerCase();
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var numeric = th.classList.contains("num");
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a, col, numeric), y = key(b, col, numeric);
        var c = x < y ? -1 : x > y ? 1 : 0;
        return ascending ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  var filter = document.getElementById("failures-filter");
  if (filter) {
    filter.addEventListener("input", function () {
      var needle = filter.value.toLowerCase();
      Array.prototype.forEach.call(body.rows, function (r) {
        r.hidden = needle !== "" && r.textContent.toLowerCase().indexOf(needle) < 0;
      });
    });
  }
})();
"""


def _card(label: str, value: str, note: str = "") -> str:
    note_html = f'<div class="note">{html.escape(note)}</div>' if note else ""
    return (
        f'<div class="card"><div class="label">{html.escape(label)}</div>'
        f'<div class="value">{html.escape(value)}</div>{note_html}</div>'
    )


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def _failures_table(agg: _Aggregate, stats: ReportStats, spare: dict[str, str]) -> str:
    rows = sorted(agg.failures, reverse=True)
    out = []
    for f in rows:
        status = "" if f.status is None else str(f.status)
        color = _color(f.kind, spare)
        out.append(
            "<tr>"
            f'<td class="when">{html.escape(f.fetched_at)}</td>'
            f'<td class="url">{html.escape(f.url)}</td>'
            f'<td class="kind"><span class="swatch" style="background:{color}"></span>'
            f"{html.escape(f.kind)}</td>"
            f'<td class="num" data-v="{-1 if f.status is None else f.status}">{status}</td>'
            f'<td class="msg">{html.escape(f.message)}</td>'
            f'<td class="num" data-v="{f.attempts}">{f.attempts}</td>'
            f'<td class="num" data-v="{f.elapsed_ms:.3f}">{_ms_text(f.elapsed_ms)}</td>'
            "</tr>"
        )
    if stats.failed > len(rows):
        note = (
            f"Showing the {len(rows):,} most recent of {stats.failed:,} failures "
            f"(the table is capped at {FAILURES_SHOWN:,} rows); the charts count them all."
        )
    else:
        note = f"All {stats.failed:,} failures, most recent first."
    return (
        '<section class="panel" id="failures-section"><h2>Failures</h2>'
        f'<p class="sub" id="failures-note">{html.escape(note)} Click a column header to sort.'
        "</p>"
        '<input class="filter" id="failures-filter" type="search" '
        'placeholder="Filter rows (URL, kind, message…)" aria-label="Filter failures">'
        '<div class="table-wrap"><table id="failures"><thead><tr>'
        "<th>fetched_at (UTC)</th><th>url</th><th>kind</th>"
        '<th class="num">status</th><th>message</th><th class="num">attempts</th>'
        '<th class="num">elapsed</th></tr></thead><tbody>' + "".join(out) + "</tbody></table>"
        "</div></section>"
    )


def _page(
    title: str,
    source: str,
    plotly_js: str,
    stats: ReportStats,
    agg: _Aggregate,
    charts: dict[str, str],
    spare: dict[str, str],
) -> str:
    span = _ms_text(stats.span_seconds * 1000)
    first = stats.first.strftime("%Y-%m-%d %H:%M:%S")
    if stats.first.date() == stats.last.date():
        when = f"{first} to {stats.last:%H:%M:%S} UTC"
    else:
        when = f"{first} to {stats.last:%Y-%m-%d %H:%M:%S} UTC"
    lat = {k: _ms_text(v) for k, v in stats.latency_ms.items()}
    cards = "".join(
        [
            _card("records", f"{stats.records:,}"),
            _card("ok", f"{stats.ok:,}", _pct(stats.ok, stats.records)),
            _card("failed", f"{stats.failed:,}", _pct(stats.failed, stats.records)),
            _card("bytes", _bytes_text(stats.bytes), f"{stats.bytes:,} B"),
            _card("time span", span, when),
            _card("throughput", f"{stats.throughput:,.1f}/s", "records per second over the span"),
            _card("retries spent", f"{stats.retries:,}", "sum of attempts - 1"),
            _card("latency p50", lat["p50"], f"p90 {lat['p90']} · p99 {lat['p99']}"),
        ]
    )
    kinds = sorted(stats.kinds.items(), key=lambda kv: (-kv[1], kv[0]))
    kind_items = "".join(
        f'<span class="kind"><span class="swatch" style="background:{_color(k, spare)}">'
        f"</span>{html.escape(k)} <b>{n:,}</b> ({_pct(n, stats.records)})</span>"
        for k, n in kinds
    )
    kinds_html = (
        f'<div class="kinds">{kind_items}</div>'
        if kinds
        else '<p class="empty">No failures: every record is ok.</p>'
    )
    notes = []
    if stats.torn_tail:
        notes.append(
            "The last line of the output was incomplete (a run still writing, or a crash) "
            "and is left out."
        )
    if stats.hosts_approximate:
        notes.append(
            f"More than {2 * HOSTS_TRACKED:,} hosts had failures, so only the busiest were "
            "tracked throughout: per-host counts may be slightly low."
        )
    notes_html = (
        '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
        if notes
        else ""
    )
    failures_html = (
        f'<div class="chart">{charts["hosts"]}</div>' + _failures_table(agg, stats, spare)
        if stats.failed
        else ""
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="surefetch report">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
<script>{plotly_js}</script>
</head>
<body>
<main>
<h1>{html.escape(title)}</h1>
<p class="sub">{html.escape(source)} · generated {generated}</p>
<section class="cards" id="totals">{cards}</section>
<section class="panel" id="kinds"><h2>Outcomes</h2>{kinds_html}{notes_html}</section>
<div class="chart">{charts["outcomes"]}</div>
<div class="chart">{charts["throughput"]}</div>
<div class="row2">
<div class="chart">{charts["latency"]}</div>
<div class="chart">{charts["statuses"]}</div>
</div>
{failures_html}
</main>
<script>{_TABLE_JS}</script>
</body>
</html>
"""


# --- entry points -------------------------------------------------------------------


def default_report_path(source_path: str) -> str:
    """``runs/out.jsonl`` -> ``runs/out-report.html``."""
    root, _ = os.path.splitext(source_path)
    return f"{root}-report.html"


def _check_paths(source_path: str, html_path: str) -> None:
    if not os.path.exists(source_path):
        raise ReportError(f"no such file: {source_path}")
    if os.path.isdir(source_path):
        raise ReportError(f"{source_path} is a directory, not a surefetch output")
    if os.path.isdir(html_path):
        raise ReportError(f"report path is a directory: {html_path}")
    parent = os.path.dirname(os.path.abspath(html_path))
    if not os.path.isdir(parent):
        raise ReportError(f"report folder does not exist: {parent}")
    if os.path.exists(html_path) and os.path.samefile(source_path, html_path):
        raise ReportError("the report would overwrite its own input; choose another -o")


def build_report(source_path: str, html_path: str, *, title: str | None = None) -> ReportStats:
    """Read a surefetch output (JSON lines or SQLite) and write an HTML report of it.

    The input is read once, in a stream, into fixed-size aggregates, so outputs of
    millions of records take little memory. The HTML file is written atomically (a
    temporary file renamed into place) and is self-contained: plotly's JavaScript and
    all data are inline. Raises :class:`ReportError` (a ``click.UsageError``) for a
    missing, foreign or corrupt input and :class:`MissingExtraError` when plotly is not
    installed.
    """
    go, offline = _plotly()
    _check_paths(source_path, html_path)
    torn = [False]
    try:
        rows = (
            _sqlite_rows(source_path) if _is_sqlite(source_path) else _jsonl_rows(source_path, torn)
        )
    except OSError as exc:
        raise ReportError(f"cannot read {source_path}: {exc.strerror or exc}") from None
    agg = _Aggregate()
    try:
        for row in rows:
            try:
                at_ms = _epoch_ms(row[8])
            except (ValueError, OverflowError, OSError):
                raise ReportError(
                    f"{source_path} record {agg.records + 1} has a bad fetched_at: {row[8]!r:.60}"
                ) from None
            agg.add(row, at_ms)
    except OSError as exc:
        raise ReportError(f"cannot read {source_path}: {exc.strerror or exc}") from None
    if not agg.records or agg.first_ms is None or agg.last_ms is None:
        raise ReportError(f"{source_path} holds no records: nothing to report")

    span = (agg.last_ms - agg.first_ms) / 1000
    failed = agg.records - agg.ok
    kinds = {
        name: agg.kind_counts[i]
        for i, name in enumerate(agg.series)
        if i and agg.series_index.get(name) == i and agg.kind_counts[i]
    }
    stats = ReportStats(
        records=agg.records,
        ok=agg.ok,
        failed=failed,
        bytes=agg.bytes,
        retries=agg.retries,
        first=datetime.fromtimestamp(agg.first_ms / 1000, UTC),
        last=datetime.fromtimestamp(agg.last_ms / 1000, UTC),
        span_seconds=span,
        throughput=agg.records / span if span > 0 else float(agg.records),
        kinds=kinds,
        statuses=dict(agg.statuses),
        latency_ms={f"p{q}": agg.percentile(q / 100) for q in (50, 90, 99)},
        failures_listed=len(agg.failures),
        top_hosts=agg.top_hosts(),
        hosts_approximate=agg.hosts_pruned > 0,
        bin_seconds=agg.display_width_ms() / 1000,
        torn_tail=torn[0],
    )
    spare: dict[str, str] = {}
    charts = {
        "outcomes": _outcomes_chart(go, agg, spare),
        "throughput": _throughput_chart(go, agg, stats),
        "latency": _latency_chart(go, agg, stats),
        "statuses": _statuses_chart(go, agg),
        "hosts": _hosts_chart(go, agg, stats, spare) if failed else "",
    }
    name = title or f"surefetch report: {os.path.basename(source_path)}"
    page = _page(
        redact_text(name),
        redact_text(os.path.abspath(source_path)),
        offline.get_plotlyjs(),
        stats,
        agg,
        charts,
        spare,
    )
    data = page.encode("utf-8")
    tmp = f"{html_path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, html_path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise click.ClickException(f"cannot write {html_path}: {exc.strerror or exc}") from None
    return dataclasses.replace(stats, html_bytes=len(data))


@click.command("report")
@click.argument("source", metavar="OUTPUT", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    "html_path",
    type=click.Path(dir_okay=False),
    help="Where the HTML report goes.  [default: OUTPUT's name with -report.html]",
)
@click.option("--title", help="Title of the page.  [default: 'surefetch report: OUTPUT']")
def report_command(source: str, html_path: str | None, title: str | None) -> None:
    """Make one self-contained HTML page of charts from a surefetch OUTPUT.

    OUTPUT is what `surefetch fetch` wrote (JSON lines or SQLite). The page shows
    outcomes and throughput over time, latency, failures by host and status codes, and
    a sortable table of the most recent failures. It needs no network to open. Needs
    the extra: pip install 'surefetch[report]'.
    """
    target = html_path or default_report_path(source)
    stats = build_report(source, target, title=title)
    click.echo(
        f"surefetch: report of {stats.records:,} records ({stats.ok:,} ok, "
        f"{stats.failed:,} failed) written to {target}",
        err=True,
    )
