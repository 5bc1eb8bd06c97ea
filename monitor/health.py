"""Venue health from the collectors' heartbeats: ok, stale or down, per collector and per source.

- down: the collector's heartbeats stopped (none for 3 intervals), or the source never delivered, or every
  stream of it is disconnected;
- stale: its last update is older than the collector's stale_after_seconds, or some of its symbols are;
- ok: otherwise.
"""

from __future__ import annotations

from typing import Any, Literal

from models.status import HEARTBEATS_MISSED_BEFORE_DOWN, CollectorStatus, SourceStatus, source_parts
from monitor.state import HeartbeatEntry, MonitorState

Health = Literal["ok", "stale", "down"]


def heartbeat_fresh(entry: HeartbeatEntry, at: int) -> bool:
    return at - entry.at <= HEARTBEATS_MISSED_BEFORE_DOWN * entry.status.interval_seconds * 1000


def source_health(source: SourceStatus, collector: CollectorStatus, fresh: bool, age: float | None) -> Health:
    if not fresh or age is None:
        return "down"
    if source.streams_up and not any(source.streams_up.values()):
        return "down"
    if age > collector.stale_after_seconds or source.stale_symbols:
        return "stale"
    return "ok"


def last_update_age(source_id: str, source: SourceStatus, heartbeat_age: float, state: MonitorState,
                    at: int) -> float | None:
    """Seconds since the source's last update: the heartbeat's figure aged by the time since it was sent, or,
    when fresher, since the monitor itself last received a message of that source (heartbeats come every few
    seconds; the data in between)."""
    ages = []
    if source.last_update_age_seconds is not None:
        ages.append(source.last_update_age_seconds + heartbeat_age)
    seen = state.source_seen.get(source_id)
    if seen is not None:
        ages.append(max(0.0, (at - seen) / 1000))
    return round(min(ages), 3) if ages else None


def sources(state: MonitorState, at: int) -> list[dict[str, Any]]:
    """One row per (collector, source), as the dashboard's tiles and /api/exchanges show them."""
    rows = []
    for name, entry in sorted(state.collectors.items()):
        fresh = heartbeat_fresh(entry, at)
        heartbeat_age = (at - entry.at) / 1000
        for source_id, source in sorted(entry.status.sources.items()):
            exchange, market = source_parts(source_id)
            age = last_update_age(source_id, source, heartbeat_age, state, at)
            rows.append({
                "collector": name,
                "source": source_id,
                "exchange": exchange,
                "market": market,
                "status": source_health(source, entry.status, fresh, age),
                "last_update_age_seconds": age,
                "messages_per_second": source.messages_per_second if fresh else 0.0,
                "symbols": source.symbols,
                "updates": source.updates,
                "errors": source.errors,
                "reconnects": source.reconnects,
                "stale_symbols": source.stale_symbols,
                "streams_up": source.streams_up,
                "receipt_minus_venue_ms": source.receipt_minus_venue_ms.model_dump(),
            })
    return rows


def collectors(state: MonitorState, at: int) -> list[dict[str, Any]]:
    rows = []
    for name, entry in sorted(state.collectors.items()):
        status = entry.status
        rows.append({
            "collector": name,
            "status": "ok" if heartbeat_fresh(entry, at) else "down",
            "heartbeat_age_seconds": round((at - entry.at) / 1000, 3),
            "interval_seconds": status.interval_seconds,
            "uptime_seconds": status.uptime_seconds,
            "publisher": status.publisher.model_dump(),
        })
    return rows
