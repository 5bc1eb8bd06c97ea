"""GET /metrics on the monitor: what it learns from heartbeats and analytics, in the Prometheus text format.

Read from MonitorState at scrape time (a custom collector on its own registry), so a scrape costs nothing
between scrapes. Per source the labels are `collector`, `exchange` and `market`; several collectors feeding
one monitor stay apart by `collector`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor import health
from monitor.state import MonitorState, now_ms
from utils.prometheus_metrics import PUBLISHER_COUNTERS

SOURCE_LABELS = ["collector", "exchange", "market"]


class MonitorMetrics(Collector):
    def __init__(self, state: MonitorState, websocket_counts: Callable[[], tuple[int, int, int]]) -> None:
        self.state = state
        self.websocket_counts = websocket_counts
        """(clients connected, frames sent, frames dropped)."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        at = now_ms()
        yield from self._sources(at)
        yield from self._collectors(at)
        state = self.state
        yield GaugeMetricFamily("futures_scan_open_opportunities", "Opportunities open now", value=len(state.open))
        yield CounterMetricFamily("futures_scan_opportunities_opened", "Opportunities opened since the monitor "
                                  "started", value=state.opened_total)
        closed = CounterMetricFamily("futures_scan_opportunities_closed", "Opportunities closed since the monitor "
                                     "started, by reason", labels=["reason"])
        for reason, count in sorted(state.closed_total.items()):
            closed.add_metric([reason], count)
        yield closed
        yield CounterMetricFamily("futures_scan_spreads_evaluated", "Spread snapshots received from the spread "
                                  "engine", value=state.consumed["spread"])
        yield GaugeMetricFamily("futures_scan_spread_directions", "Directions with a spread snapshot",
                                value=len(state.spreads))
        consumed = CounterMetricFamily("futures_scan_monitor_messages", "Messages the monitor consumed, by kind",
                                       labels=["kind"])
        invalid = CounterMetricFamily("futures_scan_monitor_invalid_messages", "Messages that failed validation, "
                                      "by kind", labels=["kind"])
        for kind in ("market", "spread", "opportunity", "status"):
            consumed.add_metric([kind], state.consumed[kind])
            invalid.add_metric([kind], state.invalid[kind])
        yield consumed
        yield invalid
        (lag,) = state.queue_lag_ms.percentiles(0.99)
        yield GaugeMetricFamily("futures_scan_monitor_queue_lag_seconds", "p99 of monitor receipt minus collector "
                                "publish time over recent market messages", value=(lag or 0.0) / 1000)
        clients, sent, dropped = self.websocket_counts()
        yield GaugeMetricFamily("futures_scan_monitor_websocket_clients", "WebSocket clients connected",
                                value=clients)
        yield CounterMetricFamily("futures_scan_monitor_websocket_frames", "WebSocket frames sent", value=sent)
        yield CounterMetricFamily("futures_scan_monitor_websocket_frames_dropped", "WebSocket frames skipped "
                                  "because the client had not taken the previous one", value=dropped)

    def _sources(self, at: int) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        updates = CounterMetricFamily("futures_scan_updates", "Updates the collector published", labels=SOURCE_LABELS)
        errors = CounterMetricFamily("futures_scan_errors", "Malformed frames and failed calls",
                                     labels=SOURCE_LABELS)
        reconnects = CounterMetricFamily("futures_scan_reconnects", "Stream reconnects", labels=SOURCE_LABELS)
        age = GaugeMetricFamily("futures_scan_last_update_age_seconds", "Seconds since the source's last update",
                                labels=SOURCE_LABELS)
        stale = GaugeMetricFamily("futures_scan_stale_symbols", "Symbols without an update for stale_after_seconds",
                                  labels=SOURCE_LABELS)
        up = GaugeMetricFamily("futures_scan_source_up", "1 when the source's status is ok, else 0",
                               labels=SOURCE_LABELS)
        for row in health.sources(self.state, at):
            labels = [row["collector"], row["exchange"], row["market"]]
            updates.add_metric(labels, row["updates"])
            errors.add_metric(labels, row["errors"])
            reconnects.add_metric(labels, row["reconnects"])
            if row["last_update_age_seconds"] is not None:
                age.add_metric(labels, row["last_update_age_seconds"])
            stale.add_metric(labels, len(row["stale_symbols"]))
            up.add_metric(labels, 1 if row["status"] == "ok" else 0)
        yield from (updates, errors, reconnects, age, stale, up)

    def _collectors(self, at: int) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        families = {
            name: CounterMetricFamily(f"futures_scan_{name}", text, labels=["collector"])
            for name, text in PUBLISHER_COUNTERS
        }
        connected = GaugeMetricFamily("futures_scan_broker_connected", "1 while the collector can publish",
                                      labels=["collector"])
        heartbeat = GaugeMetricFamily("futures_scan_heartbeat_age_seconds", "Seconds since the collector's last "
                                      "status heartbeat", labels=["collector"])
        for row in health.collectors(self.state, at):
            publisher = row["publisher"]
            for name, family in families.items():
                family.add_metric([row["collector"]], publisher[name])
            fresh = row["status"] == "ok"
            connected.add_metric([row["collector"]], 1 if fresh and publisher["connected"] else 0)
            heartbeat.add_metric([row["collector"]], row["heartbeat_age_seconds"])
        yield from (*families.values(), connected, heartbeat)
