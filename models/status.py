"""The collector's status heartbeat: one message every `collection.status_interval_seconds` on the topic
exchange `futures_collector_status`, routing key `status.<connection_name>`.

It carries what `get_statistics` answers, so a monitor, an alerter or a user's own consumer learns each
source's health without polling, and learns that a collector is gone when its heartbeats stop (no message
for 3 x `interval_seconds`). Times are ms since epoch UTC.

    status = CollectorStatus.model_validate_json(body)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

HEARTBEATS_MISSED_BEFORE_DOWN = 3
"""A collector silent for this many intervals is down; so are its sources."""


class _Status(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Percentiles(_Status):
    p50: float | None
    p99: float | None


class SourceStatus(_Status):
    """One source (binance, binance.spot, ...) of the collector."""

    symbols: int = Field(description="symbols subscribed")
    updates: int = Field(description="updates published since start")
    errors: int
    reconnects: int
    frames: int = Field(description="WebSocket frames received since start")
    messages_per_second: float = Field(description="updates per second over the last 10 s")
    last_update_age_seconds: float | None = Field(description="null before the first update")
    stale_symbols: list[str] = Field(description="subscribed symbols without an update for stale_after_seconds")
    streams_up: dict[str, bool] = Field(description="per stream (ticker, orderbook, funding, ...): connected")
    receipt_minus_venue_ms: Percentiles = Field(
        description="receipt time minus the venue's event time over recent updates: network delay plus clock skew"
    )


class PublisherStatus(_Status):
    published: int
    failed: int
    conflated: int
    expired: int
    reconnects: int
    connected: bool = Field(description="false while nothing can be published")
    receipt_to_publish_ms: Percentiles = Field(description="since the previous heartbeat")


class CollectorStatus(_Status):
    connection_name: str = Field(description="rabbitmq.connection_name: tells collectors apart")
    sent_at: int = Field(description="when this heartbeat was sent")
    interval_seconds: float = Field(description="the next one is due this long after sent_at")
    stale_after_seconds: float = Field(description="collection.stale_after_seconds of this collector")
    uptime_seconds: float
    sources: dict[str, SourceStatus]
    publisher: PublisherStatus


def status_key(connection_name: str) -> str:
    """status.<connection_name>, with the topic separators a name might hold made harmless."""
    return "status." + connection_name.replace(".", "_").replace("*", "_").replace("#", "_")


def source_parts(source: str) -> tuple[str, str]:
    """A source id's exchange and market: binance -> (binance, futures); binance.spot -> (binance, spot)."""
    exchange, _, market = source.partition(".")
    return exchange, market or "futures"
