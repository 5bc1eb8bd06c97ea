"""The collector's own Prometheus endpoint: `GET /metrics` on `metrics.host:metrics.port` (0 = off).

Everything but the latency histogram is read from Statistics when Prometheus scrapes, so the feed pays nothing
for it; the histogram sees one observation per message sent (receipt -> written to the broker's socket). The
registry is this endpoint's own, not prometheus_client's global one: several collectors may share a process
(tests, the benchmark). A port already taken is reported once and the collector runs on without /metrics.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from models.status import source_parts
from utils.statistics import Statistics, now_ms

log = logging.getLogger("metrics")

SOURCE_LABELS = ("exchange", "market")
PUBLISHER_COUNTERS = (
    ("published", "Messages RabbitMQ confirmed"),
    ("failed", "Updates that could not be serialized, and messages RabbitMQ refused"),
    ("conflated", "Updates replaced by a newer one of the same key before they were sent"),
    ("expired", "Updates dropped as older than max_message_age_ms when they could be sent"),
)
"""The publisher's counters: (PublisherStats field, help). The monitor exports the same from heartbeats."""
RECEIPT_TO_PUBLISH_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)
"""Seconds: 0.1 ms (a quiet feed) to 5 s (an outage's backlog; max_message_age_ms drops what is older)."""


class StatisticsCollector(Collector):
    """Turns the collector's counters into metric families at each scrape."""

    def __init__(self, statistics: Statistics) -> None:
        self._statistics = statistics

    def collect(self) -> Iterable[Metric]:
        statistics = self._statistics
        at = now_ms()
        uptime_seconds = statistics.uptime_seconds()
        counters = {
            "updates": CounterMetricFamily(
                "futures_scan_updates", "Venue updates published, per source", labels=SOURCE_LABELS
            ),
            "errors": CounterMetricFamily(
                "futures_scan_errors", "Malformed frames, failed subscriptions and REST calls", labels=SOURCE_LABELS
            ),
            "reconnects": CounterMetricFamily(
                "futures_scan_reconnects", "WebSocket reconnects to the venue", labels=SOURCE_LABELS
            ),
            "frames": CounterMetricFamily(
                "futures_scan_frames", "WebSocket frames received from the venue", labels=SOURCE_LABELS
            ),
        }
        last_update_age = GaugeMetricFamily(
            "futures_scan_last_update_age_seconds",
            "Seconds since the source's last update (since the collector started, before the first one)",
            labels=SOURCE_LABELS,
        )
        stale = GaugeMetricFamily(
            "futures_scan_stale_symbols", "Subscribed symbols without an update for stale_after_seconds",
            labels=SOURCE_LABELS,
        )
        symbols = GaugeMetricFamily("futures_scan_symbols", "Symbols subscribed", labels=SOURCE_LABELS)
        stream_up = GaugeMetricFamily(
            "futures_scan_stream_up", "1 while the stream (ticker, orderbook, funding, ...) is connected",
            labels=(*SOURCE_LABELS, "stream"),
        )
        for stats in statistics.exchanges:
            labels = source_parts(stats.exchange)
            for field, family in counters.items():
                family.add_metric(labels, getattr(stats, field))
            age = stats.last_update_age_seconds(at)
            last_update_age.add_metric(labels, uptime_seconds if age is None else age)
            stale.add_metric(labels, len(stats.stale_symbols))
            symbols.add_metric(labels, stats.symbols)
            for stream, up in stats.streams_up.items():
                stream_up.add_metric((*labels, stream), 1 if up else 0)
        yield from counters.values()
        yield from (last_update_age, stale, symbols, stream_up)

        publisher = statistics.publisher
        for field, text in PUBLISHER_COUNTERS:
            yield CounterMetricFamily(f"futures_scan_{field}", text, value=getattr(publisher, field))
        yield CounterMetricFamily(
            "futures_scan_broker_reconnects", "RabbitMQ outages the publisher recovered from",
            value=publisher.reconnects,
        )
        yield GaugeMetricFamily(
            "futures_scan_broker_connected", "1 while the publisher can publish to RabbitMQ",
            value=1 if publisher.connected else 0,
        )
        yield GaugeMetricFamily(
            "futures_scan_uptime_seconds", "Seconds since the collector started", value=uptime_seconds
        )


class MetricsServer:
    """aiohttp.web serving /metrics; the event loop's own thread reads Statistics, so no locking."""

    def __init__(self, statistics: Statistics, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self.registry = CollectorRegistry()
        self.registry.register(StatisticsCollector(statistics))
        self.receipt_to_publish = Histogram(
            "futures_scan_receipt_to_publish_seconds",
            "Receipt of a venue update -> its message written to RabbitMQ's socket",
            buckets=RECEIPT_TO_PUBLISH_BUCKETS,
            registry=self.registry,
        )
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}/metrics"

    async def start(self) -> bool:
        """Serve /metrics; False (after one ERROR naming the address) when it cannot listen there."""
        app = web.Application()
        app.router.add_get("/metrics", metrics_handler(self.registry))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except OSError as error:
            await runner.cleanup()
            why = "the port is taken" if error.errno == errno.EADDRINUSE else str(error)
            log.error(
                "cannot serve Prometheus metrics on %s:%d (metrics.host, metrics.port): %s; the collector runs on "
                "without /metrics (set metrics.port to a free port, or 0 to turn it off)",
                self._host, self._port, why,
            )
            return False
        self._runner = runner
        log.info("Prometheus metrics on %s", self.url)
        return True

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def metrics_handler(registry: CollectorRegistry) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /metrics of `registry`: the Prometheus text format, or OpenMetrics when the scraper asks for it."""

    async def handle(request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(registry), headers={"Content-Type": content_type})

    return handle
