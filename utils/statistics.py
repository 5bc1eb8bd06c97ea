"""Counters per venue and for RabbitMQ, and the statistics block logged every interval."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from models.status import CollectorStatus, Percentiles, PublisherStatus, SourceStatus
from publishers.rabbitmq_publisher import PublisherStats
from utils.latency import LatencyWindow

log = logging.getLogger("main")

RATE_WINDOW_SECONDS = 10


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class ExchangeStats:
    exchange: str
    symbols: int = 0
    """Symbols subscribed (configured and listed by the venue)."""
    updates: int = 0
    """Venue updates merged into a market state and handed to the publisher (successes)."""
    errors: int = 0
    """Malformed frames, failed subscriptions and REST calls."""
    reconnects: int = 0
    frames: int = 0
    """WebSocket frames received."""
    last_update_ms: int | None = None
    streams_up: dict[str, bool] = field(default_factory=dict)
    stale_symbols: list[str] = field(default_factory=list)
    """Subscribed symbols without an update for stale_after_seconds."""
    venue_lag_ms: LatencyWindow = field(default_factory=lambda: LatencyWindow(1024))
    """Receipt time minus the venue's event time, per update: network delay plus clock skew.
    Negative when the venue's clock is ahead of ours."""

    def clock_skew_ms(self) -> float | None:
        """Median receipt - venue time over the recent updates."""
        (median,) = self.venue_lag_ms.percentiles(0.5)
        return median

    def last_update_age_seconds(self, at_ms: int) -> float | None:
        return None if self.last_update_ms is None else max(0.0, (at_ms - self.last_update_ms) / 1000)


class Statistics:
    """Snapshots for the periodic block, the final block and (later) the control plane."""

    def __init__(
        self,
        exchanges: list[ExchangeStats],
        publisher: PublisherStats,
        latency: LatencyWindow,
        status_latency: LatencyWindow | None = None,
    ) -> None:
        self.exchanges = exchanges
        self.publisher = publisher
        self.latency = latency
        self.status_latency = status_latency if status_latency is not None else LatencyWindow(1)
        """Receipt->publish samples since the previous heartbeat; render() resets `latency`, the heartbeat this."""
        self._started = time.monotonic()
        self._previous: dict[str, int] = {}
        self._previous_at = self._started
        self._samples: deque[tuple[float, dict[str, int]]] = deque(maxlen=RATE_WINDOW_SECONDS + 1)

    async def sample_forever(self) -> None:
        """Once a second, for messages/s over the last RATE_WINDOW_SECONDS."""
        while True:
            self._samples.append((time.monotonic(), {stats.exchange: stats.updates for stats in self.exchanges}))
            await asyncio.sleep(1)

    def uptime_seconds(self) -> float:
        return round(time.monotonic() - self._started, 1)

    def rates(self) -> dict[str, float]:
        if not self._samples:
            return {stats.exchange: 0.0 for stats in self.exchanges}
        then, counts = self._samples[0]
        elapsed = max(time.monotonic() - then, 1e-9)
        return {stats.exchange: (stats.updates - counts.get(stats.exchange, 0)) / elapsed for stats in self.exchanges}

    def snapshot(self) -> dict[str, Any]:
        at = now_ms()
        p50, p99 = self.latency.percentiles(0.5, 0.99)
        return {
            "uptime_seconds": round(time.monotonic() - self._started, 1),
            "exchanges": {
                stats.exchange: {
                    "symbols": stats.symbols,
                    "updates": stats.updates,
                    "errors": stats.errors,
                    "reconnects": stats.reconnects,
                    "frames": stats.frames,
                    "last_update_age_seconds": stats.last_update_age_seconds(at),
                    "stale_symbols": list(stats.stale_symbols),
                    "clock_skew_ms": stats.clock_skew_ms(),
                    "streams_up": dict(stats.streams_up),
                }
                for stats in self.exchanges
            },
            "rabbitmq": {
                **self.publisher.as_dict(),
                "receipt_to_publish_ms": {"p50": p50, "p99": p99},
            },
        }

    def control_snapshot(self) -> dict[str, Any]:
        """get_statistics: the seed design's fields first, then everything else that is counted."""
        snapshot = self.snapshot()
        rates = self.rates()
        for name, venue in snapshot["exchanges"].items():
            venue["messages_per_second"] = round(rates.get(name, 0.0), 2)
        publisher = self.publisher
        return {
            "exchange_success": {stats.exchange: stats.updates for stats in self.exchanges},
            "exchange_errors": {stats.exchange: stats.errors for stats in self.exchanges},
            "rabbitmq_published": publisher.published,
            "rabbitmq_failed": publisher.failed,
            "rabbitmq_conflated": publisher.conflated,
            "rabbitmq_expired": publisher.expired,
            **snapshot,
        }

    def collector_status(
        self, connection_name: str, interval_seconds: float, stale_after_seconds: float
    ) -> CollectorStatus:
        """The status heartbeat: what get_statistics answers, with receipt->publish since the previous heartbeat."""
        at = now_ms()
        rates = self.rates()
        sources: dict[str, SourceStatus] = {}
        for stats in self.exchanges:
            venue_p50, venue_p99 = stats.venue_lag_ms.percentiles(0.5, 0.99)
            sources[stats.exchange] = SourceStatus(
                symbols=stats.symbols,
                updates=stats.updates,
                errors=stats.errors,
                reconnects=stats.reconnects,
                frames=stats.frames,
                messages_per_second=round(rates.get(stats.exchange, 0.0), 2),
                last_update_age_seconds=stats.last_update_age_seconds(at),
                stale_symbols=list(stats.stale_symbols),
                streams_up=dict(stats.streams_up),
                receipt_minus_venue_ms=Percentiles(p50=venue_p50, p99=venue_p99),
            )
        publish_p50, publish_p99 = self.status_latency.percentiles(0.5, 0.99)
        self.status_latency.reset()
        publisher = self.publisher
        return CollectorStatus(
            connection_name=connection_name,
            sent_at=at,
            interval_seconds=interval_seconds,
            stale_after_seconds=stale_after_seconds,
            uptime_seconds=self.uptime_seconds(),
            sources=sources,
            publisher=PublisherStatus(
                published=publisher.published,
                failed=publisher.failed,
                conflated=publisher.conflated,
                expired=publisher.expired,
                reconnects=publisher.reconnects,
                connected=publisher.connected,
                receipt_to_publish_ms=Percentiles(p50=publish_p50, p99=publish_p99),
            ),
        )

    def render(self, final: bool = False) -> str:
        now = time.monotonic()
        elapsed = max(now - self._previous_at, 1e-9)
        at = now_ms()
        title = "Final statistics" if final else f"Statistics (last {elapsed:.0f}s)"
        lines = [f"=== {title} ==="]
        for stats in self.exchanges:
            updates = stats.updates - self._previous.get(stats.exchange, 0)
            self._previous[stats.exchange] = stats.updates
            age = stats.last_update_age_seconds(at)
            down = [name for name, up in stats.streams_up.items() if not up]
            skew = stats.clock_skew_ms()
            lines.append(
                f"{stats.exchange}: {updates} updates ({updates / elapsed:.1f}/s), {stats.errors} errors, "
                f"{stats.reconnects} reconnects, {stats.symbols} symbols, "
                f"last update {'never' if age is None else f'{age:.1f}s ago'}"
                + (f", receipt-venue time {skew:+.0f} ms" if skew is not None else "")
                + (f", stale: {', '.join(stats.stale_symbols)}" if stats.stale_symbols else "")
                + (f", streams down: {', '.join(down)}" if down else "")
            )
        publisher = self.publisher
        published = publisher.published - self._previous.get("rabbitmq", 0)
        self._previous["rabbitmq"] = publisher.published
        p50, p99 = self.latency.percentiles(0.5, 0.99)
        latency = f", receipt->publish p50 {p50:.2f} ms p99 {p99:.2f} ms" if p50 is not None and p99 is not None else ""
        lines.append(
            f"RabbitMQ: {published} published ({published / elapsed:.1f}/s), {publisher.failed} failed, "
            f"{publisher.conflated} conflated, {publisher.expired} expired, "
            f"{'connected' if publisher.connected else 'DISCONNECTED'}{latency}"
        )
        if final:
            lines.append(
                "totals: " + ", ".join(f"{s.exchange} {s.updates} updates" for s in self.exchanges)
                + f", RabbitMQ {publisher.published} published"
            )
        lines.append("=" * len(lines[0]))
        self._previous_at = now
        self.latency.reset()
        return "\n".join(lines)

    async def report_forever(self, interval_seconds: float) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            log.info("\n%s", self.render())
