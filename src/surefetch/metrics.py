"""Prometheus metrics of a running fetch (``--metrics-port``), from prometheus_client.

Everything is derived from the records the main process writes, so the numbers are
the same with one process or ``--workers N``.
"""

from __future__ import annotations

from typing import Any

from .engine import Stats
from .record import Record

__all__ = ["Metrics"]

#: Seconds per URL (retries included): fine below a second, coarse above.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Serves ``/metrics`` on 127.0.0.1:``port`` while the run goes."""

    def __init__(self, port: int, stats: Stats) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise RuntimeError(
                "--metrics-port needs prometheus_client: pip install 'surefetch[metrics]'"
            ) from None
        self.registry = prom.CollectorRegistry()
        self.records = prom.Counter(
            "surefetch_records",
            "Records written, by outcome (ok, or the error kind).",
            ["outcome"],
            registry=self.registry,
        )
        self.requests = prom.Counter(
            "surefetch_requests",
            "Requests sent (retries included), by the outcome of their URL.",
            ["outcome"],
            registry=self.registry,
        )
        self.retries = prom.Counter(
            "surefetch_retries", "Requests that were retries.", registry=self.registry
        )
        self.latency = prom.Histogram(
            "surefetch_url_seconds",
            "Seconds from a URL's first attempt to its record, retries included.",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        in_flight = prom.Gauge(
            "surefetch_in_flight", "URLs being fetched right now.", registry=self.registry
        )
        in_flight.set_function(lambda: stats.in_flight)
        self._server: Any
        self._server, self._thread = prom.start_http_server(
            port, addr="127.0.0.1", registry=self.registry
        )

    def observe(self, record: Record) -> None:
        outcome = "ok" if record.ok else record.error.kind if record.error else "failed"
        self.records.labels(outcome).inc()
        if record.attempts:
            self.requests.labels(outcome).inc(record.attempts)
            self.latency.observe(record.elapsed_ms / 1000)
            if record.attempts > 1:
                self.retries.inc(record.attempts - 1)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
